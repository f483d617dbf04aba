//! The NIP-46 wire protocol without I/O: messages, encryption-scheme detection, `perms`
//! and connection URIs. Everything here is a pure function of its input.

pub mod error;
pub mod message;
pub mod perms;
pub mod response;
pub mod scheme;
pub mod uri;
