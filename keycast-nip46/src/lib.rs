//! # keycast-nip46
//!
//! NIP-46 remote signing on top of [`keycast_core::Custody`]. Not implemented yet
//! (issue 5); this crate currently exports nothing. It will hold:
//!
//! - request and response types for every NIP-46 method, `perms` parsing;
//! - `bunker://` (issued) and `nostrconnect://` (accepted) URIs;
//! - the remote-signer service: relay pool, dedupe, `created_at` window, routing through
//!   [`keycast_core::RequestRouter`], a bounded work queue, NIP-44/NIP-04 detection.
