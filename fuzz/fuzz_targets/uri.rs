#![no_main]
//! `bunker://` and `nostrconnect://` URIs, parsed and written
//! (see `keycast_nip46::fuzzing::uri`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_nip46::fuzzing::uri(&keycast_fuzz::bytes(data));
});
