//! LSTM / GRU, optionally bidirectional, on ragged batches (each row stops at its own last
//! real step, from the step mask). Kernel family: `ops::recurrent` (the input projection
//! as one GEMM over every step, then the whole recurrence in one dispatch).

use super::{btf, rows_for_items, Inputs, Io, Kernel, LayerOp, PlanContext, RunOptions, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Cell, DirectionWeights, Dispatch, Precision, RecurrentConfig};
use crate::reference;

const PROJECTION: &str = "recurrent projection";

/// A recurrent layer.
#[derive(Clone, Debug)]
pub struct Recurrent {
    /// Shape and settings.
    pub config: RecurrentConfig,
    /// One set per direction, forward first.
    pub weights: Vec<DirectionWeights>,
}

impl LayerOp for Recurrent {
    fn name(&self) -> &'static str {
        "recurrent"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(inputs[0])
    }

    fn settings(&self) -> String {
        format!("{:?}", self.config)
    }

    fn weights(&self) -> Vec<&[f32]> {
        self.weights
            .iter()
            .flat_map(|w| [&w.kernel, &w.recurrent_kernel, &w.input_bias, &w.recurrent_bias])
            .map(Vec::as_slice)
            .collect()
    }

    fn parameter_count(&self) -> usize {
        // Keras counts the recurrent bias only for GRU with reset_after.
        let recurrent_bias = matches!(self.config.cell, Cell::Gru { reset_after: true });
        let count = |w: &DirectionWeights| {
            let bias = if recurrent_bias { w.recurrent_bias.len() } else { 0 };
            w.kernel.len() + w.recurrent_kernel.len() + w.input_bias.len() + bias
        };
        self.weights.iter().map(count).sum()
    }

    fn flops(&self, inputs: &[&[usize]]) -> u64 {
        let (u, g) = (self.config.units, self.config.gate_width());
        let row_steps: usize = inputs[0].iter().take(2).product();
        2 * (row_steps * self.config.directions * g * (self.config.input_size + u)) as u64
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let shape = btf(inputs.shape())?;
        // A model of fixed steps and no Masking runs with a mask of one entry per sample:
        // every step is real.
        let all = vec![true; shape[0] * shape[1]];
        let mask = if inputs.mask.len() == all.len() { inputs.mask } else { &all };
        Ok(reference::recurrent(inputs.x(), shape, mask, &self.config, &self.weights))
    }

    fn compile(&self, gpu: &Gpu, precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ops::Recurrent::with_precision(gpu, self.config.clone(), &self.weights, precision)?)))
    }
}

impl Kernel for ops::Recurrent {
    fn describe(&self) -> String {
        format!("{:?} ×{} directions", self.config().cell, self.config().directions)
    }

    fn reads_mask(&self) -> bool {
        true
    }

    fn scratch(&self, inputs: &[&[usize]]) -> Vec<Scratch> {
        vec![Scratch { key: PROJECTION, len: self.projection_len(inputs[0]), ones: false }]
    }

    fn output_len(&self, output: &[usize], options: RunOptions) -> usize {
        // The per-step baseline keeps c after h in its output.
        output.iter().product::<usize>() * if options.recurrent_per_step { 2 } else { 1 }
    }

    fn dispatch_count(&self, steps: usize, options: RunOptions) -> usize {
        if options.recurrent_per_step {
            1 + steps.max(1)
        } else {
            2
        }
    }

    fn check_options(&self, options: RunOptions) -> Result<()> {
        if options.recurrent_per_step && !self.has_per_step() {
            return Err(Error::input(
                "recurrent mode",
                "the per-step variant exists for LSTM layers returning the last state only",
            ));
        }
        Ok(())
    }

    fn max_rows(&self, inputs: &[&[usize]], _output: &[usize], binding: usize, groups: usize) -> usize {
        let by_scratch = binding / self.projection_len(inputs[0]).max(1);
        by_scratch.min(groups).min(rows_for_items(inputs[0][1], groups))
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let (mask, projected) = (ctx.mask()?, ctx.scratch(PROJECTION)?);
        if ctx.options.recurrent_per_step {
            self.prepare_per_step(ctx.gpu, io.shapes[0], io.inputs[0], mask, projected, io.output)
        } else {
            Ok(ops::Recurrent::prepare(self, ctx.gpu, io.shapes[0], io.inputs[0], mask, projected, io.output)?.into())
        }
    }
}
