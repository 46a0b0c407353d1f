#!/usr/bin/env bash
# Portcullis with full authentication, as ratios against a baseline measured in the same run:
# smtp-source sends DKIM-signed messages from one sender (SPF, DKIM, DMARC, ARC, rDNS, HELO
# and one DNSBL zone all asked of a local name server) straight to smtp-sink, through
# Portcullis, and through Postfix as a before-queue proxy (smtpd_proxy_filter) into the same
# sink. Then latency at concurrency 1 and 16, idle sessions, and one message at the size limit.
#
#   bench/auth.sh [messages] [sessions] [repeats]     defaults: 5000 32 3
#   bench/auth.sh --short                             a smoke run (the test build, small counts)
#   PERF=/tmp/gw.perf bench/auth.sh ...                also a perf profile of the gateway
#
# Prints a Markdown table (docs/performance.md). Every figure is a median of `repeats` runs,
# the rows interleaved so that drift of the machine hits them alike. It fails when a step
# fails or when a message through the gateway was not accepted with SPF, DKIM and DMARC
# passing (then it would measure something else). Everything listens on 127.0.0.1 only;
# every process started here is stopped by PID or `postfix stop`. Needs postfix and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --short ]; then
  export PROFILE=debug
  MSGS=200; SESSIONS=4; REPEATS=1; LAT=40; IDLE=200; BIG=$((5 * 1024 * 1024))
else
  MSGS=${1:-5000}; SESSIONS=${2:-32}; REPEATS=${3:-3}; LAT=1000
  IDLE=10000; BIG=$((50 * 1024 * 1024))
fi
SIZE=4096
source bench/lib.sh
source bench/postfix.sh

SINK=$(free_port); GW=$(free_port); MET=$(free_port); FRESH=$(free_port); FMET=$(free_port)
PFX=$(free_port)
D=/tmp/pfx-bench-$$
trap 'postfix_stop "$D"; cleanup' EXIT

"$KIT" serve "$WORK" 4096 65536 & pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/dns.port" ] && break; sleep 0.1; done
DNS=$(cat "$WORK/dns.port")
queries() { cat "$WORK/dns.count"; }

smtp-sink -u nobody -c "127.0.0.1:$SINK" 1024 > "$WORK/sink.log" 2>&1 & SINKPID=$!; pids+=($SINKPID)
wait_port "$SINK"

# The gateway as a site would run it: the shipped default policy, every check on, logging
# each message at info (to a file).
gateway_config() {  # $1 = port, $2 = metrics port, $3 = max_message_size, $4 = auth.max_verify_size
  cat <<YAML
hostname: gw.bench.test
listen: ["127.0.0.1:$1"]
accepted_domains: [bench.test]
backend: { url: "smtp://127.0.0.1:$SINK", xclient: false }
metrics: { listen: "127.0.0.1:$2" }
limits: { max_sessions: 20000, max_message_size: $3 }
connections: { max_per_ip: 0, max_per_network: 0 }
dns: { nameservers: ["127.0.0.1:$DNS"], timeout: 2s, attempts: 1 }
auth: { enabled: true, max_verify_size: $4 }
client_checks: { rdns: true, helo_dns: true, lookup_private: true }
dnsbl: { zones: [{ zone: bl.bench.test }] }
policy: $PWD/policies/default.yaml
log: { level: info }
YAML
}
gateway_config "$GW" "$MET" $((25 * 1024 * 1024)) $((25 * 1024 * 1024)) > "$WORK/gw.yaml"
"$BIN" serve --config "$WORK/gw.yaml" 2> "$WORK/gw.log" & GWPID=$!; pids+=($GWPID)
wait_port "$GW"

have_postfix=
if command -v postfix >/dev/null; then
  postfix_instance "$D" "$PFX" "-o smtpd_proxy_filter=127.0.0.1:$SINK -o smtpd_proxy_options=speed_adjust" ""
  have_postfix=1
fi

median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):g}')" "$@"; }
src() {  # $1 = port, $2 = message size: smtp-source with the signed message, prints msg/s
  local start end
  start=$(date +%s.%N)
  timeout 300 smtp-source -s "$SESSIONS" -m "$MSGS" -F "$WORK/msg-$2.eml" -M client.bench.test \
    -f sender@sender.bench.test -t rcpt@bench.test "127.0.0.1:$1"
  end=$(date +%s.%N)
  python3 -c "print(f'{$MSGS/($end-$start):.0f}')"
}

# PERF=FILE: a perf profile of the gateway during the first 4 KiB run (that run's figures
# then carry perf's cost; the medians mostly do not).
perfpid=
profile_start() { perf record -F 999 -g -p "$GWPID" -o "$PERF" >/dev/null 2>&1 & perfpid=$!; sleep 0.5; }
profile_stop() { [ -n "$perfpid" ] && { kill -INT "$perfpid"; wait "$perfpid" || true; perfpid=; }; return 0; }

declare -A rate cpu dnsq
throughput() {  # $1 = message size: fills rate[size:row], cpu[size:row], dnsq[size]
  local size=$1 r d g p c0 c1 q0 q1 dl=() gl=() pl=() dc=() gc=() pc=() ql=()
  src "$SINK" "$size" >/dev/null; src "$GW" "$size" >/dev/null   # warm-up: caches, pools
  [ -n "$have_postfix" ] && src "$PFX" "$size" >/dev/null
  for r in $(seq "$REPEATS"); do
    c0=$(cpu_of "$SINKPID")
    dl+=("$(src "$SINK" "$size")")
    c1=$(cpu_of "$SINKPID")
    dc+=("$(python3 -c "print(($c1-$c0)/$HZ/$MSGS*1e6)")")
    c0=$(cpu_of "$GWPID"); q0=$(queries)
    [ -n "${PERF:-}" ] && [ "$r" = 1 ] && [ "$size" = 4096 ] && profile_start
    gl+=("$(src "$GW" "$size")")
    profile_stop
    c1=$(cpu_of "$GWPID"); q1=$(queries)
    gc+=("$(python3 -c "print(($c1-$c0)/$HZ/$MSGS*1e6)")")
    ql+=("$(python3 -c "print(($q1-$q0)/$MSGS)")")
    if [ -n "$have_postfix" ]; then
      c0=$(postfix_cpu "$D")
      pl+=("$(src "$PFX" "$size")")
      c1=$(postfix_cpu "$D")
      pc+=("$(python3 -c "print(($c1-$c0)/$HZ/$MSGS*1e6)")")
    fi
  done
  rate[$size:direct]=$(median "${dl[@]}")
  cpu[$size:direct]=$(median "${dc[@]}")
  rate[$size:gw]=$(median "${gl[@]}")
  cpu[$size:gw]=$(median "${gc[@]}")
  dnsq[$size]=$(median "${ql[@]}")
  if [ -n "$have_postfix" ]; then
    rate[$size:pfx]=$(median "${pl[@]}")
    cpu[$size:pfx]=$(median "${pc[@]}")
  fi
}

echo "bench/auth.sh: messages=$MSGS sessions=$SESSIONS repeats=$REPEATS profile=$PROFILE" >&2
throughput 4096
throughput 65536
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$GWPID/status")

# Latency from connect to the 250 after the final dot, one message per connection.
declare -A lat
for c in 1 16; do
  n=$(( c == 1 ? LAT : LAT * 4 ))
  lat[direct:$c]=$("$KIT" latency "127.0.0.1:$SINK" "$WORK/msg-4096.eml" "$n" "$c")
  lat[gw:$c]=$("$KIT" latency "127.0.0.1:$GW" "$WORK/msg-4096.eml" "$n" "$c")
  [ -n "$have_postfix" ] && lat[pfx:$c]=$("$KIT" latency "127.0.0.1:$PFX" "$WORK/msg-4096.eml" "$n" "$c")
done

# Every message through the gateway was accepted, with SPF, DKIM and DMARC passing.
metrics=$(curl -s "127.0.0.1:$MET/metrics")
series() { awk -v s="$1" 'index($0, s) == 1 { print $NF }' <<< "$metrics"; }
accepted=$(series 'portcullis_messages_total{mode="smtp",verdict="accept"}')
for method in spf dkim dmarc; do
  passed=$(series "portcullis_auth_results_total{method=\"$method\",result=\"pass\"}")
  if [ "${passed%.*}" != "${accepted%.*}" ] || [ "${accepted%.*}" -eq 0 ]; then
    echo "bench/auth.sh: $accepted messages accepted but $method passed ${passed:-none}: not the path meant to be measured" >&2
    exit 1
  fi
done

# A fresh gateway for memory: one message at the size limit (above auth.max_verify_size, so
# it is streamed to the backend and never read back), one of max_verify_size (spilled, then
# read back whole for DKIM, ARC and DMARC: by design, within auth.max_verify_memory), then
# idle sessions.
VERIFY=$(( BIG / 2 ))
fresh() {  # starts a gateway on $FRESH (stopping the last one); FPID is its PID
  [ -n "${FPID:-}" ] && { kill "$FPID"; wait "$FPID" 2>/dev/null || true; }
  gateway_config "$FRESH" "$FMET" "$BIG" "$VERIFY" > "$WORK/fresh.yaml"
  "$BIN" serve --config "$WORK/fresh.yaml" > /dev/null 2>> "$WORK/fresh.log" & FPID=$!; pids+=($FPID)
  wait_port "$FRESH"
  "$KIT" latency "127.0.0.1:$FRESH" "$WORK/msg-4096.eml" 20 1 >/dev/null
}
big() {  # $1 = bytes: one message to a fresh gateway; GROWTH = the growth of its peak RSS, KiB
  local before reply
  fresh
  before=$(awk '/VmHWM/ {print $2}' "/proc/$FPID/status")
  reply=$("$KIT" big "127.0.0.1:$FRESH" "$1")
  case "$reply" in *" 250 "*) ;; *) echo "bench/auth.sh: a message of $1 bytes got: $reply" >&2; exit 1 ;; esac
  GROWTH=$(( $(awk '/VmHWM/ {print $2}' "/proc/$FPID/status") - before ))
}
big $(( BIG - 4096 )); grow_big=$GROWTH
big $(( VERIFY - 4096 )); grow_verified=$GROWTH
fresh
memory_limit=1024   # KiB: spool.memory_limit's default

# Idle sessions: as many as the gateway's descriptor plan lets it hold under this machine's
# open-files hard limit (portcullis_sessions_capacity; fewer than max_sessions when the
# limit is low), at most $IDLE, less a few for the legitimate client.
hard=$(ulimit -Hn)
capacity=$(curl -s "127.0.0.1:$FMET/metrics" | awk '/^portcullis_sessions_capacity / {print int($2)}')
fit=$(( capacity - 8 ))
n=$(( IDLE < fit ? IDLE : fit ))
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$FPID/status")
"$KIT" idle "127.0.0.1:$FRESH" "$n" 120 > "$WORK/idle.out" & IDLEPID=$!; pids+=($IDLEPID)
for _ in $(seq 1200); do grep -q held "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
held=$(awk '{print $2}' "$WORK/idle.out")
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$FPID/status")
legit=$("$KIT" latency "127.0.0.1:$FRESH" "$WORK/msg-4096.eml" 5 1)
kill "$IDLEPID" 2>/dev/null || true

pct() { python3 -c "print(f'{100*$1/$2:.0f}%')"; }
p() { awk '{print $1}' <<< "$1"; }; p99() { awk '{print $2}' <<< "$1"; }
cat <<TABLE
| figure | direct | Portcullis | Postfix proxy |
| --- | --- | --- | --- |
| 4 KiB, $SESSIONS sessions, msg/s | ${rate[4096:direct]} | ${rate[4096:gw]} ($(pct "${rate[4096:gw]}" "${rate[4096:direct]}")) | ${rate[4096:pfx]:-n/a}${have_postfix:+ ($(pct "${rate[4096:pfx]:-0}" "${rate[4096:direct]}"))} |
| 64 KiB, $SESSIONS sessions, msg/s | ${rate[65536:direct]} | ${rate[65536:gw]} ($(pct "${rate[65536:gw]}" "${rate[65536:direct]}")) | ${rate[65536:pfx]:-n/a}${have_postfix:+ ($(pct "${rate[65536:pfx]:-0}" "${rate[65536:direct]}"))} |
| CPU per message, 4 KiB / 64 KiB (µs; direct: smtp-sink's own) | $(printf %.0f "${cpu[4096:direct]}") / $(printf %.0f "${cpu[65536:direct]}") | $(printf %.0f "${cpu[4096:gw]}") / $(printf %.0f "${cpu[65536:gw]}") | ${cpu[4096:pfx]:+$(printf %.0f "${cpu[4096:pfx]}") / $(printf %.0f "${cpu[65536:pfx]}")} |
| DNS queries per message (4 KiB / 64 KiB, after warm-up) | | ${dnsq[4096]} / ${dnsq[65536]} | |
| latency c=1 p50 / p99 (ms) | $(p "${lat[direct:1]}") / $(p99 "${lat[direct:1]}") | $(p "${lat[gw:1]}") / $(p99 "${lat[gw:1]}") | ${lat[pfx:1]:+$(p "${lat[pfx:1]}") / $(p99 "${lat[pfx:1]}")} |
| latency c=16 p50 / p99 (ms) | $(p "${lat[direct:16]}") / $(p99 "${lat[direct:16]}") | $(p "${lat[gw:16]}") / $(p99 "${lat[gw:16]}") | ${lat[pfx:16]:+$(p "${lat[pfx:16]}") / $(p99 "${lat[pfx:16]}")} |
| peak RSS after the load (MiB) | | $(( hwm / 1024 )) | |
| one message at the size limit, $(( BIG / 1048576 )) MiB, not verified: peak RSS growth (KiB) | | $grow_big (spool.memory_limit: $memory_limit) | |
| one message of $(( VERIFY / 1048576 )) MiB, read back to be verified: peak RSS growth (KiB) | | $grow_verified | |
| $held idle sessions: RSS growth (MiB), per session (KiB) | | $(( (rss1 - rss0) / 1024 )), $(( (rss1 - rss0) / (held > 0 ? held : 1) )) | |
| a legitimate client beside them: p50 / p99 (ms) | | $(p "$legit") / $(p99 "$legit") | |
TABLE
[ "$held" -lt "$IDLE" ] && echo "(idle sessions: $held of $IDLE, as many as the gateway plans for under an open-files hard limit of $hard: $capacity sessions)"
exit 0
