#!/usr/bin/env bash
# Throughput through the gateway, as a ratio against the same load sent straight to the sink
# in the same run (smtp-source and smtp-sink come with the postfix package).
#
#   bench/relay.sh [messages] [sessions] [size_bytes]      defaults: 5000 20 4096
#
# Everything listens on 127.0.0.1 only; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
MSGS=${1:-5000}; SESSIONS=${2:-20}; SIZE=${3:-4096}
source bench/lib.sh

SINK=$(free_port); GW=$(free_port); MET=$(free_port)
# The sink answers everything with 250 and keeps nothing.
smtp-sink -u nobody -c "127.0.0.1:$SINK" 256 > "$WORK/sink.log" 2>&1 & pids+=($!)
wait_port "$SINK"

cat > "$WORK/gw.yaml" <<YAML
hostname: gw.bench.test
listen: ["127.0.0.1:$GW"]
accepted_domains: [bench.test]
backend: { url: "smtp://127.0.0.1:$SINK", xclient: false }
metrics: { listen: "127.0.0.1:$MET" }
limits: { max_sessions: 1000 }
# Relay throughput only: sender authentication would add the latency of whatever resolver
# this machine has (and query it for the made-up sender domains).
auth: { enabled: false }
client_checks: { rdns: false, helo_dns: false }
log: { level: warn }
YAML
"$BIN" serve --config "$WORK/gw.yaml" 2> "$WORK/gw.log" & pids+=($!)
wait_port "$GW"

run "$SINK" >/dev/null   # warm-up
direct=$(run "$SINK")
via=$(run "$GW")
accepted=$(curl -s "127.0.0.1:$MET/metrics" | awk '/^portcullis_messages_total\{mode="smtp",verdict="accept"\}/ {print $2}')
echo "messages=$MSGS sessions=$SESSIONS size=$SIZE"
echo "direct to smtp-sink:      $direct msg/s"
echo "through portcullis:       $via msg/s"
python3 -c "print(f'ratio gateway/direct:     {$via/$direct:.2f}')"
echo "gateway counted accepted: $accepted"
