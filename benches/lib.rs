//! Holder crate for keycast's criterion benchmarks (`benches/*.rs`). See BENCHMARKS.md.
