#![no_main]
//! Fuzz target `pairs_csv`: see `siamese_wgpu_fuzz::pairs_csv` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::pairs_csv(data));
