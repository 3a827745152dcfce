//! Fuzz target: see `coursegen::fuzzing::extract_pdf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coursegen::fuzzing::extract_pdf(data));
