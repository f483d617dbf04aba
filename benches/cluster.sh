#!/usr/bin/env bash
# Cluster-mode NIP-46 benchmark (issue 7): a release keycast-server as 1 instance without
# Redis, then 1, 2 and 3 instances in cluster mode on one Postgres, one Redis and one relay
# (hosted by the bench); prints a markdown table with ratios against the single-thread raw
# Schnorr sign rate and the single instance, both measured in the same run.
#
#   benches/cluster.sh            (KEYCAST_BENCH_SECONDS=10 by default: the loaded window)
#   KEYCAST_BENCH_ROUNDS=3 benches/cluster.sh   (every configuration three times, alternating
#                                 order; ends with the median ratios against the single instance)
#
# Postgres and Redis default to the local ones scripts/test uses.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEYCAST_TEST_POSTGRES_URL="${KEYCAST_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export KEYCAST_TEST_REDIS_URL="${KEYCAST_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cargo build --release -p keycast-server
# cargo runs benchmarks from the package directory: the path must be absolute.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
KEYCAST_BENCH_SERVER_BIN="$target_dir/release/keycast-server" \
    cargo bench -p keycast-benches --bench cluster
