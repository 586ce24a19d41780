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
    max_pairs_per_submit: usize,
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
        let max_pairs_per_submit = (graph.max_rows() / 2).max(1);
        Ok(Self {
            gpu,
            spec,
            graph,
            max_pairs_per_submit,
        })
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

    /// The most pairs run in one submit: a batch of N pairs is one submit when N is at most
    /// this, else ceil(N / this) submits. Defaults to what fits the device's buffer and
    /// dispatch limits.
    pub fn max_pairs_per_submit(&self) -> usize {
        self.max_pairs_per_submit
    }

    /// Lowers (to bound GPU memory) or restores the pairs per submit; values above what
    /// the device allows are capped, 0 is taken as 1.
    pub fn set_max_pairs_per_submit(&mut self, pairs: usize) {
        self.max_pairs_per_submit = pairs.clamp(1, (self.graph.max_rows() / 2).max(1));
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
    /// one batch of 2N: one submit, one readback (batches beyond
    /// [`max_pairs_per_submit`](Self::max_pairs_per_submit) are split into such batches).
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
        let (sample, dim) = (left.row_len(), self.embedding_shape().iter().product::<usize>());
        let mut distances = Vec::with_capacity(n);
        let (mut left_values, mut right_values) = (Vec::new(), Vec::new());
        for start in (0..n).step_by(self.max_pairs_per_submit) {
            let end = (start + self.max_pairs_per_submit).min(n);
            let rows = start * sample..end * sample;
            let run = self.graph.run_pairs(
                &left.data()[rows.clone()],
                &right.data()[rows],
                end - start,
                metric,
                embeddings,
            )?;
            distances.extend_from_slice(&run.distances);
            if let Some(values) = run.embeddings {
                let (l, r) = values.split_at((end - start) * dim);
                left_values.extend_from_slice(l);
                right_values.extend_from_slice(r);
            }
        }
        let (left_embeddings, right_embeddings) = if embeddings {
            let shape: Vec<usize> = std::iter::once(n)
                .chain(self.embedding_shape().iter().copied())
                .collect();
            (
                Some(Array::new(shape.clone(), left_values)?),
                Some(Array::new(shape, right_values)?),
            )
        } else {
            (None, None)
        };
        Ok(PairOutput {
            distances,
            left_embeddings,
            right_embeddings,
        })
    }

    /// Embeddings `f(x)` of a `[N, ...input_shape]` batch.
    pub fn embed(&self, input: &Array) -> Result<Array> {
        let n = self.check_batch("input", input)?;
        let sample = input.row_len();
        let chunk = 2 * self.max_pairs_per_submit;
        let mut values = Vec::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            values.extend(
                self.graph
                    .run_embed(&input.data()[start * sample..end * sample], end - start)?,
            );
        }
        let shape = std::iter::once(n)
            .chain(self.embedding_shape().iter().copied())
            .collect();
        Array::new(shape, values)
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}
