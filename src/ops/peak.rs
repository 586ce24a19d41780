//! The adapter's best achievable f32 multiply-add rate and memory bandwidth, measured
//! with our own microkernels (`shaders/peak.wgsl`), so that benchmark figures can be given
//! as a fraction of what this device can do (`siamese bench --peak`).

use std::time::Instant;

use super::{linear_dispatch, prepare_dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::shaders;
use crate::tensor::run_dispatches;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct PeakParams {
    len: u32,
    iterations: u32,
    _pad: [u32; 2],
}

/// What the microkernels reached (the best of several runs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// f32 GFLOP/s (a multiply-add is 2 FLOP).
    pub gflops: f64,
    /// GB/s read + written by a streaming copy.
    pub gbps: f64,
}

/// Vec4 slots in the FMA kernel (invocations): enough workgroups to fill any GPU.
const FMA_SLOTS: usize = 1 << 18;

/// Runs both microkernels; takes about a second on a software adapter.
pub fn measure_peak(gpu: &Gpu) -> Result<Peak> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let limits = gpu.limits();
    let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize;
    // Streaming copy: two 32 MiB buffers (beyond any cache), or what one binding allows.
    let copy_slots = (32 << 20).min(binding) / 16;
    let slots = FMA_SLOTS.max(copy_slots);
    let input = gpu.create_buffer("peak input", slots as u64 * 16, usage);
    let output = gpu.create_buffer("peak output", slots as u64 * 16, usage);
    gpu.queue().write_buffer(&input, 0, bytemuck::cast_slice(&vec![0.5f32; slots * 4]));

    let fma = gpu.pipeline(&shaders::PEAK, "fma_rate", &[])?;
    let time = |iterations: u32| -> Result<f64> {
        let params = PeakParams { len: FMA_SLOTS as u32, iterations, _pad: [0; 2] };
        let groups = linear_dispatch(gpu, "peak fma", FMA_SLOTS, 256)?;
        let dispatch = prepare_dispatch(gpu, "peak fma", &fma, &params, &[&input, &output], groups);
        let started = Instant::now();
        run_dispatches(gpu, &[&dispatch])?;
        Ok(started.elapsed().as_secs_f64())
    };
    time(1)?; // warm-up: pipeline compiled by the driver
    let mut iterations = 16u32;
    while time(iterations)? < 0.05 && iterations < 1 << 20 {
        iterations *= 4;
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(time(iterations)?);
    }
    let gflops = FMA_SLOTS as f64 * iterations as f64 * 64.0 / best / 1e9;

    let copy = gpu.pipeline(&shaders::PEAK, "copy_bandwidth", &[])?;
    let params = PeakParams { len: copy_slots as u32, iterations: 0, _pad: [0; 2] };
    let groups = linear_dispatch(gpu, "peak copy", copy_slots, 256)?;
    let dispatch = prepare_dispatch(gpu, "peak copy", &copy, &params, &[&input, &output], groups);
    run_dispatches(gpu, &[&dispatch])?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        run_dispatches(gpu, &[&dispatch])?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    let gbps = 2.0 * copy_slots as f64 * 16.0 / best / 1e9;
    Ok(Peak { gflops, gbps })
}
