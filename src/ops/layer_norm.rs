//! Residual add + LayerNorm over the last axis. Kernel: `shaders/layer_norm.wgsl`.

use super::{linear_dispatch, prepare_dispatch, weight_buffer, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct LayerNormParams {
    rows: u32,
    hidden: u32,
    eps: f32,
    has_residual: u32,
}

/// A LayerNorm (scale and shift) resident on the GPU.
#[derive(Debug)]
pub struct LayerNorm {
    hidden: usize,
    eps: f32,
    affine: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl LayerNorm {
    /// Uploads `gamma` and `beta` (`[hidden]` each).
    pub fn new(gpu: &Gpu, gamma: &[f32], beta: &[f32], eps: f32) -> Result<Self> {
        if gamma.is_empty() || gamma.len() != beta.len() {
            return Err(Error::shape(
                "layer norm",
                format!("gamma and beta of one length ({})", gamma.len()),
                beta.len().to_string(),
            ));
        }
        Ok(Self {
            hidden: gamma.len(),
            eps,
            affine: weight_buffer(gpu, "layer norm", &[gamma, beta].concat())?,
            pipeline: gpu.pipeline(&shaders::LAYER_NORM, "add_layer_norm", &[])?,
        })
    }

    /// A dispatch writing `LayerNorm(input + residual)` for `rows` rows into `output`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        rows: usize,
        input: &wgpu::Buffer,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let params = LayerNormParams {
            rows: rows as u32,
            hidden: self.hidden as u32,
            eps: self.eps,
            has_residual: residual.is_some() as u32,
        };
        let workgroups = linear_dispatch(gpu, "layer norm", rows, 1)?;
        // Without a residual the input is bound twice, both read-only (allowed).
        let residual = residual.unwrap_or(input);
        Ok(prepare_dispatch(
            gpu,
            "layer norm",
            &self.pipeline,
            &params,
            &[input, residual, &self.affine, output],
            workgroups,
        ))
    }
}
