#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| thrust::fuzzing::acme_storage(data));
