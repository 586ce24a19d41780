//! GlobalAveragePooling1D: the mean over the time steps, `[batch, steps, features]` →
//! `[batch, features]`; over the real steps only when `masked` (sentence-transformers' mean
//! pooling), and optionally L2-normalised. Kernel family: `ops::sequence_pool` /
//! `shaders/sequence_pool.wgsl`.

use super::{btf, Inputs, Io, Kernel, LayerOp, PlanContext, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, Precision, SequencePool};
use crate::reference;

/// Scratch key of the all-ones token mask (unmasked means and attention).
pub(crate) const ONES: &str = "all-ones token mask";

/// Mean over steps.
#[derive(Clone, Debug, Default)]
pub struct GlobalAveragePool1d {
    /// Averages the steps the step mask marks real (else every step).
    pub masked: bool,
    /// Divides each mean by its L2 norm.
    pub normalize: bool,
}

impl LayerOp for GlobalAveragePool1d {
    fn name(&self) -> &'static str {
        "global_average_pool1d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match *inputs[0] {
            [batch, steps, features] if steps > 0 => Ok(vec![batch, features]),
            _ => Err(Error::shape(
                "global_average_pooling1d input",
                "[batch, steps, features]",
                format!("{:?}", inputs[0]),
            )),
        }
    }

    fn settings(&self) -> String {
        let flags = [(self.masked, "masked"), (self.normalize, "normalized")];
        flags.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect::<Vec<_>>().join(" ")
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let [b, t, f] = btf(inputs.shape())?;
        let all = vec![true; b * t];
        let mask = if self.masked { inputs.mask } else { &all };
        Ok(reference::masked_mean_pool(inputs.x(), b, t, f, mask, self.normalize))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(MeanKernel { op: SequencePool::new(gpu, self.normalize)?, masked: self.masked })))
    }
}

#[derive(Debug)]
struct MeanKernel {
    op: SequencePool,
    masked: bool,
}

impl Kernel for MeanKernel {
    fn describe(&self) -> String {
        if self.masked { "mean over real steps" } else { "mean over steps" }.into()
    }

    fn reads_mask(&self) -> bool {
        self.masked
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        let tokens = inputs[0].iter().take(2).product();
        if self.masked {
            Vec::new()
        } else {
            vec![Scratch { key: ONES, len: tokens, ones: true }]
        }
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let [b, t, f] = btf(io.shapes[0])?;
        let mask = if self.masked { ctx.mask()? } else { ctx.scratch(ONES)? };
        Ok(vec![self.op.prepare(ctx.gpu, b, t, f, io.inputs[0], mask, io.output)?])
    }
}
