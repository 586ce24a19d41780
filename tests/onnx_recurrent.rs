//! ONNX `LSTM` / `GRU` graphs built here (as PyTorch's TorchScript exporter lays them
//! out: a batch-first input, `Transpose [1, 0, 2]` to time-major, the op, then `Y_h` or `Y`
//! back to batch-first) against a plain CPU reference written from the ONNX operator
//! definitions (gates i, o, f, c and z, r, h; `W`, `R`, `B = [Wb, Rb]`), on random weights
//! and shapes that are not multiples of anything. Also the errors: states that are not
//! zero, `sequence_lens`, time-major tensors read by ops that do not know them.

mod common;

use std::path::{Path, PathBuf};

use common::onnx::{load_err, value_info};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use siamese_wgpu::{model, Array, Distance, SiameseModel};

fn floats(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    common::onnx::floats(name, &dims, values)
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: v, type_: AttributeType::INT.into(), ..Default::default() }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v.to_vec(), type_: AttributeType::INTS.into(), ..Default::default() }
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        type_: AttributeType::STRING.into(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outputs[0]),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Deterministic values in about [-0.6, 0.6).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.2
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Lstm,
    Gru { linear_before_reset: bool },
}

impl Kind {
    fn gates(self) -> usize {
        if self == Kind::Lstm {
            4
        } else {
            3
        }
    }
}

struct Case {
    kind: Kind,
    steps: usize,
    features: usize,
    hidden: usize,
    directions: usize,
    /// Read `Y` (every step, averaged over time) instead of `Y_h`.
    sequences: bool,
}

impl Case {
    fn weights(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let g = self.kind.gates() * self.hidden;
        let d = self.directions;
        (random(d * g * self.features, 1), random(d * g * self.hidden, 2), random(d * 2 * g, 3))
    }

    /// x [batch, steps, features] → Transpose → op → Y_h [dirs, batch, H] → Transpose →
    /// Reshape [batch, dirs·H]; or Y [steps, dirs, batch, H] → Transpose [2, 0, 1, 3] →
    /// Reshape [batch, steps, dirs·H] → ReduceMean over steps.
    fn model(&self) -> ModelProto {
        let (w, r, b) = self.weights();
        let g = self.kind.gates() * self.hidden;
        let d = self.directions;
        let width = (d * self.hidden) as i64;
        let mut graph = GraphProto::new();
        graph.input.push(value_info("x", &[None, Some(self.steps as i64), Some(self.features as i64)]));
        graph.output.push(value_info("y", &[None, Some(width)]));
        graph.initializer.push(floats("W", &[d, g, self.features], &w));
        graph.initializer.push(floats("R", &[d, g, self.hidden], &r));
        graph.initializer.push(floats("B", &[d, 2 * g], &b));
        let shape = |name: &str, v: &[i64]| TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: 7,
            int64_data: v.to_vec(),
            ..Default::default()
        };
        graph.node.push(node("Transpose", &["x"], &["xt"], vec![attr_ints("perm", &[1, 0, 2])]));
        let mut attrs = vec![attr_int("hidden_size", self.hidden as i64)];
        if d == 2 {
            attrs.push(attr_string("direction", "bidirectional"));
        }
        if let Kind::Gru { linear_before_reset: true } = self.kind {
            attrs.push(attr_int("linear_before_reset", 1));
        }
        let op = if self.kind == Kind::Lstm { "LSTM" } else { "GRU" };
        graph.node.push(node(op, &["xt", "W", "R", "B"], &["Y", "Y_h"], attrs));
        if self.sequences {
            graph.initializer.push(shape("seq_shape", &[0, 0, -1]));
            graph.node.push(node("Transpose", &["Y"], &["Yt"], vec![attr_ints("perm", &[2, 0, 1, 3])]));
            graph.node.push(node("Reshape", &["Yt", "seq_shape"], &["Ys"], vec![]));
            graph.node.push(node(
                "ReduceMean",
                &["Ys"],
                &["y"],
                vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
            ));
        } else {
            graph.initializer.push(shape("flat", &[0, -1]));
            graph.node.push(node("Transpose", &["Y_h"], &["Yht"], vec![attr_ints("perm", &[1, 0, 2])]));
            graph.node.push(node("Reshape", &["Yht", "flat"], &["y"], vec![]));
        }
        let mut model = ModelProto::new();
        model.ir_version = 8;
        model.opset_import.push(OperatorSetIdProto { version: 13, ..Default::default() });
        model.graph = Some(graph).into();
        model
    }

    /// The ONNX definitions, one sample `x [steps, features]`: `[dirs·H]` (the final
    /// states, forward first) or the mean over time of `[steps, dirs·H]`.
    fn reference(&self, x: &[f32]) -> Vec<f32> {
        let (w, r, b) = self.weights();
        let (h_n, f_n, t_n) = (self.hidden, self.features, self.steps);
        let g = self.kind.gates() * h_n;
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut finals = Vec::new();
        let mut seq = vec![vec![0.0f64; self.directions * h_n]; t_n];
        for d in 0..self.directions {
            let (w, r, b) = (&w[d * g * f_n..], &r[d * g * h_n..], &b[d * 2 * g..]);
            // Row j of W·x (+ Wb) and of R·h (+ Rb).
            let wx = |t: usize, j: usize| {
                b[j] as f64 + (0..f_n).map(|i| w[j * f_n + i] as f64 * x[t * f_n + i] as f64).sum::<f64>()
            };
            let rh =
                |h: &[f64], j: usize| b[g + j] as f64 + (0..h_n).map(|i| r[j * h_n + i] as f64 * h[i]).sum::<f64>();
            let (mut h, mut c) = (vec![0.0f64; h_n], vec![0.0f64; h_n]);
            let order: Vec<usize> = if d == 0 { (0..t_n).collect() } else { (0..t_n).rev().collect() };
            for t in order {
                let mut next = vec![0.0; h_n];
                for u in 0..h_n {
                    match self.kind {
                        Kind::Lstm => {
                            // Blocks i, o, f, c.
                            let gate = |k: usize| wx(t, k * h_n + u) + rh(&h, k * h_n + u);
                            let (i, o, f, cc) = (sigmoid(gate(0)), sigmoid(gate(1)), sigmoid(gate(2)), gate(3).tanh());
                            c[u] = f * c[u] + i * cc;
                            next[u] = o * c[u].tanh();
                        }
                        Kind::Gru { linear_before_reset } => {
                            // Blocks z, r, h.
                            let z = sigmoid(wx(t, u) + rh(&h, u));
                            let rr = sigmoid(wx(t, h_n + u) + rh(&h, h_n + u));
                            let j = 2 * h_n + u;
                            let cand = if linear_before_reset {
                                (wx(t, j) + rr * rh(&h, j)).tanh()
                            } else {
                                let reset = |k: usize| sigmoid(wx(t, h_n + k) + rh(&h, h_n + k));
                                let gated: Vec<f64> = (0..h_n).map(|k| reset(k) * h[k]).collect();
                                (wx(t, j) + rh(&gated, j)).tanh()
                            };
                            next[u] = (1.0 - z) * cand + z * h[u];
                        }
                    }
                }
                h = next;
                seq[t][d * h_n..(d + 1) * h_n].copy_from_slice(&h);
            }
            finals.extend(h);
        }
        let out: Vec<f64> = if self.sequences {
            (0..self.directions * h_n).map(|k| seq.iter().map(|s| s[k]).sum::<f64>() / t_n as f64).collect()
        } else {
            finals
        };
        out.into_iter().map(|v| v as f32).collect()
    }
}

fn write(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
    path
}

const CASES: &[(&str, Kind, usize, usize, usize, usize, bool)] = &[
    ("lstm", Kind::Lstm, 7, 5, 9, 1, false),
    ("lstm_bidirectional_sequence", Kind::Lstm, 6, 3, 11, 2, true),
    ("gru_reset_after", Kind::Gru { linear_before_reset: true }, 5, 4, 7, 2, false),
    ("gru_reset_before_sequence", Kind::Gru { linear_before_reset: false }, 8, 6, 5, 1, true),
];

#[test]
fn lstm_and_gru_match_the_onnx_definitions_on_the_gpu_and_the_cpu_reference() {
    let gpu = common::gpu().expect("no GPU adapter: the ONNX tests need one (lavapipe in CI)");
    let dir = tempfile::tempdir().unwrap();
    for &(name, kind, steps, features, hidden, directions, sequences) in CASES {
        let case = Case { kind, steps, features, hidden, directions, sequences };
        let path = write(dir.path(), &format!("{name}.onnx"), &case.model());
        let rows = 3;
        let x = random(rows * steps * features, 7);
        let want: Vec<f32> = x.chunks(steps * features).flat_map(|s| case.reference(s)).collect();
        let spec = model::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cpu = spec.reference_forward(&x, rows).unwrap();
        common::assert_close(&format!("{name} (CPU reference)"), &cpu, &want, 1e-5, 1e-4);
        let model = SiameseModel::load_on(gpu.clone(), &path).unwrap();
        let input = Array::new(vec![rows, steps, features], x.clone()).unwrap();
        let got = model.embed(&input).unwrap();
        common::assert_close(&format!("{name} (GPU)"), got.data(), &want, 1e-5, 1e-4);
        let pairs = model.pairs(&input, &input, Distance::Euclidean, false).unwrap();
        assert!(pairs.distances.iter().all(|&d| d == 0.0), "{name}: identical twins");
    }
}

#[test]
fn states_packed_sequences_and_misread_time_major_tensors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case { kind: Kind::Lstm, steps: 4, features: 3, hidden: 5, directions: 1, sequences: false };
    // A non-zero initial state.
    let mut m = case.model();
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.push(floats("h0", &[1, 1, 5], &[0.5; 5]));
    graph.node[1].input.extend(["".to_string(), "h0".to_string()]);
    let err = load_err(&write(dir.path(), "h0.onnx", &m));
    assert!(err.contains("initial_h") && err.contains("zero"), "{err}");
    // sequence_lens (a packed-sequence export).
    let mut m = case.model();
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.push(TensorProto {
        name: "lens".into(),
        dims: vec![1],
        data_type: 6,
        int32_data: vec![4],
        ..Default::default()
    });
    graph.node[1].input.push("lens".into());
    let err = load_err(&write(dir.path(), "lens.onnx", &m));
    assert!(err.contains("sequence_lens"), "{err}");
    // A time-major tensor read by an op that takes batch-first tensors.
    let mut m = case.model();
    let graph = m.graph.as_mut().unwrap();
    graph.node.insert(1, node("Relu", &["xt"], &["xr"], vec![]));
    graph.node[2].input[0] = "xr".into();
    let err = load_err(&write(dir.path(), "relu.onnx", &m));
    assert!(err.contains("Relu") && err.contains("batch axis is at position 1"), "{err}");
    // A direction the engine does not run.
    let mut m = case.model();
    m.graph.as_mut().unwrap().node[1].attribute.push(attr_string("direction", "reverse"));
    let err = load_err(&write(dir.path(), "reverse.onnx", &m));
    assert!(err.contains("reverse"), "{err}");
    // Weights for another hidden size.
    let mut m = case.model();
    m.graph.as_mut().unwrap().node[1].attribute[0] = attr_int("hidden_size", 6);
    let err = load_err(&write(dir.path(), "hidden.onnx", &m));
    assert!(err.contains("hidden_size 6"), "{err}");
}
