#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| thrust::fuzzing::head_scan(data));
