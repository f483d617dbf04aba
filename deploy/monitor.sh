#!/usr/bin/env bash
# One monitoring pass over a keycast-server, for cron or a systemd timer (every minute):
# health, readiness, memory, the 5xx rate and NIP-46 queue drops since the last pass, and
# relay connectivity. Problems are printed, POSTed as JSON ({"text": "..."}, which Slack,
# Mattermost and most chat webhooks accept) to KEYCAST_MONITOR_WEBHOOK when set, and make
# the exit code 1.
#
#   KEYCAST_URL                  base URL (default http://127.0.0.1:3000)
#   KEYCAST_MONITOR_WEBHOOK      where alerts go (unset: printed only)
#   KEYCAST_MONITOR_MAX_RSS_MB   memory alarm (default 900, under the unit's MemoryMax=1G)
#   KEYCAST_MONITOR_MAX_5XX      share of answers that may be 5xx between passes (default 0.02)
#   KEYCAST_MONITOR_STATE        counters from the last pass (default /tmp/keycast-monitor.state)
set -uo pipefail

base=${KEYCAST_URL:-http://127.0.0.1:3000}
base=${base%/}
max_rss_mb=${KEYCAST_MONITOR_MAX_RSS_MB:-900}
max_5xx=${KEYCAST_MONITOR_MAX_5XX:-0.02}
state=${KEYCAST_MONITOR_STATE:-/tmp/keycast-monitor.state}
problems=()

get() { curl -sS --max-time 5 -o "$2" -w '%{http_code}' "$base$1" 2>/dev/null; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ "$(get /health "$tmp/health")" != "200" ]; then
    problems+=("keycast at $base is down: /health does not answer")
else
    ready=$(get /healthz/ready "$tmp/ready")
    [ "$ready" = "200" ] || problems+=("keycast at $base is not ready ($ready): $(head -c 300 "$tmp/ready")")
    if [ "$(get /metrics "$tmp/metrics")" = "200" ]; then
        # A metric's value, summed over its label sets; 0 when absent.
        metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }' "$tmp/metrics"; }
        rss=$(metric process_resident_memory_bytes)
        if [ "$rss" -gt $((max_rss_mb * 1024 * 1024)) ]; then
            problems+=("keycast at $base uses $((rss / 1024 / 1024)) MiB of memory (alarm at $max_rss_mb MiB)")
        fi
        total=$(metric keycast_http_requests_total)
        errors=$(metric 'keycast_http_requests_total{class="5xx"}')
        drops=$(metric keycast_nip46_queue_dropped_total)
        if [ -r "$state" ]; then
            read -r last_total last_errors last_drops <"$state" || true
            # A restart resets the counters: count from zero then.
            [ "${last_total:-0}" -le "$total" ] || last_total=0 last_errors=0 last_drops=0
            served=$((total - ${last_total:-0}))
            failed=$((errors - ${last_errors:-0}))
            if [ "$served" -gt 0 ] && awk -v f="$failed" -v s="$served" -v m="$max_5xx" 'BEGIN { exit !(f / s > m) }'; then
                problems+=("keycast at $base answered $failed of $served requests with 5xx since the last check")
            fi
            dropped=$((drops - ${last_drops:-0}))
            [ "$dropped" -le 0 ] || problems+=("keycast at $base refused $dropped NIP-46 requests as overloaded since the last check")
        fi
        echo "$total $errors $drops" >"$state"
        down=$(awk '/^keycast_nip46_relay_connected\{/ && $2 == 0 { sub(/.*relay="/, "", $1); sub(/".*/, "", $1); print $1 }' "$tmp/metrics")
        for relay in $down; do problems+=("keycast at $base is not connected to relay $relay"); done
    else
        problems+=("keycast at $base does not serve /metrics")
    fi
fi

if [ ${#problems[@]} -eq 0 ]; then
    echo "ok: $base"
    exit 0
fi
printf '%s\n' "${problems[@]}" >&2
if [ -n "${KEYCAST_MONITOR_WEBHOOK:-}" ]; then
    # JSON-escaped by hand: backslashes, quotes, and one \n per line.
    text=$(printf '%s\n' "${problems[@]}" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk '{ printf "%s\\n", $0 }')
    payload="{\"text\": \"$text\"}"
    curl -sS --max-time 10 -H 'content-type: application/json' -d "$payload" "$KEYCAST_MONITOR_WEBHOOK" >/dev/null ||
        echo "could not reach the alert webhook" >&2
fi
exit 1
