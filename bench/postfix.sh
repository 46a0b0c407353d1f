# A throwaway Postfix instance for the bench scripts (sourced after lib.sh): its own
# directories under /tmp, listening on 127.0.0.1 only, stopped with `postfix stop` on exit.
#
#   postfix_instance DIR PORT SMTPD_OPTIONS MAIN_EXTRA
#
# DIR holds etc/, queue/, data/ and log/; PORT is the smtpd listener on 127.0.0.1;
# SMTPD_OPTIONS are appended to that smtpd's master.cf line (e.g.
# "-o smtpd_proxy_filter=127.0.0.1:2526"); MAIN_EXTRA are more main.cf lines. Mail is for
# bench.test, relayed to $SINK (set by the caller) when it is queued.
postfix_instance() {
  local d=$1 port=$2 opts=$3 extra=$4
  mkdir -p "$d"/{etc,queue,data,log}
  chown postfix "$d/data"
  cat > "$d/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
myhostname = pfx-bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = bench.test
relayhost = [127.0.0.1]:$SINK
alias_maps =
alias_database =
biff = no
maillog_file_prefixes = /tmp
maillog_file = $d/log/maillog
default_process_limit = 100
message_size_limit = 0
$extra
CF
  # The services are the tests' (tests/fixtures/postfix/services.cf), after our listener.
  { echo "127.0.0.1:$port inet n - n - - smtpd $opts"
    cat tests/fixtures/postfix/services.cf; } > "$d/etc/master.cf"
  touch -d '10 seconds ago' "$d"/etc/*
  script -qec "postfix -c $d/etc start" /dev/null >/dev/null
  wait_port "$port"
}

postfix_stop() { postfix -c "$1/etc" stop >/dev/null 2>&1 || true; rm -rf "$1"; }

# The CPU time, in clock ticks, of the instance's master and every process under it, and of
# those already gone (the master's cutime and cstime count the children it has reaped).
postfix_cpu() {
  python3 - "$(head -1 "$1/queue/pid/master.pid" | tr -d ' ')" <<'PY'
import os, sys
master = int(sys.argv[1])
stats = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(p)] = (int(f[1]), sum(int(x) for x in f[11:15]))
def under(pid):
    while pid > 1:
        if pid == master:
            return True
        pid = stats.get(pid, (0, 0))[0]
    return False
print(sum(cpu for pid, (_, cpu) in stats.items() if under(pid)))
PY
}
