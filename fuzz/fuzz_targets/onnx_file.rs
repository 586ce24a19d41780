#![no_main]
//! Fuzz target `onnx_file`: see `siamese_wgpu_fuzz::onnx_file` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siamese_wgpu_fuzz::onnx_file(data));
