#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmobserve_fuzz::checks::check_json_reader(data));
