//! The Keras model config, read once for every source: `model.to_json()` (a model
//! directory's `model.json`), a `.keras` zip's `config.json` and a legacy `.h5` file's
//! `model_config` attribute, from Keras 3 or tf.keras 2.
//!
//! - [`Entry`]: one layer entry (class, name, settings), with the calls Keras recorded for
//!   it ([`Entry::calls`]);
//! - the one inbound-node walker, [`node_inputs`]: the tensors a call reads, in both node
//!   formats (Keras 3 `{"args": [...], "kwargs": {...}}` with `keras_history`, Keras 2
//!   `[["layer", node, tensor, {kwargs}], ...]`);
//! - [`ModelView`]: a Sequential or Functional config's layers, inputs and outputs;
//! - small config readers several places need (`endpoints`, `batch_shape`, `flag`, the
//!   activation name, a Bidirectional layer's two directions).

use serde_json::Value;

use crate::error::{Error, Result};

/// One layer entry of a model config: class, name and settings.
#[derive(Clone, Debug)]
pub(crate) struct Entry<'a> {
    /// The Keras class (`Dense`, `Sequential`, ...).
    pub class: &'a str,
    /// The layer's name: the entry's `name` (what inbound nodes refer to), else its
    /// config's, else the class (the first of them that is a string).
    pub name: String,
    /// The `config` object (Null when absent).
    pub config: &'a Value,
    /// The whole entry (`class_name`, `config`, `inbound_nodes`, `build_config`, ...).
    pub value: &'a Value,
    /// Written by Keras 2 (tf.keras): some names mean other functions (hard_sigmoid).
    pub keras2: bool,
}

/// One tensor a call reads.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Input<'a> {
    /// The layer that computed it.
    pub layer: &'a str,
    /// Which call of that layer (node index).
    pub node: u64,
    /// The keyword it was passed under (Keras 3 `kwargs`); None when positional.
    pub keyword: Option<&'a str>,
    /// Its shape as Keras recorded it (Keras 3 only).
    pub shape: Option<&'a Value>,
}

impl Input<'_> {
    /// Whether it is passed as a mask, not data: the `mask` argument, or a `{input}_mask`
    /// one (`query_mask`, `value_mask`, ... of MultiHeadAttention). Keras 3 fills these in
    /// itself from the inputs' masks; the engine computes a Masking layer's mask itself.
    pub fn is_mask(&self) -> bool {
        self.keyword.is_some_and(|k| k == "mask" || k.ends_with("_mask"))
    }
}

impl<'a> Entry<'a> {
    /// Reads one layer entry of the model (or wrapper layer) `owner`.
    pub fn parse(layer: &'a Value, owner: &str, file: &str) -> Result<Self> {
        let class = layer.get("class_name").and_then(Value::as_str).ok_or_else(|| Error::ModelFormat {
            file: file.to_string(),
            reason: format!("a layer of {owner:?} has no \"class_name\""),
        })?;
        let config = layer.get("config").unwrap_or(&Value::Null);
        let name =
            [layer.get("name"), config.get("name")].into_iter().flatten().find_map(Value::as_str).unwrap_or(class);
        Ok(Entry { class, name: name.to_string(), config, value: layer, keras2: false })
    }

    /// A boolean setting, `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        flag(self.config, key, default)
    }

    /// The nested model this entry is (a Sequential/Functional layer), if it is one.
    pub fn nested(&self, file: &str) -> Result<Option<ModelView<'a>>> {
        let is_model = is_model_class(self.class) || self.config.get("layers").is_some_and(Value::is_array);
        if is_model {
            ModelView::parse_with(self.value, file, self.keras2).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Every tensor every call of this layer reads, masks included.
    pub fn tensors(&self) -> Vec<Input<'a>> {
        self.nodes().iter().flat_map(node_inputs).collect()
    }

    /// The calls of this layer: for each, the data tensors it reads (positional and
    /// keyword arguments, masks left out: [`Input::is_mask`]), in order.
    pub fn calls(&self) -> Vec<Vec<Input<'a>>> {
        self.nodes().iter().map(|node| node_inputs(node).into_iter().filter(|i| !i.is_mask()).collect()).collect()
    }

    /// The layers every call of this layer reads as data, in order, repeats kept.
    pub fn inputs(&self) -> Vec<&'a str> {
        self.calls().into_iter().flatten().map(|i| i.layer).collect()
    }

    /// The layers call `index` reads as data, each once.
    pub fn parents(&self, index: usize) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        for input in self.calls().into_iter().nth(index).unwrap_or_default() {
            if !names.contains(&input.layer) {
                names.push(input.layer);
            }
        }
        names
    }

    /// The positional arguments of the layer's only call (Keras 3), tensors and constants.
    pub fn only_call_args(&self) -> Option<&'a Value> {
        match self.nodes() {
            [node] => node.get("args"),
            _ => None,
        }
    }

    fn nodes(&self) -> &'a [Value] {
        self.value.get("inbound_nodes").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }
}

/// The tensors one call (inbound node) reads, in Keras 3 form (`{"args": [...], "kwargs":
/// {...}}`, each tensor an object holding `keras_history: [layer, node, tensor]`) or Keras 2
/// form (`[[layer, node, tensor, {kwargs}], ...]`; the kwargs item is not read).
pub(crate) fn node_inputs(node: &Value) -> Vec<Input<'_>> {
    fn collect<'a>(value: &'a Value, keyword: Option<&'a str>, out: &mut Vec<Input<'a>>) {
        match value {
            Value::Object(map) => {
                if let Some(history) = map.get("keras_history").and_then(Value::as_array) {
                    if let Some(layer) = history.first().and_then(Value::as_str) {
                        let node = history.get(1).and_then(Value::as_u64).unwrap_or(0);
                        out.push(Input { layer, node, keyword, shape: map.get("shape") });
                    }
                    return;
                }
                for key in ["config", "args"] {
                    if let Some(inner) = map.get(key) {
                        collect(inner, keyword, out);
                    }
                }
                match map.get("kwargs") {
                    Some(Value::Object(kwargs)) => kwargs.iter().for_each(|(k, v)| collect(v, Some(k), out)),
                    Some(other) => collect(other, keyword, out),
                    None => {}
                }
            }
            Value::Array(items) if items.len() >= 3 && items[0].is_string() && items[1].is_u64() => {
                if let (Some(layer), Some(node)) = (items[0].as_str(), items[1].as_u64()) {
                    out.push(Input { layer, node, keyword, shape: None });
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, keyword, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(node, None, &mut out);
    out
}

/// A Sequential or Functional model config.
#[derive(Clone, Debug)]
pub(crate) struct ModelView<'a> {
    /// The model's class.
    pub class: &'a str,
    /// Its name (`config.name`, else the entry's `name`, else `model`).
    pub name: String,
    /// Its `config` object.
    pub config: &'a Value,
    /// The layers in the order Keras writes them (topological for Functional).
    pub entries: Vec<Entry<'a>>,
    /// Input layer names (a Sequential's: its InputLayer, when written).
    pub inputs: Vec<String>,
    /// Output layer names.
    pub outputs: Vec<String>,
    /// Written by Keras 2 (tf.keras).
    pub keras2: bool,
}

/// Whether a class is a Keras model (whose config lists layers).
fn is_model_class(class: &str) -> bool {
    matches!(class, "Sequential" | "Functional" | "Model")
}

/// The error for a top-level class that is not a model.
pub(crate) fn not_a_model(file: &str, class: &str) -> Error {
    Error::ModelFormat {
        file: file.to_string(),
        reason: format!("top-level class {class} is not a model: expected Sequential or Functional"),
    }
}

impl<'a> ModelView<'a> {
    /// Reads a model config (`{"class_name", "config"}`); a top-level `keras_version`
    /// starting with `2.` marks tf.keras 2.
    pub fn parse(root: &'a Value, file: &str) -> Result<Self> {
        let keras2 = root.get("keras_version").and_then(Value::as_str).is_some_and(|v| v.starts_with("2."));
        Self::parse_with(root, file, keras2)
    }

    /// [`ModelView::parse`] for a config written by Keras 2 or not, as `keras2` says (a
    /// nested model, or one built from parts of another).
    pub fn parse_with(root: &'a Value, file: &str, keras2: bool) -> Result<Self> {
        let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
        let class = root.get("class_name").and_then(Value::as_str).ok_or_else(|| {
            format_error("no \"class_name\" at the top level: expected the output of Keras' model.to_json()".into())
        })?;
        let config = root.get("config").ok_or_else(|| format_error("no \"config\" at the top level".into()))?;
        let name =
            config.get("name").or_else(|| root.get("name")).and_then(Value::as_str).unwrap_or("model").to_string();
        let Some(layers) = config.get("layers").and_then(Value::as_array) else {
            if !is_model_class(class) {
                return Err(not_a_model(file, class));
            }
            return Err(format_error(format!(
                "model {name:?} ({class}) has no \"layers\" list: expected Sequential or Functional"
            )));
        };
        let entries = layers
            .iter()
            .map(|layer| Entry::parse(layer, &name, file).map(|e| Entry { keras2, ..e }))
            .collect::<Result<Vec<_>>>()?;
        let (inputs, outputs) = if class == "Sequential" {
            let first = entries.first().filter(|e| e.class == "InputLayer").map(|e| e.name.clone());
            (first.into_iter().collect(), entries.last().map(|e| e.name.clone()).into_iter().collect())
        } else {
            (endpoints(config, "input_layers"), endpoints(config, "output_layers"))
        };
        Ok(Self { class, name, config, entries, inputs, outputs, keras2 })
    }

    /// The layers as `model.layers` lists them (and the weights file saves them): a
    /// Sequential leaves out its InputLayer.
    pub fn saved(&self) -> &[Entry<'a>] {
        match self.entries.split_first() {
            Some((first, rest)) if self.class == "Sequential" && first.class == "InputLayer" => rest,
            _ => &self.entries,
        }
    }

    /// The layer called `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry<'a>> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// The layer names of a Functional model config's `input_layers` / `output_layers` (`key`).
/// Keras 3 writes `["name", 0, 0]` for one and `[["name", 0, 0], ...]` for several; Keras 2
/// always nests.
fn endpoints(config: &Value, key: &str) -> Vec<String> {
    let list = config.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    if list.first().is_some_and(Value::is_string) {
        list.first().and_then(Value::as_str).map(str::to_string).into_iter().collect()
    } else {
        list.iter().filter_map(|item| item.get(0).and_then(Value::as_str).map(str::to_string)).collect()
    }
}

/// A boolean setting of a layer config, `default` when absent.
pub(crate) fn flag(config: &Value, key: &str, default: bool) -> bool {
    config.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// An InputLayer's `batch_shape` (Keras 3) / `batch_input_shape` (Keras 2), as written.
pub(crate) fn batch_shape(config: &Value) -> Option<&Vec<Value>> {
    config.get("batch_shape").or_else(|| config.get("batch_input_shape"))?.as_array()
}

/// The input shape a layer entry was built for (`build_config.input_shape`), as written.
pub(crate) fn build_input_shape(layer: &Value) -> Option<&Vec<Value>> {
    layer.get("build_config")?.get("input_shape")?.as_array()
}

/// The name of an activation setting: Keras writes a name, or (Keras 3, custom objects) an
/// object naming it in `config` or `class_name`; absent (null) is `linear`. None for
/// anything else.
pub(crate) fn activation_name(value: &Value) -> Option<&str> {
    match value {
        Value::Null => Some("linear"),
        Value::String(s) => Some(s.as_str()),
        Value::Object(map) => {
            map.get("config").and_then(Value::as_str).or_else(|| map.get("class_name").and_then(Value::as_str))
        }
        _ => None,
    }
}

/// A Bidirectional layer's two directions from its config: the forward `layer`, and the
/// `backward_layer` Keras writes (go_backwards=True); without one, the backward layer is a
/// copy of the forward one named `backward_` + the forward name less a `forward_` prefix.
/// Both the layer builder and the `.keras` variable paths name the directions this way.
pub(crate) fn bidirectional_directions<'a>(wrapper: &Entry<'a>, file: &str) -> Result<(Entry<'a>, Entry<'a>)> {
    let keras2 = wrapper.keras2;
    let forward = wrapper.config.get("layer").ok_or_else(|| Error::ModelFormat {
        file: file.to_string(),
        reason: format!("Bidirectional layer {:?} has no \"layer\"", wrapper.name),
    })?;
    let forward = Entry { keras2, ..Entry::parse(forward, &wrapper.name, file)? };
    let backward = match wrapper.config.get("backward_layer") {
        Some(v) if !v.is_null() => Entry { keras2, ..Entry::parse(v, &wrapper.name, file)? },
        _ => Entry { name: format!("backward_{}", forward.name.trim_start_matches("forward_")), ..forward.clone() },
    };
    Ok((forward, backward))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_formats() {
        let keras3: Value = serde_json::from_str(
            r#"{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [null, 8],
               "keras_history": ["encoder", 0, 0]}}, {"class_name": "__keras_tensor__",
               "config": {"shape": [null, 8], "keras_history": ["encoder", 1, 0]}}]],
               "kwargs": {"mask": {"class_name": "__keras_tensor__", "config": {"shape": [null],
               "keras_history": ["any", 0, 0]}}}}"#,
        )
        .unwrap();
        let layers = |inputs: Vec<Input>| -> Vec<(String, u64, bool)> {
            inputs.iter().map(|i| (i.layer.to_string(), i.node, i.is_mask())).collect()
        };
        let expected =
            [("encoder".to_string(), 0, false), ("encoder".to_string(), 1, false), ("any".to_string(), 0, true)];
        assert_eq!(layers(node_inputs(&keras3)), expected);
        assert_eq!(node_inputs(&keras3)[0].shape, Some(&serde_json::json!([null, 8])));
        let keras2: Value = serde_json::from_str(r#"[["encoder", 1, 0, {}], ["encoder", 2, 0, {}]]"#).unwrap();
        assert_eq!(
            layers(node_inputs(&keras2)),
            [("encoder".to_string(), 1, false), ("encoder".to_string(), 2, false)]
        );
    }

    #[test]
    fn calls_leave_out_the_mask_argument() {
        let layer: Value = serde_json::json!({
            "class_name": "LSTM", "name": "lstm", "config": {"name": "lstm"},
            "inbound_nodes": [{"args": [{"config": {"keras_history": ["masking", 0, 0]}}],
                               "kwargs": {"mask": {"config": {"keras_history": ["any", 0, 0]}}}}],
        });
        let entry = Entry::parse(&layer, "model", "f").unwrap();
        assert_eq!(entry.inputs(), ["masking"]);
        assert_eq!(entry.tensors().len(), 2);
        // Keyword tensors are data, but for the masks Keras fills in.
        let tensor = |layer: &str| serde_json::json!({"config": {"keras_history": [layer, 0, 0]}});
        let mha: Value = serde_json::json!({
            "class_name": "MultiHeadAttention", "name": "mha",
            "inbound_nodes": [{"args": [], "kwargs": {"query": tensor("x"), "value": tensor("x"),
                "query_mask": tensor("any"), "value_mask": tensor("any"), "training": false}}],
        });
        assert_eq!(Entry::parse(&mha, "model", "f").unwrap().inputs(), ["x", "x"]);
        let keras2: Value = serde_json::json!({
            "class_name": "Add", "config": {"name": "add"},
            "inbound_nodes": [[["a", 0, 0, {}], ["b", 0, 0, {}]]],
        });
        assert_eq!(Entry::parse(&keras2, "model", "f").unwrap().inputs(), ["a", "b"]);
    }

    #[test]
    fn bidirectional_backward_name() {
        let layer: Value = serde_json::json!({"class_name": "Bidirectional", "config": {"name": "bi",
            "layer": {"class_name": "LSTM", "config": {"name": "forward_lstm"}}}});
        let wrapper = Entry::parse(&layer, "model", "f").unwrap();
        let (forward, backward) = bidirectional_directions(&wrapper, "f").unwrap();
        assert_eq!((forward.name.as_str(), backward.name.as_str()), ("forward_lstm", "backward_lstm"));
        assert_eq!(backward.class, "LSTM");
    }
}
