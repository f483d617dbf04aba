#!/usr/bin/env bash
# Runs the custody benchmarks and prints rates and ratios against the raw Schnorr baseline
# measured in the same run. `one_core/*` is pinned to CPU 0 with taskset, so the runtime,
# the crypto thread and the baseline share one core; `two_cores/*` uses both cores.
#
# Usage: benches/report.sh [extra criterion args, e.g. --measurement-time 5]
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
taskset -c 0 cargo bench -p keycast-benches --bench custody -- one_core "${args[@]}" >/dev/null
cargo bench -p keycast-benches --bench custody -- two_cores "${args[@]}" >/dev/null
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def rate(group, name):
    est = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return 1e9 / est["mean"]["point_estimate"]
rows = {
    "one_core": ["sign_event_warm_sequential", "sign_event_warm_64_callers", "sign_event_cold",
                 "nip44_encrypt_cached_conversation_key", "nip44_encrypt_uncached_conversation_key"],
    "two_cores": ["sign_event_warm_64_callers_runtime_1", "sign_event_warm_64_callers_runtime_2"],
}
print("| group | benchmark | ops/s | ratio to raw sign (same group) |")
print("|---|---|---:|---:|")
for group, names in rows.items():
    base = rate(group, "raw_schnorr_sign")
    print(f"| {group} | raw_schnorr_sign (baseline) | {base:,.0f} | 1.00 |")
    for n in names:
        r = rate(group, n)
        print(f"| {group} | {n} | {r:,.0f} | {r / base:.2f} |")
single = rate("one_core", "sign_event_warm_64_callers")
print()
print("| two-core scaling | ratio to one_core/sign_event_warm_64_callers |")
print("|---|---:|")
for n in rows["two_cores"]:
    print(f"| {n} | {rate('two_cores', n) / single:.2f} |")
PY
