//! Elementwise sum of two tensors (Keras Add). Kernel: `shaders/add.wgsl`.

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AddParams {
    len: u32,
    _pad: [u32; 3],
}

/// `output = a + b`.
#[derive(Debug)]
pub struct AddOp {
    pipeline: wgpu::ComputePipeline,
}

impl AddOp {
    /// Compiles the kernel.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self { pipeline: gpu.pipeline(&shaders::ADD, "add", &[])? })
    }

    /// A dispatch adding the first `len` values of `a` and `b` into `output`.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        len: usize,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let workgroups = linear_dispatch(gpu, "add", len, 256)?;
        Ok(prepare_dispatch(
            gpu,
            "add",
            &self.pipeline,
            &AddParams { len: len as u32, _pad: [0; 3] },
            &[a, b, output],
            workgroups,
        ))
    }
}
