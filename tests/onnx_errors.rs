//! Bad ONNX files are clear errors, never panics: graphs built here with the protobuf
//! messages (`onnx-protobuf`), written to a temporary folder and loaded as a user would.
//! Every case starts from a graph that loads and checks against a plain NCHW reference,
//! so each error is caused by the one thing changed.

mod common;

use std::path::{Path, PathBuf};

use common::onnx::{floats, load_err, value_info};
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
};
use siamese_wgpu::model::{self, onnx};
use siamese_wgpu::Error;

fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.ints = values.to_vec();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::INTS.into();
    a
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{output}");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n.attribute = attrs;
    n
}

/// Conv(2 → 3, 3×3, pads 1) → Relu → Flatten of the 3×4×5 map (NCHW order) → output.
fn conv_model() -> ModelProto {
    let weights: Vec<f32> = (0..3 * 2 * 3 * 3).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
    let mut graph = GraphProto::new();
    graph.name = "conv".into();
    graph.input.push(value_info("x", &[None, Some(2), Some(4), Some(5)]));
    graph.output.push(value_info("y", &[None, Some(60)]));
    graph.initializer.push(floats("w", &[3, 2, 3, 3], &weights));
    graph.initializer.push(floats("b", &[3], &[0.1, -0.2, 0.3]));
    graph.node.push(node("Conv", &["x", "w", "b"], "c", vec![ints_attr("pads", &[1, 1, 1, 1])]));
    graph.node.push(node("Relu", &["c"], "r", vec![]));
    graph.node.push(node("Flatten", &["r"], "y", vec![]));
    let mut opset = OperatorSetIdProto::new();
    opset.version = 17;
    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.opset_import.push(opset);
    model.graph = Some(graph).into();
    model
}

fn write(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
    path
}

/// The plain NCHW reference of [`conv_model`] for one sample.
fn conv_reference(model: &ModelProto, x: &[f32]) -> Vec<f32> {
    let graph = model.graph.as_ref().unwrap();
    let w: Vec<f32> =
        graph.initializer[0].raw_data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let b = [0.1f32, -0.2, 0.3];
    let (h, wd) = (4usize, 5usize);
    let mut out = vec![0.0; 3 * h * wd];
    for o in 0..3 {
        for y in 0..h {
            for xx in 0..wd {
                let mut sum = b[o];
                for i in 0..2 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                sum += x[(i * h + iy as usize) * wd + ix as usize] * w[((o * 2 + i) * 3 + ky) * 3 + kx];
                            }
                        }
                    }
                }
                out[(o * h + y) * wd + xx] = sum.max(0.0);
            }
        }
    }
    out
}

#[test]
fn the_base_graph_loads_and_matches_a_plain_nchw_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = conv_model();
    let spec = model::load(write(dir.path(), "conv.onnx", &model)).unwrap();
    assert_eq!(spec.input_shape, [2, 4, 5]);
    let x: Vec<f32> = (0..2 * 4 * 5).map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0).collect();
    let got = spec.reference_forward(&x, 1).unwrap();
    let want = conv_reference(&model, &x);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-5, "value {i}: {g} vs {w}");
    }
}

#[test]
fn an_unknown_op_names_the_op_the_node_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    model.graph.as_mut().unwrap().node[1].op_type = "Frobnicate".into();
    let path = write(dir.path(), "unknown.onnx", &model);
    let err = model::load(&path).unwrap_err();
    assert!(matches!(err, Error::UnsupportedOp { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("op Frobnicate") && text.contains("\"Relu_r\"") && text.contains("unknown.onnx"), "{text}");
    assert!(text.contains("Conv") && text.contains("BatchNormalization"), "lists what runs: {text}");
}

#[test]
fn a_cycle_or_a_dangling_name_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    // Relu reads the Flatten's output, which is made after it.
    model.graph.as_mut().unwrap().node[1].input[0] = "y".into();
    let text = load_err(&write(dir.path(), "cycle.onnx", &model));
    assert!(text.contains("cycle") && text.contains("\"y\""), "{text}");
}

#[test]
fn a_value_made_twice_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    // Relu writes "c" again, the Conv's output.
    model.graph.as_mut().unwrap().node[1].output[0] = "c".into();
    let text = load_err(&write(dir.path(), "twice.onnx", &model));
    assert!(text.contains("\"c\"") && text.contains("already defined"), "{text}");
}

#[test]
fn erf_outside_gelu_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    model.graph.as_mut().unwrap().node[1].op_type = "Erf".into();
    let text = load_err(&write(dir.path(), "erf.onnx", &model));
    assert!(text.contains("Erf") && text.contains("GELU"), "{text}");
}

#[test]
fn a_dynamic_spatial_axis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    let graph = model.graph.as_mut().unwrap();
    graph.input[0] = value_info("x", &[None, Some(2), None, Some(5)]);
    let text = load_err(&write(dir.path(), "dynamic.onnx", &model));
    assert!(text.contains("axis 2") && text.contains("only the batch axis may vary"), "{text}");
}

#[test]
fn truncated_and_foreign_bytes_are_format_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = conv_model().write_to_bytes().unwrap();
    for (name, data) in
        [("truncated.onnx", &bytes[..bytes.len() / 2]), ("text.onnx", b"not a protobuf at all".as_slice())]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let err = model::load(&path).unwrap_err();
        assert!(matches!(err, Error::ModelFormat { .. }), "{name}: {err}");
    }
}

#[test]
fn external_data_is_read_and_its_absence_or_shortness_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    // Move the weight into w.data at offset 8, as the exporters write it.
    let w = &mut model.graph.as_mut().unwrap().initializer[0];
    let raw = std::mem::take(&mut w.raw_data);
    let mut data = vec![0u8; 8];
    data.extend_from_slice(&raw);
    w.data_location = DataLocation::EXTERNAL.into();
    let entry = |k: &str, v: String| {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v;
        e
    };
    w.external_data =
        vec![entry("location", "w.data".into()), entry("offset", "8".into()), entry("length", raw.len().to_string())];
    let path = write(dir.path(), "external.onnx", &model);
    let err = model::load(&path).unwrap_err().to_string();
    assert!(err.contains("w.data") && err.contains("external data"), "missing file: {err}");
    std::fs::write(dir.path().join("w.data"), &data[..data.len() - 4]).unwrap();
    let err = model::load(&path).unwrap_err().to_string();
    assert!(err.contains("w.data") && err.contains("offset 8"), "short file: {err}");
    std::fs::write(dir.path().join("w.data"), &data).unwrap();
    model::load(&path).unwrap();
    // A location outside the model's folder is refused.
    let w = &mut model.graph.as_mut().unwrap().initializer[0];
    w.external_data[0].value = "../w.data".into();
    let err = load_err(&write(dir.path(), "escape.onnx", &model));
    assert!(err.contains("model's folder"), "{err}");
}

#[test]
fn two_inputs_an_old_opset_and_no_graph_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut two = conv_model();
    two.graph.as_mut().unwrap().input.push(value_info("x2", &[None, Some(2), Some(4), Some(5)]));
    let err = load_err(&write(dir.path(), "two.onnx", &two));
    assert!(err.contains("2 inputs"), "{err}");
    let mut old = conv_model();
    old.opset_import[0].version = 7;
    let err = load_err(&write(dir.path(), "old.onnx", &old));
    assert!(err.contains("opset 7"), "{err}");
    let mut empty = conv_model();
    empty.graph = None.into();
    let err = load_err(&write(dir.path(), "empty.onnx", &empty));
    assert!(err.contains("no graph"), "{err}");
}

#[test]
fn a_wrong_weight_shape_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = conv_model();
    // Declared 3×2×3×3 but the data holds one value less.
    let w = &mut model.graph.as_mut().unwrap().initializer[0];
    w.raw_data.truncate(w.raw_data.len() - 4);
    let err = load_err(&write(dir.path(), "short.onnx", &model));
    assert!(err.contains("\"w\"") && err.contains("bytes"), "{err}");
    // A Conv weight whose input channels do not match the image.
    let mut model = conv_model();
    model.graph.as_mut().unwrap().initializer[0] = floats("w", &[3, 1, 3, 3], &[0.5; 27]);
    let err = load_err(&write(dir.path(), "channels.onnx", &model));
    assert!(err.contains("Conv_c") && err.contains("input channels"), "{err}");
}

#[test]
fn onnx_files_are_recognised_by_extension() {
    assert!(onnx::is_onnx_file(Path::new("a/model.ONNX")));
    assert!(!onnx::is_onnx_file(Path::new("a/model.onnx.data")));
}
