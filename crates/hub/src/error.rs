use std::path::PathBuf;

/// Errors from the catalog and from downloads.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The catalog file is malformed.
    #[error("the model catalog is malformed: {0}")]
    Catalog(String),
    /// No catalog entry has this id.
    #[error("no model named `{0}` in the catalog (see `lectern models list`)")]
    UnknownModel(String),
    /// The entry has no repository to download from.
    #[error("`{0}` is not downloadable: it is provisioned locally (models/provision.sh)")]
    NotDownloadable(String),
    /// Talking to the hub failed.
    #[error("downloading {file} of {model} failed: {message}")]
    Download {
        /// The model.
        model: String,
        /// The file.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A downloaded file is not what the catalog says it should be.
    #[error("{file} of {model} failed verification: {message}; the file was discarded")]
    Verification {
        /// The model.
        model: String,
        /// The file.
        file: String,
        /// What did not match.
        message: String,
    },
    /// The download was cancelled.
    #[error("the download was cancelled")]
    Cancelled,
    /// Reading or writing a local file failed.
    #[error("I/O error at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io {
            path: path.into(),
            source,
        }
    }
}
