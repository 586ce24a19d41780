//! Multi-head self-attention core (scores, masked softmax over keys, weighted values),
//! fused per query so the scores stay in registers. Kernel: `shaders/attention.wgsl`.
//! The Q/K/V projections before it and the output projection after it are dense GEMMs.

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    batch: u32,
    steps: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// The largest head size attention.wgsl keeps in registers.
pub const MAX_HEAD_DIM: usize = 128;

/// Self-attention over `[batch·steps, 3·hidden]` fused Q|K|V rows.
#[derive(Debug)]
pub struct SelfAttention {
    heads: usize,
    head_dim: usize,
    scale: f32,
    pipeline: wgpu::ComputePipeline,
}

impl SelfAttention {
    /// `heads` heads of `head_dim`; scores scaled by `scale` (usually 1/sqrt(head_dim)).
    pub fn new(gpu: &Gpu, heads: usize, head_dim: usize, scale: f32) -> Result<Self> {
        if heads == 0 || head_dim == 0 || head_dim > MAX_HEAD_DIM {
            return Err(Error::shape(
                "attention",
                format!("heads >= 1 and 1 <= head_dim <= {MAX_HEAD_DIM}"),
                format!("{heads} heads of {head_dim}"),
            ));
        }
        Ok(Self { heads, head_dim, scale, pipeline: gpu.pipeline(&shaders::ATTENTION, "self_attention", &[])? })
    }

    /// A dispatch reading `qkv` `[batch·steps, 3·heads·head_dim]` and the u32 token `mask`
    /// `[batch·steps]`, writing `[batch·steps, heads·head_dim]` to `output`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        batch: usize,
        steps: usize,
        qkv: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let params = AttentionParams {
            batch: batch as u32,
            steps: steps as u32,
            heads: self.heads as u32,
            head_dim: self.head_dim as u32,
            scale: self.scale,
            _pad: [0; 3],
        };
        let workgroups = linear_dispatch(gpu, "attention", batch * steps * self.heads, 256)?;
        Ok(prepare_dispatch(gpu, "attention", &self.pipeline, &params, &[qkv, mask, output], workgroups))
    }
}

/// Keras MultiHeadAttention used as self-attention: one fused Q|K|V GEMM, the fused
/// attention core, the output GEMM. Keras layouts: query/key/value kernels
/// `(dim, heads, key_dim)` (= `[dim, heads·key_dim]` row-major) with biases
/// `(heads, key_dim)`, output kernel `(heads, key_dim, dim)` (= `[heads·key_dim, dim]`);
/// scores scaled by `1/sqrt(key_dim)` after the query bias.
#[derive(Debug)]
pub struct MultiHeadAttention {
    dim: usize,
    width: usize,
    qkv: super::Dense,
    attention: SelfAttention,
    output: super::Dense,
}

/// The weights of a Keras MultiHeadAttention layer, flattened row-major.
#[derive(Clone, Debug)]
pub struct MultiHeadAttentionWeights {
    /// Query, key and value kernels `[dim, heads·key_dim]` each.
    pub kernels: [Vec<f32>; 3],
    /// Query, key and value biases `[heads·key_dim]` each.
    pub biases: [Vec<f32>; 3],
    /// Output kernel `[heads·key_dim, dim]`.
    pub output_kernel: Vec<f32>,
    /// Output bias `[dim]`.
    pub output_bias: Vec<f32>,
}

impl MultiHeadAttention {
    /// Uploads the weights and compiles the kernels.
    pub fn new(
        gpu: &Gpu,
        dim: usize,
        heads: usize,
        key_dim: usize,
        weights: &MultiHeadAttentionWeights,
    ) -> Result<Self> {
        Self::with_precision(gpu, dim, heads, key_dim, weights, super::Precision::F32)
    }

    /// As [`new`](Self::new), with the projection kernels stored in `precision`.
    pub fn with_precision(
        gpu: &Gpu,
        dim: usize,
        heads: usize,
        key_dim: usize,
        weights: &MultiHeadAttentionWeights,
        precision: super::Precision,
    ) -> Result<Self> {
        let width = heads * key_dim;
        let [q, k, v] = &weights.kernels;
        if [q.len(), k.len(), v.len()] != [dim * width; 3] {
            return Err(Error::shape(
                "multi-head attention kernels",
                format!("{} values each", dim * width),
                format!("{} {} {}", q.len(), k.len(), v.len()),
            ));
        }
        let fused: Vec<f32> = (0..dim)
            .flat_map(|r| {
                [&q[r * width..(r + 1) * width], &k[r * width..(r + 1) * width], &v[r * width..(r + 1) * width]]
                    .concat()
            })
            .collect();
        Ok(Self {
            dim,
            width,
            qkv: super::Dense::with_precision(
                gpu,
                dim,
                3 * width,
                &fused,
                Some(&weights.biases.concat()),
                super::Activation::Linear,
                precision,
            )?,
            attention: SelfAttention::new(gpu, heads, key_dim, 1.0 / (key_dim as f32).sqrt())?,
            output: super::Dense::with_precision(
                gpu,
                width,
                dim,
                &weights.output_kernel,
                Some(&weights.output_bias),
                super::Activation::Linear,
                precision,
            )?,
        })
    }

    /// Scratch values needed for `tokens` rows: (q|k|v, attention context).
    pub fn scratch_len(&self, tokens: usize) -> (usize, usize) {
        (tokens * 3 * self.width, tokens * self.width)
    }

    /// The three dispatches for `[batch, steps, dim]` input; `mask` `[batch·steps]` u32.
    #[allow(clippy::too_many_arguments, reason = "one buffer per kernel binding, named at the call")]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        batch: usize,
        steps: usize,
        input: &wgpu::Buffer,
        qkv: &wgpu::Buffer,
        context: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<[Dispatch; 3]> {
        let tokens = batch * steps;
        Ok([
            self.qkv.prepare(gpu, &[tokens, self.dim], input, qkv)?,
            self.attention.prepare(gpu, batch, steps, qkv, mask, context)?,
            self.output.prepare(gpu, &[tokens, self.width], context, output)?,
        ])
    }
}
