//! What a whole Siamese model computes after its shared encoder, whatever the file format:
//! [`TwinHead`]. The Keras loader ([`super::keras_file`]) finds it; `siamese pairs` runs
//! it: fused into the distance shader (a learned head), as a graph of ordinary layers on
//! the GPU after the encoder, in the same submit ([`LayerHead`]), or replaced by the
//! run-time `--distance`.

use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::ops::{Distance, LearnedHead};

/// What a whole Siamese model computes after its shared encoder.
#[derive(Clone, Debug, PartialEq)]
pub enum TwinHead {
    /// No head: an encoder-only file (or a twin that outputs both embeddings).
    None,
    /// The file's head was set aside at load (`--no-head`): pairs get the run-time
    /// `--distance` between the two embeddings.
    Ignored {
        /// The head's layers, as the file names them.
        layers: Vec<String>,
    },
    /// The head is one `Lambda` (Python code) that returns one value per pair, and nothing
    /// trained: the whole head is replaced by the run-time `--distance`.
    Replaced {
        /// The layer that cannot run.
        layer: String,
        /// Its Keras class.
        class: String,
    },
    /// Subtract → Multiply(d, d) → Dense(1, sigmoid): `σ(Σ w·(a − b)² + b)`, which the
    /// distance shader fuses ([`crate::ops::Distance::Learned`]).
    Learned(LearnedHead),
    /// The head's layers, run as they are after the encoder ([`crate::SiameseModel::predict`]).
    Layers(LayerHead),
}

/// What a `Lambda` in a twin head computes, which Python code cannot tell: the CLI's
/// `--lambda`, [`super::LoadOptions::lambda`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LambdaKind {
    /// One distance per pair: the run-time `--distance` (keras.io's `euclidean_distance`).
    Distance,
    /// `|a − b|` elementwise (Koch et al.'s siamese head).
    AbsDiff,
    /// `(a − b)²` elementwise.
    SquaredDiff,
    /// `a · b` elementwise.
    Product,
    /// `[a, b]` concatenated along the last axis.
    Concat,
}

impl LambdaKind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [LambdaKind; 5] =
        [LambdaKind::Distance, LambdaKind::AbsDiff, LambdaKind::SquaredDiff, LambdaKind::Product, LambdaKind::Concat];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            LambdaKind::Distance => "distance",
            LambdaKind::AbsDiff => "abs-diff",
            LambdaKind::SquaredDiff => "squared-diff",
            LambdaKind::Product => "product",
            LambdaKind::Concat => "concat",
        }
    }
}

impl std::str::FromStr for LambdaKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LambdaKind::ALL.into_iter().find(|k| k.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            Error::input("lambda", format!("{s:?} is not one of distance, abs-diff, squared-diff, product, concat"))
        })
    }
}

impl std::fmt::Display for LambdaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a head's one value per pair means, as `siamese pairs` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// A distance (lower = more alike): the head ends with a Lambda distance.
    Distance(Distance),
    /// A similarity (higher = more alike): `Dot`, cosine with `normalize=True`.
    Similarity {
        /// Whether both sides were L2-normalised (cosine similarity).
        cosine: bool,
    },
    /// A match probability in [0, 1]: the head ends with a sigmoid.
    Probability,
    /// Whatever the trained layers output (a linear or other activation).
    Score,
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Score::Distance(metric) => write!(f, "a {metric} distance (lower = more alike)"),
            Score::Similarity { cosine: true } => f.write_str("a cosine similarity (higher = more alike)"),
            Score::Similarity { cosine: false } => f.write_str("a dot-product similarity (higher = more alike)"),
            Score::Probability => f.write_str("a match probability (sigmoid output, higher = more alike)"),
            Score::Score => f.write_str("the head's output value"),
        }
    }
}

/// A twin head of ordinary layers, as a graph. Its input is the encoder's output for N
/// pairs as the runner stacks it (the N left rows, then the N right rows), declared as
/// `[N, 2, ...embedding]`; [`crate::layers::TwinSide`] reads one twin's rows of it and
/// [`crate::layers::TwinDistance`] a distance per pair. Its output is one value per pair.
#[derive(Clone, Debug)]
pub struct LayerHead {
    /// The head's layers.
    pub spec: ModelSpec,
    /// What its output means.
    pub score: Score,
    /// The layers as the file names them, with what stood in for a Lambda.
    pub summary: String,
}

impl PartialEq for LayerHead {
    /// Heads compare by what they say they compute (layer weights are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.score == other.score && self.summary == other.summary
    }
}

impl std::fmt::Display for TwinHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinHead::None => f.write_str("none"),
            TwinHead::Ignored { layers } => {
                write!(f, "{} set aside (--no-head): the run-time --distance between embeddings", layers.join(" -> "))
            }
            TwinHead::Replaced { layer, class } => {
                write!(f, "{class} {layer:?} cannot run here (Python code): replaced by the run-time --distance")
            }
            TwinHead::Learned(head) => write!(
                f,
                "learned: sigmoid(sum w*(a-b)^2 + b) over {} values (Subtract -> Multiply -> Dense(1, sigmoid))",
                head.weights.len()
            ),
            TwinHead::Layers(head) => write!(f, "{} runs on the GPU: prints {}", head.summary, head.score),
        }
    }
}
