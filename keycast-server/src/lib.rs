//! # keycast-server
//!
//! The reference service that composes keycast's crates. Not implemented yet (issue 6).
//! It will expose `app(state) -> Router` (axum) and `serve(...)`, and hold the HTTP RPC
//! API, accounts and OAuth, the NIP-46 daemon wiring, the Redis cluster router, the CLI and
//! configuration. It is the only crate that knows every backend.
