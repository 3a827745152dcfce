//! Fuzz target: see `coursegen::fuzzing::http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coursegen::fuzzing::http_body(data));
