//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong, each variant naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter at all: wgpu found nothing to run on.
    #[error(
        "no GPU adapter found{detail}. Install a Vulkan driver for your GPU, or Mesa's software \
         driver on Debian/Ubuntu: `sudo apt-get install mesa-vulkan-drivers` (then `siamese info`)"
    )]
    NoAdapter {
        /// Extra context, e.g. which backends were searched.
        detail: String,
    },
    /// `SIAMESE_ADAPTER` / `SIAMESE_BACKEND` matched none of the adapters found.
    #[error("no adapter matches {requested}; adapters found: {available}")]
    AdapterNotFound {
        /// What the user asked for.
        requested: String,
        /// Adapters that were found, comma separated.
        available: String,
    },
    /// An environment variable holds a value we do not understand.
    #[error("environment variable {var}={value:?} is not valid: expected {expected}")]
    InvalidEnv {
        /// Variable name.
        var: &'static str,
        /// Its value.
        value: String,
        /// What values are allowed.
        expected: &'static str,
    },
    /// The adapter refused to create a device.
    #[error("could not open GPU device on {adapter}: {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// wgpu reported a validation or out-of-memory error while doing `context`.
    #[error("GPU error while {context}: {message}")]
    Gpu {
        /// What we were doing.
        context: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost (driver reset, GPU removed, or destroyed): this `Gpu` and the
    /// models on it cannot be used again.
    #[error("the GPU device ({adapter}) was lost: {message}; load the model again on a new Gpu to continue")]
    DeviceLost {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason and message.
        message: String,
    },
    /// A tensor or array had the wrong shape.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which op, layer or input.
        op: String,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
    /// An input is not usable (empty batch, NaN, wrong dtype...).
    #[error("invalid input {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A computed value is NaN or infinite: an embedding (the encoder overflowed f32) or a
    /// distance beyond f32's range. Never returned when non-finite values are allowed.
    #[error("{what} is not finite: {reason}")]
    NonFinite {
        /// Which value: the twin and row, or the pair.
        what: String,
        /// What it is and why.
        reason: String,
    },
    /// A size goes beyond what this device allows.
    #[error("{what} needs {needed}, but this device allows at most {limit}")]
    LimitExceeded {
        /// What is too big.
        what: String,
        /// How much it needs.
        needed: u64,
        /// The device limit.
        limit: u64,
    },
    /// A model layer class we do not run.
    #[error("{file}: layer {layer:?} has class {class}, which is not supported (supported: {supported})")]
    UnsupportedLayer {
        /// Model file.
        file: String,
        /// Layer name.
        layer: String,
        /// Keras class name.
        class: String,
        /// Supported classes.
        supported: &'static str,
    },
    /// An ONNX node whose op type the importer does not run.
    #[error("{file}: node {node:?} is the ONNX op {op}, which is not supported (supported: {supported})")]
    UnsupportedOp {
        /// Model file.
        file: String,
        /// Node name (empty when the exporter gave none).
        node: String,
        /// Op type, with its domain when not the default one.
        op: String,
        /// Supported op types.
        supported: &'static str,
    },
    /// A layer of a custom (user-registered) Keras class, which the importer does not know.
    #[error(
        "{file}: layer {layer:?} has the custom class {class} (registered by the user, not a Keras built-in), \
         which is not supported: if it computes what a built-in layer does, with the built-in's config keys and \
         weights, load it as that class with the load option `custom_layer` {class}=BUILTIN (supported built-ins: \
         {supported})"
    )]
    CustomLayer {
        /// Model file.
        file: String,
        /// Layer name.
        layer: String,
        /// The custom class.
        class: String,
        /// Supported classes.
        supported: &'static str,
    },
    /// A layer setting we do not run.
    #[error("layer {layer:?}: {key} = {value} is not supported{hint}")]
    UnsupportedConfig {
        /// Layer name.
        layer: String,
        /// Config key.
        key: String,
        /// Its value.
        value: String,
        /// What would work instead.
        hint: String,
    },
    /// The model description is malformed.
    #[error("{file}: {reason}")]
    ModelFormat {
        /// Model file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer needs a weight that the weights file does not have.
    #[error("missing weight {name:?} (layer {layer:?}) in {file}")]
    MissingWeight {
        /// Weights file.
        file: String,
        /// Layer name.
        layer: String,
        /// Tensor name.
        name: String,
    },
    /// The weights file has tensors no layer uses.
    #[error("{file} has weights that no layer uses: {names}")]
    UnexpectedWeights {
        /// Weights file.
        file: String,
        /// The unused names.
        names: String,
    },
    /// A weight has the wrong shape or dtype.
    #[error("weight {name:?} in {file}: expected {expected}, got {got}")]
    BadWeight {
        /// Weights file.
        file: String,
        /// Tensor name.
        name: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A file could not be read or written.
    ///
    /// The OS error is part of the message and deliberately not also a `source()`: a chain
    /// printer (anyhow's `{:#}`) would otherwise print it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (not named `source`: thiserror would make that the error's source).
        error: std::io::Error,
    },
    /// A model configuration value is out of range (a BERT `config.json` size or epsilon).
    #[error("{file}: {key} = {value} is not valid: expected {expected}")]
    InvalidConfig {
        /// The configuration file.
        file: String,
        /// The key.
        key: String,
        /// Its value, as written.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A `.npy` or PNG file could not be decoded.
    #[error("{path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: impl Into<String>, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::ShapeMismatch { op: op.into(), expected: expected.into(), got: got.into() }
    }

    pub(crate) fn input(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput { what: what.into(), reason: reason.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io { path: path.into(), error }
    }
}
