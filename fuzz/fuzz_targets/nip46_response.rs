#![no_main]
//! NIP-46 reply JSON: `Nip46Response` written by keycast and read as a client reads it
//! (see `keycast_nip46::fuzzing::response`). Not amplified: replies carry ids of at most
//! 256 bytes, and megabyte strings only slow the round trips down.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_nip46::fuzzing::response(data);
});
