//! A twin head's distance layer: a Keras `Lambda` that returns one distance per pair (the
//! keras.io tutorials' `euclidean_distance`), replaced by the run-time `--distance` so that
//! the trained layers after it (BatchNormalization, Dense(1, sigmoid)) run too. It reads a
//! head graph's input as stacked by the runner (see [`super::TwinSide`]) and writes
//! `[pairs, 1]`. Kernel family: `ops::distance` / `shaders/distance.wgsl`, the reduction
//! every pair call ends with (overflow-safe sums included).

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, Distance, PairDistance, Precision};
use crate::reference::pair_distances;

/// `dist(left, right)` per pair, for a fixed metric (not `Learned`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwinDistance {
    /// The metric that stands for the Lambda.
    pub metric: Distance,
}

impl LayerOp for TwinDistance {
    fn name(&self) -> &'static str {
        "twin_distance"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs[0] {
            [n, 2, rest @ ..] if self.metric != Distance::Learned && rest.iter().product::<usize>() > 0 => {
                Ok(vec![*n, 1])
            }
            other => Err(Error::shape("twin distance input", "[pairs, 2, ...embedding]", format!("{other:?}"))),
        }
    }

    fn settings(&self) -> String {
        self.metric.name().into()
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        self.output_shape(inputs.shapes)?;
        let (pairs, dim) = split(inputs.shape());
        Ok(pair_distances(inputs.x(), pairs, dim, self.metric))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(TwinDistanceKernel { metric: self.metric, op: PairDistance::new(gpu, self.metric)? })))
    }
}

/// (pairs, values per embedding) of a `[pairs, 2, ...]` head input.
fn split(shape: &[usize]) -> (usize, usize) {
    (shape[0], shape.iter().skip(2).product())
}

#[derive(Debug)]
struct TwinDistanceKernel {
    metric: Distance,
    op: PairDistance,
}

impl Kernel for TwinDistanceKernel {
    fn describe(&self) -> String {
        format!("distance ({})", self.metric.name())
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let (pairs, dim) = split(io.shapes[0]);
        Ok(vec![self.op.prepare(ctx.gpu, pairs, dim, io.inputs[0], io.output)?])
    }
}
