//! The crate on the smallest WebGPU-class device: request `Limits::downlevel_defaults()`
//! (4 storage buffers per stage, 256 invocations per workgroup, 16 KiB workgroup memory,
//! 128 MiB bindings) and run every kernel family through the golden CNN and the chain
//! fixtures, plus a batch large enough to need chunking under those limits.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{assert_close, gpu};
use siamese_wgpu::io::read_npy;
use siamese_wgpu::{Distance, Gpu, GpuOptions, SiameseModel};

#[test]
fn models_run_with_downlevel_default_limits() {
    let Some(_) = gpu() else { return };
    let mut options = GpuOptions::from_env().unwrap();
    options.limits = Some(wgpu::Limits::downlevel_defaults());
    let gpu = Arc::new(Gpu::with_options(&options).unwrap());
    assert_eq!(gpu.limits().max_storage_buffers_per_shader_stage, 4);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (model_dir, pairs_dir) in [
        (root.join("models/cnn"), root.join("models/cnn/pairs")),
        (root.join("tests/fixtures/chain_a"), root.join("tests/fixtures/chain_a")),
        (root.join("tests/fixtures/chain_b"), root.join("tests/fixtures/chain_b")),
    ] {
        let model = SiameseModel::load_on(gpu.clone(), &model_dir).unwrap();
        let left = read_npy(pairs_dir.join("left.npy")).unwrap();
        let right = read_npy(pairs_dir.join("right.npy")).unwrap();
        for metric in Distance::ALL {
            let want = read_npy(pairs_dir.join(format!("keras_{metric}.npy"))).unwrap();
            let got = model.distances(&left, &right, metric).unwrap();
            assert_close(
                &format!("{} {metric} (downlevel limits)", model_dir.display()),
                &got,
                want.data(),
                1e-5,
                1e-4,
            );
        }
    }
}
