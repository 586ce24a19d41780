#![no_main]
//! Fuzz target `model_json`: see `siamese_wgpu_fuzz::model_json` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::model_json(data));
