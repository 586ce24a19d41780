//! Whole Keras model files (`.keras`, legacy `.h5` / `.hdf5`) → [`super::ModelSpec`]: the
//! public paths of the loader, which lives with the rest of the Keras importer in
//! [`super::keras`] (reading the files: `keras/file.rs`; the shared encoder and the head of
//! a whole Siamese model: `keras/twin.rs`; `siamese inspect`: `keras/inspect.rs`; where a
//! `.keras` file keeps each layer's weights: `keras/variables.rs`).

pub use super::head::TwinHead;
pub use super::keras::file::{is_keras_file, load_keras_file, load_keras_file_with, KerasFile, EXTENSIONS};
pub use super::keras::inspect::{inspect, Inspection, LayerInfo, Runs};
pub use super::keras::twin::SUPPORTED_HEADS;
