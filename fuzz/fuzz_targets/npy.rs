#![no_main]
//! Fuzz target `npy`: see `siamese_wgpu_fuzz::npy` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::npy(data));
