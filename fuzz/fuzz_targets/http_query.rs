//! Fuzz target: see `coursegen::fuzzing::http_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coursegen::fuzzing::http_query(data));
