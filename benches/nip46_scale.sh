#!/usr/bin/env bash
# NIP-46 at 1k, 10k and 100k active authorizations (issue 19): a release keycast-server on
# SQLite (fresh data dir) and on Postgres (fresh database), each N made of 20 authorizations
# created over HTTP and the rest inserted into the store; prints start-up time, RSS, the
# subscription's REQs, server CPU per authorization change and sign_event p50/p99 as
# markdown tables, with the single-thread raw Schnorr sign rate measured in the same run.
#
#   benches/nip46_scale.sh        (KEYCAST_BENCH_SCALES=1000,10000,100000 by default)
#
# Postgres defaults to the local one scripts/test uses; KEYCAST_TEST_POSTGRES_URL= (empty)
# skips the Postgres rows.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEYCAST_TEST_POSTGRES_URL="${KEYCAST_TEST_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}"
export KEYCAST_BENCH_SCALES="${KEYCAST_BENCH_SCALES:-1000,10000,100000}"
cargo build --release -p keycast-server
# cargo runs benchmarks from the package directory: the path must be absolute.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
KEYCAST_BENCH_SERVER_BIN="$target_dir/release/keycast-server" \
    cargo bench -p keycast-benches --bench nip46_scale
