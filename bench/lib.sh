# Shared by the bench scripts (sourced, from the repository root): a build, a work directory,
# processes stopped by PID on exit, ports on 127.0.0.1, and the timed load.
# Expects MSGS, SESSIONS and SIZE to be set. PROFILE=debug uses the test build (a smoke run,
# no figures to keep); the default is a release build.
command -v smtp-source >/dev/null || { echo "smtp-source missing: apt-get install postfix" >&2; exit 1; }

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked --ignore-rust-version --quiet --bin portcullis --example benchkit
else
  cargo build --locked --ignore-rust-version --quiet --bin portcullis --example benchkit
fi
BIN=target/$PROFILE/portcullis
KIT=target/$PROFILE/examples/benchkit
WORK=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run() {  # $1 = port; prints messages per second
  local start end
  start=$(date +%s.%N)
  timeout 300 smtp-source -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f from@sender.example -t rcpt@bench.test "127.0.0.1:$1"
  end=$(date +%s.%N)
  python3 -c "print(f'{$MSGS/($end-$start):.0f}')"
}

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
HZ=$(getconf CLK_TCK)
