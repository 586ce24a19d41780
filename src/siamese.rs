//! The user-facing Siamese model: load an encoder, pass pairs, get distances.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Graph;
use crate::model::{self, ModelSpec};
use crate::ops::Distance;
use crate::tensor::Array;

/// Distances (and optionally embeddings) for a batch of pairs.
#[derive(Clone, Debug)]
pub struct PairOutput {
    /// `d_i = dist(f(left_i), f(right_i))`.
    pub distances: Vec<f32>,
    /// `f(left)` as `[N, embedding...]`, when asked for.
    pub left_embeddings: Option<Array>,
    /// `f(right)` as `[N, embedding...]`, when asked for.
    pub right_embeddings: Option<Array>,
}

/// A Siamese network: one shared encoder on the GPU plus a distance.
#[derive(Debug)]
pub struct SiameseModel {
    gpu: Arc<Gpu>,
    spec: ModelSpec,
    graph: Graph,
}

impl SiameseModel {
    /// Loads a model directory (`model.json` + `model.safetensors`) on the default GPU
    /// (see [`Gpu::new`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(Arc::new(Gpu::new()?), path)
    }

    /// Loads a model directory on a given GPU context.
    pub fn load_on(gpu: Arc<Gpu>, path: impl AsRef<Path>) -> Result<Self> {
        Self::from_spec(gpu, model::load(path)?)
    }

    /// Uploads an in-memory model description: weights go to the GPU and every pipeline
    /// (all four distance metrics included) is compiled here, once.
    pub fn from_spec(gpu: Arc<Gpu>, spec: ModelSpec) -> Result<Self> {
        let graph = Graph::new(gpu.clone(), &spec)?;
        for metric in Distance::ALL {
            graph.prepare_metric(metric)?;
        }
        Ok(Self { gpu, spec, graph })
    }

    /// The GPU context in use.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The model description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The graph runner.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Input shape of one sample, e.g. `[28, 28, 1]`.
    pub fn input_shape(&self) -> &[usize] {
        self.graph.input_shape()
    }

    /// Embedding shape of one sample, e.g. `[128]`.
    pub fn embedding_shape(&self) -> &[usize] {
        self.graph.embedding_shape()
    }

    fn check_batch(&self, what: &str, array: &Array) -> Result<usize> {
        let shape = array.shape();
        if shape.len() != self.input_shape().len() + 1 || &shape[1..] != self.input_shape() {
            return Err(Error::shape(
                what,
                format!("[N, {}]", join(self.input_shape())),
                format!("{shape:?}"),
            ));
        }
        if shape[0] == 0 {
            return Err(Error::input(what, "the batch is empty (N = 0)"));
        }
        array.check_finite(what)?;
        Ok(shape[0])
    }

    /// Distances between `left[i]` and `right[i]`, both `[N, ...input_shape]`.
    pub fn distances(&self, left: &Array, right: &Array, metric: Distance) -> Result<Vec<f32>> {
        Ok(self.pairs(left, right, metric, false)?.distances)
    }

    /// Distances, plus both twins' embeddings when `embeddings` is true. Both twins run as
    /// one batch of 2N: one submit, one readback.
    pub fn pairs(&self, left: &Array, right: &Array, metric: Distance, embeddings: bool) -> Result<PairOutput> {
        let n = self.check_batch("left", left)?;
        let m = self.check_batch("right", right)?;
        if n != m {
            return Err(Error::shape(
                "pairs",
                format!("as many right rows as left rows ({n})"),
                format!("{m}"),
            ));
        }
        let run = self.graph.run_pairs(left.data(), right.data(), n, metric, embeddings)?;
        let (left_embeddings, right_embeddings) = match run.embeddings {
            Some(values) => {
                let shape: Vec<usize> = std::iter::once(n)
                    .chain(self.embedding_shape().iter().copied())
                    .collect();
                let half = values.len() / 2;
                (
                    Some(Array::new(shape.clone(), values[..half].to_vec())?),
                    Some(Array::new(shape, values[half..].to_vec())?),
                )
            }
            None => (None, None),
        };
        Ok(PairOutput {
            distances: run.distances,
            left_embeddings,
            right_embeddings,
        })
    }

    /// Embeddings `f(x)` of a `[N, ...input_shape]` batch.
    pub fn embed(&self, input: &Array) -> Result<Array> {
        let n = self.check_batch("input", input)?;
        let values = self.graph.run_embed(input.data(), n)?;
        let shape = std::iter::once(n)
            .chain(self.embedding_shape().iter().copied())
            .collect();
        Array::new(shape, values)
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}
