#![no_main]
//! `POST /api/nostr` bodies through the handler's parsing
//! (see `keycast_server::http::fuzz_rpc_body`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keycast_server::http::fuzz_rpc_body(&keycast_fuzz::bytes(data));
});
