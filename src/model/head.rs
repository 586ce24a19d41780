//! What a whole Siamese model computes after its shared encoder, whatever the file format:
//! [`TwinHead`]. The Keras loader ([`super::keras_file`]) finds it; `siamese pairs` runs
//! it (a learned head) or replaces it by the run-time `--distance`.

use crate::ops::LearnedHead;

/// What a whole Siamese model computes after its shared encoder.
#[derive(Clone, Debug, PartialEq)]
pub enum TwinHead {
    /// No head: an encoder-only file (or a twin that outputs both embeddings).
    None,
    /// The head holds a layer that cannot run here (a `Lambda`: Python code); the whole
    /// head is replaced by the run-time `--distance`. Only when that drops nothing: no
    /// trained layer in the head, and only pass-through layers after the Lambda (otherwise
    /// loading is an error).
    Replaced {
        /// The layer that cannot run.
        layer: String,
        /// Its Keras class.
        class: String,
    },
    /// Subtract → Multiply(d, d) → Dense(1, sigmoid): `σ(Σ w·(a − b)² + b)`, which the
    /// distance shader fuses ([`crate::ops::Distance::Learned`]).
    Learned(LearnedHead),
}

impl std::fmt::Display for TwinHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinHead::None => f.write_str("none"),
            TwinHead::Replaced { layer, class } => {
                write!(f, "{class} {layer:?} cannot run here (Python code): replaced by the run-time --distance")
            }
            TwinHead::Learned(head) => write!(
                f,
                "learned: sigmoid(sum w*(a-b)^2 + b) over {} values (Subtract -> Multiply -> Dense(1, sigmoid))",
                head.weights.len()
            ),
        }
    }
}
