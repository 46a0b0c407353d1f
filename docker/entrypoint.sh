#!/bin/sh
# The container's entry point: the config of a mounted file, or one written from the
# environment, then `portcullis serve`. The gateway's config loader does not expand
# environment variables, so this script writes a plain file for it.
#
#   docker run -p 25:2525 \
#     -e PORTCULLIS_HOSTNAME=mx.example.com \
#     -e PORTCULLIS_ACCEPTED_DOMAINS=example.com,example.org \
#     -e PORTCULLIS_BACKEND_URL=smtp://10.0.0.5:10025 portcullis
#
#   docker run -p 25:2525 -v ./portcullis.yaml:/etc/portcullis/portcullis.yaml:ro portcullis
#
# A file at /etc/portcullis/portcullis.yaml (mounted) wins, and the PORTCULLIS_* variables
# are then ignored. Otherwise these make the config:
#
#   PORTCULLIS_HOSTNAME          required: banner, Received header, authserv-id
#   PORTCULLIS_ACCEPTED_DOMAINS  required: the domains to accept mail for, comma-separated
#   PORTCULLIS_BACKEND_URL       required: smtp://host:port of the backend (Postfix), whose
#                                smtpd_authorized_xclient_hosts must name this container
#   PORTCULLIS_POLICY            a policy file; default /etc/portcullis/policies/default.yaml
#                                (the image holds the source tree's policies/); "none" for
#                                the built-in rules only
#   PORTCULLIS_LOG_FORMAT        json (default) or text
#
# `docker run ... portcullis print-config` prints the config the variables make, to start a
# file of your own from; any other arguments run portcullis itself (check-config FILE,
# policy test ..., quarantine ..., version).
set -eu

mounted=/etc/portcullis/portcullis.yaml
written=/tmp/portcullis.yaml

# A YAML double-quoted scalar: backslashes and double quotes escaped.
quoted() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

config_from_env() {
  : "${PORTCULLIS_HOSTNAME:?is not set (or mount a config at $mounted)}"
  : "${PORTCULLIS_ACCEPTED_DOMAINS:?is not set (or mount a config at $mounted)}"
  : "${PORTCULLIS_BACKEND_URL:?is not set (or mount a config at $mounted)}"
  policy=${PORTCULLIS_POLICY:-/etc/portcullis/policies/default.yaml}
  echo "# Written by the container's entry point from PORTCULLIS_* variables."
  echo "hostname: $(quoted "$PORTCULLIS_HOSTNAME")"
  echo 'listen: ["0.0.0.0:2525"]'
  echo "accepted_domains:"
  printf '%s\n' "$PORTCULLIS_ACCEPTED_DOMAINS" | tr ',' '\n' | while read -r domain; do
    if [ -n "$domain" ]; then echo "  - $(quoted "$domain")"; fi
  done
  echo "backend:"
  echo "  url: $(quoted "$PORTCULLIS_BACKEND_URL")"
  echo "metrics:"
  echo '  listen: "0.0.0.0:9465"'
  if [ "$policy" != none ]; then
    echo "policy: $(quoted "$policy")"
  fi
  echo "log:"
  echo "  format: $(quoted "${PORTCULLIS_LOG_FORMAT:-json}")"
}

case "${1:-serve}" in
  print-config)
    config_from_env
    exit 0
    ;;
  serve)
    if [ "$#" -le 1 ]; then
      if [ -e "$mounted" ]; then
        config=$mounted
        if env | grep -q '^PORTCULLIS_'; then
          echo "portcullis-entrypoint: $mounted is mounted; the PORTCULLIS_* variables are ignored" >&2
        fi
      else
        config_from_env > "$written"
        config=$written
      fi
      exec portcullis serve --config "$config"
    fi
    ;;
esac
exec portcullis "$@"
