//! Fuzzes the reader of Google's token endpoint answer: status (first byte) and body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    offline_access::google::token::check_answer_invariants(data);
});
