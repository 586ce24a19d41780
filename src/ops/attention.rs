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
