//! The Siamese reduction: one distance per pair from one `[2N, dim]` embedding tensor
//! (rows `i` and `N+i`). Kernel: `shaders/distance.wgsl`.

use super::{linear_dispatch, prepare_dispatch, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders;

/// Distance between the two embeddings of a pair (over all non-batch axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Distance {
    /// sqrt(Σ (a − b)²).
    #[default]
    Euclidean,
    /// Σ (a − b)².
    SqEuclidean,
    /// 1 − a·b / (|a| |b|), norms floored at 1e-6 like Keras' l2_normalize.
    Cosine,
    /// Σ |a − b|.
    Manhattan,
    /// A learned metric head (Koch et al., 2015): `σ(Σ_j w_j·|a_j − b_j| + b)` from a
    /// `Dense(1, sigmoid)` layer's weights — a match PROBABILITY (higher = more alike),
    /// not a distance. Needs the head's weights ([`LearnedHead`]).
    Learned,
}

impl Distance {
    /// Every fixed metric (the ones that need no weights), for tests and help texts.
    pub const ALL: [Distance; 4] = [Distance::Euclidean, Distance::SqEuclidean, Distance::Cosine, Distance::Manhattan];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Distance::Euclidean => "euclidean",
            Distance::SqEuclidean => "sqeuclidean",
            Distance::Cosine => "cosine",
            Distance::Manhattan => "manhattan",
            Distance::Learned => "learned",
        }
    }

    /// Whether a larger value means a closer match (the learned head's probability).
    pub fn higher_is_closer(self) -> bool {
        self == Distance::Learned
    }

    /// The pipeline override constants selecting this metric (`METRIC` in distance.wgsl).
    pub fn constants(self) -> [(&'static str, f64); 1] {
        let code = match self {
            Distance::Euclidean => 0.0,
            Distance::SqEuclidean => 1.0,
            Distance::Cosine => 2.0,
            Distance::Manhattan => 3.0,
            Distance::Learned => 4.0,
        };
        [("METRIC", code)]
    }
}

impl std::str::FromStr for Distance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Distance::ALL.into_iter().chain([Distance::Learned]).find(|d| d.name() == s.to_ascii_lowercase()).ok_or_else(
            || {
                Error::input(
                    "distance",
                    format!("{s:?} is not one of euclidean, sqeuclidean, cosine, manhattan, learned"),
                )
            },
        )
    }
}

impl std::fmt::Display for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DistanceParams {
    pairs: u32,
    dim: u32,
    _pad: [u32; 2],
}

/// The weights of a learned metric head: one `Dense(1, sigmoid)` on `|f(a) − f(b)|`
/// (Koch et al.), or on `(f(a) − f(b))²` (a Keras head built from Subtract → Multiply).
#[derive(Clone, Debug, PartialEq)]
pub struct LearnedHead {
    /// `w`, one weight per embedding value (Keras kernel `[dim, 1]`).
    pub weights: Vec<f32>,
    /// `b`.
    pub bias: f32,
    /// Squared differences instead of absolute ones.
    pub squared: bool,
}

impl LearnedHead {
    /// The match probability of one pair of embeddings (CPU).
    pub fn probability(&self, a: &[f32], b: &[f32]) -> f32 {
        let term = |d: f32| if self.squared { d * d } else { d.abs() };
        let z: f32 = self.weights.iter().zip(a.iter().zip(b)).map(|(w, (a, b))| w * term(a - b)).sum();
        1.0 / (1.0 + (-(z + self.bias)).exp())
    }
}

/// The pair-distance reduction for one metric.
#[derive(Debug)]
pub struct PairDistance {
    metric: Distance,
    pipeline: wgpu::ComputePipeline,
    /// The learned head's `[w..., b]` (metric `Learned` only).
    head: Option<(wgpu::Buffer, usize)>,
}

impl PairDistance {
    /// Compiles the reduction for a fixed `metric` (`Learned` needs [`Self::learned`]).
    pub fn new(gpu: &Gpu, metric: Distance) -> Result<Self> {
        if metric == Distance::Learned {
            return Err(Error::input(
                "distance",
                "the learned metric needs its head's weights (setting `head`: a head.safetensors file)",
            ));
        }
        Ok(Self {
            metric,
            pipeline: gpu.pipeline(&shaders::DISTANCE, "pair_distance", &metric.constants())?,
            head: None,
        })
    }

    /// Uploads a learned head and compiles its reduction, fused like the fixed metrics:
    /// one workgroup per pair computes `σ(Σ w·|a − b| + b)`.
    pub fn learned(gpu: &Gpu, head: &LearnedHead) -> Result<Self> {
        if head.weights.is_empty() || !head.weights.iter().chain([&head.bias]).all(|v| v.is_finite()) {
            return Err(Error::input("learned head", "weights must be non-empty and finite"));
        }
        let values: Vec<f32> = head.weights.iter().copied().chain([head.bias]).collect();
        Ok(Self {
            metric: Distance::Learned,
            pipeline: gpu.pipeline(
                &shaders::DISTANCE,
                "pair_match_probability",
                &[("SQUARED", f64::from(u8::from(head.squared)))],
            )?,
            head: Some((super::weight_buffer(gpu, "learned head", &values)?, head.weights.len())),
        })
    }

    /// The metric computed.
    pub fn metric(&self) -> Distance {
        self.metric
    }

    /// A dispatch reading `[2·pairs, dim]` from `embedding` and writing `[pairs]` to
    /// `distance`: one workgroup per pair.
    pub fn prepare(
        &self,
        gpu: &Gpu,
        pairs: usize,
        dim: usize,
        embedding: &wgpu::Buffer,
        distance: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        if pairs == 0 || dim == 0 {
            return Err(Error::input(
                "pairs",
                format!("need at least one pair of non-empty embeddings, got {pairs} × {dim}"),
            ));
        }
        let params = DistanceParams { pairs: pairs as u32, dim: dim as u32, _pad: [0; 2] };
        // One workgroup per pair: the "element" count handed to linear_dispatch is pairs.
        let workgroups = linear_dispatch(gpu, "distance", pairs, 1)?;
        match &self.head {
            None => Ok(prepare_dispatch(gpu, "distance", &self.pipeline, &params, &[embedding, distance], workgroups)),
            Some((_, head_dim)) if *head_dim != dim => Err(Error::shape(
                "learned head",
                format!("{head_dim} weights (one per embedding value)"),
                format!("an embedding of {dim} values"),
            )),
            Some((head, _)) => Ok(prepare_dispatch(
                gpu,
                "learned head",
                &self.pipeline,
                &params,
                &[embedding, distance, head],
                workgroups,
            )),
        }
    }
}
