//! Sentence embeddings: masked mean over tokens, optionally L2-normalised.
//! Kernel: `shaders/sequence_pool.wgsl`.

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SequencePoolParams {
    batch: u32,
    steps: u32,
    hidden: u32,
    normalize: u32,
}

/// Masked mean pooling (+ L2 normalisation).
#[derive(Debug)]
pub struct SequencePool {
    normalize: bool,
    pipeline: wgpu::ComputePipeline,
}

impl SequencePool {
    /// Compiles the kernel; `normalize` divides each result by its L2 norm.
    pub fn new(gpu: &Gpu, normalize: bool) -> Result<Self> {
        Ok(Self { normalize, pipeline: gpu.pipeline(&shaders::SEQUENCE_POOL, "masked_mean_pool", &[])? })
    }

    /// A dispatch pooling `[batch, steps, hidden]` with the u32 `mask` `[batch, steps]`
    /// into `[batch, hidden]`.
    #[allow(clippy::too_many_arguments, reason = "one buffer or size per kernel binding, named at the call")]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        batch: usize,
        steps: usize,
        hidden: usize,
        input: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let params = SequencePoolParams {
            batch: batch as u32,
            steps: steps as u32,
            hidden: hidden as u32,
            normalize: self.normalize as u32,
        };
        let workgroups = linear_dispatch(gpu, "sequence pool", batch, 1)?;
        Ok(prepare_dispatch(gpu, "sequence pool", &self.pipeline, &params, &[input, mask, output], workgroups))
    }
}
