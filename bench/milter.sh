#!/usr/bin/env bash
# Milter mode's cost, as ratios measured in one run: a real Postfix receiving into its queue
# and relaying to smtp-sink, alone and with the Portcullis milter (authentication and the
# rDNS/HELO checks on, asking a local name server that answers NXDOMAIN at once, see below),
# then the milter's CPU per message, and latency at concurrency 1 over inet: and unix:.
#
#   bench/milter.sh [messages] [sessions] [size_bytes]      defaults: 2000 20 4096
#
# Everything listens on 127.0.0.1 only; every process started here is stopped by PID or by
# `postfix stop`. Needs postfix (smtp-source, smtp-sink) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MSGS=${1:-2000}; SESSIONS=${2:-20}; SIZE=${3:-4096}
source bench/lib.sh
source bench/postfix.sh

SINK=$(free_port); PFX=$(free_port); MIL=$(free_port); MET=$(free_port); DNS=$(free_port)
D=/tmp/pfx-bench-$$
SOCK=$D/milter.sock
trap 'postfix_stop "$D"; cleanup' EXIT

smtp-sink -u nobody -c "127.0.0.1:$SINK" 256 > "$WORK/sink.log" 2>&1 & pids+=($!)
wait_port "$SINK"

# A name server that answers every question with NXDOMAIN at once (python3, stdlib only):
# authentication runs its whole path (SPF, DKIM key absent, DMARC tree walk) without the
# latency of a real resolver, and the cache sees negative answers.
cat > "$WORK/nxdns.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    q, a = s.recvfrom(512)
    if len(q) < 12:
        continue
    # Same id and question; QR=1, RD copied, RA=1, RCODE=3; no answers.
    flags = bytes([0x80 | (q[2] & 0x01), 0x83])
    s.sendto(q[:2] + flags + q[4:6] + b"\0\0\0\0\0\0" + q[12:], a)
PY
python3 "$WORK/nxdns.py" "$DNS" & pids+=($!)

postfix_instance "$D" "$PFX" "" "smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail"

cat > "$WORK/gw.yaml" <<YAML
hostname: gw.bench.test
listen: []
milter:
  listen: ["inet:127.0.0.1:$MIL", "unix:$SOCK"]
  socket_mode: "0666"
metrics: { listen: "127.0.0.1:$MET" }
limits: { max_sessions: 1000 }
dns: { nameservers: ["127.0.0.1:$DNS"], timeout: 1s, attempts: 1 }
auth: { enabled: true }
client_checks: { rdns: true, helo_dns: true }
log: { level: warn }
YAML
"$BIN" serve --config "$WORK/gw.yaml" 2> "$WORK/gw.log" & GWPID=$!; pids+=($GWPID)
wait_port "$MIL"

milters() { postconf -c "$D/etc" -e "smtpd_milters = $1"; postfix -c "$D/etc" reload >/dev/null 2>&1; sleep 1; }

echo "messages=$MSGS sessions=$SESSIONS size=$SIZE (Postfix into its queue, relaying to smtp-sink)"
milters ""
run "$PFX" >/dev/null   # warm-up
alone=$(run "$PFX")
milters "inet:127.0.0.1:$MIL"
run "$PFX" >/dev/null
c0=$(cpu_of "$GWPID")
with=$(run "$PFX")
c1=$(cpu_of "$GWPID")
echo "Postfix alone:                $alone msg/s"
echo "Postfix + Portcullis milter:  $with msg/s"
python3 -c "print(f'ratio with/alone:             {$with/$alone:.2f}   (target >= 0.85)')"
python3 -c "print(f'milter CPU per message:       {($c1-$c0)/$HZ/$MSGS*1e6:.0f} us')"

# Latency at concurrency 1: the mean time per message of one session's serial messages.
L=$(( MSGS / 10 > 100 ? MSGS / 10 : 100 ))
lat() { local start end; start=$(date +%s.%N); timeout 300 smtp-source -s 1 -m "$L" -l "$SIZE" -f from@sender.example -t rcpt@bench.test "127.0.0.1:$PFX"; end=$(date +%s.%N); python3 -c "print(f'{($end-$start)/$L*1000:.2f}')"; }
milters ""
base=$(lat)
milters "inet:127.0.0.1:$MIL"
inet=$(lat)
milters "unix:$SOCK"
unix=$(lat)
echo "latency c=1, Postfix alone:   $base ms/msg"
echo "latency c=1, milter inet:     $inet ms/msg"
echo "latency c=1, milter unix:     $unix ms/msg"
curl -s "127.0.0.1:$MET/metrics" | grep -E '^portcullis_messages_total\{mode="milter",verdict="accept"\}' || true
