//! Sentence-BERT as a Siamese network: a BERT encoder (e.g. all-MiniLM-L6-v2) read from the
//! folder sentence-transformers / Hugging Face write into the graph IR
//! ([`crate::model::bert`]), tokenised with the `tokenizers` crate, and run by the shared
//! runner ([`Graph`]): both sentences of every pair as one batch, mean-pooled over the real
//! tokens, normalised, and compared by cosine similarity — one submit per call.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Batch, Graph};
use crate::model::bert::{self, BertConfig, LAYERS_PER_BLOCK};
use crate::ops::{Distance, Precision};
use crate::tensor::Array;

pub use crate::model::bert::find_installed_minilm;

/// A sentence-embedding model (BERT encoder + mean pooling + normalisation) on the GPU.
#[derive(Debug)]
pub struct SentenceModel {
    gpu: Arc<Gpu>,
    tokenizer: tokenizers::Tokenizer,
    config: BertConfig,
    max_seq_length: usize,
    vocab: usize,
    graph: Graph,
}

/// A tokenised batch: `[sentences, steps, 2]` (id, type) values padded to the longest
/// sentence, the `[sentences, steps]` mask of real tokens, and `steps`.
struct Tokens {
    values: Vec<f32>,
    mask: Vec<u32>,
    steps: usize,
}

impl SentenceModel {
    /// Loads a sentence-transformers / Hugging Face BERT folder on the default GPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(Arc::new(Gpu::new()?), dir)
    }

    /// Loads a model folder on a given GPU context: weights uploaded and pipelines built once.
    pub fn load_on(gpu: Arc<Gpu>, dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with_precision(gpu, dir, Precision::F32)
    }

    /// As [`load_on`](Self::load_on), with the encoder layers' weight matrices (attention
    /// projections, feed-forward) stored in `precision`; embedding tables stay f32.
    pub fn load_with_precision(gpu: Arc<Gpu>, dir: impl AsRef<Path>, precision: Precision) -> Result<Self> {
        let model = bert::load_bert(dir.as_ref())?;
        let path = &model.tokenizer;
        let tokenizer_error = |reason: String| Error::ModelFormat { file: path.display().to_string(), reason };
        let mut tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| tokenizer_error(format!("cannot load the tokenizer: {e}")))?;
        let truncation = tokenizers::TruncationParams { max_length: model.max_seq_length, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| tokenizer_error(e.to_string()))?;
        tokenizer.with_padding(None);
        let graph = Graph::with_precision(gpu.clone(), &model.spec, precision)?;
        graph.prepare_metric(Distance::Cosine)?;
        Ok(Self {
            gpu,
            tokenizer,
            config: model.config,
            max_seq_length: model.max_seq_length,
            vocab: model.vocab,
            graph,
        })
    }

    /// The GPU context in use.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The graph runner (the same one every model runs on).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Longest input in tokens (longer sentences are truncated, as sentence-transformers does).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Embedding size.
    pub fn dimension(&self) -> usize {
        self.config.hidden_size
    }

    /// Token ids of each sentence ([CLS] … [SEP], truncated to `max_seq_length`).
    pub fn token_ids(&self, sentences: &[&str]) -> Result<Vec<Vec<u32>>> {
        sentences.iter().map(|s| self.encode(s).map(|e| e.get_ids().to_vec())).collect()
    }

    fn encode(&self, sentence: &str) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode(sentence, true)
            .map_err(|e| Error::input("sentence", format!("cannot tokenise {sentence:?}: {e}")))
    }

    /// Every sentence tokenised once, each token id checked against the vocabulary.
    fn encode_all(&self, sentences: &[&str]) -> Result<Vec<tokenizers::Encoding>> {
        if sentences.is_empty() {
            return Err(Error::input("sentences", "no sentence given"));
        }
        let encodings = sentences.iter().map(|s| self.encode(s)).collect::<Result<Vec<_>>>()?;
        if let Some(&id) = encodings.iter().flat_map(|e| e.get_ids()).find(|&&id| id as usize >= self.vocab) {
            return Err(Error::input("sentence", format!("token id {id} is outside the vocabulary")));
        }
        Ok(encodings)
    }

    /// One batch of encoded sentences, padded to the longest, as sentence-transformers does.
    fn tokens(encodings: &[&tokenizers::Encoding]) -> Tokens {
        let steps = longest(encodings.iter().copied());
        let mut values = vec![0.0f32; encodings.len() * steps * 2];
        let mut mask = vec![0u32; encodings.len() * steps];
        for (b, encoding) in encodings.iter().enumerate() {
            for (t, (&id, &kind)) in encoding.get_ids().iter().zip(encoding.get_type_ids()).enumerate() {
                let token = b * steps + t;
                values[2 * token] = id as f32;
                values[2 * token + 1] = kind as f32;
                mask[token] = 1;
            }
        }
        Tokens { values, mask, steps }
    }

    /// Sentence embeddings `[N, dimension]` (normalised when the model has a Normalize module).
    pub fn embed(&self, sentences: &[&str]) -> Result<Array> {
        let encodings = self.encode_all(sentences)?;
        let chunk = self.sentences_per_submit(&encodings);
        let mut values = Vec::with_capacity(sentences.len() * self.dimension());
        for part in encodings.chunks(chunk) {
            let tokens = Self::tokens(&part.iter().collect::<Vec<_>>());
            values.extend(tokens.run(part.len(), |batch| self.graph.run_embed(batch))?);
        }
        Array::new(vec![sentences.len(), self.dimension()], values)
    }

    /// How many sentences fit one submit for the longest sentence: what the runner says
    /// fits its buffers and dispatches. Every row is computed independently, so chunking
    /// changes no number.
    fn sentences_per_submit(&self, encodings: &[tokenizers::Encoding]) -> usize {
        self.graph.max_rows(longest(encodings.iter())).max(2)
    }

    /// Cosine similarity of each pair: both sentences of every pair in one batch, one
    /// submit (batches too large for one storage binding are split into several).
    /// Identical sentences give exactly 1.
    pub fn similarity(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Err(Error::input("pairs", "no sentence pair given"));
        }
        // Each pair's two sentences, side by side: [a0, b0, a1, b1, ...].
        let all: Vec<&str> = pairs.iter().flat_map(|p| [p.0, p.1]).collect();
        let encodings = self.encode_all(&all)?;
        let chunk = (self.sentences_per_submit(&encodings) / 2).max(1);
        let mut scores = Vec::with_capacity(pairs.len());
        for part in encodings.chunks(2 * chunk) {
            // The runner's batch: the left sentences, then the right ones.
            let batch: Vec<&tokenizers::Encoding> =
                part.iter().step_by(2).chain(part.iter().skip(1).step_by(2)).collect();
            let run = Self::tokens(&batch).run(batch.len(), |b| self.graph.run_pairs(b, Distance::Cosine, false))?;
            scores.extend(run.distances.into_iter().map(|d| 1.0 - d));
        }
        Ok(scores)
    }

    /// Token states `[N, steps, hidden]` after the embeddings (`layers = 0`) or after that
    /// many encoder layers, padded to the longest sentence: for checking against a reference.
    pub fn token_states(&self, sentences: &[&str], layers: usize) -> Result<Array> {
        let encodings = self.encode_all(sentences)?;
        let tokens = Self::tokens(&encodings.iter().collect::<Vec<_>>());
        let nodes = 1 + layers.min(self.config.num_hidden_layers) * LAYERS_PER_BLOCK;
        let values = tokens.run(sentences.len(), |batch| self.graph.run_value(batch, nodes))?;
        Array::new(vec![sentences.len(), tokens.steps, self.dimension()], values)
    }
}

impl Tokens {
    /// Hands the runner these tokens as one batch of `rows` sentences.
    fn run<T>(&self, rows: usize, f: impl FnOnce(&Batch) -> Result<T>) -> Result<T> {
        let parts = [self.values.as_slice()];
        f(&Batch { parts: &parts, rows, steps: self.steps, mask: &self.mask })
    }
}

/// Tokens of the longest encoding (at least 1).
fn longest<'a>(encodings: impl Iterator<Item = &'a tokenizers::Encoding>) -> usize {
    encodings.map(|e| e.get_ids().len()).max().unwrap_or(1).max(1)
}
