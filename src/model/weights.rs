//! Named weight tensors read from a safetensors file, converted to f32.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One weight tensor.
#[derive(Clone, Debug)]
pub struct Weight {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values, row-major, as f32.
    pub data: Vec<f32>,
}

/// The weights of a model by name, tracking which ones a loader has used.
#[derive(Debug)]
pub struct Weights {
    file: String,
    tensors: BTreeMap<String, Weight>,
    /// Prefix (e.g. a model name + '/') that every stored name carries, stripped on lookup.
    prefix: String,
    /// Non-float tensors (name, dtype), which no layer can use.
    non_float: Vec<(String, String)>,
}

impl Weights {
    /// Parses a safetensors file's bytes. Accepts F32, F64, F16 and BF16 tensors.
    pub fn from_safetensors(bytes: &[u8], file: &str) -> Result<Self> {
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::ModelFormat {
            file: file.to_string(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        let mut out = BTreeMap::new();
        let mut skipped = Vec::new();
        for (name, view) in tensors.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
                }
                safetensors::Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect(),
                safetensors::Dtype::F16 => {
                    raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                }
                safetensors::Dtype::BF16 => {
                    raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                }
                other => {
                    // Integer buffers (e.g. BERT's position_ids) are no weights: kept aside
                    // so `finish` still reports them unless the loader ignores them.
                    skipped.push((name, format!("{other:?}")));
                    continue;
                }
            };
            out.insert(name, Weight { shape: view.shape().to_vec(), data });
        }
        let mut weights = Self::from_map(file, out);
        weights.non_float = skipped;
        Ok(weights)
    }

    /// Wraps already-decoded tensors.
    pub fn from_map(file: &str, tensors: BTreeMap<String, Weight>) -> Self {
        Self { file: file.to_string(), tensors, prefix: String::new(), non_float: Vec::new() }
    }

    /// The file the weights came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// If no stored name starts with any of `layer_names` + '/', but all stored names
    /// share one first path component (Keras paths of a nested model, `model/conv2d/kernel`),
    /// strip that component on lookup.
    pub fn detect_prefix(&mut self, layer_names: &[&str]) {
        let direct = self.tensors.keys().any(|k| layer_names.iter().any(|l| k.starts_with(&format!("{l}/"))));
        if direct {
            return;
        }
        let firsts: std::collections::BTreeSet<&str> =
            self.tensors.keys().filter_map(|k| k.split_once('/').map(|(first, _)| first)).collect();
        if firsts.len() == 1 && self.tensors.keys().all(|k| k.contains('/')) {
            if let Some(first) = firsts.into_iter().next() {
                self.prefix = format!("{first}/");
            }
        }
    }

    /// The names of the float tensors not taken yet.
    pub fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// The shape of the tensor called exactly `name`, if stored.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|w| w.shape.clone())
    }

    /// Whether a tensor of that exact name is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Takes the tensor `layer/var` of exactly `shape`, removing it from the set.
    pub fn take(&mut self, layer: &str, var: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = format!("{}{layer}/{var}", self.prefix);
        self.take_named(&name, layer, shape)
    }

    /// Takes the tensor called exactly `name` (for error messages: of `layer`), of
    /// exactly `shape`, removing it from the set.
    pub fn take_named(&mut self, name: &str, layer: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = name.to_string();
        let weight = self.tensors.remove(&name).ok_or_else(|| Error::MissingWeight {
            file: self.file.clone(),
            layer: layer.to_string(),
            name: name.clone(),
        })?;
        if weight.shape != shape {
            return Err(Error::BadWeight {
                file: self.file.clone(),
                name,
                expected: format!("shape {shape:?}"),
                got: format!("shape {:?}", weight.shape),
            });
        }
        if let Some(i) = weight.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::BadWeight {
                file: self.file.clone(),
                name,
                expected: "finite values".into(),
                got: format!("{} at flat index {i}", weight.data[i]),
            });
        }
        Ok(weight.data)
    }

    /// Errors when tensors are left that no layer took.
    pub fn finish(self) -> Result<()> {
        self.finish_ignoring(&[])
    }

    /// [`finish`](Self::finish), except for tensors whose names start with one of
    /// `ignored` (parts of a checkpoint the model does not use, e.g. BERT's pooler).
    pub fn finish_ignoring(self, ignored: &[&str]) -> Result<()> {
        let left: Vec<String> = self
            .tensors
            .keys()
            .cloned()
            .chain(self.non_float.iter().map(|(name, dtype)| format!("{name} ({dtype})")))
            .filter(|name| !ignored.iter().any(|prefix| name.starts_with(prefix)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        Err(Error::UnexpectedWeights { file: self.file, names: left.join(", ") })
    }
}
