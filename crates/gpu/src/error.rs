//! The error type shared by every part of this crate.

use thiserror::Error;

/// Errors from device selection and GPU telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GpuError {
    /// A device preference string could not be parsed.
    #[error("invalid device {input:?}: expected one of auto, cuda, cuda:N (N is the GPU index, e.g. cuda:1), metal, cpu")]
    InvalidPreference {
        /// The text that failed to parse.
        input: String,
    },

    /// An explicitly requested device cannot be used by this build or on
    /// this machine.
    #[error("{0}")]
    Unavailable(String),

    /// The NVIDIA management library failed to initialise or to answer a
    /// query.
    #[error("NVIDIA management library: {0}")]
    Nvml(String),

    /// A GPU index beyond the number of GPUs present.
    #[error("no GPU with index {index}: {count} NVIDIA GPU(s) present")]
    NoSuchDevice {
        /// The index that was asked for.
        index: usize,
        /// How many GPUs the telemetry backend reports.
        count: u32,
    },
}
