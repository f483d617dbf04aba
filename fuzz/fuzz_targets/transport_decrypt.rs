#![no_main]
//! NIP-44 and NIP-04 payloads decrypted as the bunker's transport does
//! (see `keycast_core::fuzzing::transport_decrypt`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_core::fuzzing::transport_decrypt(&keycast_fuzz::bytes(data));
});
