//! keycast-kms's integration tests in one binary (`cargo test -p keycast-kms --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod aws;
mod gcp;
#[cfg(feature = "gcp")]
#[allow(clippy::unwrap_used)]
mod gcp_fake;
mod local;
mod logs;
mod rotation;
mod vault;
