//! ZeroPadding2D and Cropping2D: rows and columns of zeros added around an NHWC image, or
//! cut from its borders. The folding pass puts a ZeroPadding2D into the `valid` Conv2D
//! after it (explicit padding) when nothing else reads the padded image; otherwise, and for
//! crops, the shift kernel runs (`ops::shift2d` / `shaders/shift2d.wgsl`).

use super::{nhwc, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, Precision, Shift2d};

/// Zeros around the image: rows `top` / `bottom`, columns `left` / `right`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroPadding2d {
    /// Rows above.
    pub top: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns on the left.
    pub left: usize,
    /// Columns on the right.
    pub right: usize,
}

/// Rows and columns cut from the image's borders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cropping2d {
    /// Rows cut at the top.
    pub top: usize,
    /// Rows cut at the bottom.
    pub bottom: usize,
    /// Columns cut on the left.
    pub left: usize,
    /// Columns cut on the right.
    pub right: usize,
}

/// `[b, h, w, c]` → `[b, h + grow_h, w + grow_w, c]` (negative: smaller, at least 1).
fn moved_shape(what: &str, input: &[usize], grow: (isize, isize)) -> Result<Vec<usize>> {
    let [b, h, w, c] = nhwc(input)?;
    let size = |n: usize, d: isize| n.checked_add_signed(d).filter(|&m| m > 0);
    match (size(h, grow.0), size(w, grow.1)) {
        (Some(h), Some(w)) => Ok(vec![b, h, w, c]),
        _ => Err(Error::shape(what, "an image larger than the rows and columns cropped", format!("{input:?}"))),
    }
}

/// output[b, y, x, c] = input[b, y − off.0, x − off.1, c], or 0 (CPU).
fn reference_shift(inputs: &Inputs, out: &[usize], offset: (isize, isize)) -> Result<Vec<f32>> {
    let [b, h, w, c] = nhwc(inputs.shape())?;
    let (oh, ow) = (out[1], out[2]);
    let mut values = vec![0.0; b * oh * ow * c];
    for (i, value) in values.iter_mut().enumerate() {
        let pixel = i / c;
        let (x, y, n) = (pixel % ow, (pixel / ow) % oh, pixel / (ow * oh));
        let (sy, sx) = (y as isize - offset.0, x as isize - offset.1);
        if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
            *value = inputs.x()[((n * h + sy as usize) * w + sx as usize) * c + i % c];
        }
    }
    Ok(values)
}

fn compile_shift(gpu: &Gpu, offset: (isize, isize)) -> Result<Option<Box<dyn Kernel>>> {
    let offset = (offset.0 as i32, offset.1 as i32);
    Ok(Some(Box::new(Shift2d::new(gpu, offset)?)))
}

impl ZeroPadding2d {
    fn grow(&self) -> (isize, isize) {
        ((self.top + self.bottom) as isize, (self.left + self.right) as isize)
    }
}

impl Cropping2d {
    fn grow(&self) -> (isize, isize) {
        (-((self.top + self.bottom) as isize), -((self.left + self.right) as isize))
    }
}

impl LayerOp for ZeroPadding2d {
    fn name(&self) -> &'static str {
        "zero_padding2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        moved_shape("zero_padding2d input", inputs[0], self.grow())
    }

    fn settings(&self) -> String {
        format!("{} {} {} {}", self.top, self.bottom, self.left, self.right)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let out = self.output_shape(inputs.shapes)?;
        reference_shift(inputs, &out, (self.top as isize, self.left as isize))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        compile_shift(gpu, (self.top as isize, self.left as isize))
    }
}

impl LayerOp for Cropping2d {
    fn name(&self) -> &'static str {
        "cropping2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        moved_shape("cropping2d input", inputs[0], self.grow())
    }

    fn settings(&self) -> String {
        format!("{} {} {} {}", self.top, self.bottom, self.left, self.right)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let out = self.output_shape(inputs.shapes)?;
        reference_shift(inputs, &out, (-(self.top as isize), -(self.left as isize)))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        compile_shift(gpu, (-(self.top as isize), -(self.left as isize)))
    }
}

impl Kernel for Shift2d {
    fn describe(&self) -> String {
        "shift2d (pad / crop)".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let out = (io.output_shape[1], io.output_shape[2]);
        Ok(vec![Shift2d::prepare(self, ctx.gpu, io.shapes[0], out, io.inputs[0], io.output)?])
    }
}
