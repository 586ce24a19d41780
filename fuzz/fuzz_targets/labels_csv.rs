#![no_main]
//! Fuzz target `labels_csv`: see `siamese_wgpu_fuzz::labels_csv` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::labels_csv(data));
