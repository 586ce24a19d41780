//! Add: the elementwise sum of two values of one shape (Keras `Add`, residual connections).
//! Kernel family: `ops::add` / `shaders/add.wgsl`.

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{AddOp, Dispatch, Precision};

/// Elementwise sum of the node's two inputs.
#[derive(Clone, Debug)]
pub struct Add;

impl LayerOp for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        if inputs[0] != inputs[1] {
            return Err(Error::shape("add inputs", format!("{:?}", inputs[0]), format!("{:?}", inputs[1])));
        }
        Ok(inputs[0].to_vec())
    }

    fn settings(&self) -> String {
        String::new()
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(inputs.values[0].iter().zip(inputs.values[1]).map(|(a, b)| a + b).collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(AddOp::new(gpu)?)))
    }
}

impl Kernel for AddOp {
    fn describe(&self) -> String {
        "add".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![AddOp::prepare(self, ctx.gpu, io.shapes[0].iter().product(), io.inputs[0], io.inputs[1], io.output)?])
    }
}
