//! A lost device is reported as such (a typed error, no panic, no hang), and a model loaded
//! again on a fresh `Gpu` works. The loss is forced with `wgpu::Device::destroy`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::gpu;
use siamese_wgpu::io::read_npy;
use siamese_wgpu::{Distance, Error, Gpu, GpuOptions, SiameseModel};

#[test]
fn a_lost_device_is_reported_and_a_fresh_gpu_recovers() {
    let Some(_) = gpu() else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/cnn");
    let left = read_npy(dir.join("pairs/left.npy")).unwrap();
    let right = read_npy(dir.join("pairs/right.npy")).unwrap();
    // A device of its own: the shared test device must stay usable.
    let doomed = Arc::new(Gpu::with_options(&GpuOptions::from_env().unwrap()).unwrap());
    let model = SiameseModel::load_on(doomed.clone(), &dir).unwrap();
    let before = model.distances(&left, &right, Distance::Euclidean).unwrap();
    doomed.device().destroy();
    let err = model.distances(&left, &right, Distance::Euclidean).unwrap_err();
    assert!(matches!(err, Error::DeviceLost { .. }), "expected DeviceLost, got {err}");
    assert!(err.to_string().contains("was lost") && err.to_string().contains("new Gpu"), "{err}");
    assert!(doomed.lost().is_some());
    // Every later call says the same, and a new batch size (a new plan) too.
    assert!(matches!(model.distances(&left, &right, Distance::Cosine), Err(Error::DeviceLost { .. })));

    let fresh = SiameseModel::load(&dir).unwrap();
    assert_eq!(fresh.distances(&left, &right, Distance::Euclidean).unwrap(), before);
}
