//! ONNX files (`.onnx`, as `torch.onnx.export` writes them, with both of PyTorch's
//! exporters) → [`super::ModelSpec`]: an encoder graph of one float input with a fixed
//! sample shape and a symbolic batch axis, and one output.
//!
//! - `file.rs` reads the protobuf (the `onnx-protobuf` crate), its tensors (inline or in
//!   external data files) and attributes, checking every size;
//! - `import.rs` walks the nodes: GPU ops become the same layers the Keras importer builds
//!   (ONNX's NCHW images held channels-last, OIHW kernels made HWIO), and shape arithmetic on
//!   constants is folded at load;
//! - `rewrite.rs` turns the decomposed LayerNormalization and GELU that exporters write
//!   back into one node each, before the walk;
//! - `inspect.rs` describes a file for `siamese inspect` without importing it.

pub mod file;
mod import;
mod inspect;
mod rewrite;

use std::path::Path;

pub use file::{OnnxFile, OPSETS};
pub use import::OPS;
pub use inspect::{inspect, Inspection};

use crate::error::Result;

/// File extensions read as ONNX.
pub const EXTENSIONS: &[&str] = &["onnx"];

/// Whether `path` names an ONNX file (by its extension).
pub fn is_onnx_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Loads the encoder graph of an ONNX file.
pub fn load_onnx(path: impl AsRef<Path>) -> Result<super::ModelSpec> {
    let file = OnnxFile::read(path.as_ref())?;
    import::import(&file)
}
