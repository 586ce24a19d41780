//! An NHWC image moved by a whole number of rows and columns into an output of its own
//! size, zeros where nothing lands: ZeroPadding2D and Cropping2D. Kernel:
//! `shaders/shift2d.wgsl`.

use super::{linear_dispatch, prepare_dispatch, shape_str, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shift2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    off_y: i32,
    off_x: i32,
}

/// The shift: the input's `(y, x)` lands at `(y + offset.0, x + offset.1)` of an output
/// `out` (height, width) large.
#[derive(Debug)]
pub struct Shift2d {
    offset: (i32, i32),
    pipeline: wgpu::ComputePipeline,
}

impl Shift2d {
    /// Compiles the kernel for a shift by `offset` (rows, columns; negative crops).
    pub fn new(gpu: &Gpu, offset: (i32, i32)) -> Result<Self> {
        Ok(Self { offset, pipeline: gpu.pipeline(&shaders::SHIFT2D, "shift2d", &[])? })
    }

    /// A dispatch writing the `[batch, out.0, out.1, c]` output of an `input_shape` input.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        input_shape: &[usize],
        out: (usize, usize),
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let &[batch, in_h, in_w, channels] = input_shape else {
            return Err(Error::shape("shift2d input", "[batch, height, width, channels]", shape_str(input_shape)));
        };
        let params = Shift2dParams {
            batch: batch as u32,
            in_h: in_h as u32,
            in_w: in_w as u32,
            channels: channels as u32,
            out_h: out.0 as u32,
            out_w: out.1 as u32,
            off_y: self.offset.0,
            off_x: self.offset.1,
        };
        let workgroups = linear_dispatch(gpu, "shift2d", batch * out.0 * out.1 * channels, 256)?;
        Ok(prepare_dispatch(gpu, "shift2d", &self.pipeline, &params, &[input, output], workgroups))
    }
}
