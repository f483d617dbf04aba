//! At-rest cryptography: the AEAD, the envelope, and secret-carrying types.

pub mod aead;
pub mod envelope;
pub mod secret;
