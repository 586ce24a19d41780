//! Bad input never panics and never gives a silent wrong number: every case below is a
//! typed error that names what was wrong.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::gpu;
use serde_json::Value;
use siamese_wgpu::io::{read_batch, read_batch_for, read_npy, read_png, read_png_for, read_samples_for};
use siamese_wgpu::{model, Array, Distance, Error, GpuOptions, SiameseModel};

fn cnn_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/cnn")
}

fn chain_b_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chain_b")
}

/// Copies a model directory into a temp dir, editing its JSON and/or weights.
fn edited_model(
    from: &Path,
    edit_json: impl FnOnce(&mut Value),
    edit_weights: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<f32>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(from.join("model.json")).unwrap()).unwrap();
    edit_json(&mut json);
    std::fs::write(dir.path().join("model.json"), json.to_string()).unwrap();
    let bytes = std::fs::read(from.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut weights: HashMap<String, (Vec<usize>, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), bytemuck::pod_collect_to_vec(view.data()))))
        .collect();
    edit_weights(&mut weights);
    let views: Vec<(String, safetensors::tensor::TensorView)> = weights
        .iter()
        .map(|(name, (shape, data))| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(data),
            )
            .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(dir.path().join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    dir
}

fn layers(json: &mut Value) -> &mut Vec<Value> {
    json["config"]["layers"].as_array_mut().unwrap()
}

fn load_err(dir: &Path) -> Error {
    model::load(dir).expect_err("loading should fail")
}

#[test]
fn missing_or_malformed_model_files() {
    assert!(matches!(load_err(Path::new("/no/such/model")), Error::Io { .. }));
    let not_dir = cnn_dir().join("model.json");
    assert!(matches!(load_err(&not_dir), Error::ModelFormat { .. }));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), "{ not json").unwrap();
    std::fs::copy(cnn_dir().join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("JSON")), "{err}");

    // Truncated weights file.
    std::fs::copy(cnn_dir().join("model.json"), dir.path().join("model.json")).unwrap();
    let bytes = std::fs::read(cnn_dir().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("safetensors")), "{err}");

    // Missing weights file.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert!(matches!(load_err(dir.path()), Error::Io { .. }));
}

#[test]
fn unsupported_layer_is_named() {
    let dir = edited_model(&cnn_dir(), |j| layers(j)[5]["class_name"] = "ConvLSTM2D".into(), |_| {});
    match load_err(dir.path()) {
        Error::UnsupportedLayer { class, layer, .. } => {
            assert_eq!(class, "ConvLSTM2D");
            assert_eq!(layer, "flatten");
        }
        other => panic!("expected UnsupportedLayer, got {other}"),
    }
}

#[test]
fn unsupported_settings_are_named() {
    let dir = edited_model(&cnn_dir(), |j| layers(j)[6]["config"]["activation"] = "sparsemax".into(), |_| {});
    let err = load_err(dir.path());
    assert!(
        matches!(&err, Error::UnsupportedConfig { layer, key, .. } if layer == "dense" && key == "activation"),
        "{err}"
    );

    let dir = edited_model(&cnn_dir(), |j| layers(j)[1]["config"]["padding"] = "causal".into(), |_| {});
    assert!(matches!(load_err(dir.path()), Error::UnsupportedConfig { key, .. } if key == "padding"));

    let dir = edited_model(&cnn_dir(), |j| layers(j)[1]["config"]["data_format"] = "channels_first".into(), |_| {});
    assert!(matches!(load_err(dir.path()), Error::UnsupportedConfig { key, .. } if key == "data_format"));

    let dir = edited_model(&cnn_dir(), |j| layers(j)[0]["config"]["batch_shape"][1] = Value::Null, |_| {});
    assert!(matches!(load_err(dir.path()), Error::ModelFormat { reason, .. } if reason.contains("variable")));
}

#[test]
fn unsupported_embedding_settings_are_named() {
    let tokens = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/token_encoder");
    // mask_zero runs (tests/masked_embedding.rs), but Keras would hand its mask to this
    // encoder's attention, which the engine cannot mask from a Keras mask: named, refused.
    let dir = edited_model(&tokens, |j| layers(j)[1]["config"]["mask_zero"] = true.into(), |_| {});
    let err = load_err(dir.path());
    assert!(
        matches!(&err, Error::UnsupportedConfig { key, value, .. } if key == "mask" && value.contains("embedding")),
        "{err}"
    );
    assert!(err.to_string().contains("attention"), "{err}");
    // A table of the wrong shape names the tensor.
    let dir = edited_model(
        &tokens,
        |_| {},
        |w| {
            let table = w.get_mut("embedding/embeddings").unwrap();
            table.0 = vec![20, 32];
        },
    );
    let err = load_err(dir.path()).to_string();
    assert!(err.contains("embedding/embeddings"), "{err}");
}

#[test]
fn missing_extra_misshapen_or_nan_weights() {
    let dir = edited_model(
        &cnn_dir(),
        |_| {},
        |w| {
            w.remove("dense/bias");
        },
    );
    assert!(matches!(load_err(dir.path()), Error::MissingWeight { name, .. } if name == "dense/bias"));

    let dir = edited_model(
        &cnn_dir(),
        |_| {},
        |w| {
            w.insert("dense/extra".into(), (vec![2], vec![1.0, 2.0]));
        },
    );
    assert!(matches!(load_err(dir.path()), Error::UnexpectedWeights { names, .. } if names == "dense/extra"));

    let dir = edited_model(
        &cnn_dir(),
        |_| {},
        |w| {
            w.insert("conv2d/bias".into(), (vec![31], vec![0.0; 31]));
        },
    );
    assert!(matches!(load_err(dir.path()), Error::BadWeight { name, .. } if name == "conv2d/bias"));

    let dir = edited_model(
        &cnn_dir(),
        |_| {},
        |w| {
            w.get_mut("dense/bias").unwrap().1[7] = f32::NAN;
        },
    );
    assert!(matches!(load_err(dir.path()), Error::BadWeight { name, .. } if name == "dense/bias"));

    // Weights whose shapes don't chain: a Dense kernel for another input size.
    let dir = edited_model(&cnn_dir(), |j| layers(j)[1]["config"]["filters"] = 16.into(), |_| {});
    assert!(matches!(load_err(dir.path()), Error::BadWeight { name, .. } if name == "conv2d/kernel"));
}

#[test]
fn branching_functional_models_are_rejected() {
    let dir = edited_model(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chain_a"),
        |j| {
            // Feed dense_1 from the pooling layer as well as dense: two inputs.
            let layers = layers(j);
            let last = layers.last_mut().unwrap();
            let arg = last["inbound_nodes"][0]["args"][0].clone();
            let mut other = arg.clone();
            other["config"]["keras_history"][0] = "global_average_pooling2d".into();
            last["inbound_nodes"][0]["args"] = Value::Array(vec![arg, other]);
        },
        |_| {},
    );
    let err = load_err(dir.path());
    assert!(matches!(&err, Error::ModelFormat { reason, .. } if reason.contains("takes 2 inputs")), "{err}");
}

#[test]
fn bad_batches_are_typed_errors() {
    let Some(gpu) = gpu() else { return };
    let model = SiameseModel::load_on(gpu, chain_b_dir()).unwrap();
    let sample = 9 * 11 * 2;
    let ok = Array::new(vec![2, 9, 11, 2], vec![0.5; 2 * sample]).unwrap();

    let wrong_shape = Array::new(vec![2, 11, 9, 2], vec![0.5; 2 * sample]).unwrap();
    assert!(
        matches!(model.distances(&wrong_shape, &ok, Distance::Euclidean), Err(Error::ShapeMismatch { op, .. }) if op == "left")
    );
    let wrong_rank = Array::new(vec![2 * sample], vec![0.5; 2 * sample]).unwrap();
    assert!(
        matches!(model.distances(&ok, &wrong_rank, Distance::Euclidean), Err(Error::ShapeMismatch { op, .. }) if op == "right")
    );

    let empty = Array::new(vec![0, 9, 11, 2], vec![]).unwrap();
    assert!(matches!(model.distances(&empty, &empty, Distance::Euclidean), Err(Error::InvalidInput { .. })));
    assert!(matches!(model.embed(&empty), Err(Error::InvalidInput { .. })));

    let one = Array::new(vec![1, 9, 11, 2], vec![0.5; sample]).unwrap();
    assert!(
        matches!(model.distances(&ok, &one, Distance::Euclidean), Err(Error::ShapeMismatch { op, .. }) if op == "pairs")
    );

    let mut data = vec![0.5; 2 * sample];
    data[17] = f32::NAN;
    let nan = Array::new(vec![2, 9, 11, 2], data).unwrap();
    let err = model.distances(&ok, &nan, Distance::Cosine).unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { what, reason } if what == "right" && reason.contains("17")), "{err}");
    let mut data = vec![0.5; 2 * sample];
    data[3] = f32::INFINITY;
    assert!(model.embed(&Array::new(vec![2, 9, 11, 2], data).unwrap()).is_err());

    // Good input still works after all that.
    assert_eq!(model.distances(&ok, &ok, Distance::Euclidean).unwrap(), vec![0.0, 0.0]);

    // Allowed on purpose, the batch runs (what a NaN becomes depends on the layers: ReLU and
    // max-pooling may drop it); the other pair is unaffected.
    let mut model = model;
    model.set_allow_nonfinite(true);
    let d = model.distances(&ok, &nan, Distance::Euclidean).unwrap();
    assert!(d[1] == 0.0 && d.len() == 2, "{d:?}");
}

#[test]
fn bad_arrays_and_files() {
    assert!(matches!(Array::new(vec![2, 3], vec![0.0; 5]), Err(Error::ShapeMismatch { .. })));
    let dir = tempfile::tempdir().unwrap();

    // Integer arrays (token ids) are read exactly; beyond 2^24 or of another dtype, a typed error.
    let write = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let path = dir.path().join(name);
        let mut bytes = Vec::new();
        f(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        path
    };
    use npyz::WriterBuilder;
    let ints = write("ints.npy", &|bytes| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[3]).writer(bytes).begin_nd().unwrap();
        w.extend([1i32, 2, 3]).unwrap();
        w.finish().unwrap();
    });
    assert_eq!(read_npy(&ints).unwrap().data(), &[1.0, 2.0, 3.0]);
    let huge = write("huge.npy", &|bytes| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[2]).writer(bytes).begin_nd().unwrap();
        w.extend([1i64, 1 << 30]).unwrap();
        w.finish().unwrap();
    });
    assert!(matches!(read_npy(&huge), Err(Error::Decode { reason, .. }) if reason.contains("1073741824")));
    let unsigned64 = write("u8.npy", &|bytes| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[1]).writer(bytes).begin_nd().unwrap();
        w.extend([7u64]).unwrap();
        w.finish().unwrap();
    });
    assert!(matches!(read_npy(&unsigned64), Err(Error::Decode { reason, .. }) if reason.contains("u8")));

    // i64::MIN.abs() overflows: it must still be refused, not cast.
    let most_negative = write("min.npy", &|bytes| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[2]).writer(bytes).begin_nd().unwrap();
        w.extend([1i64, i64::MIN]).unwrap();
        w.finish().unwrap();
    });
    let err = read_npy(&most_negative).unwrap_err();
    assert!(matches!(&err, Error::Decode { reason, .. } if reason.contains(&i64::MIN.to_string())), "{err}");

    let truncated = dir.path().join("truncated.npy");
    let good = std::fs::read(cnn_dir().join("pairs/left.npy")).unwrap();
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    let full = read_npy(cnn_dir().join("pairs/left.npy")).unwrap();
    let (values, bytes) = (full.data().len(), 4 * full.data().len());
    let err = read_npy(&truncated).unwrap_err();
    let says = format!(
        "truncated .npy: the header declares shape {:?} ({values} values of dtype <f4 = {bytes} bytes), \
         the file holds only {} bytes of data",
        full.shape(),
        bytes - 100
    );
    assert!(matches!(&err, Error::Decode { reason, .. } if *reason == says), "{err}");
    let lengths = write("lengths.npy", &|bytes| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[4]).writer(bytes).begin_nd().unwrap();
        w.extend([1i64, 2, 3, 4]).unwrap();
        w.finish().unwrap();
    });
    let cut = std::fs::read(&lengths).unwrap();
    std::fs::write(&lengths, &cut[..cut.len() - 3]).unwrap();
    let err = siamese_wgpu::io::read_lengths(&lengths).unwrap_err();
    assert!(err.to_string().contains("truncated .npy: the header declares shape [4]"), "{err}");

    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"hello").unwrap();
    assert!(matches!(read_npy(&garbage), Err(Error::Decode { .. })));
    assert!(matches!(read_npy(dir.path().join("missing.npy")), Err(Error::Io { .. })));

    let fake_png = dir.path().join("fake.png");
    std::fs::write(&fake_png, b"not a png at all").unwrap();
    assert!(matches!(read_png(&fake_png, Some(1)), Err(Error::Decode { .. })));

    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    siamese_wgpu::io::write_png_gray(&a, 4, 5, &[0.5; 20]).unwrap();
    siamese_wgpu::io::write_png_gray(&b, 5, 4, &[0.5; 20]).unwrap();
    assert!(matches!(read_batch(&[&a, &b], Some(1)), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(read_batch(&[&a, &ints], Some(1)), Err(Error::Decode { .. })));

    // A PNG for a model that takes no images says so (it used to say "cannot convert to
    // 12 channels": the CLI passes the input's last dimension as the channel count).
    let err = read_png(&a, Some(12)).unwrap_err();
    assert!(err.to_string().contains("PNG images need a model whose input is [height, width, 1 or 3]"), "{err}");
    let err = read_png_for(&a, &[12]).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { what, reason } if what.ends_with("a.png")
            && reason.ends_with("need a model whose input is [height, width, 1 or 3]; this model's input is [12]")),
        "{err}"
    );
    for input in [&[28, 28, 2][..], &[28, 28][..], &[0, 16][..]] {
        assert!(matches!(read_batch_for(&[&a], input), Err(Error::InvalidInput { .. })), "{input:?}");
        assert!(matches!(read_samples_for(&[&a], input), Err(Error::InvalidInput { .. })), "{input:?}");
    }
    // The right model shape reads; the wrong size is named from the header.
    assert_eq!(read_png_for(&a, &[4, 5, 3]).unwrap().shape(), &[1, 4, 5, 3]);
    assert_eq!(read_batch_for(&[&a, &a], &[4, 5, 1]).unwrap().shape(), &[2, 4, 5, 1]);
    assert_eq!(read_samples_for(&[&a], &[4, 5, 1]).unwrap().shape(), &[1, 4, 5, 1]);
    let err = read_batch_for(&[&a, &b], &[4, 5, 1]).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { op, expected, got } if op.ends_with("b.png")
            && expected.contains("4×5") && got.contains("5×4")),
        "{err}"
    );
    // .npy inputs are the model's to check: not refused for an image-less model.
    assert_eq!(read_samples_for(&[&ints], &[3]).unwrap().shape(), &[1, 3]);
}

#[test]
fn a_missing_file_names_its_cause_once() {
    // Error::Io displayed the OS error and also returned it as source(): anyhow's `{:#}`
    // printed "No such file or directory (os error 2)" twice.
    let err = read_npy("/no/such/dir/missing.npy").unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err}");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain += &format!(": {cause}");
        source = cause.source();
    }
    assert!(chain.starts_with("/no/such/dir/missing.npy"), "{chain}");
    assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
}

#[test]
fn bad_gpu_choice_is_a_typed_error() {
    assert!(matches!(GpuOptions::parse(Some("cuda"), None), Err(Error::InvalidEnv { var: "SIAMESE_BACKEND", .. })));
    assert!(GpuOptions::parse(Some("vulkan,gl"), Some("")).is_ok());
    let Some(_) = gpu() else { return };
    let options = GpuOptions::parse(None, Some("no such adapter 12345")).unwrap();
    let err = siamese_wgpu::Gpu::with_options(&options).unwrap_err();
    assert!(matches!(&err, Error::AdapterNotFound { .. }), "{err}");
    assert!(err.to_string().contains("adapters found"));
}

/// The environment's values as `from_env` reads them, given directly: the process
/// environment is shared by the test threads.
#[cfg(unix)]
#[test]
fn gpu_env_values_that_are_not_unicode_are_named() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // Not valid Unicode: an error naming the variable, not silently "unset".
    let not_unicode = OsStr::from_bytes(b"vulk\xffan");
    let err = GpuOptions::from_os(Some(not_unicode), None).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidEnv { var: "SIAMESE_BACKEND", value, .. } if value.starts_with("vulk")),
        "{err}"
    );
    let err = GpuOptions::from_os(None, Some(not_unicode)).unwrap_err();
    assert!(matches!(&err, Error::InvalidEnv { var: "SIAMESE_ADAPTER", .. }), "{err}");
    let options = GpuOptions::from_os(Some(OsStr::new("vulkan")), Some(OsStr::new(" llvmpipe "))).unwrap();
    assert_eq!((options.backends, options.adapter_name.as_deref()), (Some(wgpu::Backends::VULKAN), Some("llvmpipe")));
}

#[test]
fn no_adapter_message_says_how_to_get_one() {
    let message = Error::NoAdapter { detail: String::new() }.to_string();
    assert!(message.contains("mesa-vulkan-drivers"), "{message}");
}
