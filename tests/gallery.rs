//! Gallery files and the model they record: a saved gallery round-trips bit for bit,
//! corrupt files are decode errors, `Gallery::embed` matches `SiameseModel::embed`, and the
//! model fingerprint tells encoders apart so that a gallery refuses another model's
//! queries. (The search kernels are tests/search.rs.)

mod common;

use std::path::Path;

use common::{assert_close, gpu, random_vec, rng};
use siamese_wgpu::layers::{Conv2d, Dense};
use siamese_wgpu::search::{model_fingerprint, Gallery, GpuSearch, ModelCheck};
use siamese_wgpu::{Array, Distance, Error, SiameseModel};

#[test]
fn gallery_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.safetensors");
    let mut gallery = Gallery::new(
        vec!["cat.png".into(), "dög \"2\".png".into(), "".into()],
        Array::new(vec![3, 2], vec![0.0, -1.5, 2.25, 1e-30, -0.0, 7.0]).unwrap(),
    )
    .unwrap();
    gallery.model = Some("models/cnn".into());
    gallery.metric = Some(Distance::Cosine);
    gallery.save(&path).unwrap();
    let loaded = Gallery::load(&path).unwrap();
    assert_eq!(loaded, gallery);
    assert_eq!(loaded.embeddings.data()[4].to_bits(), (-0.0f32).to_bits());
    // Without the optional fields.
    gallery.model = None;
    gallery.metric = None;
    gallery.save(&path).unwrap();
    assert_eq!(Gallery::load(&path).unwrap(), gallery);
}

/// Writes a safetensors file with one tensor and the given metadata.
fn write_safetensors(
    path: &Path,
    name: &str,
    dtype: safetensors::Dtype,
    shape: &[usize],
    bytes: &[u8],
    ids: Option<&str>,
) {
    let view = safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes).unwrap();
    let metadata = ids.map(|ids| [("ids".to_string(), ids.to_string())].into_iter().collect());
    std::fs::write(path, safetensors::serialize([(name, view)], metadata).unwrap()).unwrap();
}

#[test]
fn corrupt_gallery_files_are_decode_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    let gallery = Gallery::new(vec!["a".into(), "b".into()], Array::new(vec![2, 3], vec![1.0; 6]).unwrap()).unwrap();
    gallery.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let f32_bytes: Vec<u8> = [1.0f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_bytes: Vec<u8> = [1.0f64; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let nan_bytes: Vec<u8> = [1.0f32, f32::NAN, 1.0, 1.0, 1.0, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    type Writer = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Writer, &str)> = vec![
        ("truncated", Box::new(move |p: &Path| std::fs::write(p, &bytes[..bytes.len() - 5]).unwrap()), "safetensors"),
        ("garbage", Box::new(|p: &Path| std::fs::write(p, b"not a gallery at all").unwrap()), "safetensors"),
        (
            "no ids",
            Box::new({
                let b = f32_bytes.clone();
                move |p: &Path| write_safetensors(p, "embeddings", safetensors::Dtype::F32, &[2, 3], &b, None)
            }),
            "ids",
        ),
        (
            "one id for two rows",
            Box::new({
                let b = f32_bytes.clone();
                move |p: &Path| {
                    write_safetensors(p, "embeddings", safetensors::Dtype::F32, &[2, 3], &b, Some("[\"a\"]"))
                }
            }),
            "one id per",
        ),
        (
            "ids not json",
            Box::new({
                let b = f32_bytes.clone();
                move |p: &Path| write_safetensors(p, "embeddings", safetensors::Dtype::F32, &[2, 3], &b, Some("a,b"))
            }),
            "JSON",
        ),
        (
            "wrong tensor name",
            Box::new({
                let b = f32_bytes.clone();
                move |p: &Path| {
                    write_safetensors(p, "weights", safetensors::Dtype::F32, &[2, 3], &b, Some("[\"a\",\"b\"]"))
                }
            }),
            "embeddings",
        ),
        (
            "f64",
            Box::new(move |p: &Path| {
                write_safetensors(p, "embeddings", safetensors::Dtype::F64, &[2, 3], &f64_bytes, Some("[\"a\",\"b\"]"))
            }),
            "F32",
        ),
        (
            "rank 1",
            Box::new({
                let b = f32_bytes.clone();
                move |p: &Path| {
                    write_safetensors(p, "embeddings", safetensors::Dtype::F32, &[6], &b, Some("[\"a\",\"b\"]"))
                }
            }),
            "[G, D]",
        ),
        (
            "nan",
            Box::new(move |p: &Path| {
                write_safetensors(p, "embeddings", safetensors::Dtype::F32, &[2, 3], &nan_bytes, Some("[\"a\",\"b\"]"))
            }),
            "not finite",
        ),
    ];
    for (name, write, expected) in cases {
        let path = dir.path().join(format!("{}.safetensors", name.replace(' ', "_")));
        write(&path);
        match Gallery::load(&path) {
            Err(error @ Error::Decode { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&path.display().to_string()), "{name}: {message} does not name the file");
                assert!(message.contains(expected), "{name}: {message} does not mention {expected:?}");
            }
            other => panic!("{name}: expected Error::Decode, got {other:?}"),
        }
    }
    assert!(matches!(Gallery::load(dir.path().join("missing.safetensors")), Err(Error::Io { .. })));
}

#[test]
fn gallery_embed_matches_model_embed() {
    let Some(gpu) = gpu() else { return };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chain_a");
    let model = SiameseModel::load_on(gpu.clone(), &fixture).unwrap();
    let left = siamese_wgpu::io::read_npy(fixture.join("left.npy")).unwrap();
    // 300 samples: two chunks of Gallery::embed.
    let count = 300;
    let sample = left.row_len();
    let data: Vec<f32> = (0..count).flat_map(|i| left.row(i % left.batch()).to_vec()).collect();
    let shape: Vec<usize> = std::iter::once(count).chain(left.shape()[1..].iter().copied()).collect();
    let inputs = Array::new(shape, data).unwrap();
    assert_eq!(inputs.data().len(), count * sample);
    let ids: Vec<String> = (0..count).map(|i| format!("sample-{i}")).collect();
    let gallery = Gallery::embed(&model, ids.clone(), &inputs, false).unwrap();
    let want = model.embed(&inputs).unwrap();
    assert_eq!(gallery.embeddings.shape(), &[count, want.row_len()]);
    assert_eq!(gallery.ids, ids);
    assert_close("Gallery::embed vs SiameseModel::embed", gallery.embeddings.data(), want.data(), 1e-6, 1e-6);
    // Sample 5 repeats sample 0: searching with sample 0's embedding finds 0 first.
    let search = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    let query = Array::new(vec![1, gallery.dim()], gallery.embeddings.row(0).to_vec()).unwrap();
    let nearest = search.search(&query, 2, Distance::Euclidean).unwrap();
    assert_eq!(nearest[0][0], (0, 0.0));
    assert_eq!(nearest[0][1], (left.batch(), 0.0));
    // One id short is a typed error before any GPU work.
    assert!(matches!(Gallery::embed(&model, ids[1..].to_vec(), &inputs, false), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn model_fingerprint_is_stable_and_tells_models_apart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let digits = siamese_wgpu::model::load(root.join("models/digits")).unwrap();
    let print = model_fingerprint(&digits);
    assert_eq!(print.len(), 16, "{print}");
    assert!(print.chars().all(|c| c.is_ascii_hexdigit()), "{print}");
    assert_eq!(model_fingerprint(&siamese_wgpu::model::load(root.join("models/digits")).unwrap()), print);
    // Layer names are not part of it; the weights and the architecture are.
    let mut renamed = digits.clone();
    renamed.name = "another name".into();
    renamed.layers[0].name = "renamed".into();
    assert_eq!(model_fingerprint(&renamed), print);
    let mut nudged = digits.clone();
    let layer = nudged.layers.iter_mut().find(|l| l.op.parameter_count() > 0).unwrap();
    let flip = |kernel: &mut Vec<f32>| kernel[0] = f32::from_bits(kernel[0].to_bits() ^ 1);
    if let Some(conv) = layer.downcast::<Conv2d>() {
        let mut conv = conv.clone();
        flip(&mut conv.kernel);
        layer.op = std::sync::Arc::new(conv);
    } else if let Some(dense) = layer.downcast::<Dense>() {
        let mut dense = dense.clone();
        flip(&mut dense.kernel);
        layer.op = std::sync::Arc::new(dense);
    } else {
        panic!("expected the digits encoder to start with conv2d or dense, got {:?}", layer.op);
    }
    assert_ne!(model_fingerprint(&nudged), print, "one weight bit");
    let others = ["models/cnn", "tests/fixtures/chain_a", "tests/fixtures/chain_b"]
        .map(|dir| model_fingerprint(&siamese_wgpu::model::load(root.join(dir)).unwrap()));
    for (i, other) in others.iter().enumerate() {
        assert_ne!(other, &print);
        assert!(others[..i].iter().all(|o| o != other), "{others:?}");
    }
}

#[test]
fn a_saved_gallery_records_its_model_and_refuses_another() {
    let Some(gpu) = gpu() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let digits = SiameseModel::load_on(gpu.clone(), root.join("models/digits")).unwrap();
    let cnn = SiameseModel::load_on(gpu.clone(), root.join("models/cnn")).unwrap();
    let images = Array::new(vec![3, 28, 28, 1], random_vec(&mut rng(5), 3 * 28 * 28)).unwrap();
    let mut gallery = Gallery::embed(&digits, vec!["a".into(), "b".into(), "c".into()], &images, false).unwrap();
    assert_eq!(gallery.model_fingerprint.as_deref(), Some(model_fingerprint(digits.spec()).as_str()));
    gallery.model = Some("models/digits".into());
    gallery.metric = Some(Distance::Cosine);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.safetensors");
    gallery.save(&path).unwrap();
    let loaded = Gallery::load(&path).unwrap();
    assert_eq!(loaded, gallery);
    assert_eq!(loaded.check_model(&digits).unwrap(), ModelCheck::Same);
    match loaded.check_model(&cnn) {
        Err(error @ Error::InvalidInput { .. }) => {
            let message = error.to_string();
            for part in
                [gallery.model_fingerprint.clone().unwrap(), model_fingerprint(cnn.spec()), "models/digits".into()]
            {
                assert!(message.contains(&part), "{message} does not name {part}");
            }
        }
        other => panic!("expected Error::InvalidInput, got {other:?}"),
    }
    // A gallery without the record (an older file, or Gallery::new) cannot be checked.
    let old = Gallery::new(gallery.ids.clone(), gallery.embeddings.clone()).unwrap();
    old.save(&path).unwrap();
    assert_eq!(Gallery::load(&path).unwrap().check_model(&cnn).unwrap(), ModelCheck::NotRecorded);
    // The recorded embedding size must match the tensor.
    let bytes: Vec<u8> = [1.0f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &bytes).unwrap();
    let metadata = [("ids", "[\"a\",\"b\"]"), ("embedding_dim", "4")].map(|(k, v)| (k.to_string(), v.to_string()));
    std::fs::write(
        &path,
        safetensors::serialize([("embeddings", view)], Some(metadata.into_iter().collect())).unwrap(),
    )
    .unwrap();
    let message = Gallery::load(&path).unwrap_err().to_string();
    assert!(message.contains("embedding_dim"), "{message}");
}
