#![no_main]
//! Fuzz target `keras_file`: see `siamese_wgpu_fuzz::keras_file` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::keras_file(data));
