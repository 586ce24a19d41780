//! Preprocessing layers that models carry inside (EfficientNet, MobileNetV3, ConvNeXt, the
//! keras.io tutorials): Rescaling (`x · scale + offset`) and Normalization (`(x − mean) /
//! max(√variance, ε)`, or its inverse). Both are a per-channel affine map over the last
//! axis: the kernel of BatchNormalization (`ops::affine` / `shaders/affine.wgsl`).

use super::{rows_and_features, Inputs, Kernel, LayerOp};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Activation, ChannelAffine, Precision};

/// Keras' `backend.epsilon()`, the floor of Normalization's standard deviation.
pub const NORMALIZATION_EPSILON: f32 = 1e-7;

/// Keras Rescaling: `x · scale + offset`, one value for every channel or one per channel.
#[derive(Clone, Debug)]
pub struct Rescaling {
    /// One value, or one per channel.
    pub scale: Vec<f32>,
    /// One value, or one per channel.
    pub offset: Vec<f32>,
}

/// Keras Normalization with its mean and variance (from `adapt` or the config):
/// `(x − mean) / max(√variance, 1e-7)`, or `mean + x · max(√variance, 1e-7)` when `invert`.
#[derive(Clone, Debug)]
pub struct Normalization {
    /// Per channel (or one value).
    pub mean: Vec<f32>,
    /// Per channel (or one value).
    pub variance: Vec<f32>,
    /// Keras `invert`: undo a normalisation.
    pub invert: bool,
}

/// The channels a per-channel affine map of `lens` values covers: every length is 1 or the
/// same channel count.
fn channels(lens: &[usize]) -> Option<usize> {
    let wide = lens.iter().copied().filter(|&n| n != 1).max().unwrap_or(1);
    lens.iter().all(|&n| n == 1 || n == wide).then_some(wide)
}

/// `values` repeated to `channels` values (a single value broadcasts).
fn widened(values: &[f32], channels: usize) -> Vec<f32> {
    if values.len() == channels {
        values.to_vec()
    } else {
        vec![values.first().copied().unwrap_or(0.0); channels]
    }
}

/// Output shape of a per-channel map of `lens` values over `input`.
fn affine_shape(what: &str, lens: &[usize], input: &[usize]) -> Result<Vec<usize>> {
    let channels = channels(lens).filter(|_| lens.iter().all(|&n| n > 0));
    match (channels, input.last()) {
        (Some(1), Some(_)) => Ok(input.to_vec()),
        (Some(c), Some(&last)) if c == last => Ok(input.to_vec()),
        _ => Err(Error::shape(what, format!("[batch, ..., {}]", channels.unwrap_or(0)), format!("{input:?}"))),
    }
}

/// Channel `c`'s value of a per-channel setting (a single value broadcasts), in f64.
fn at(values: &[f32], c: usize) -> f64 {
    values[if values.len() == 1 { 0 } else { c }] as f64
}

/// `x · scale[c] + shift[c]` on the CPU, in f64.
fn reference_affine(inputs: &Inputs, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let (_, features) = rows_and_features(inputs.shape());
    inputs
        .x()
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 * at(scale, i % features) + at(shift, i % features)) as f32)
        .collect()
}

fn compile_affine(gpu: &Gpu, scale: &[f32], shift: &[f32]) -> Result<Option<Box<dyn Kernel>>> {
    let channels = channels(&[scale.len(), shift.len()]).unwrap_or(1);
    let (scale, shift) = (widened(scale, channels), widened(shift, channels));
    Ok(Some(Box::new(ChannelAffine::new(gpu, &scale, &shift, Activation::Linear)?)))
}

impl LayerOp for Rescaling {
    fn name(&self) -> &'static str {
        "rescaling"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        affine_shape("rescaling input", &[self.scale.len(), self.offset.len()], inputs[0])
    }

    fn settings(&self) -> String {
        format!("{:?} {:?}", self.scale, self.offset)
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        Ok(reference_affine(inputs, &self.scale, &self.offset))
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        compile_affine(gpu, &self.scale, &self.offset)
    }
}

impl Normalization {
    /// The map as `x · scale + shift` (f32, as Keras computes the standard deviation).
    pub fn scale_and_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let deviation: Vec<f32> = self.variance.iter().map(|v| v.sqrt().max(NORMALIZATION_EPSILON)).collect();
        let channels = channels(&[self.mean.len(), deviation.len()]).unwrap_or(1);
        let (mean, deviation) = (widened(&self.mean, channels), widened(&deviation, channels));
        if self.invert {
            (deviation, mean)
        } else {
            let scale: Vec<f32> = deviation.iter().map(|d| 1.0 / d).collect();
            let shift = mean.iter().zip(&deviation).map(|(m, d)| -m / d).collect();
            (scale, shift)
        }
    }
}

impl LayerOp for Normalization {
    fn name(&self) -> &'static str {
        "normalization"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        affine_shape("normalization input", &[self.mean.len(), self.variance.len()], inputs[0])
    }

    fn settings(&self) -> String {
        format!("invert {}", self.invert)
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.mean, &self.variance]
    }

    fn parameter_count(&self) -> usize {
        0
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let (_, features) = rows_and_features(inputs.shape());
        Ok(inputs
            .x()
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = i % features;
                let deviation = at(&self.variance, c).sqrt().max(NORMALIZATION_EPSILON as f64);
                let mean = at(&self.mean, c);
                (if self.invert { mean + x as f64 * deviation } else { (x as f64 - mean) / deviation }) as f32
            })
            .collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        let (scale, shift) = self.scale_and_shift();
        compile_affine(gpu, &scale, &shift)
    }
}
