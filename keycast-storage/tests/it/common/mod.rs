//! Shared test helpers.

#![allow(unused_imports)]

pub use keycast_storage::testing::{postgres_url, FreshDb};
