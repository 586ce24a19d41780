//! Where a Keras 3 `.keras` file keeps each layer's weights, and the names the layer
//! builders ask for them by (`{layer}/kernel`, `{layer}/moving_mean`, ...). One function per
//! row of the class table ([`super::layers`]).
//!
//! `model.weights.h5` holds a model's layers as groups under `{model}/layers/`, named
//! after the layer's CLASS in snake case (`conv2d`, `conv2d_1`, … numbered among siblings
//! in `model.layers` order; a Sequential's list leaves out its InputLayer), each with
//! `vars/0`, `vars/1`, … in variable-creation order and a `vars@name` attribute holding
//! the layer's real name (matched first; the class numbering is the fallback: see
//! [`super::file`]). Per class, relative to the layer's group:
//!
//! | class | datasets | our names |
//! |---|---|---|
//! | Conv2D, Conv1D, Dense | `vars/0`, `vars/1` | `kernel`, `bias` (absent when `use_bias=False`) |
//! | DepthwiseConv2D | `vars/0`, `vars/1` | `kernel` `(kh, kw, C, m)`, `bias` (if `use_bias`) |
//! | SeparableConv2D | `vars/0` … `vars/2` | `depthwise_kernel` `(kh, kw, C, m)`, `pointwise_kernel` `(1, 1, C·m, filters)`, `bias` (if `use_bias`) |
//! | LayerNormalization | `vars/0`, `vars/1` | `gamma` (if `scale`), `beta` (if `center`): indices shift |
//! | BatchNormalization | `vars/0` … `vars/3` | `gamma` (if `scale`), `beta` (if `center`), `moving_mean`, `moving_variance`: indices shift |
//! | Embedding | `vars/0` | `embeddings` |
//! | LSTM / GRU | `cell/vars/0,1,2` | `{lstm_cell,gru_cell}/kernel`, `recurrent_kernel`, `bias` |
//! | Bidirectional | `{forward,backward}_layer/cell/vars/…` | `{inner layer name}/{cell}/…` |
//! | MultiHeadAttention | `{query,key,value,output}_dense/vars/0,1` | `{query,key,value,attention_output}/kernel`, `bias` |
//!
//! Any other dataset under a layer's group keeps its path (`{layer}/vars/3`), so the
//! builder reports it as a weight no layer uses: nothing in the file is silently dropped.
//! (Legacy `.h5` files name their weights themselves: see [`super::file`].)

use serde_json::Value;

use super::config::{bidirectional_directions, flag, Entry};

/// `(dataset path, our name)` pairs of one layer.
pub(super) type Variables = Vec<(String, String)>;

/// `{dir}vars/{i}` → `{prefix}/{var}` for the variables present, in order.
fn listed(dir: &str, prefix: &str, vars: &[Option<&str>]) -> Variables {
    vars.iter().flatten().enumerate().map(|(i, var)| (format!("{dir}vars/{i}"), format!("{prefix}/{var}"))).collect()
}

fn bias(config: &Value) -> Option<&'static str> {
    flag(config, "use_bias", true).then_some("bias")
}

/// No weights.
pub(super) fn none(_entry: &Entry) -> Variables {
    Vec::new()
}

/// Conv2D, Conv1D, Dense: kernel, then bias (`use_bias`).
pub(super) fn kernel_bias(entry: &Entry) -> Variables {
    listed("", &entry.name, &[Some("kernel"), bias(entry.config)])
}

/// LayerNormalization: gamma (`scale`), beta (`center`).
pub(super) fn layer_norm(entry: &Entry) -> Variables {
    let (scale, center) = (entry.flag("scale", true).then_some("gamma"), entry.flag("center", true).then_some("beta"));
    listed("", &entry.name, &[scale, center])
}

/// BatchNormalization: gamma (`scale`), beta (`center`), moving_mean, moving_variance.
pub(super) fn batch_norm(entry: &Entry) -> Variables {
    let (scale, center) = (entry.flag("scale", true).then_some("gamma"), entry.flag("center", true).then_some("beta"));
    listed("", &entry.name, &[scale, center, Some("moving_mean"), Some("moving_variance")])
}

/// Normalization: its adapted statistics (none when the config gives mean and variance).
pub(super) fn normalization(entry: &Entry) -> Variables {
    let given = |key: &str| entry.config.get(key).is_some_and(|v| !v.is_null());
    if given("mean") || given("variance") {
        return Vec::new();
    }
    listed("", &entry.name, &[Some("mean"), Some("variance"), Some("count")])
}

/// Embedding: the table.
pub(super) fn embedding(entry: &Entry) -> Variables {
    listed("", &entry.name, &[Some("embeddings")])
}

/// LSTM / GRU: `cell/vars/0,1,2` → `{lstm_cell|gru_cell}/{kernel, recurrent_kernel, bias}`.
pub(super) fn recurrent(entry: &Entry) -> Variables {
    recurrent_in("", &entry.name, entry)
}

/// An LSTM's or GRU's cell variables under `dir`, named under `prefix`.
fn recurrent_in(dir: &str, prefix: &str, layer: &Entry) -> Variables {
    let cell = if layer.class == "GRU" { "gru_cell" } else { "lstm_cell" };
    [Some("kernel"), Some("recurrent_kernel"), bias(layer.config)]
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, var)| (format!("{dir}cell/vars/{i}"), format!("{prefix}/{cell}/{var}")))
        .collect()
}

/// Bidirectional: the forward and backward layers' cells, named as the builder names the
/// two directions ([`bidirectional_directions`]).
pub(super) fn bidirectional(entry: &Entry) -> Variables {
    // A config without its forward layer has no weights to name (the builder reports it).
    let Ok((forward, backward)) = bidirectional_directions(entry, "") else { return Vec::new() };
    let mut out = recurrent_in("forward_layer/", &format!("{}/{}", entry.name, forward.name), &forward);
    out.extend(recurrent_in("backward_layer/", &format!("{}/{}", entry.name, backward.name), &backward));
    out
}

/// MultiHeadAttention: the query, key, value and output dense layers' kernel and bias.
pub(super) fn attention(entry: &Entry) -> Variables {
    [("query", "query"), ("key", "key"), ("value", "value"), ("output", "attention_output")]
        .iter()
        .flat_map(|(dense, ours)| {
            listed(&format!("{dense}_dense/"), &format!("{}/{ours}", entry.name), &[Some("kernel"), bias(entry.config)])
        })
        .collect()
}

/// PReLU: alpha.
pub(super) fn prelu(entry: &Entry) -> Variables {
    listed("", &entry.name, &[Some("alpha")])
}

/// ConvNeXt's LayerScale: gamma.
pub(super) fn layer_scale(entry: &Entry) -> Variables {
    listed("", &entry.name, &[Some("gamma")])
}

/// SeparableConv2D: depthwise kernel, pointwise kernel, then bias (`use_bias`).
pub(super) fn separable(entry: &Entry) -> Variables {
    listed("", &entry.name, &[Some("depthwise_kernel"), Some("pointwise_kernel"), bias(entry.config)])
}
