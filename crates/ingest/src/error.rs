//! The error type shared by every ingestion step.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Format;

/// Everything that can go wrong while discovering, parsing or chunking documents.
///
/// The type is `Clone` (I/O errors are kept behind an [`Arc`]) so that a
/// per-file failure can be reported to several listeners, for example a
/// progress channel and a job log. Every variant that concerns one file names
/// that file in its message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read from disk.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying operating-system error.
        source: Arc<std::io::Error>,
    },
    /// The file is of a kind that Lectern does not ingest.
    #[error("{} is not supported: {reason}", path.display())]
    Unsupported {
        /// The file that was refused.
        path: PathBuf,
        /// Why it was refused, for example its unknown extension.
        reason: String,
    },
    /// The file was read but its contents could not be parsed.
    #[error("cannot parse {format} file {}: {message}", path.display())]
    Parse {
        /// The file that failed to parse.
        path: PathBuf,
        /// The format the file was parsed as.
        format: Format,
        /// What the parser reported.
        message: String,
    },
    /// A parser panicked on the file; the panic was contained and only this
    /// file is affected.
    #[error("the parser crashed on {}: {message}", path.display())]
    Panicked {
        /// The file that made the parser panic.
        path: PathBuf,
        /// The panic message, when the panic carried one.
        message: String,
    },
    /// A parser worked on the file for longer than its time limit; the file
    /// was given up and only this file is affected.
    #[error("gave up on {} after {} s: the {format} parser did not finish in time", path.display(), limit.as_secs())]
    TimedOut {
        /// The file the parser was working on.
        path: PathBuf,
        /// The format it was being parsed as.
        format: Format,
        /// The time limit it ran past.
        limit: std::time::Duration,
    },
    /// The file, or what it would unpack to, is beyond the size Lectern
    /// reads; nothing of it was parsed.
    #[error("{} was not read: {what} is {}, over the {} limit", path.display(), human(*size), human(*limit))]
    TooLarge {
        /// The file that was refused.
        path: PathBuf,
        /// What was measured ("the file", "its unpacked contents", …).
        what: String,
        /// The size measured, in bytes.
        size: u64,
        /// The limit it exceeds, in bytes.
        limit: u64,
    },
    /// The tokenizer could not be loaded or failed on its input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// A [`ChunkConfig`](crate::ChunkConfig) was rejected.
    #[error("invalid chunk configuration: {0}")]
    InvalidConfig(String),
}

impl IngestError {
    /// The file this error is about, if it concerns a single file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            IngestError::Io { path, .. }
            | IngestError::Unsupported { path, .. }
            | IngestError::Parse { path, .. }
            | IngestError::Panicked { path, .. }
            | IngestError::TimedOut { path, .. }
            | IngestError::TooLarge { path, .. } => Some(path),
            IngestError::Tokenizer(_) | IngestError::InvalidConfig(_) => None,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

/// Bytes for people: "1.5 GiB", "300 MiB", "12 KiB", "800 bytes".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}
