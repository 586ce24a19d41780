//! ONNX `LSTM` and `GRU` (as both PyTorch exporters write `nn.LSTM` / `nn.GRU`) → the
//! engine's [`Recurrent`] layer, the one the Keras importer builds.
//!
//! - Gates: ONNX orders LSTM blocks i, o, f, c and GRU blocks z, r, h; the engine (Keras)
//!   i, f, c, o and z, r, h. `W [dirs, gates·H, in]` and `R [dirs, gates·H, H]` become the
//!   `[in, gates·H]` / `[H, gates·H]` kernels; `B [dirs, 2·gates·H]` the input and the
//!   recurrent bias (a GRU with `linear_before_reset` is Keras' `reset_after`).
//! - Layout: with `layout` 0 (PyTorch's) `X` is time-major `[steps, batch, in]`, which the
//!   engine holds batch-first already (a Transpose before it only relabels the axes); `Y` is
//!   `[steps, dirs, batch, H]` and `Y_h` `[dirs, batch, H]`: the engine's sequence output
//!   `[batch, steps, dirs·H]` and last state `[batch, dirs·H]`, the same values in order.
//! - Forward and bidirectional run; initial states must be absent or zeros, as PyTorch
//!   exports them for `h0 = None`. `Y_c`, `sequence_lens` (packed sequences), peepholes,
//!   `clip`, other activations and `reverse` alone are errors.

use onnx_protobuf::NodeProto;

use super::{Importer, Value};
use crate::error::Result;
use crate::layers::Recurrent;
use crate::model::onnx::file::Attributes;
use crate::ops::{Activation, Cell, DirectionWeights, RecurrentConfig};

impl Importer<'_> {
    pub(super) fn recurrent(&mut self, node: &NodeProto, attrs: &Attributes) -> Result<()> {
        let lstm = node.op_type == "LSTM";
        let (gates, cell) = if lstm {
            (4, Cell::Lstm)
        } else {
            (3, Cell::Gru { reset_after: attrs.int("linear_before_reset", 0) != 0 })
        };
        let units = usize::try_from(attrs.int("hidden_size", 0)).unwrap_or(0);
        let directions = match attrs.string("direction", "forward").as_str() {
            "forward" => 1,
            "bidirectional" => 2,
            other => {
                return Err(self.file.error(format!("direction {other:?} (forward and bidirectional run)")));
            }
        };
        let time_major = attrs.int("layout", 0) == 0;
        if attrs.has("clip") || attrs.int("input_forget", 0) != 0 {
            return Err(self.file.error("clip / input_forget are not supported"));
        }
        if let Some(names) = attrs.strings("activations") {
            let want: &[&str] = if lstm { &["Sigmoid", "Tanh", "Tanh"] } else { &["Sigmoid", "Tanh"] };
            if names.chunks(want.len()).any(|chunk| chunk != want) {
                return Err(self.file.error(format!("activations {names:?} (the defaults {want:?} run)")));
            }
        }
        // Inputs: X, W, R, B, sequence_lens, initial_h (, initial_c, P for LSTM).
        let Value::Tensor { value, dims, batch, .. } = self.input(node, 0)? else {
            return Err(self.file.error("X (input 0) must be a computed tensor"));
        };
        let want_batch = usize::from(time_major);
        let &[steps, input_size] = dims.as_slice() else {
            return Err(self.file.error(format!("X of a sample {dims:?} ([steps, features] runs)")));
        };
        if batch != want_batch {
            return Err(self.file.error(format!(
                "X has its batch axis at {batch}; layout {} reads it at {want_batch}",
                u8::from(!time_major)
            )));
        }
        if self.optional(node, 4)?.is_some() {
            return Err(self.file.error(
                "sequence_lens is set (a model exported from packed sequences): export the encoder on padded \
                 batches without pack_padded_sequence",
            ));
        }
        for (i, what) in [(5, "initial_h"), (6, "initial_c")] {
            let zero = match self.optional(node, i)? {
                None => true,
                Some(Value::Fill { value, .. }) => value == 0.0,
                Some(Value::Const(t)) => t.floats().iter().all(|&v| v == 0.0),
                Some(Value::Tensor { .. }) => false,
            };
            if !zero {
                return Err(self.file.error(format!("{what} is not zero (only zero initial states run)")));
            }
        }
        if lstm && self.optional(node, 7)?.is_some() {
            return Err(self.file.error("peephole weights P are not supported"));
        }
        let g = gates * units;
        let w = self.constant(node, 1, "W")?;
        let r = self.constant(node, 2, "R")?;
        if units == 0 || w.dims != [directions, g, input_size] || r.dims != [directions, g, units] {
            return Err(self.file.error(format!(
                "W {:?} and R {:?} for hidden_size {units}, {directions} direction(s) and {input_size} input features",
                w.dims, r.dims
            )));
        }
        let b = match self.optional(node, 3)? {
            None => vec![0.0; directions * 2 * g],
            Some(Value::Const(t)) if t.dims == [directions, 2 * g] => t.floats(),
            Some(Value::Const(t)) => {
                return Err(self.file.error(format!("B {:?} (expected [{directions}, {}])", t.dims, 2 * g)))
            }
            Some(_) => return Err(self.file.error("B must be a constant")),
        };
        // Engine gate block k is ONNX block order[k].
        let order: &[usize] = if lstm { &[0, 2, 3, 1] } else { &[0, 1, 2] };
        let (w, r) = (w.floats(), r.floats());
        let reorder_rows = |m: &[f32], width: usize| -> Vec<f32> {
            // ONNX rows (gate·H + u) × width → engine [width, gates·H].
            let mut out = vec![0.0; width * g];
            for (k, &onnx_gate) in order.iter().enumerate() {
                for u in 0..units {
                    for i in 0..width {
                        out[i * g + k * units + u] = m[(onnx_gate * units + u) * width + i];
                    }
                }
            }
            out
        };
        let reorder = |v: &[f32]| -> Vec<f32> {
            order.iter().flat_map(|&onnx_gate| v[onnx_gate * units..(onnx_gate + 1) * units].iter().copied()).collect()
        };
        let reset_before = matches!(cell, Cell::Gru { reset_after: false });
        let weights: Vec<DirectionWeights> = (0..directions)
            .map(|d| {
                let bias = &b[d * 2 * g..(d + 1) * 2 * g];
                let (wb, rb) = (reorder(&bias[..g]), reorder(&bias[g..]));
                let (input_bias, recurrent_bias) = if reset_before {
                    // Keras' reset-before GRU has one bias; ONNX adds both outside the gate.
                    (wb.iter().zip(&rb).map(|(a, b)| a + b).collect(), vec![0.0; g])
                } else {
                    (wb, rb)
                };
                DirectionWeights {
                    kernel: reorder_rows(&w[d * g * input_size..(d + 1) * g * input_size], input_size),
                    recurrent_kernel: reorder_rows(&r[d * g * units..(d + 1) * g * units], units),
                    input_bias,
                    recurrent_bias,
                }
            })
            .collect();
        let used: Vec<bool> = (0..3)
            .map(|i| node.output.get(i).is_some_and(|n| !n.is_empty() && self.uses.get(n).is_some_and(|&c| c > 0)))
            .collect();
        if lstm && used[2] {
            return Err(self.file.error("Y_c (the last cell state) is read: the last hidden state Y_h or Y run"));
        }
        let config = |return_sequences: bool| RecurrentConfig {
            cell,
            input_size,
            units,
            directions,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            return_sequences,
        };
        for (output, sequences) in [(0, true), (1, false)] {
            if !used[output] {
                continue;
            }
            let layer = Recurrent { config: config(sequences), weights: weights.clone() };
            let name = if sequences { format!("{}/Y", node.name) } else { format!("{}/Y_h", node.name) };
            let out = self.push(&name, layer, vec![value]);
            let (dims, batch) = if sequences {
                (vec![steps, directions, units], if time_major { 2 } else { 0 })
            } else {
                (vec![directions, units], usize::from(time_major))
            };
            // The engine's [batch, steps, dirs·H] / [batch, dirs·H], viewed with ONNX's axes.
            let shaped = self.push(
                &format!("{name}/axes"),
                crate::layers::Reshape { target: dims.iter().map(|&d| Some(d)).collect() },
                vec![out],
            );
            self.values.insert(node.output[output].clone(), Value::Tensor { value: shaped, dims, nhwc: false, batch });
        }
        Ok(())
    }
}
