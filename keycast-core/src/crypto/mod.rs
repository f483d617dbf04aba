//! At-rest cryptography: the AEAD, the envelope, and secret-carrying types.

pub(crate) mod aead;
pub(crate) mod envelope;
pub(crate) mod secret;
