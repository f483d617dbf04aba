#![no_main]
//! Stored-secret envelopes: arbitrary columns never open, seal→open round-trips, tampering
//! is detected (see `keycast_core::fuzzing::envelope`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_core::fuzzing::envelope(data);
});
