#!/usr/bin/env bash
# Profiles one loop of the NIP-46 hot-path bench: runs `hot_path` with longer loops,
# attaches `perf record` (DWARF call graphs) to the serving process while the chosen loop
# runs, and prints where that process's CPU goes (benches/profile_stages.py).
#
# Usage: benches/profile_hot_path.sh [keycast|peer] [sign_event|nip44_encrypt] [1|16|64]
# Needs perf and the release server (cargo build --release -p keycast-server).
set -euo pipefail
signer=${1:-keycast}
method=${2:-sign_event}
in_flight=${3:-64}
cd "$(dirname "$0")"
out=$(mktemp -d)
echo "profile_hot_path: output in $out" >&2

# The loops run 12 s each; perf samples 6 s of the chosen one, after it has ramped up.
KEYCAST_BENCH_SECONDS=12 cargo bench -q -p keycast-benches --bench hot_path \
    > "$out/bench.txt" 2> "$out/stderr.txt" &
bench=$!
cue="hot_path: $signer $method at $in_flight in flight, pid "
pid=""
while [ -z "$pid" ]; do
    kill -0 "$bench" 2>/dev/null || { cat "$out/stderr.txt" >&2; exit 1; }
    pid=$(grep -m1 -F "$cue" "$out/stderr.txt" | sed 's/.*pid //' || true)
    sleep 0.2
done
sleep 3
perf record -q -F 999 --call-graph dwarf,32768 -o "$out/perf.data" -p "$pid" -- sleep 6 \
    2> "$out/perf.txt"
wait "$bench"
cat "$out/bench.txt"
per_reply=$(awk -v s="$signer" -v m="$method" -v n="$in_flight" -F'|' '
    { for (i = 2; i <= 8; i++) gsub(/ /, "", $i) }
    $2 == s && $3 == m && $4 == n { print $8; exit }' "$out/bench.txt")
echo "$signer $method at $in_flight in flight: $per_reply µs of CPU per reply in the bench"
perf script -i "$out/perf.data" 2> /dev/null | python3 profile_stages.py "$per_reply"
