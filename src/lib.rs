//! # siamese-wgpu
//!
//! Siamese networks (`d_i = dist(f(a_i), f(b_i))`) on any GPU wgpu reaches (Vulkan, Metal,
//! DX12, GL), with WGSL compute shaders. Both twins run as one batch of `2N`, every
//! layer is recorded into one command encoder, a reduction shader computes the `N`
//! distances: one submit and one readback per batch.
//!
//! ```no_run
//! use siamese_wgpu::{Array, Distance, SiameseModel};
//! # fn main() -> siamese_wgpu::Result<()> {
//! let model = SiameseModel::load("models/cnn")?;
//! let left = Array::new(vec![1, 28, 28, 1], vec![0.0; 784])?;
//! let right = Array::new(vec![1, 28, 28, 1], vec![1.0; 784])?;
//! let distances = model.distances(&left, &right, Distance::Euclidean)?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// No unwrap/expect on paths a user can reach: errors are typed (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod layers;
pub mod model;
pub mod ops;
pub mod passes;
mod plans;
pub mod plot;
pub mod reference;
pub mod search;
pub mod sentence;
pub mod shaders;
pub mod siamese;
pub mod tensor;
pub mod verify;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use model::{LambdaKind, LoadOptions, ModelSpec, Score};
pub use ops::{Activation, Distance, Precision};
pub use search::{Gallery, GpuSearch};
pub use sentence::SentenceModel;
pub use siamese::{PairOutput, Prediction, SiameseModel};
pub use tensor::{Array, Tensor};
