//! MaxPooling2D / AveragePooling2D, MaxPooling1D / AveragePooling1D, GlobalAveragePooling2D
//! and the other global poolings (max 2-D and 1-D, average 1-D with `keepdims`), all
//! channels-last. A sequence `[batch, steps, channels]` is pooled as the image `[batch, 1,
//! steps, channels]` (the same values in the same order), with windows of height 1. Kernel
//! family: `ops::pool2d` / `shaders/pool2d.wgsl`.

use super::{btf, nhwc, Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{self, Dispatch, Padding, Pool2dConfig, PoolKind, Precision};
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

/// MaxPooling1D / AveragePooling1D on `[batch, steps, channels]`: the 2-D pool of `config`
/// (windows `(1, pool)`, strides `(1, stride)`) on `[batch, 1, steps, channels]`.
#[derive(Clone, Debug)]
pub struct Pool1d(Pool2dConfig);

impl Pool1d {
    /// A 1-D pool of `pool` steps moved by `stride`.
    pub fn new(kind: PoolKind, pool: usize, stride: usize, padding: Padding) -> Self {
        Self(Pool2dConfig { kind, pool: (1, pool), strides: (1, stride), padding })
    }

    /// The 2-D pool it runs.
    pub fn config(&self) -> &Pool2dConfig {
        &self.0
    }
}

/// `[b, t, f]` → the image `[b, 1, t, f]`.
fn sequence_as_image(shape: &[usize]) -> Result<[usize; 4]> {
    let [b, t, f] = btf(shape)?;
    Ok([b, 1, t, f])
}

impl LayerOp for Pool1d {
    fn name(&self) -> &'static str {
        "pool1d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let image = sequence_as_image(inputs[0])?;
        let out = self.0.output_shape(&image).map_err(|_| {
            Error::shape(
                "pool1d input",
                format!("at least {} steps (valid padding)", self.0.pool.1),
                format!("{:?}", inputs[0]),
            )
        })?;
        Ok(vec![out[0], out[2], out[3]])
    }

    fn settings(&self) -> String {
        format!("{:?}", self.0)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(reference::pool2d(inputs.x(), sequence_as_image(inputs.shape())?, &self.0).0)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(Pool1dKernel(ops::Pool2d::new(gpu, self.0.clone())?))))
    }
}

#[derive(Debug)]
struct Pool1dKernel(ops::Pool2d);

impl Kernel for Pool1dKernel {
    fn describe(&self) -> String {
        "pool2d (1-D)".into()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let image = sequence_as_image(io.shapes[0])?;
        Ok(vec![self.0.prepare(ctx.gpu, &image, io.inputs[0], io.output)?])
    }
}

/// Global max or average pooling over every spatial axis: GlobalMaxPooling2D
/// (`[batch, h, w, c]`), GlobalMaxPooling1D and GlobalAveragePooling1D with `keepdims`
/// (`[batch, steps, c]`) → `[batch, c]` (`keepdims`: `[batch, 1, 1, c]` / `[batch, 1, c]`).
#[derive(Clone, Debug)]
pub struct GlobalPool {
    /// Max or average.
    pub kind: PoolKind,
    /// Spatial axes pooled: 2 (images) or 1 (sequences).
    pub spatial: usize,
    /// Keras `keepdims`.
    pub keepdims: bool,
}

impl GlobalPool {
    /// The input as an image `[batch, h, w, c]`.
    fn image(&self, shape: &[usize]) -> Result<[usize; 4]> {
        if self.spatial == 1 {
            sequence_as_image(shape)
        } else {
            nhwc(shape)
        }
    }
}

impl LayerOp for GlobalPool {
    fn name(&self) -> &'static str {
        match (self.kind, self.spatial) {
            (PoolKind::Max, 1) => "global_max_pool1d",
            (PoolKind::Max, _) => "global_max_pool2d",
            (PoolKind::Average, 1) => "global_average_pool1d",
            (PoolKind::Average, _) => "global_average_pool2d",
        }
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let valid = inputs[0].len() == self.spatial + 2 && inputs[0][1..=self.spatial].iter().all(|&d| d > 0);
        if !valid || !(1..=2).contains(&self.spatial) {
            let expected =
                if self.spatial == 1 { "[batch, steps, channels]" } else { "[batch, height, width, channels]" };
            return Err(Error::shape(self.name(), expected, format!("{:?}", inputs[0])));
        }
        let [batch, .., c] = self.image(inputs[0])?;
        Ok(match (self.keepdims, self.spatial) {
            (false, _) => vec![batch, c],
            (true, 1) => vec![batch, 1, c],
            (true, _) => vec![batch, 1, 1, c],
        })
    }

    fn settings(&self) -> String {
        format!("{:?} keepdims {}", self.kind, self.keepdims)
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let image = self.image(inputs.shape())?;
        let whole =
            Pool2dConfig { kind: self.kind, pool: (image[1], image[2]), strides: (1, 1), padding: Padding::Valid };
        Ok(reference::pool2d(inputs.x(), image, &whole).0)
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(GlobalPoolKernel { op: ops::GlobalPool::new(gpu, self.kind)?, spatial: self.spatial })))
    }
}

#[derive(Debug)]
struct GlobalPoolKernel {
    op: ops::GlobalPool,
    spatial: usize,
}

impl Kernel for GlobalPoolKernel {
    fn describe(&self) -> String {
        format!("global {:?} pool", self.op.kind()).to_lowercase()
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        let image = if self.spatial == 1 { sequence_as_image(io.shapes[0])? } else { nhwc(io.shapes[0])? };
        Ok(vec![self.op.prepare(ctx.gpu, &image, io.inputs[0], io.output)?])
    }
}
