use std::path::PathBuf;

/// Errors from loading or running a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// A file the model needs is missing.
    #[error("model file not found: {path} ({what})")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for.
        what: &'static str,
    },
    /// A file exists but could not be read or understood.
    #[error("cannot read {path}: {message}")]
    InvalidFile {
        /// The offending file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The chat template failed to render.
    #[error("chat template error: {0}")]
    Template(String),
    /// A tensor operation failed.
    #[error("model computation failed: {0}")]
    Compute(String),
    /// The requested device cannot be used by this build.
    #[error("device unavailable: {0}")]
    Device(String),
    /// The prompt does not fit the model's context.
    #[error("prompt of {prompt_tokens} tokens does not fit the context of {context} tokens (at most {fits} prompt tokens fit with {reserved} reserved for the answer)")]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The context length granted.
        context: usize,
        /// Tokens kept free for generation.
        reserved: usize,
        /// The most prompt tokens that would fit.
        fits: usize,
    },
    /// A token would sit at a position past what the model supports.
    #[error("token position {last} is out of range: the model supports positions below {limit}")]
    PositionOutOfRange {
        /// The last position asked for.
        last: usize,
        /// Positions the model supports.
        limit: usize,
    },
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Compute(e.to_string())
    }
}

pub(crate) fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}
