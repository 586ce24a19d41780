//! The left or right twin's embedding, as a twin head reads it. A head graph's input is
//! the encoder's output for a batch of N pairs, stacked as the runner computes it: the N
//! left rows, then the N right rows (`[2N, ...embedding]` in memory). Its shape in the
//! graph is one pair per sample, `[N, 2, ...embedding]`, so that every value of the head
//! has N rows; only [`TwinSide`] reads it, and knows the stacking. Kernel family:
//! `ops::strided` (a copy from row `side · N`).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::strided::contiguous_strides;
use crate::ops::{Combine, Dispatch, Precision, StridedOp, StridedSpace};

/// One twin's rows of a head graph's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwinSide {
    /// 0: the left twin (the model's first input), 1: the right.
    pub side: usize,
}

impl TwinSide {
    /// The values a twin's rows span in the stacked input of `shape` (`[N, 2, ...]`).
    fn rows(&self, shape: &[usize]) -> std::ops::Range<usize> {
        let len: usize = shape.iter().product::<usize>() / 2;
        self.side * len..(self.side + 1) * len
    }
}

impl LayerOp for TwinSide {
    fn name(&self) -> &'static str {
        "twin_side"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs[0] {
            [n, 2, rest @ ..] if self.side < 2 => Ok(std::iter::once(*n).chain(rest.iter().copied()).collect()),
            other => Err(Error::shape("twin head input", "[pairs, 2, ...embedding]", format!("{other:?}"))),
        }
    }

    fn settings(&self) -> String {
        ["left", "right"].get(self.side).copied().unwrap_or("?").to_string()
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        self.output_shape(inputs.shapes)?;
        Ok(inputs.x()[self.rows(inputs.shape())].to_vec())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(TwinSideKernel { side: *self, op: StridedOp::new(gpu, Combine::First)? })))
    }
}

#[derive(Debug)]
struct TwinSideKernel {
    side: TwinSide,
    op: StridedOp,
}

impl Kernel for TwinSideKernel {
    fn describe(&self) -> String {
        format!("copy ({} twin)", self.side.settings())
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let rows = self.side.rows(io.shapes[0]);
        let dims = [rows.len()];
        let space =
            StridedSpace { a_offset: rows.start, ..StridedSpace::over(&dims, contiguous_strides(&dims), vec![0]) };
        Ok(vec![self.op.prepare(ctx.gpu, &space, io.inputs[0], io.inputs[0], io.output, 1.0)?])
    }
}
