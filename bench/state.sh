#!/usr/bin/env bash
# What the stateful controls cost: the same load through three gateways on the same sink,
# in the same run — no rate limits (baseline), rate limits in the local store, and the
# same rate limits plus the connection limits in a real redis-server.
#
#   bench/state.sh [messages] [sessions] [size_bytes]      defaults: 5000 20 4096
#
# The limits are generous (nothing is refused): the figures are the cost of counting — per
# message two GCRA updates (client address at MAIL, recipient at RCPT), and with Redis also
# one session lease per connection. Everything listens on 127.0.0.1 only; every process
# started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
MSGS=${1:-5000}; SESSIONS=${2:-20}; SIZE=${3:-4096}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server" >&2; exit 1; }
source bench/lib.sh

SINK=$(free_port); REDIS=$(free_port)
smtp-sink -u nobody -c "127.0.0.1:$SINK" 256 > "$WORK/sink.log" 2>&1 & pids+=($!)
redis-server --bind 127.0.0.1 --port "$REDIS" --save '' --appendonly no --dir "$WORK" \
  --daemonize no > "$WORK/redis.log" 2>&1 & pids+=($!)
wait_port "$SINK"; wait_port "$REDIS"

cat > "$WORK/limits.yaml" <<YAML
rules:
  - name: per-client
    limit: { key: client.ip, rate: 1000000/minute }
  - name: per-recipient
    limit: { key: rcpt, rate: 1000000/minute }
YAML
echo "rules: []" > "$WORK/none.yaml"

start_gw() {  # $1 = name, $2 = policy, $3 = state block; sets PORT (no subshell: pids stays ours)
  local port met
  port=$(free_port); met=$(free_port)
  cat > "$WORK/$1.yaml" <<YAML
hostname: gw.bench.test
listen: ["127.0.0.1:$port"]
accepted_domains: [bench.test]
backend: { url: "smtp://127.0.0.1:$SINK", xclient: false }
metrics: { listen: "127.0.0.1:$met" }
limits: { max_sessions: 1000 }
auth: { enabled: false }
client_checks: { rdns: false, helo_dns: false }
connections: { max_per_ip: 500, max_per_network: 1000, rate_per_minute: 1000000 }
policy: $2
$3
log: { level: warn }
YAML
  "$BIN" serve --config "$WORK/$1.yaml" > "$WORK/$1.out" 2> "$WORK/$1.log" & pids+=($!)
  wait_port "$port"
  PORT=$port
}

start_gw base "$WORK/none.yaml" ""; BASE=$PORT
start_gw local "$WORK/limits.yaml" ""; LOCAL=$PORT
start_gw shared "$WORK/limits.yaml" "state: { backend: redis, redis: { urls: [\"redis://127.0.0.1:$REDIS/0\"], timeout: 500ms } }"; SHARED=$PORT
sleep 1   # the Redis gateway connects in the background

run "$BASE" >/dev/null   # warm-up
base=$(run "$BASE"); local_=$(run "$LOCAL"); shared=$(run "$SHARED")
echo "messages=$MSGS sessions=$SESSIONS size=$SIZE"
echo "no rate limits:              $base msg/s"
echo "rate limits, local store:    $local_ msg/s"
echo "rate limits + sessions, redis: $shared msg/s"
python3 -c "print(f'ratio local/none:  {$local_/$base:.2f}'); print(f'ratio redis/none:  {$shared/$base:.2f}')"
grep -h "state backend" "$WORK"/shared.log || true
