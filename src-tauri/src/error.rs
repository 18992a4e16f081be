//! The error every command returns to the web UI.

use lectern_engine::EngineError;
use serde::Serialize;

/// A failed command, as the UI receives it: a stable machine-readable code
/// and a message for people.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CommandError {
    /// Stable code, e.g. `not_configured`, `invalid_input`, `index`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Whether trying the same request again may succeed.
    pub retryable: bool,
}

impl CommandError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::new("internal", message)
        }
    }
}

impl From<EngineError> for CommandError {
    fn from(err: EngineError) -> Self {
        let info = err.info();
        Self {
            code: info.code.to_owned(),
            message: info.message,
            retryable: info.retryable,
        }
    }
}

impl From<&EngineError> for CommandError {
    fn from(err: &EngineError) -> Self {
        err.clone().into()
    }
}

impl From<tauri::Error> for CommandError {
    fn from(err: tauri::Error) -> Self {
        Self::internal(err.to_string())
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CommandError {}

/// Result type of every command.
pub type CommandResult<T> = Result<T, CommandError>;
