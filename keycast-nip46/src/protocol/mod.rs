//! The NIP-46 wire protocol without I/O: messages, encryption-scheme detection, `perms`
//! and connection URIs. Everything here is a pure function of its input.

pub(crate) mod error;
pub(crate) mod message;
pub(crate) mod perms;
pub(crate) mod response;
pub(crate) mod scheme;
pub(crate) mod uri;
