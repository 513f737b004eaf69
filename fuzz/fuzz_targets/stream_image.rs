//! Fuzzes the reader of a grant image from the grants table's DynamoDB Stream (DynamoDB JSON).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::store::check_image_invariants(data);
});
