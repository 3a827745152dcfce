//! Fuzz target: see `coursegen::fuzzing::amqp_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coursegen::fuzzing::amqp_request(data));
