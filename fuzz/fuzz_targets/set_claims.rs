//! Fuzzes the reader of a Security Event Token's claims and events, once its signature verified.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::risc::check_set_invariants(data);
});
