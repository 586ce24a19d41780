//! Where a Keras 3 `.keras` file keeps each layer's weights: its `model.weights.h5` stores
//! a layer's variables as `vars/0, vars/1, ...` (relative to the layer's group) in the order
//! the layer created them; these functions name them as the builders ask for them
//! (`{layer}/kernel`, `{layer}/moving_mean`, ...). One per row of the class table.

use serde_json::Value;

/// `(dataset path, our name)` pairs of one layer.
pub(super) type Variables = Vec<(String, String)>;

fn flag(config: &Value, key: &str, default: bool) -> bool {
    config.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// `{dir}vars/{i}` → `{prefix}/{var}` for the variables present, in order.
fn listed(dir: &str, prefix: &str, vars: &[Option<&str>]) -> Variables {
    vars.iter().flatten().enumerate().map(|(i, var)| (format!("{dir}vars/{i}"), format!("{prefix}/{var}"))).collect()
}

fn bias(config: &Value) -> Option<&'static str> {
    flag(config, "use_bias", true).then_some("bias")
}

/// No weights.
pub(super) fn none(_class: &str, _config: &Value, _name: &str) -> Variables {
    Vec::new()
}

/// Conv2D, Dense: kernel, then bias (`use_bias`).
pub(super) fn kernel_bias(_class: &str, config: &Value, name: &str) -> Variables {
    listed("", name, &[Some("kernel"), bias(config)])
}

/// LayerNormalization: gamma (`scale`), beta (`center`).
pub(super) fn layer_norm(_class: &str, config: &Value, name: &str) -> Variables {
    listed("", name, &[flag(config, "scale", true).then_some("gamma"), flag(config, "center", true).then_some("beta")])
}

/// BatchNormalization: gamma (`scale`), beta (`center`), moving_mean, moving_variance.
pub(super) fn batch_norm(_class: &str, config: &Value, name: &str) -> Variables {
    let scale = flag(config, "scale", true).then_some("gamma");
    let center = flag(config, "center", true).then_some("beta");
    listed("", name, &[scale, center, Some("moving_mean"), Some("moving_variance")])
}

/// Normalization: its adapted statistics (none when the config gives mean and variance).
pub(super) fn normalization(_class: &str, config: &Value, name: &str) -> Variables {
    let given = |key: &str| config.get(key).is_some_and(|v| !v.is_null());
    if given("mean") || given("variance") {
        return Vec::new();
    }
    listed("", name, &[Some("mean"), Some("variance"), Some("count")])
}

/// Embedding: the table.
pub(super) fn embedding(_class: &str, _config: &Value, name: &str) -> Variables {
    listed("", name, &[Some("embeddings")])
}

/// LSTM / GRU: `cell/vars/0,1,2` → `{lstm_cell|gru_cell}/{kernel, recurrent_kernel, bias}`.
pub(super) fn recurrent(class: &str, config: &Value, name: &str) -> Variables {
    recurrent_in("", name, class == "GRU", config)
}

/// An LSTM's or GRU's cell variables under `dir`, named under `prefix`.
fn recurrent_in(dir: &str, prefix: &str, gru: bool, config: &Value) -> Variables {
    let cell = if gru { "gru_cell" } else { "lstm_cell" };
    [Some("kernel"), Some("recurrent_kernel"), bias(config)]
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, var)| (format!("{dir}cell/vars/{i}"), format!("{prefix}/{cell}/{var}")))
        .collect()
}

/// Bidirectional: the forward and backward layers' cells, named as the builder derives
/// the inner names (`backward_` + the forward name when no backward layer is written).
pub(super) fn bidirectional(_class: &str, config: &Value, name: &str) -> Variables {
    let inner = |key: &str| config.get(key).filter(|v| !v.is_null());
    fn inner_name(layer: &Value) -> Option<&str> {
        layer.get("config").and_then(|c| c.get("name")).or_else(|| layer.get("name")).and_then(Value::as_str)
    }
    let class = |layer: &Value| layer.get("class_name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(forward) = inner("layer") else { return Vec::new() };
    let forward_name = inner_name(forward).map_or_else(|| class(forward), str::to_string);
    let (backward, backward_name) = match inner("backward_layer") {
        Some(b) => (b, inner_name(b).map_or_else(|| class(forward), str::to_string)),
        None => (forward, format!("backward_{}", forward_name.trim_start_matches("forward_"))),
    };
    let null = Value::Null;
    let cell = |layer: &Value, dir: &str, inner: &str| {
        let gru = class(layer) == "GRU";
        recurrent_in(dir, &format!("{name}/{inner}"), gru, layer.get("config").unwrap_or(&null))
    };
    let mut out = cell(forward, "forward_layer/", &forward_name);
    out.extend(cell(backward, "backward_layer/", &backward_name));
    out
}

/// MultiHeadAttention: the query, key, value and output dense layers' kernel and bias.
pub(super) fn attention(_class: &str, config: &Value, name: &str) -> Variables {
    [("query", "query"), ("key", "key"), ("value", "value"), ("output", "attention_output")]
        .iter()
        .flat_map(|(dense, ours)| {
            listed(&format!("{dense}_dense/"), &format!("{name}/{ours}"), &[Some("kernel"), bias(config)])
        })
        .collect()
}
