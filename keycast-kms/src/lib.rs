//! # keycast-kms
//!
//! [`keycast_core::KeyManager`] backends. Not implemented yet (issue 4); this crate
//! currently exports nothing. It will hold, each in its own module behind its own feature:
//!
//! - `local` (default): a 32-byte master-key file, created with mode 0600 on first run;
//! - `aws`: AWS KMS Encrypt/Decrypt with an encryption context;
//! - `gcp`: Cloud KMS encrypt/decrypt with AAD and CRC32C checks;
//! - `vault`: Vault/OpenBao transit with key versions;
//! - the batch job that rewraps data keys under a new primary master key.
//!
//! The envelope format itself lives in `keycast_core::crypto::envelope`, because the
//! engine opens envelopes and keycast-core may not depend on this crate.
