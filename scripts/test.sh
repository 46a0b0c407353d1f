#!/usr/bin/env bash
# The test command (README): installs the real peers the tests use when they are missing,
# then runs the whole suite in one `cargo test`.
#
# Real components: Postfix (backend and client instances), swaks, smtp-source/smtp-sink
# (postfix package), Prometheus and promtool, Python 3 (smtplib), redis-server and
# redis-cli (shared rate-limit and greylisting state; the tests start their own servers), miltertest
# (OpenDKIM's milter client, for the milter-mode tests), systemd-analyze (systemd package:
# `verify` on dist/portcullis.service; no running systemd needed). Installing needs root
# (apt-get); as another user, install them first or the tests that need them fail loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v postfix   >/dev/null 2>&1 || need+=(postfix)
command -v swaks     >/dev/null 2>&1 || need+=(swaks)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v python3   >/dev/null 2>&1 || need+=(python3)
command -v script    >/dev/null 2>&1 || need+=(bsdutils)
command -v curl      >/dev/null 2>&1 || need+=(curl)   # bench/auth.sh --short in .ci/run
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v miltertest >/dev/null 2>&1 || need+=(miltertest)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${need[*]} — run as root or install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # "No configuration": no /etc/postfix/main.cf, the default instance stays unused;
  # tests run their own instances under /tmp/pfx-*.
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# promtool ships with the prometheus package on Debian.
command -v promtool >/dev/null 2>&1 || { echo "promtool not found (prometheus package)" >&2; exit 1; }

# mail-parser 1.x (via mail-auth) declares rust-version 1.98; it builds and runs on 1.95.
exec cargo test --locked --ignore-rust-version "$@"
