//! Conformance suites that every backend runs against itself (feature `testing`).
//!
//! Each suite is an async function taking the backend as `Arc<dyn Trait>` and panicking with
//! a descriptive message on the first broken promise, like object_store's `integration`
//! module. Suites use fresh random names, so they can run against a shared database.
//!
//! ```text
//! #[tokio::test]
//! async fn conformance() {
//!     keycast_core::testing::key_store::run(Arc::new(MyStore::connect(..).await?)).await;
//! }
//! ```

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

pub mod authorizer;
pub mod fixtures;
pub mod key_manager;
pub mod key_store;
pub mod router;
pub mod teams;
