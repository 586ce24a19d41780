//! PyTorch encoders exported to ONNX by both of PyTorch's exporters
//! (tests/fixtures/onnx, written by tools/make_onnx_files.py: `NAME.ts.onnx` from the
//! TorchScript exporter, `NAME.dynamo.onnx` + `NAME.dynamo.onnx.data` from the default
//! one) give PyTorch's embeddings and distances, on the GPU and on the CPU reference.
//! Inputs are `.npy` files as PyTorch users hold them: NCHW images, `[batch, steps,
//! features]` sequences, int64 token ids.

mod common;

use std::path::PathBuf;

use siamese_wgpu::io::read_npy;
use siamese_wgpu::{model, Distance, SiameseModel};

/// The models and their exports.
const MODELS: &[(&str, &[&str])] = &[
    ("tiny_cnn", EXPORTS),
    ("flatten_cnn", EXPORTS),
    ("mbv3_block", EXPORTS),
    ("convnext_block", EXPORTS),
    ("emb_lstm", EXPORTS),
    ("bigru_mean", EXPORTS),
];
const EXPORTS: &[&str] = &["ts", "dynamo"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

struct Golden {
    left: siamese_wgpu::Array,
    right: siamese_wgpu::Array,
    embeddings: Vec<f32>,
    distances: Vec<f32>,
}

fn golden(name: &str) -> Golden {
    let read = |what: &str| read_npy(dir().join(format!("{name}.{what}.npy"))).unwrap();
    Golden {
        left: read("left"),
        right: read("right"),
        embeddings: read("torch_out").data().to_vec(),
        distances: read("distances").data().to_vec(),
    }
}

/// `1e-4 + 1e-3·|ref|`, the tolerance, over every value.
fn assert_matches(what: &str, got: &[f32], want: &[f32]) {
    common::assert_close(what, got, want, 1e-4, 1e-3);
}

#[test]
fn pytorch_exports_match_pytorch_on_the_gpu() {
    let gpu = common::gpu().expect("no GPU adapter: the ONNX tests need one (lavapipe in CI)");
    for &(name, exports) in MODELS {
        let g = golden(name);
        let rows = g.left.shape()[0];
        for export in exports {
            let path = dir().join(format!("{name}.{export}.onnx"));
            let model = SiameseModel::load_on(gpu.clone(), &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let what = format!("{name}.{export}");
            let left = model.embed(&g.left).unwrap();
            let right = model.embed(&g.right).unwrap();
            let half = g.embeddings.len() / 2;
            assert_matches(&format!("{what} left embeddings"), left.data(), &g.embeddings[..half]);
            assert_matches(&format!("{what} right embeddings"), right.data(), &g.embeddings[half..]);
            let pairs = model.pairs(&g.left, &g.right, Distance::Euclidean, false).unwrap();
            assert_eq!(pairs.distances.len(), rows);
            assert_matches(&format!("{what} distances"), &pairs.distances, &g.distances);
            // The fixture's last pair is one input twice: exactly 0.
            assert_eq!(pairs.distances[rows - 1], 0.0, "{what}: identical pair");
        }
    }
}

#[test]
fn pytorch_exports_match_pytorch_on_the_cpu_reference() {
    for &(name, exports) in MODELS {
        let g = golden(name);
        let rows = g.left.shape()[0];
        for export in exports {
            let path = dir().join(format!("{name}.{export}.onnx"));
            let spec = model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let left = spec.reference_forward(g.left.data(), rows).unwrap();
            let right = spec.reference_forward(g.right.data(), rows).unwrap();
            let got: Vec<f32> = left.into_iter().chain(right).collect();
            assert_matches(&format!("{name}.{export} (CPU reference)"), &got, &g.embeddings);
        }
    }
}

#[test]
fn decomposed_layer_norm_gelu_and_as_strided_become_single_layers() {
    // torchvision's ConvNeXt pieces: the TorchScript exporter writes each LayerNorm as
    // nine nodes and both write GELU through Erf; the dynamo exporter adds an identity
    // as_strided (Range, Gather) after the pool. Each is one layer, or none.
    for export in EXPORTS {
        let path = dir().join(format!("convnext_block.{export}.onnx"));
        let spec = model::load(&path).unwrap();
        let count = |name: &str| spec.layers.iter().filter(|l| l.op.name() == name).count();
        assert_eq!(count("layer_norm"), 2, "{export}: the stem's and the block's LayerNorm");
        let gelus = spec.layers.iter().filter(|l| l.op.name() == "activation" && l.op.settings() == "Gelu").count();
        assert_eq!(gelus, 1, "{export}: one GELU");
        assert_eq!(count("add"), 1, "{export}: the residual Add only");
        assert_eq!(
            count("subtract") + count("divide") + count("multiply"),
            0,
            "{export}: nothing left of the decompositions"
        );
    }
}

#[test]
fn an_input_in_the_wrong_layout_is_a_shape_error() {
    // An NHWC image given to an NCHW model: refused with both shapes, not read as garbage.
    let gpu = common::gpu().expect("no GPU adapter");
    let g = golden("tiny_cnn");
    let model = SiameseModel::load_on(gpu, dir().join("tiny_cnn.ts.onnx")).unwrap();
    let shape = g.left.shape();
    let nhwc = siamese_wgpu::Array::new(vec![shape[0], shape[2], shape[3], shape[1]], g.left.data().to_vec()).unwrap();
    let err = model.embed(&nhwc).unwrap_err().to_string();
    assert!(err.contains("[N, 3, 20, 24]") && err.contains("[4, 20, 24, 3]"), "{err}");
}
