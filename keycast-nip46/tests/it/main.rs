//! keycast-nip46's integration tests in one binary (`cargo test -p keycast-nip46 --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod common;
mod handler;
mod handler_fuzz;
mod interop;
mod load_client;
mod protocol;
mod relay;
mod relay_approval;
mod relay_bad_input;
mod relay_forged;
mod relay_lifecycle;
mod relay_no_ok;
mod relay_pairing;
