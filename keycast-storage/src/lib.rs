//! # keycast-storage
//!
//! Durable [`keycast_core::KeyStore`] backends on sqlx. Not implemented yet (issue 3); this
//! crate currently exports nothing. It will hold:
//!
//! - `sqlite` (default feature): one file in WAL mode, the embedded default;
//! - `postgres`: for production and for many instances;
//! - migrations from `migrations/sqlite` and `migrations/postgres`, applied at start;
//! - both backends passing `keycast_core::testing::key_store` unchanged.
//!
//! Until then, embedders use [`keycast_core::MemoryKeyStore`].
