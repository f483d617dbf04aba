#![no_main]
//! Policy evaluation: permissions JSON, `0xFF`, then a request
//! (see `keycast_core::fuzzing::policy`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_core::fuzzing::policy(&keycast_fuzz::bytes(data));
});
