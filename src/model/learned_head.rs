//! A learned metric head saved beside a model (`head.safetensors`): one `Dense(1, sigmoid)`
//! on `|f(a) − f(b)|`, as Keras writes a Dense layer's weights.

use std::path::Path;

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::ops::LearnedHead;

/// Reads a head from safetensors: a `[dim, 1]` kernel and a `[1]` bias, named
/// `NAME/kernel` and `NAME/bias` (any one NAME).
pub fn read_learned_head(path: impl AsRef<Path>) -> Result<LearnedHead> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut weights = Weights::from_safetensors(&bytes, &file)?;
    let names = weights.names();
    let kernel = names.iter().find(|n| n.ends_with("kernel")).ok_or_else(|| Error::ModelFormat {
        file: file.clone(),
        reason: format!("no `NAME/kernel` tensor (the head's Dense(1) kernel); found {names:?}"),
    })?;
    let layer = kernel.trim_end_matches("kernel").trim_end_matches('/');
    let shape = weights.shape(kernel).unwrap_or_default();
    let dim = shape.first().copied().unwrap_or(0);
    let w = weights.take_named(kernel, layer, &[dim, 1])?;
    let b = weights.take_named(&format!("{layer}/bias"), layer, &[1])?;
    weights.finish()?;
    Ok(LearnedHead { weights: w, bias: b[0], squared: false })
}
