//! Strato's machine learning: datasets, sentence embeddings (tokenizers + the packed encoder) and the
//! logistic-regression classifier with its versioned artifact.
//!
//! No HTTP, SQL or async here: callers run embedding and training on blocking threads. An [`Embedder`] is
//! `Send + Sync` and forward passes may run concurrently.

pub mod bert;
pub mod classifier;
pub mod dataset;
pub mod embedder;
pub mod encoder;
pub mod entities;
pub mod fewshot;
mod kernels;
pub mod linear;
pub mod logreg;
pub mod mentor_model;
pub mod offtopic;
mod pair;
pub mod text;

pub use classifier::{Classifier, EmbeddingIdentity, Scored, TrainMetrics, TrainParams};
pub use dataset::{parse_dataset, Dataset, DatasetError, DatasetFormat, Example, Split};
pub use embedder::{Embedder, Engine, LoadOptions, Precision};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The embedding model directory is missing files or holds something unsupported.
    #[error("embedding model: {0}")]
    Model(String),
    /// A forward pass failed.
    #[error("embedding failed: {0}")]
    Embed(String),
    /// The optimiser or its inputs failed.
    #[error("training failed: {0}")]
    Train(String),
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// A model artifact could not be read or written.
    #[error("model artifact: {0}")]
    Artifact(String),
}
