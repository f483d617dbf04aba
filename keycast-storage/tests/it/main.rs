//! keycast-storage's integration tests in one binary (`cargo test -p keycast-storage --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod common;
mod durability;
mod postgres;
mod sqlite;
