use std::io;
use std::path::PathBuf;

/// Why a model could not be loaded or a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// A model file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `model.bin` is not a CTranslate2 Whisper model Strato can load.
    #[error("model.bin: {0}")]
    ModelBin(#[from] Ct2Error),
    /// `config.json` is missing a key or malformed.
    #[error("config.json: {0}")]
    Config(String),
    /// `vocabulary.txt`/`vocabulary.json` is missing, malformed or lacks a special token.
    #[error("vocabulary: {0}")]
    Vocabulary(String),
    /// The model cannot transcribe in the requested language.
    #[error("language {language:?} is not supported by this model ({reason})")]
    Language {
        /// The requested language code.
        language: String,
        /// Why (English-only model, unknown code).
        reason: String,
    },
    /// The tensor computation failed (a bug or out of memory, not bad input).
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    /// The progress callback asked to stop.
    #[error("transcription cancelled")]
    Cancelled,
}

/// What is wrong with a CTranslate2 `model.bin`.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The file ends before a field is complete.
    #[error("truncated in {0}")]
    Truncated(String),
    /// The format version is one this reader does not know.
    #[error("binary version {0} is not supported (expected 2..=6)")]
    Version(u32),
    /// The file holds another kind of model.
    #[error("spec {0:?} is not a Whisper model (expected WhisperSpec)")]
    Spec(String),
    /// A variable has a type id outside CTranslate2's list, or one that cannot be used where it is.
    #[error("variable {name}: unsupported dtype {dtype}")]
    Dtype {
        /// The variable.
        name: String,
        /// The type, as named by CTranslate2 or as its numeric id.
        dtype: String,
    },
    /// A variable's byte count does not match its shape and type.
    #[error("variable {name}: {nbytes} bytes for shape {shape:?} of {dtype}")]
    Size {
        /// The variable.
        name: String,
        /// Declared bytes.
        nbytes: usize,
        /// Declared shape.
        shape: Vec<usize>,
        /// Declared type.
        dtype: String,
    },
    /// A variable the model needs is absent.
    #[error("missing variable {0}")]
    Missing(String),
    /// A variable has a shape that does not fit the rest of the model.
    #[error("variable {name}: shape {actual:?}, expected {expected}")]
    Shape {
        /// The variable.
        name: String,
        /// What was found.
        actual: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// An int8/int16 weight without the scale needed to dequantize it.
    #[error("variable {0} is quantized but has no weight_scale")]
    MissingScale(String),
    /// A fused key bias (which Whisper does not have) is not zero.
    #[error("variable {0}: the key part of the fused bias is not zero")]
    KeyBias(String),
    /// Bytes follow the last alias.
    #[error("{0} trailing bytes after the aliases")]
    Trailing(usize),
}
