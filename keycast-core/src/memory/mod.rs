//! In-memory backends, always compiled, for tests, examples and benchmarks.

pub(crate) mod key_manager;
pub(crate) mod key_store;
mod teams;
