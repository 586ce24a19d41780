//! Keras PReLU: `x >= 0 ? x : alpha · x` with a trained `alpha` of the sample's shape, some
//! axes shared (`shared_axes`, size 1 in alpha). At load alpha is expanded to the trailing
//! axes it varies along (the leading shared axes repeat it: per channel, just the channels),
//! so value `i` of a sample takes `alpha[i mod alpha.len()]`. In place. Kernel family:
//! `ops::prelu` / `shaders/prelu.wgsl`.

use super::{Inputs, Io, Kernel, LayerOp, PlanContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, Precision, PreluOp};

/// PReLU with slopes over the trailing axes `shape` of each sample.
#[derive(Clone, Debug)]
pub struct Prelu {
    /// The trailing sample axes alpha varies along (a suffix of the sample shape).
    pub shape: Vec<usize>,
    /// The slopes, `shape`'s values row-major.
    pub alpha: Vec<f32>,
}

impl Prelu {
    /// From Keras' alpha of shape `param` (the sample shape with shared axes set to 1) for
    /// samples of shape `sample`: alpha broadcast to the sample's axes after the leading
    /// shared ones. None when `param` does not broadcast to `sample`.
    pub fn from_keras(param: &[usize], alpha: &[f32], sample: &[usize]) -> Option<Self> {
        let fits = param.len() == sample.len()
            && param.iter().zip(sample).all(|(&p, &s)| p == s || p == 1)
            && alpha.len() == param.iter().product::<usize>();
        if !fits {
            return None;
        }
        let lead = param.iter().zip(sample).take_while(|(&p, _)| p == 1).count();
        let lead = lead.min(sample.len().saturating_sub(1));
        let shape = sample[lead..].to_vec();
        let param = &param[lead..];
        let len = shape.iter().product::<usize>();
        let expanded = (0..len)
            .map(|flat| {
                // Index of `flat` in `shape`, then in `param` (0 along its size-1 axes).
                let (mut rest, mut source, mut stride) = (flat, 0, 1);
                for axis in (0..shape.len()).rev() {
                    let coordinate = rest % shape[axis];
                    rest /= shape[axis];
                    if param[axis] != 1 {
                        source += coordinate * stride;
                    }
                    stride *= param[axis];
                }
                alpha[source]
            })
            .collect();
        Some(Self { shape, alpha: expanded })
    }
}

impl LayerOp for Prelu {
    fn name(&self) -> &'static str {
        "prelu"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let input = inputs[0];
        let fits = input.len() > self.shape.len()
            && input[input.len() - self.shape.len()..] == self.shape[..]
            && self.alpha.len() == self.shape.iter().product::<usize>();
        if !fits {
            return Err(Error::shape("prelu input", format!("[batch, ..., {:?}]", self.shape), format!("{input:?}")));
        }
        Ok(input.to_vec())
    }

    fn settings(&self) -> String {
        format!("alpha over {:?}", self.shape)
    }

    fn weights(&self) -> Vec<&[f32]> {
        vec![&self.alpha]
    }

    fn reference(&self, inputs: &Inputs) -> Result<Vec<f32>> {
        let n = self.alpha.len();
        Ok(inputs.x().iter().enumerate().map(|(i, &x)| if x >= 0.0 { x } else { self.alpha[i % n] * x }).collect())
    }

    fn compile(&self, gpu: &Gpu, _precision: Precision) -> Result<Option<Box<dyn Kernel>>> {
        Ok(Some(Box::new(PreluOp::new(gpu, &self.alpha)?)))
    }
}

impl Kernel for PreluOp {
    fn describe(&self) -> String {
        "prelu".into()
    }

    fn in_place(&self) -> bool {
        true
    }

    fn prepare(&self, ctx: &PlanContext, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![PreluOp::prepare(self, ctx.gpu, io.shapes[0].iter().product(), io.inputs[0])?])
    }
}
