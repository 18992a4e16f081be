use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from the library index.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    /// Reading or writing a file failed.
    #[error("I/O error at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
    /// The tantivy index failed.
    #[error("text index error: {0}")]
    Text(String),
    /// LanceDB failed.
    #[error("vector store error: {0}")]
    Vectors(String),
    /// The manifest is unreadable.
    #[error("library manifest {path} is corrupt: {message}")]
    CorruptManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The library was built with another embedding size.
    #[error("the library holds {library}-dimensional vectors but the embedding model makes {model}-dimensional ones; use the model the library was built with or a new data folder")]
    DimensionMismatch {
        /// Dimensions stored in the library.
        library: usize,
        /// Dimensions of the model in use.
        model: usize,
    },
    /// The library on disk was written in an older format.
    #[error("the library was written by an older version of Lectern ({0}) and must be rebuilt")]
    OutdatedLibrary(String),
    /// The library is open in another Lectern process.
    #[error("the library at {0} is in use by another Lectern process (the app or a `lectern` command); close it and try again")]
    Busy(PathBuf),
    /// The library was built with another embedding model.
    #[error("the library was indexed with the embedding model `{library}` but `{model}` is configured; vectors of two models cannot be mixed: use `{library}`, switch the library with `lectern reembed --embedder {model}`, or use a new data folder")]
    EmbedderMismatch {
        /// The model the library was built with.
        library: String,
        /// The model in use.
        model: String,
    },
    /// The caller passed something invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IndexError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    }

    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        IndexError::Internal(e.to_string())
    }
}

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError::Text(e.to_string())
    }
}

impl From<lancedb::Error> for IndexError {
    fn from(e: lancedb::Error) -> Self {
        IndexError::Vectors(e.to_string())
    }
}
