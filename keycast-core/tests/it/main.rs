//! keycast-core's integration tests in one binary (`cargo test -p keycast-core --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod approvals;
mod conformance;
mod delete;
mod engine;
mod envelope;
mod export;
mod fast_path;
mod sign_properties;
mod writes;
