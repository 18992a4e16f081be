use serde::Serialize;

/// Errors the engine reports to its front ends.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// A document could not be read or parsed.
    #[error(transparent)]
    Ingest(#[from] lectern_ingest::IngestError),
    /// A model failed to load or run.
    #[error(transparent)]
    Model(#[from] lectern_models::ModelError),
    /// The library index failed.
    #[error(transparent)]
    Index(#[from] lectern_index::IndexError),
    /// Device selection failed.
    #[error(transparent)]
    Gpu(#[from] lectern_gpu::GpuError),
    /// The request itself is wrong.
    #[error("{0}")]
    InvalidInput(String),
    /// Something needed is not configured (for example no language model).
    #[error("{0}")]
    NotConfigured(String),
    /// No embedding model is installed where the configuration points, so
    /// the library cannot read or search documents until one is.
    #[error(
        "no embedding model is installed (looked in {}); download one on the \
         Models screen or with `lectern models pull all-MiniLM-L6-v2`",
        .0.display()
    )]
    NoEmbedder(std::path::PathBuf),
    /// Watching a folder failed.
    #[error("{0}")]
    Watch(String),
    /// The model worker process failed.
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The form errors take on their way to a user interface: a stable code, a
/// message for people, and whether trying again can help.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Whether retrying the same request may succeed.
    pub retryable: bool,
}

impl EngineError {
    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        EngineError::Internal(e.to_string())
    }

    /// Stable code and message for a front end.
    pub fn info(&self) -> ErrorInfo {
        let (code, retryable) = match self {
            EngineError::Ingest(_) => ("ingest", false),
            EngineError::Model(_) => ("model", false),
            EngineError::Index(_) => ("index", true),
            EngineError::Gpu(_) => ("gpu", false),
            EngineError::InvalidInput(_) => ("invalid_input", false),
            EngineError::NotConfigured(_) => ("not_configured", false),
            EngineError::NoEmbedder(_) => ("no_embedder", true),
            EngineError::Watch(_) => ("watch", true),
            EngineError::Worker(_) => ("worker", true),
            EngineError::Cancelled => ("cancelled", true),
            EngineError::Internal(_) => ("internal", true),
        };
        ErrorInfo {
            code,
            message: self.to_string(),
            retryable,
        }
    }
}
