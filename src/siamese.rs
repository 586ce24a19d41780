//! The user-facing Siamese model: load an encoder, pass pairs, get distances.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Batch, Graph, PairRun};
use crate::model::keras_file::{self, TwinHead};
use crate::model::{self, LoadOptions, ModelSpec, Score};
use crate::ops::{Distance, LearnedHead, Precision};

/// The learned metric head's file name in a model directory.
pub const LEARNED_HEAD_FILE: &str = "head.safetensors";
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
    graph: Graph,
    pair_cap: Option<usize>,
    allow_nonfinite: bool,
    /// For a whole Siamese model loaded from a Keras file: the encoder found and its head.
    twin: Option<(Option<String>, TwinHead)>,
}

/// What a twin head computed for a batch of pairs ([`SiameseModel::predict`]).
#[derive(Clone, Debug)]
pub struct Prediction {
    /// One value per pair, as Keras' `model.predict([left, right])` gives it.
    pub scores: Vec<f32>,
    /// What the values mean (a distance, a similarity, a probability).
    pub score: Score,
}

/// Both twins' batches of one pair call, with their lengths.
#[derive(Clone, Copy)]
struct Twins<'a> {
    left: &'a Array,
    left_lengths: Option<&'a [usize]>,
    right: &'a Array,
    right_lengths: Option<&'a [usize]>,
}

/// One twin's batch checked against the model: values padded to the common number of
/// steps, and the step mask.
struct Prepared {
    values: Vec<f32>,
    mask: Vec<u32>,
}

impl SiameseModel {
    /// Loads a model directory (`model.json` + `model.safetensors`) or a Keras file
    /// (`.keras`, legacy `.h5`; a whole Siamese model or its encoder) on the default GPU
    /// (see [`Gpu::new`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(Arc::new(Gpu::new()?), path)
    }

    /// Loads a model directory on a given GPU context. A `head.safetensors` beside the
    /// model (a learned metric head) is loaded too, for [`Distance::Learned`].
    pub fn load_on(gpu: Arc<Gpu>, path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with_precision(gpu, path, Precision::F32)
    }

    /// As [`load_on`](Self::load_on), storing the big weight matrices in `precision`
    /// (`Precision::F16`: half the GPU memory and upload, at the accuracy measured in
    /// BENCHMARKS.md).
    pub fn load_with_precision(gpu: Arc<Gpu>, path: impl AsRef<Path>, precision: Precision) -> Result<Self> {
        Self::load_with_options(gpu, path, &LoadOptions::default().precision(precision))
    }

    /// As [`load_on`](Self::load_on), with load options: the weights' precision, and Keras
    /// custom classes to load as built-ins (`LoadOptions::default().custom_layer("MyDense",
    /// "Dense")`; the CLI's `--custom-layer MyDense=Dense`).
    pub fn load_with_options(gpu: Arc<Gpu>, path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let (path, precision) = (path.as_ref(), options.precision);
        match model::detect_format(path)? {
            model::Format::KerasFile => {
                // A Keras file, possibly a whole twin: its encoder runs, its head as it maps.
                let file = keras_file::load_keras_file_with(path, options)?;
                let mut model = Self::from_spec_with_precision(gpu.clone(), file.spec, precision)?;
                match &file.head {
                    TwinHead::Learned(head) => model.set_learned_head(head)?,
                    TwinHead::Layers(head) => {
                        model.graph.set_twin_head(Graph::with_precision(gpu, &head.spec, precision)?)?;
                    }
                    _ => {}
                }
                model.twin = Some((file.encoder, file.head));
                Ok(model)
            }
            model::Format::BertFolder => Err(Error::ModelFormat {
                file: path.display().to_string(),
                reason: "a BERT sentence model (config.json + tokenizer.json): load it as a SentenceModel, \
                         which tokenises sentences"
                    .into(),
            }),
            model::Format::Onnx => Self::from_spec_with_precision(gpu, model::onnx::load_onnx(path)?, precision),
            model::Format::Directory => {
                let model = Self::from_spec_with_precision(gpu, model::load_with(path, options)?, precision)?;
                let head = path.join(LEARNED_HEAD_FILE);
                if head.is_file() {
                    model.set_learned_head(&model::learned_head::read_learned_head(&head)?)?;
                }
                Ok(model)
            }
        }
    }

    /// For a model loaded from a Keras file: the shared encoder found in a whole Siamese
    /// model (None: the file was the encoder) and the head that followed it.
    pub fn keras_twin(&self) -> Option<(Option<&str>, &TwinHead)> {
        self.twin.as_ref().map(|(encoder, head)| (encoder.as_deref(), head))
    }

    /// Installs (or replaces) the learned metric head: `Distance::Learned` then gives
    /// `σ(Σ w·|f(a) − f(b)| + b)`, a match probability, fused into the reduction shader.
    pub fn set_learned_head(&self, head: &LearnedHead) -> Result<()> {
        self.graph.set_learned_head(head)
    }

    /// Uploads an in-memory model description: weights go to the GPU and every pipeline
    /// (all four distance metrics included) is compiled here, once.
    pub fn from_spec(gpu: Arc<Gpu>, spec: ModelSpec) -> Result<Self> {
        Self::from_spec_with_precision(gpu, spec, Precision::F32)
    }

    /// As [`from_spec`](Self::from_spec), with the weights stored in `precision`.
    pub fn from_spec_with_precision(gpu: Arc<Gpu>, spec: ModelSpec, precision: Precision) -> Result<Self> {
        let graph = Graph::with_precision(gpu.clone(), &spec, precision)?;
        for metric in Distance::ALL {
            graph.prepare_metric(metric)?;
        }
        Ok(Self { gpu, graph, pair_cap: None, allow_nonfinite: false, twin: None })
    }

    /// The GPU context in use.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The model description.
    pub fn spec(&self) -> &ModelSpec {
        self.graph.spec()
    }

    /// The graph runner.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The most pairs of `steps`-step inputs run in one submit (steps is ignored by models
    /// without a time axis): a batch of N pairs is one submit when N is at most this, else
    /// ceil(N / this) submits. What fits the device's buffer and dispatch limits, unless
    /// lowered by [`set_max_pairs_per_submit`](Self::set_max_pairs_per_submit).
    pub fn max_pairs_per_submit(&self, steps: usize) -> usize {
        let fits = (self.graph.max_rows(steps.max(1)) / 2).max(1);
        self.pair_cap.map_or(fits, |cap| cap.clamp(1, fits))
    }

    /// Runs LSTM layers with one dispatch per time step instead of one per sequence: the
    /// baseline `siamese bench --recurrent-per-step` compares against. Same results.
    pub fn set_recurrent_per_step(&mut self, per_step: bool) -> Result<()> {
        self.graph.set_recurrent_per_step(per_step)
    }

    /// Lets NaN/Inf input values through to the GPU instead of refusing the batch (the
    /// default). What they become depends on the layers: arithmetic spreads them, ReLU
    /// and max-pooling may drop them; other rows are never affected.
    pub fn set_allow_nonfinite(&mut self, allow: bool) {
        self.allow_nonfinite = allow;
    }

    /// Caps the pairs per submit (to bound GPU memory); None restores the default.
    pub fn set_max_pairs_per_submit(&mut self, pairs: Option<usize>) {
        self.pair_cap = pairs;
    }

    /// Input shape of one sample, e.g. `[28, 28, 1]`; 0 marks a variable time axis
    /// (`[0, 100]`: sequences of any length with 100 features).
    pub fn input_shape(&self) -> &[usize] {
        self.graph.input_shape()
    }

    /// Whether inputs are sequences `[N, steps, features]` of any length.
    pub fn is_sequence(&self) -> bool {
        self.spec().is_sequence()
    }

    /// Embedding shape of one sample (for sequence models, of a sequence of one step: a
    /// recurrent encoder that returns sequences has one row per step).
    pub fn embedding_shape(&self) -> Vec<usize> {
        self.graph.embedding_shape(1).unwrap_or_default()
    }

    /// Checks one twin's batch; returns (N, steps).
    fn check_batch(&self, what: &str, array: &Array, lengths: Option<&[usize]>) -> Result<(usize, usize)> {
        let shape = array.shape();
        let expected = self.input_shape();
        let sequence = self.is_sequence();
        let matches = shape.len() == expected.len() + 1
            && shape[1..].iter().zip(expected).all(|(&got, &want)| want == 0 || got == want);
        if !matches || (sequence && shape[1] == 0) {
            let dims: Vec<String> =
                expected.iter().map(|&d| if d == 0 { "steps".to_string() } else { d.to_string() }).collect();
            return Err(Error::shape(what, format!("[N, {}]", dims.join(", ")), format!("{shape:?}")));
        }
        if shape[0] == 0 {
            return Err(Error::input(what, "the batch is empty (N = 0)"));
        }
        if !self.allow_nonfinite {
            array.check_finite(what)?;
        }
        if let Some(vocab) = self.spec().token_vocab() {
            let steps = shape[1].max(1);
            if let Some((i, &id)) =
                array.data().iter().enumerate().find(|&(_, &v)| v < 0.0 || v.fract() != 0.0 || v >= vocab as f32)
            {
                return Err(Error::input(
                    what,
                    format!(
                        "token id {id} at [{}, {}] is not an integer in 0..{vocab} (the Embedding's input_dim)",
                        i / steps,
                        i % steps
                    ),
                ));
            }
        }
        // Steps of the time axis the recurrent layers run over: the batch's own for a
        // variable axis, the model's for a fixed one (`Input((20, 8))` -> LSTM), else 1.
        let recurrent = self.graph.reads_mask();
        let steps = match (sequence, recurrent) {
            (true, _) => shape[1],
            (false, true) => expected.first().copied().unwrap_or(1).max(1),
            (false, false) => 1,
        };
        if let Some(lengths) = lengths {
            if !sequence && !recurrent {
                return Err(Error::input(format!("{what} lengths"), "this model's input has no time axis"));
            }
            if !recurrent {
                return Err(Error::input(
                    format!("{what} lengths"),
                    "only recurrent layers skip padding: attention and pooling in this model would read it",
                ));
            }
            if lengths.len() != shape[0] {
                return Err(Error::shape(
                    format!("{what} lengths"),
                    format!("{} lengths", shape[0]),
                    lengths.len().to_string(),
                ));
            }
            if let Some((i, &len)) = lengths.iter().enumerate().find(|&(_, &len)| len == 0 || len > steps) {
                return Err(Error::input(
                    format!("{what} lengths"),
                    format!("length {len} of row {i} is not in 1..={steps}"),
                ));
            }
        }
        Ok((shape[0], steps))
    }

    /// Pads one twin's sequences to `steps` and builds its mask: a step is real when it is
    /// inside the row's length (if given), inside the array, and (with a Masking layer) not
    /// entirely equal to the mask value. `array` was checked by `check_batch`, whose
    /// `steps` are at least the array's own.
    fn prepare(&self, array: &Array, lengths: Option<&[usize]>, steps: usize) -> Prepared {
        if !self.graph.reads_mask() && !self.is_sequence() {
            return Prepared { values: array.data().to_vec(), mask: Vec::new() };
        }
        let rows = array.batch();
        let own_steps = array.shape().get(1).copied().unwrap_or(1).min(steps);
        let features = array.row_len() / own_steps.max(1);
        let mask_value = self.spec().mask_value();
        let mut values = vec![0.0; rows * steps * features];
        let mut mask = vec![0; rows * steps];
        for r in 0..rows {
            let length = lengths.map_or(own_steps, |l| l[r]);
            for t in 0..own_steps {
                let step = &array.data()[(r * own_steps + t) * features..(r * own_steps + t + 1) * features];
                values[(r * steps + t) * features..(r * steps + t + 1) * features].copy_from_slice(step);
                let masked = mask_value.is_some_and(|v| step.iter().all(|&x| x == v));
                mask[r * steps + t] = u32::from(t < length && !masked);
            }
        }
        Prepared { values, mask }
    }

    /// Distances between `left[i]` and `right[i]`, both `[N, ...input_shape]`.
    pub fn distances(&self, left: &Array, right: &Array, metric: Distance) -> Result<Vec<f32>> {
        Ok(self.pairs(left, right, metric, false)?.distances)
    }

    /// Distances, plus both twins' embeddings when `embeddings` is true. Both twins run as
    /// one batch of 2N: one submit, one readback (batches beyond
    /// [`max_pairs_per_submit`](Self::max_pairs_per_submit) are split into such batches).
    pub fn pairs(&self, left: &Array, right: &Array, metric: Distance, embeddings: bool) -> Result<PairOutput> {
        self.pairs_ragged(left, None, right, None, metric, embeddings)
    }

    /// [`pairs`](Self::pairs) for sequence models with per-row lengths (the embedding of
    /// a sequence is the state at its own last step). Left and right may have different
    /// numbers of steps; without lengths every row is full length (or as its Masking
    /// layer says).
    pub fn pairs_ragged(
        &self,
        left: &Array,
        left_lengths: Option<&[usize]>,
        right: &Array,
        right_lengths: Option<&[usize]>,
        metric: Distance,
        embeddings: bool,
    ) -> Result<PairOutput> {
        let what = format!("the {metric} distance");
        let run = |batch: &Batch| self.graph.run_pairs(batch, metric, embeddings);
        let recheck = |batch: &Batch| self.graph.run_pairs(batch, metric, true);
        let twins = Twins { left, left_lengths, right, right_lengths };
        self.run_chunks(twins, run, recheck, what)
    }

    /// Whether the model has a head of layers that [`predict`](Self::predict) runs (a
    /// Keras twin whose head is more than a distance), and what its values mean.
    pub fn head_score(&self) -> Option<Score> {
        match self.keras_twin() {
            Some((_, TwinHead::Layers(head))) => Some(head.score),
            _ => None,
        }
    }

    /// What the whole Siamese model outputs for `left[i]`, `right[i]` (Keras'
    /// `model.predict([left, right])`): the encoder on both twins as one batch of 2N, then
    /// the head's layers on the GPU, in one submit. Only for a model with a head of layers
    /// ([`head_score`](Self::head_score)); other models give [`pairs`](Self::pairs).
    pub fn predict(&self, left: &Array, right: &Array) -> Result<Prediction> {
        self.predict_ragged(left, None, right, None)
    }

    /// [`predict`](Self::predict) for sequence models with per-row lengths.
    pub fn predict_ragged(
        &self,
        left: &Array,
        left_lengths: Option<&[usize]>,
        right: &Array,
        right_lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        let score = self.head_score().ok_or_else(|| {
            Error::input(
                "predict",
                "this model has no head of layers (an encoder, or a twin whose head is a distance): use pairs() \
                 with a distance",
            )
        })?;
        let what = "the head's output".to_string();
        let run = |batch: &Batch| Ok(PairRun { distances: self.graph.run_model(batch)?, embeddings: None });
        let recheck = |batch: &Batch| self.graph.run_pairs(batch, Distance::Euclidean, true);
        let twins = Twins { left, left_lengths, right, right_lengths };
        let output = self.run_chunks(twins, run, recheck, what)?;
        Ok(Prediction { scores: output.distances, score })
    }

    /// Checks both twins, then runs them in chunks of at most
    /// [`max_pairs_per_submit`](Self::max_pairs_per_submit) pairs through `run` (one value
    /// per pair, embeddings when it reads them); a non-finite value is an error naming the
    /// twin that overflowed (`recheck` reads the embeddings back), else `what` the value is.
    fn run_chunks(
        &self,
        twins: Twins,
        run: impl Fn(&Batch) -> Result<PairRun>,
        recheck: impl Fn(&Batch) -> Result<PairRun>,
        what: String,
    ) -> Result<PairOutput> {
        let Twins { left, left_lengths, right, right_lengths } = twins;
        let (n, left_steps) = self.check_batch("left", left, left_lengths)?;
        let (m, right_steps) = self.check_batch("right", right, right_lengths)?;
        if n != m {
            return Err(Error::shape("pairs", format!("as many right rows as left rows ({n})"), format!("{m}")));
        }
        if left_steps != right_steps && !self.graph.reads_mask() {
            return Err(Error::shape(
                "right",
                format!("{left_steps} steps, as left (only recurrent layers can skip padding)"),
                right_steps.to_string(),
            ));
        }
        let steps = left_steps.max(right_steps);
        let left = self.prepare(left, left_lengths, steps);
        let right = self.prepare(right, right_lengths, steps);
        let embedding_shape = self.graph.embedding_shape(steps)?;
        let dim: usize = embedding_shape.iter().product();
        let sample = left.values.len() / n;
        let chunk = self.max_pairs_per_submit(steps);
        let mut distances = Vec::with_capacity(n);
        let (mut left_values, mut right_values) = (Vec::new(), Vec::new());
        let mut embeddings = false;
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let rows = start * sample..end * sample;
            let (mask_left, mask_right) = if left.mask.is_empty() {
                (&[][..], &[][..])
            } else {
                (&left.mask[start * steps..end * steps], &right.mask[start * steps..end * steps])
            };
            let mask = [mask_left, mask_right].concat();
            let parts = [&left.values[rows.clone()], &right.values[rows]];
            let batch = Batch { parts: &parts, rows: 2 * (end - start), steps, mask: &mask };
            let out = run(&batch)?;
            if let Some(i) = out.distances.iter().position(|d| !d.is_finite()).filter(|_| !self.allow_nonfinite) {
                // Rare: read this chunk's embeddings back to say which twin overflowed.
                let values = match out.embeddings {
                    Some(values) => values,
                    None => recheck(&batch)?.embeddings.unwrap_or_default(),
                };
                let value = out.distances[i];
                return Err(nonfinite_pair(start, end - start, i, &values, dim, &what, value));
            }
            distances.extend_from_slice(&out.distances);
            if let Some(values) = out.embeddings {
                embeddings = true;
                let (l, r) = values.split_at((end - start) * dim);
                left_values.extend_from_slice(l);
                right_values.extend_from_slice(r);
            }
        }
        let (left_embeddings, right_embeddings) = if embeddings {
            let shape: Vec<usize> = std::iter::once(n).chain(embedding_shape).collect();
            (Some(Array::new(shape.clone(), left_values)?), Some(Array::new(shape, right_values)?))
        } else {
            (None, None)
        };
        Ok(PairOutput { distances, left_embeddings, right_embeddings })
    }

    /// Embeddings `f(x)` of a `[N, ...input_shape]` batch.
    pub fn embed(&self, input: &Array) -> Result<Array> {
        self.embed_ragged(input, None)
    }

    /// [`embed`](Self::embed) for sequence models with per-row lengths.
    pub fn embed_ragged(&self, input: &Array, lengths: Option<&[usize]>) -> Result<Array> {
        let (n, steps) = self.check_batch("input", input, lengths)?;
        let prepared = self.prepare(input, lengths, steps);
        let sample = prepared.values.len() / n;
        let chunk = 2 * self.max_pairs_per_submit(steps);
        let mut values = Vec::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let mask = if prepared.mask.is_empty() { &[][..] } else { &prepared.mask[start * steps..end * steps] };
            let parts = [&prepared.values[start * sample..end * sample]];
            values.extend(self.graph.run_embed(&Batch { parts: &parts, rows: end - start, steps, mask })?);
        }
        let shape: Vec<usize> = std::iter::once(n).chain(self.graph.embedding_shape(steps)?).collect();
        if !self.allow_nonfinite {
            let dim = shape[1..].iter().product::<usize>().max(1);
            if let Some(j) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("the embedding of input row {}", j / dim),
                    reason: format!("value {} at index {}: {OVERFLOW}", values[j], j % dim),
                });
            }
        }
        Array::new(shape, values)
    }
}

/// Why an embedding is not finite when the inputs were.
const OVERFLOW: &str = "the encoder overflowed float32 (weights or inputs too large; \
                        non-finite values pass only when allowed)";

/// The error for pair `i` of a chunk of `pairs` pairs starting at pair `first`, whose
/// distance came out NaN or infinite: the twin and row whose embedding is not finite, else
/// the distance itself beyond f32. `embeddings` holds the chunk's `[2 · pairs, dim]` rows,
/// left twin first.
fn nonfinite_pair(
    first: usize,
    pairs: usize,
    i: usize,
    embeddings: &[f32],
    dim: usize,
    what: &str,
    value: f32,
) -> Error {
    let rows = [("left", i), ("right", pairs + i)];
    for (twin, row) in rows {
        let values = embeddings.get(row * dim..(row + 1) * dim).unwrap_or_default();
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Error::NonFinite {
                what: format!("the {twin} embedding of pair {} (row {} of {twin})", first + i, first + i),
                reason: format!("value {} at index {j}: {OVERFLOW}", values[j]),
            };
        }
    }
    let largest = rows
        .iter()
        .flat_map(|&(_, row)| embeddings.get(row * dim..(row + 1) * dim).unwrap_or_default())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    Error::NonFinite {
        what: format!("{what} of pair {}", first + i),
        reason: format!("{value}: beyond float32's range (embedding values up to {largest:e})"),
    }
}
