//! MaxPooling2D / AveragePooling2D and GlobalAveragePooling2D (channels-last). Kernel
//! family: `ops::pool2d` / `shaders/pool2d.wgsl`.

use super::{nhwc, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::{self, Dispatch, Pool2dConfig, Precision};
use crate::reference;

/// Max or average pooling over a window.
#[derive(Clone, Debug)]
pub struct Pool2d(pub Pool2dConfig);

impl LayerOp for Pool2d {
    fn name(&self) -> &'static str {
        "pool2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.0.output_shape(inputs[0])
    }

    fn settings(&self) -> String {
        format!("{:?}", self.0)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(reference::pool2d(inputs.x(), nhwc(inputs.shape())?, &self.0).0)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ops::Pool2d::new(gpu, self.0.clone())?)))
    }
}

impl Kernel for ops::Pool2d {
    fn describe(&self) -> String {
        "pool2d".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ops::Pool2d::prepare(self, ctx.gpu, io.shapes[0], io.inputs[0], io.output)?])
    }
}

/// GlobalAveragePooling2D: `[batch, h, w, c]` → `[batch, c]` (`keepdims`: `[batch, 1, 1, c]`).
#[derive(Clone, Debug)]
pub struct GlobalAveragePool2d {
    /// Keras `keepdims`.
    pub keepdims: bool,
}

impl LayerOp for GlobalAveragePool2d {
    fn name(&self) -> &'static str {
        "global_average_pool2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let out = ops::GlobalAveragePool2d::output_shape(inputs[0])?;
        Ok(if self.keepdims { vec![out[0], 1, 1, out[1]] } else { out })
    }

    fn settings(&self) -> String {
        format!("keepdims {}", self.keepdims)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(reference::global_average_pool2d(inputs.x(), nhwc(inputs.shape())?))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(ops::GlobalAveragePool2d::new(gpu)?)))
    }
}

impl Kernel for ops::GlobalAveragePool2d {
    fn describe(&self) -> String {
        "global_average_pool2d".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![ops::GlobalAveragePool2d::prepare(self, ctx.gpu, io.shapes[0], io.inputs[0], io.output)?])
    }
}
