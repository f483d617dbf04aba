#!/bin/sh
# Exit 0 when keycast-server answers ready, 1 otherwise (for load balancers, cron, Nagios).
#   deploy/healthcheck.sh [base URL]      default $KEYCAST_URL, else http://127.0.0.1:3000
# Ready means: migrations done, database reachable, a relay connected (NIP-46 on), and in a
# cluster, registered. When not ready, the answer (JSON naming what fails) goes to stderr.
# Inside the container image use `keycast-server healthcheck` (there is no curl there).
base=${1:-${KEYCAST_URL:-http://127.0.0.1:3000}}
url="${base%/}/healthz/ready"
body=$(mktemp) && err=$(mktemp) || exit 1
trap 'rm -f "$body" "$err"' EXIT
if ! status=$(curl -sS --max-time 5 -o "$body" -w '%{http_code}' "$url" 2>"$err"); then
    echo "not reachable at $url: $(cat "$err")" >&2
    exit 1
fi
if [ "$status" = "200" ]; then
    echo ready
    exit 0
fi
echo "not ready ($status): $(cat "$body")" >&2
exit 1
