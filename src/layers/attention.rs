//! MultiHeadAttention as self-attention (query = key = value), Keras semantics: `q, k, v =
//! x W + b` with `(dim, heads, key_dim)` kernels, scale `1/sqrt(key_dim)`, softmax over
//! keys (the real ones only when `masked`), output projection `(heads, key_dim, dim)`.
//! BERT's self-attention is this layer with `key_dim = hidden / heads`, masked. Kernel
//! family: `ops::attention` (a fused Q|K|V GEMM, the attention core, the output GEMM).

use super::sequence_pool::ONES;
use super::{btf, rows_for_items, Inputs, Io, Kernel, LayerOp, PlanContext, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Activation, Dispatch, MultiHeadAttentionWeights, Precision};
use crate::reference;

const QKV: &str = "attention q|k|v";
const CONTEXT: &str = "attention context";

/// Self-attention over `[batch, steps, dim]`.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// Heads.
    pub heads: usize,
    /// Size of each head (Keras `key_dim`).
    pub key_dim: usize,
    /// Weights in Keras layouts, flattened.
    pub weights: MultiHeadAttentionWeights,
    /// Keys at padded steps (the step mask's zeros) get no weight.
    pub masked: bool,
}

impl MultiHeadAttention {
    fn dim(&self) -> usize {
        self.weights.output_bias.len()
    }
}

impl LayerOp for MultiHeadAttention {
    fn name(&self) -> &'static str {
        "multi_head_attention"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match *inputs[0] {
            [_, _, dim] if dim == self.dim() => Ok(inputs[0].to_vec()),
            _ => Err(Error::shape(
                "multi-head attention input",
                format!("[batch, steps, {}]", self.dim()),
                format!("{:?}", inputs[0]),
            )),
        }
    }

    fn settings(&self) -> String {
        let masked = if self.masked { " masked" } else { "" };
        format!("{} {}{masked}", self.heads, self.key_dim)
    }

    fn weights(&self) -> Vec<&[f32]> {
        let w = &self.weights;
        w.kernels.iter().chain(&w.biases).chain([&w.output_kernel, &w.output_bias]).map(Vec::as_slice).collect()
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        // Projections (4 × steps × dim²-ish) and scores + weighted values.
        let (t, d) = (inputs[0][1] as u64, inputs[0][2] as u64);
        let width = (self.heads * self.key_dim) as u64;
        2 * t * d * 4 * width + 4 * t * t * width
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let [b, t, dim] = btf(inputs.shape())?;
        let (tokens, width, w) = (b * t, self.heads * self.key_dim, &self.weights);
        let projections: Vec<Vec<f32>> = (0..3)
            .map(|i| reference::dense(inputs.x(), tokens, &w.kernels[i], &w.biases[i], dim, Activation::Linear))
            .collect();
        let qkv: Vec<f32> = (0..tokens)
            .flat_map(|t| projections.iter().flat_map(move |p| p[t * width..(t + 1) * width].iter().copied()))
            .collect();
        let all = vec![true; tokens];
        let mask = if self.masked { inputs.mask } else { &all };
        let scale = 1.0 / (self.key_dim as f32).sqrt();
        let context = reference::self_attention(&qkv, b, t, self.heads, self.key_dim, scale, mask);
        Ok(reference::dense(&context, tokens, &w.output_kernel, &w.output_bias, width, Activation::Linear))
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let op = ops::MultiHeadAttention::with_precision(
            gpu,
            self.dim(),
            self.heads,
            self.key_dim,
            &self.weights,
            precision,
        )?;
        Ok(Some(Box::new(AttentionKernel { op, masked: self.masked })))
    }
}

#[derive(Debug)]
struct AttentionKernel {
    op: ops::MultiHeadAttention,
    masked: bool,
}

impl Kernel for AttentionKernel {
    fn describe(&self) -> String {
        "dense q|k|v, attention, dense".into()
    }

    fn reads_mask(&self) -> bool {
        self.masked
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        let tokens: usize = inputs[0].iter().take(2).product();
        let (qkv, context) = self.op.scratch_len(tokens);
        let mut scratch =
            vec![Scratch { key: QKV, len: qkv, ones: false }, Scratch { key: CONTEXT, len: context, ones: false }];
        if !self.masked {
            scratch.push(Scratch { key: ONES, len: tokens, ones: true });
        }
        scratch
    }

    fn dispatch_count(&self, _steps: usize, _options: super::RunOptions) -> usize {
        3
    }

    fn max_rows(&self, _inputs: &[&[usize]], output: &[usize], binding: usize, groups: usize) -> usize {
        let steps = output[1];
        (binding / self.op.scratch_len(steps).0.max(1)).min(rows_for_items(steps, groups))
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let [b, t, _] = btf(io.shapes[0])?;
        let mask = if self.masked { ctx.mask()? } else { ctx.scratch(ONES)? };
        let (qkv, context) = (ctx.scratch(QKV)?, ctx.scratch(CONTEXT)?);
        Ok(self.op.prepare(ctx.gpu, b, t, io.inputs[0], qkv, context, mask, io.output)?.into())
    }
}
