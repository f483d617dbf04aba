#![no_main]
//! Event templates as clients send them (NIP-46 `sign_event`, HTTP RPC body).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_core::fuzzing::event_template(data);
});
