//! keycast-bench's integration tests in one binary (`cargo test -p keycast-bench --test it`); each
//! module was a test file of its own, and its tests are named `<module>::<test>`.

mod smoke;
