//! Keras PReLU in place: `x >= 0 ? x : alpha · x` with a trained slope per value.
//! Kernel: `shaders/prelu.wgsl`.

use super::{linear_dispatch, prepare_dispatch, weight_buffer, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct PreluParams {
    len: u32,
    alpha_len: u32,
    _pad: [u32; 2],
}

/// PReLU resident on the GPU: value `i` of a tensor takes slope `alpha[i mod alpha.len()]`.
#[derive(Debug)]
pub struct PreluOp {
    alpha_len: usize,
    alpha: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl PreluOp {
    /// Uploads the slopes (the trailing part of a sample they vary over) and compiles.
    pub fn new(gpu: &Gpu, alpha: &[f32]) -> Result<Self> {
        if alpha.is_empty() {
            return Err(Error::shape("prelu alpha", "at least one slope", "0"));
        }
        Ok(Self {
            alpha_len: alpha.len(),
            alpha: weight_buffer(gpu, "prelu alpha", alpha)?,
            pipeline: gpu.pipeline(&shaders::PRELU, "prelu", &[])?,
        })
    }

    /// A dispatch applying it to the first `len` values of `data` (a multiple of the
    /// slopes' length).
    pub fn prepare(&self, gpu: &Gpu, len: usize, data: &wgpu::Buffer) -> Result<Dispatch> {
        if !len.is_multiple_of(self.alpha_len) {
            return Err(Error::shape(
                "prelu input",
                format!("a multiple of {} values", self.alpha_len),
                len.to_string(),
            ));
        }
        let params = PreluParams { len: len as u32, alpha_len: self.alpha_len as u32, _pad: [0; 2] };
        let workgroups = linear_dispatch(gpu, "prelu", len, 256)?;
        Ok(prepare_dispatch(gpu, "prelu", &self.pipeline, &params, &[&self.alpha, data], workgroups))
    }
}
