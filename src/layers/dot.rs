//! Keras Dot of two `[batch, features]` tensors over the features: `Σ a·b` per row,
//! `[batch, 1]`; with `normalize=True` each side is L2-normalised first (cosine
//! similarity), as a twin head compares two embeddings. Kernel family: `ops::dot` /
//! `shaders/dot.wgsl`.

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{dot_reference, Dispatch, DotOp, Precision};

/// Keras `Dot(axes=1)` (or `-1`) of two flat tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dot {
    /// L2-normalise both sides first (Keras `normalize`).
    pub normalize: bool,
}

impl LayerOp for Dot {
    fn name(&self) -> &'static str {
        "dot"
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs {
            [[n, e], [m, f]] if n == m && e == f => Ok(vec![*n, 1]),
            _ => Err(Error::shape(
                "dot inputs",
                "two [batch, features] tensors of one shape (Dot over axis 1)",
                format!("{inputs:?}"),
            )),
        }
    }

    fn settings(&self) -> String {
        if self.normalize {
            "normalize".into()
        } else {
            String::new()
        }
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        2 * inputs[0].iter().product::<usize>() as u64
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let shape = self.output_shape(inputs.shapes)?;
        let len = inputs.shape()[1];
        let out = dot_reference(inputs.values[0], inputs.values[1], len, self.normalize);
        debug_assert_eq!(out.len(), shape[0]);
        Ok(out)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(DotKernel { layer: *self, op: DotOp::new(gpu, self.normalize)? })))
    }
}

#[derive(Debug)]
struct DotKernel {
    layer: Dot,
    op: DotOp,
}

impl Kernel for DotKernel {
    fn describe(&self) -> String {
        if self.layer.normalize { "dot (cosine)" } else { "dot" }.into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let (rows, len) = (io.shapes[0][0], io.shapes[0][1]);
        Ok(vec![self.op.prepare(ctx.gpu, rows, len, io.inputs[0], io.inputs[1], io.output)?])
    }
}
