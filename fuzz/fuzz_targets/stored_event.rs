//! Fuzz target: see `coursegen::fuzzing::stored_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coursegen::fuzzing::stored_event(data));
