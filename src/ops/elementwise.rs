//! A standalone activation applied in place (Keras `Activation` / `ReLU` layers that
//! could not be fused into the op before them). Kernel: `shaders/elementwise.wgsl`.

use super::{linear_dispatch, prepare_dispatch, Activation, Dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    len: u32,
    _pad: [u32; 3],
}

/// An in-place activation.
#[derive(Debug)]
pub struct ActivationOp {
    activation: Activation,
    pipeline: wgpu::ComputePipeline,
}

impl ActivationOp {
    /// Compiles the kernel for `activation`.
    pub fn new(gpu: &Gpu, activation: Activation) -> Result<Self> {
        Ok(Self {
            activation,
            pipeline: gpu.pipeline(&shaders::ELEMENTWISE, "activate_in_place", &activation.constants())?,
        })
    }

    /// The activation applied.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// A dispatch applying the activation to the first `len` values of `data`.
    pub fn prepare(&self, gpu: &Gpu, len: usize, data: &wgpu::Buffer) -> Result<Dispatch> {
        let params = ElementwiseParams { len: len as u32, _pad: [0; 3] };
        let workgroups = linear_dispatch(gpu, "activation", len, 256)?;
        Ok(prepare_dispatch(gpu, "activation", &self.pipeline, &params, &[data], workgroups))
    }
}
