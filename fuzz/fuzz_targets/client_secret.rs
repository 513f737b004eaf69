//! Fuzzes the reader of the client-secret JSON from Secrets Manager.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::google::client_secret::check_secret_invariants(data);
});
