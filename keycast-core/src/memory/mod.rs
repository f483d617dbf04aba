//! In-memory backends, always compiled, for tests, examples and benchmarks.

pub mod key_manager;
pub mod key_store;
mod teams;
