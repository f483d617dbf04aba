#!/usr/bin/env bash
# HTTP RPC load: wrk with 64 connections runs sign_event against a release keycast-server
# on embedded defaults (SQLite, local master key) with a warm key cache, and in the same
# run the raw 2-core Schnorr sign rate is measured as the baseline, and `ping` over the
# same HTTP path as the floor of what a request costs here. Everything shares this
# machine's cores, the load generator included. It also reports the server process's own
# CPU per answered request (from /proc/<pid>/stat around each wrk run) for `ping` and
# `sign_event`, and `sign_event`'s against a ping's plus one bare signature (issue 21).
#
#   benches/http_rpc.sh [seconds]     (default 20; needs wrk: apt-get install wrk)
#
# KEYCAST_BENCH_SERVER_BIN names another server binary (kept from an earlier commit, say),
# so a before and an after can run back to back on one day's machine; without it the
# release build of this tree runs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
server_bin="${KEYCAST_BENCH_SERVER_BIN:-}"
if [ -z "$server_bin" ]; then
    cargo build --quiet --release -p keycast-server
    server_bin=target/release/keycast-server
fi
[ -x "$server_bin" ] || { echo "KEYCAST_BENCH_SERVER_BIN=$server_bin is not an executable" >&2; exit 1; }
cargo bench --quiet -p keycast-benches --bench raw_sign_rate --no-run

dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
export KEYCAST_DATA_DIR="$dir" KEYCAST_LISTEN="127.0.0.1:$port" \
    KEYCAST_EMBEDDED_RELAY_LISTEN="127.0.0.1:$(free_port)" KEYCAST_LOG_FORMAT=json RUST_LOG=warn
env -u KEYCAST_BENCH_SERVER_BIN "$server_bin" >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fs "$base/healthz/ready" >/dev/null && break; sleep 0.2; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
creds='{"email":"bench@example.org","password":"benchmark password"}'
curl -fs "$base/api/auth/register" -H 'content-type: application/json' -d "$creds" >/dev/null
session=$(curl -fs "$base/api/auth/login" -H 'content-type: application/json' -d "$creds" | json '["token"]')
key=$(curl -fs "$base/api/keys" -H "authorization: Bearer $session" -H 'content-type: application/json' -d '{}' | json '["id"]')
export TOKEN=$(curl -fs "$base/api/authorizations" -H "authorization: Bearer $session" \
    -H 'content-type: application/json' -d "{\"key_id\":\"$key\"}" | json '["token"]')

raw=$(cargo bench --quiet -p keycast-benches --bench raw_sign_rate -- --bench --threads 2 --seconds 10)
# The server's own CPU (utime + stime of /proc/<pid>/stat, in clock ticks) around a wrk run,
# and the requests wrk saw answered with a 2xx: "<ticks> <answered>".
tick=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
measured() { # <wrk output> <ticks before> <ticks after>
    local total non2xx
    total=$(echo "$1" | awk '/requests in/ {print $1}')
    non2xx=$(echo "$1" | awk '/Non-2xx or 3xx responses/ {print $5}')
    echo "$(($3 - $2)) $((total - ${non2xx:-0}))"
}
# The HTTP floor: `ping` takes the same HTTP, token and JSON path with no engine call.
t0=$(server_ticks)
ping_out=$(wrk -t2 -c64 -d"${secs}s" -s benches/wrk_ping.lua "$base/api/nostr")
ping_cpu=$(measured "$ping_out" "$t0" "$(server_ticks)")
ping=$(echo "$ping_out" | awk '/^Requests\/sec/ {print $2}')
# Warm the cache, then measure.
wrk -t2 -c64 -d2s -s benches/wrk_sign_event.lua "$base/api/nostr" >/dev/null
t0=$(server_ticks)
out=$(wrk -t2 -c64 -d"${secs}s" --latency -s benches/wrk_sign_event.lua "$base/api/nostr")
sign_cpu=$(measured "$out" "$t0" "$(server_ticks)")
echo "$out"
rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
python3 - "$raw" "$rps" "$p50" "$p99" "$ping" "$tick" $ping_cpu $sign_cpu <<'PY'
import sys
raw, rps, p50, p99, ping = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
tick = float(sys.argv[6])
ping_ticks, pings, sign_ticks, signs = (float(v) for v in sys.argv[7:11])
# A request can cost no less than a ping plus a bare signature (machine time adds up).
ceiling = 1 / (1 / ping + 1 / raw)
print(f"raw 2-core Schnorr signs/s: {raw:.0f}")
print(f"HTTP RPC ping req/s (64 connections): {ping:.0f}")
print(f"ceiling, ping + bare signature: {ceiling:.0f} req/s = {ceiling / raw:.1%} of raw")
print(f"HTTP RPC sign_event req/s (64 connections): {rps:.0f}  p50 {p50}  p99 {p99}")
print(f"ratio: {rps / raw:.1%} of the raw 2-core sign rate (goal >= 35%, p99 <= 10 ms); {rps / ceiling:.0%} of the ceiling")
# CPU per answered request in the server process (issue 21), against the floor: a ping's
# server CPU plus one bare signature (two threads signing for the whole window: 2 / raw).
ping_us = ping_ticks / tick / pings * 1e6
sign_us = sign_ticks / tick / signs * 1e6
bare_us = 2 / raw * 1e6
floor = ping_us + bare_us
print(f"server CPU per answered request: ping {ping_us:.1f} us ({pings:.0f} answered), "
      f"sign_event {sign_us:.1f} us ({signs:.0f} answered); bare signature {bare_us:.1f} us")
print(f"sign_event server CPU / (ping + bare signature) = {sign_us:.1f} / {floor:.1f} = {sign_us / floor:.2f} (issue 21 goal <= 1.25)")
PY
