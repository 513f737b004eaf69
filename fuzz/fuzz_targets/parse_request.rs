//! Fuzzes `POST /authcode` request parsing: method, route, headers and body bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::lambda::http::check_parse_invariants(data);
});
