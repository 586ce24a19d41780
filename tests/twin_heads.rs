//! Whole twin heads that run after the encoder (`SiameseModel::predict`, what `siamese
//! pairs` prints): keras.io's contrastive tutorial (a Lambda distance, then
//! BatchNormalization -> Dense(1, sigmoid)), Koch's `Lambda |a - b|` -> Dense with
//! `--lambda abs-diff`, a face-verification `.h5` (BatchNorm, a custom L2Normalize class
//! loaded as UnitNormalization, a Dot head), a head of ordinary layers and Dot(normalize):
//! Keras' `model.predict` (tests/fixtures/keras_files, from tools/make_keras_files.py) on
//! the GPU and the CPU reference; the head kernels against their reference on random data;
//! heads that cannot be guessed are errors that say what to pass.

mod common;

use common::keras::{fixture, golden, load_err};
use common::{assert_close, gpu, random_vec, rng};
use siamese_wgpu::layers::{Dot, LayerOp, Merge, MergeKind, TwinDistance, TwinSide};
use siamese_wgpu::model::keras_file::{load_keras_file_with, TwinHead};
use siamese_wgpu::model::{Layer, LayerHead, ModelSpec};
use siamese_wgpu::{reference, Distance, Error, LambdaKind, LoadOptions, Score, SiameseModel};

/// Keras (XLA on CPU) and our kernels sum in other orders through a few layers.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

/// The face twin's own L2-normalisation class, loaded as Keras' UnitNormalization.
fn face_options() -> LoadOptions {
    LoadOptions::default().custom_layer("L2Normalize", "UnitNormalization")
}

/// Every head fixture: file, stem of its `.npy` files, load options, what it outputs.
fn heads() -> Vec<(&'static str, &'static str, LoadOptions, Score)> {
    let abs_diff = LoadOptions::default().lambda(LambdaKind::AbsDiff);
    vec![
        ("contrastive_twin.keras", "contrastive_twin", LoadOptions::default(), Score::Probability),
        ("contrastive_twin.h5", "contrastive_twin", LoadOptions::default(), Score::Probability),
        ("koch_twin.keras", "koch_twin", abs_diff.clone(), Score::Probability),
        ("koch_twin.h5", "koch_twin", abs_diff, Score::Probability),
        ("face_twin.h5", "face_twin", face_options(), Score::Similarity { cosine: false }),
        ("face_twin.keras", "face_twin", face_options(), Score::Similarity { cosine: false }),
        ("mlp_head_twin.keras", "mlp_head_twin", LoadOptions::default(), Score::Score),
        ("mlp_head_twin.h5", "mlp_head_twin", LoadOptions::default(), Score::Score),
        ("cosine_twin.keras", "cosine_twin", LoadOptions::default(), Score::Similarity { cosine: true }),
    ]
}

fn layer_head(file: &str, options: &LoadOptions) -> (ModelSpec, LayerHead) {
    let loaded = load_keras_file_with(fixture(file), options).unwrap();
    match loaded.head {
        TwinHead::Layers(head) => (loaded.spec, head),
        other => panic!("{file}: head {other:?}"),
    }
}

#[test]
fn twin_heads_match_keras_predict_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    for (file, stem, options, score) in heads() {
        let model = SiameseModel::load_with_options(gpu.clone(), fixture(file), &options).unwrap();
        assert_eq!(model.head_score(), Some(score), "{file}");
        let (left, right, want) = golden(stem);
        let got = model.predict(&left, &right).unwrap();
        assert_eq!(got.score, score);
        assert_close(&format!("{file} (GPU) vs Keras"), &got.scores, &want, ATOL, RTOL);
        // The probabilities are not all alike: a wrong head would show.
        let spread = want.iter().fold(f32::MIN, |m, &v| m.max(v)) - want.iter().fold(f32::MAX, |m, &v| m.min(v));
        assert!(spread > 1e-3, "{file}: goldens {want:?} too alike to tell heads apart");
    }
}

#[test]
fn twin_heads_match_keras_predict_on_the_cpu_reference() {
    for (file, stem, options, _) in heads() {
        let (encoder, head) = layer_head(file, &options);
        let (left, right, want) = golden(stem);
        let n = left.batch();
        let stacked = [left.data(), right.data()].concat();
        let embeddings = encoder.reference_forward(&stacked, 2 * n).unwrap();
        let got = head.spec.reference_forward(&embeddings, n).unwrap();
        assert_close(&format!("{file} (CPU reference) vs Keras"), &got, &want, ATOL, RTOL);
    }
}

/// The head runs in the same submit: one value per pair whatever the chunking, and
/// `--no-head` gives the encoders' distance instead.
#[test]
fn heads_run_in_chunks_and_no_head_sets_them_aside() {
    let Some(gpu) = gpu() else { return };
    let path = fixture("contrastive_twin.keras");
    let (left, right, want) = golden("contrastive_twin");
    let mut model = SiameseModel::load_on(gpu.clone(), &path).unwrap();
    model.set_max_pairs_per_submit(Some(3));
    let got = model.predict(&left, &right).unwrap();
    assert_close("contrastive_twin in chunks of 3 pairs", &got.scores, &want, ATOL, RTOL);

    let ignored = SiameseModel::load_with_options(gpu.clone(), &path, &LoadOptions::default().no_head()).unwrap();
    assert!(matches!(ignored.keras_twin(), Some((Some("tower"), TwinHead::Ignored { .. }))));
    assert!(ignored.head_score().is_none());
    assert!(matches!(ignored.predict(&left, &right), Err(Error::InvalidInput { .. })));
    let distances = ignored.distances(&left, &right, Distance::Cosine).unwrap();
    let (l, r) = (ignored.embed(&left).unwrap(), ignored.embed(&right).unwrap());
    let dim = l.row_len();
    let stacked = [l.data(), r.data()].concat();
    let expected = reference::pair_distances(&stacked, left.batch(), dim, Distance::Cosine);
    assert_close("--no-head: cosine distance of the embeddings", &distances, &expected, 1e-5, 1e-4);

    // The distance Lambda stands for the metric asked for at load.
    let options = LoadOptions { lambda_distance: Distance::Manhattan, ..LoadOptions::default() };
    let (_, head) = layer_head("contrastive_twin.keras", &options);
    assert_eq!(head.score, Score::Probability);
    assert!(head.summary.contains("manhattan"), "{}", head.summary);
    let twin = head.spec.layers.iter().find_map(|l| l.downcast::<TwinDistance>()).unwrap();
    assert_eq!(twin.metric, Distance::Manhattan);
}

/// A Lambda whose readers take a vector cannot be guessed: an error that names it and
/// `--lambda`; a custom class without `--custom-layer` names the way out too.
#[test]
fn heads_that_cannot_be_guessed_are_errors_that_say_what_to_pass() {
    for file in ["koch_twin.keras", "koch_twin.h5"] {
        let err = load_err(&fixture(file));
        let text = err.to_string();
        assert!(matches!(err, Error::ModelFormat { .. }), "{file}: {text}");
        for needle in [file, "\"l1_distance\"", "--lambda", "abs-diff", "--no-head"] {
            assert!(text.contains(needle), "{file}: {needle:?} not in: {text}");
        }
    }
    let err = load_err(&fixture("face_twin.h5"));
    assert!(matches!(err, Error::CustomLayer { .. }), "{err}");
    assert!(err.to_string().contains("`custom_layer` faces>L2Normalize=BUILTIN"), "{err}");
    // --lambda for a head whose Lambda reads one twin only: an error, not a guess.
    let concat = LoadOptions::default().lambda(LambdaKind::Concat);
    let err = load_keras_file_with(fixture("koch_twin.keras"), &concat).unwrap_err();
    // Concatenating two 4-wide embeddings gives 8 values: the Dense(4 -> 1) rejects it.
    assert!(err.to_string().contains("score"), "{err}");
}

/// Runs `layers` (over a `[pairs, 2, dim]` head input) on the GPU and on the reference.
fn head_matches_reference(what: &str, layers: Vec<Layer>, dim: usize, pairs: usize, seed: u64) {
    let Some(gpu) = gpu() else { return };
    let spec = ModelSpec { name: what.into(), input_shape: vec![2, dim], layers };
    let mut rng = rng(seed);
    let stacked = random_vec(&mut rng, 2 * pairs * dim);
    let want = spec.reference_forward(&stacked, pairs).unwrap();
    let model = SiameseModel::from_spec(gpu, spec.clone()).unwrap();
    let batch = siamese_wgpu::graph::Batch { parts: &[&stacked], rows: pairs, steps: 1, mask: &[] };
    let got = model.graph().run_value(&batch, spec.layers.len()).unwrap();
    assert_close(what, &got, &want, 1e-5, 1e-4);
}

#[test]
fn head_kernels_match_the_reference() {
    let side = |s| Layer::new(format!("side {s}"), TwinSide { side: s }, vec![0]);
    for (dim, pairs) in [(1, 1), (37, 5), (300, 257)] {
        for kind in [MergeKind::AbsDifference, MergeKind::SquaredDifference, MergeKind::Subtract] {
            let layers = vec![side(0), side(1), Layer::new("merge", Merge::new(kind, 2).unwrap(), vec![1, 2])];
            head_matches_reference(&format!("{kind:?} {dim}x{pairs}"), layers, dim, pairs, 7);
        }
        for normalize in [false, true] {
            let layers = vec![side(1), side(0), Layer::new("dot", Dot { normalize }, vec![1, 2])];
            head_matches_reference(&format!("dot normalize={normalize} {dim}x{pairs}"), layers, dim, pairs, 8);
        }
        for metric in Distance::ALL {
            let layers = vec![Layer::new("distance", TwinDistance { metric }, vec![0])];
            head_matches_reference(&format!("{metric} distance {dim}x{pairs}"), layers, dim, pairs, 9);
        }
    }
    // The halves are the twins: the left rows first.
    let side = TwinSide { side: 1 };
    let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let inputs = siamese_wgpu::layers::Inputs { values: &[&values], shapes: &[&[3, 2, 2]], mask: &[] };
    assert_eq!(side.reference(&inputs).unwrap(), (6..12).map(|v| v as f32).collect::<Vec<_>>());
    // A Dot of vectors of zeros is 0 (Keras' epsilon), not NaN.
    let zeros = [0.0; 8];
    let dot = Dot { normalize: true };
    let inputs =
        siamese_wgpu::layers::Inputs { values: &[&zeros[..4], &zeros[4..]], shapes: &[&[1, 4], &[1, 4]], mask: &[] };
    assert_eq!(dot.reference(&inputs).unwrap(), vec![0.0]);
}

fn siamese(args: &[&str]) -> std::process::Output {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::process::Command::new(env!("CARGO_BIN_EXE_siamese")).args(args).current_dir(root).output().unwrap()
}

/// `siamese pairs` prints what model.predict gives, says what it is, and takes --lambda,
/// --no-head and --custom-layer; a --distance the head has no use for is an error.
#[test]
fn cli_pairs_runs_the_head() {
    let Some(_) = gpu() else { return };
    let run = |stem: &str, file: &str, extra: &[&str]| {
        let (model, left, right) =
            (fixture(file), fixture(&format!("{stem}.left.npy")), fixture(&format!("{stem}.right.npy")));
        let args = ["pairs", "--model", model.to_str().unwrap(), "--left", left.to_str().unwrap()];
        let output = siamese(&[&args[..], &["--right", right.to_str().unwrap()], extra].concat());
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let values: Vec<f32> = String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| l.parse().ok()).collect();
        (output.status.success(), values, stderr)
    };
    let (ok, got, stderr) = run("koch_twin", "koch_twin.h5", &["--lambda", "abs-diff"]);
    assert!(ok, "{stderr}");
    assert_close("siamese pairs --lambda abs-diff", &got, &golden("koch_twin").2, ATOL, RTOL);
    assert!(stderr.contains("prints a match probability"), "{stderr}");

    let face = ["--custom-layer", "L2Normalize=UnitNormalization"];
    let (ok, got, stderr) = run("face_twin", "face_twin.h5", &face);
    assert!(ok, "{stderr}");
    assert_close("siamese pairs face_twin.h5", &got, &golden("face_twin").2, ATOL, RTOL);
    assert!(stderr.contains("similarity"), "{stderr}");

    let (ok, _, stderr) = run("face_twin", "face_twin.h5", &[&face[..], &["--distance", "cosine"]].concat());
    assert!(!ok && stderr.contains("--no-head") && !stderr.contains("panicked"), "{stderr}");
    let (ok, got, stderr) =
        run("face_twin", "face_twin.h5", &[&face[..], &["--no-head", "--distance", "cosine"]].concat());
    assert!(ok && stderr.contains("set aside (--no-head)"), "{stderr}");
    // Unit embeddings: the cosine distance is 1 - the Dot head's similarity.
    let want: Vec<f32> = golden("face_twin").2.iter().map(|s| 1.0 - s).collect();
    assert_close("--no-head --distance cosine", &got, &want, ATOL, RTOL);

    let (ok, _, stderr) = run("koch_twin", "koch_twin.keras", &[]);
    assert!(!ok && stderr.contains("--lambda") && !stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = run("koch_twin", "koch_twin.keras", &["--lambda", "sum"]);
    assert!(!ok && stderr.contains("abs-diff") && !stderr.contains("panicked"), "{stderr}");
}
