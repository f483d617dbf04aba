#!/usr/bin/env bash
# Runs every cargo-fuzz target for <seconds> and appends one line per target to a results
# file: target, seconds, execs, result (ok | crash <artifact> | error <exit code>), UTC time.
#
#   fuzz/run-all.sh <seconds> [target…]
#
# FUZZ_JOBS     targets run at once (default 1, at most 2)
# FUZZ_RESULTS  results file (default fuzz/artifacts/results.tsv)
# Logs go to fuzz/artifacts/logs/<target>.log, new inputs to fuzz/artifacts/corpus/<target>
# (both ignored by git; the committed seeds in fuzz/corpus/<target> are only read), crashes
# to fuzz/artifacts/<target>/. Exits non-zero when any target crashed or failed.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:?usage: run-all.sh <seconds> [target…]}
shift
jobs=${FUZZ_JOBS:-1}
((jobs >= 1 && jobs <= 2)) || { echo "FUZZ_JOBS must be 1 or 2" >&2; exit 2; }
results=${FUZZ_RESULTS:-$PWD/artifacts/results.tsv}
export RUSTC_BOOTSTRAP=1

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p artifacts/logs "$(dirname "$results")"
[[ -s "$results" ]] || printf 'target\tseconds\texecs\tresult\tfinished_utc\n' >>"$results"

# Build once, so the runs below neither wait on each other nor count build time.
cargo fuzz build

# libFuzzer flags per target: a dictionary, and room for the amplified NIP-46 inputs.
flags() {
    case "$1" in
        nip46_request | nip46_handler) echo "-dict=dict/nip46.dict -max_len=200000" ;;
        nip46_response | uri | rpc_body) echo "-dict=dict/nip46.dict" ;;
        policy) echo "-dict=dict/policy.dict" ;;
        config) echo "-dict=dict/config.dict" ;;
    esac
}

run_one() {
    local target=$1 log="artifacts/logs/$1.log" rc=0 execs result artifact
    mkdir -p "artifacts/corpus/$target" "corpus/$target"
    # shellcheck disable=SC2046 # flags are words
    cargo fuzz run "$target" "artifacts/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 $(flags "$target") \
        >"$log" 2>&1 || rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -n1 | awk '{print $2}' || true)
    if [[ -z "$execs" ]]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#' || true)
    fi
    artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n1 | awk '{print $5}' || true)
    if ((rc == 0)); then
        result=ok
    elif [[ -n "$artifact" ]]; then
        result="crash $artifact"
    else
        result="error $rc"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$seconds" "${execs:-?}" "$result" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$results"
    echo "$target: ${execs:-?} execs in ${seconds}s: $result (log $log)"
    [[ $result == ok ]]
}

failed=0
running=0
for target in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$target" &
    running=$((running + 1))
done
while ((running > 0)); do
    wait -n || failed=1
    running=$((running - 1))
done
if ((failed)); then
    echo "fuzzing found a crash or failed; see $results" >&2
fi
exit "$failed"
