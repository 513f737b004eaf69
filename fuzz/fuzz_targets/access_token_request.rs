//! Fuzzes the reader of the access-token function's request payload.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::lambda::invoke::check_request_invariants(data);
});
