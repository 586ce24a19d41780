#![no_main]
//! Fuzz target `safetensors_weights`: see `siamese_wgpu_fuzz::safetensors_weights` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::safetensors_weights(data));
