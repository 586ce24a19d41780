//! The entry points of the fuzz targets, one per parser. Each takes the fuzzer's bytes,
//! feeds them to the parser and ignores the `Result`: a parser may reject anything, but
//! must not panic, hang or allocate what the input merely declares.
//!
//! The same functions replay the inputs kept in `fuzz/regressions/<target>/` in the main
//! crate's `tests/fuzz_regressions.rs` (which includes this file with `#[path]`), so a
//! fixed crash stays fixed without a nightly toolchain.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use siamese_wgpu::model::weights::{Weight, Weights};
use siamese_wgpu::model::{keras, keras_file, ModelSpec};

/// What every target calls with the fuzzer's bytes.
pub type EntryPoint = fn(&[u8]);

/// Every target by name (the folder names under `fuzz/regressions/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("model_json", model_json),
    ("safetensors_weights", safetensors_weights),
    ("npy", npy),
    ("pairs_tsv", pairs_tsv),
    ("pairs_csv", pairs_csv),
    ("labels_csv", labels_csv),
    ("keras_file", keras_file),
    ("onnx_file", onnx_file),
];

/// A test fixture model: its `model.json` and `model.safetensors`, compiled in so the
/// targets need no files at run time.
struct Fixture {
    json: &'static str,
    safetensors: &'static [u8],
}

macro_rules! fixture {
    ($dir:literal) => {
        Fixture {
            json: include_str!(concat!("../../tests/fixtures/", $dir, "/model.json")),
            safetensors: include_bytes!(concat!("../../tests/fixtures/", $dir, "/model.safetensors")),
        }
    };
}

/// Every fixture with a model directory: together they use every layer class the JSON
/// loader knows.
const FIXTURES: &[Fixture] = &[
    fixture!("chain_a"),
    fixture!("chain_b"),
    fixture!("bilstm_stack"),
    fixture!("gru_after"),
    fixture!("gru_before"),
    fixture!("lstm_hidden1"),
    fixture!("lstm_seed"),
    fixture!("mha_seed"),
    fixture!("token_encoder"),
    fixture!("torch_lstm"),
    fixture!("transformer_block"),
];

/// The fixtures' weights, decoded once (cloned into a fresh [`Weights`] per input).
fn fixture_weights() -> &'static [BTreeMap<String, Weight>] {
    static DECODED: OnceLock<Vec<BTreeMap<String, Weight>>> = OnceLock::new();
    DECODED.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|fixture| {
                let mut weights = Weights::from_safetensors(fixture.safetensors, "fixture")
                    .unwrap_or_else(|e| panic!("fixture weights do not load: {e}"));
                let mut map = BTreeMap::new();
                for name in weights.names() {
                    let shape = weights.shape(&name).unwrap_or_default();
                    if let Ok(data) = weights.take_named(&name, "fixture", &shape) {
                        map.insert(name, Weight { shape, data });
                    }
                }
                map
            })
            .collect()
    })
}

/// What a caller does next with a loaded encoder: shapes for a batch of sequences and the
/// parameter count (both must be errors, not overflows, for any spec the loader accepts).
fn use_spec(spec: &ModelSpec) {
    let _ = spec.shapes_for(2, 3);
    let _ = spec.embedding_shape(5);
    let _ = spec.parameter_count();
}

/// `keras::from_json` on arbitrary text: with no weights, and with each fixture's weights
/// (so mutated fixture JSON gets past the weight lookups).
pub fn model_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let empty = Weights::from_map("fuzz.safetensors", BTreeMap::new());
    if let Ok(spec) = keras::from_json(text, "fuzz/model.json", empty) {
        use_spec(&spec);
    }
    for tensors in fixture_weights() {
        let weights = Weights::from_map("fuzz.safetensors", tensors.clone());
        if let Ok(spec) = keras::from_json(text, "fuzz/model.json", weights) {
            use_spec(&spec);
        }
    }
}

/// `Weights::from_safetensors` on arbitrary bytes, then `keras::from_json` with the
/// `model.json` of the fixture sharing a tensor name with them (else the first fixture's).
pub fn safetensors_weights(data: &[u8]) {
    let Ok(weights) = Weights::from_safetensors(data, "fuzz.safetensors") else { return };
    let names = weights.names();
    let chosen =
        fixture_weights().iter().position(|tensors| names.iter().any(|n| tensors.contains_key(n))).unwrap_or(0);
    if let Ok(spec) = keras::from_json(FIXTURES[chosen].json, "fixture/model.json", weights) {
        use_spec(&spec);
    }
}

/// `io::decode_npy` and `io::decode_lengths` on arbitrary bytes.
pub fn npy(data: &[u8]) {
    let path = Path::new("fuzz.npy");
    if let Ok(array) = siamese_wgpu::io::decode_npy(data, path) {
        assert_eq!(array.data().len(), array.shape().iter().product::<usize>());
    }
    let _ = siamese_wgpu::io::decode_lengths(data, path);
}

/// `io::parse_pairs_tsv` on arbitrary text.
pub fn pairs_tsv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(pairs) = siamese_wgpu::io::parse_pairs_tsv(text, Path::new("fuzz.tsv")) {
        assert!(!pairs.is_empty());
    }
}

/// `verify::parse_pairs_csv` on arbitrary bytes.
pub fn pairs_csv(data: &[u8]) {
    if let Ok(pairs) = siamese_wgpu::verify::parse_pairs_csv(data, Path::new("heldout/pairs.csv")) {
        assert!(pairs.left.len() == pairs.labels.len() && pairs.right.len() == pairs.labels.len());
    }
}

/// `verify::parse_labels_csv` on arbitrary bytes.
pub fn labels_csv(data: &[u8]) {
    let _ = siamese_wgpu::verify::parse_labels_csv(data, Path::new("heldout/labels.csv"));
}

/// `keras_file::load_keras_file` and `keras_file::inspect` on arbitrary bytes. They read
/// a path only, so the bytes go through a temporary file (one per call: tests run in
/// parallel).
pub fn keras_file(data: &[u8]) {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("siamese-fuzz-{}-{call}.keras", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(file) = keras_file::load_keras_file(&path) {
        use_spec(&file.spec);
    }
    let _ = keras_file::inspect(&path);
    let _ = std::fs::remove_file(&path);
}

/// `model::onnx::load_onnx` and `model::onnx::inspect` on arbitrary bytes, through a
/// temporary file in a folder that also holds the ONNX fixtures' external data files (so a
/// mutated dynamo-exported fixture still finds `NAME.onnx.data` and gets past it).
pub fn onnx_file(data: &[u8]) {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("siamese-fuzz-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
        let fixtures = if fixtures.is_dir() {
            fixtures
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
        };
        for entry in std::fs::read_dir(fixtures).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "data") {
                let _ = std::fs::copy(entry.path(), dir.join(entry.file_name()));
            }
        }
        Some(dir)
    });
    let Some(dir) = dir else { return };
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("input-{call}.onnx"));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(spec) = siamese_wgpu::model::onnx::load_onnx(&path) {
        use_spec(&spec);
    }
    let _ = siamese_wgpu::model::onnx::inspect(&path);
    let _ = std::fs::remove_file(&path);
}
