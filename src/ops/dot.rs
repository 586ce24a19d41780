//! Keras Dot over the last axis, one value per row: `Σ a·b`, or the cosine similarity with
//! `normalize=True`. Kernel: `shaders/dot.wgsl`.

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shaders;

/// Keras 3's `ops.normalize` lower bound on a norm (`backend.epsilon()`).
pub const DOT_EPSILON: f32 = 1e-7;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DotParams {
    rows: u32,
    len: u32,
    _pad: [u32; 2],
}

/// The row-wise dot product on the GPU.
#[derive(Debug)]
pub struct DotOp {
    pipeline: wgpu::ComputePipeline,
}

impl DotOp {
    /// Compiles the plain (`normalize` false) or cosine variant.
    pub fn new(gpu: &Gpu, normalize: bool) -> Result<Self> {
        Ok(Self { pipeline: gpu.pipeline(&shaders::DOT, "dot_rows", &[("NORMALIZE", f64::from(normalize as u8))])? })
    }

    /// A dispatch writing `rows` values into `output` from two `[rows, len]` tensors.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        rows: usize,
        len: usize,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let params = DotParams { rows: rows as u32, len: len as u32, _pad: [0; 2] };
        let workgroups = linear_dispatch(gpu, "dot", rows, 256)?;
        Ok(prepare_dispatch(gpu, "dot", &self.pipeline, &params, &[a, b, output], workgroups))
    }
}

/// What the kernel computes, on the CPU.
pub fn dot_reference(a: &[f32], b: &[f32], len: usize, normalize: bool) -> Vec<f32> {
    a.chunks(len.max(1))
        .zip(b.chunks(len.max(1)))
        .map(|(x, y)| {
            let ab: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            if !normalize {
                return ab;
            }
            let scale = |v: &[f32]| (1.0 / v.iter().map(|p| p * p).sum::<f32>().sqrt()).min(1.0 / DOT_EPSILON);
            ab * scale(x) * scale(y)
        })
        .collect()
}
