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
}

impl Distance {
    /// Every metric, for tests and help texts.
    pub const ALL: [Distance; 4] = [Distance::Euclidean, Distance::SqEuclidean, Distance::Cosine, Distance::Manhattan];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Distance::Euclidean => "euclidean",
            Distance::SqEuclidean => "sqeuclidean",
            Distance::Cosine => "cosine",
            Distance::Manhattan => "manhattan",
        }
    }

    /// The pipeline override constants selecting this metric (`METRIC` in distance.wgsl).
    pub fn constants(self) -> [(&'static str, f64); 1] {
        let code = match self {
            Distance::Euclidean => 0.0,
            Distance::SqEuclidean => 1.0,
            Distance::Cosine => 2.0,
            Distance::Manhattan => 3.0,
        };
        [("METRIC", code)]
    }
}

impl std::str::FromStr for Distance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Distance::ALL.into_iter().find(|d| d.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            Error::input("distance", format!("{s:?} is not one of euclidean, sqeuclidean, cosine, manhattan"))
        })
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

/// The pair-distance reduction for one metric.
#[derive(Debug)]
pub struct PairDistance {
    metric: Distance,
    pipeline: wgpu::ComputePipeline,
}

impl PairDistance {
    /// Compiles the reduction for `metric`.
    pub fn new(gpu: &Gpu, metric: Distance) -> Result<Self> {
        Ok(Self { metric, pipeline: gpu.pipeline(&shaders::DISTANCE, "pair_distance", &metric.constants())? })
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
        Ok(prepare_dispatch(gpu, "distance", &self.pipeline, &params, &[embedding, distance], workgroups))
    }
}
