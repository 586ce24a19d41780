//! A per-channel scale and shift over the last axis with a fused activation (inference
//! BatchNormalization that could not be folded into the op before it). Kernel:
//! `shaders/affine.wgsl`.

use super::{linear_dispatch, prepare_dispatch, weight_buffer, Activation, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AffineParams {
    len: u32,
    channels: u32,
    _pad: [u32; 2],
}

/// `activate(x · scale[c] + shift[c])` over the last axis, resident on the GPU.
#[derive(Debug)]
pub struct ChannelAffine {
    channels: usize,
    activation: Activation,
    coefficients: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
}

impl ChannelAffine {
    /// Uploads `scale` and `shift` (one value per channel each) and compiles the kernel.
    pub fn new(gpu: &Gpu, scale: &[f32], shift: &[f32], activation: Activation) -> Result<Self> {
        if scale.is_empty() || scale.len() != shift.len() {
            return Err(Error::shape(
                "channel affine coefficients",
                format!("{} shift values", scale.len().max(1)),
                shift.len().to_string(),
            ));
        }
        Ok(Self {
            channels: scale.len(),
            activation,
            coefficients: weight_buffer(gpu, "channel scale and shift", &[scale, shift].concat())?,
            pipeline: gpu.pipeline(&shaders::AFFINE, "channel_affine", &activation.constants())?,
        })
    }

    /// The activation applied after the affine map.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// A dispatch mapping the `len` values of `input` (channels last) into `output`.
    pub fn prepare(&self, gpu: &Gpu, len: usize, input: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<Dispatch> {
        let params = AffineParams { len: len as u32, channels: self.channels as u32, _pad: [0; 2] };
        let workgroups = linear_dispatch(gpu, "channel affine", len, 256)?;
        Ok(prepare_dispatch(
            gpu,
            "channel affine",
            &self.pipeline,
            &params,
            &[input, &self.coefficients, output],
            workgroups,
        ))
    }
}
