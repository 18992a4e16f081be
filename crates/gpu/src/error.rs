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

    /// A simulator or telemetry configuration string could not be parsed
    /// or is inconsistent; the message names the offending option.
    #[error("invalid GPU configuration: {0}")]
    InvalidConfig(String),

    /// The device could not satisfy an allocation.
    #[error("GPU {index} out of memory: {requested} bytes requested, {free} bytes free")]
    OutOfMemory {
        /// The GPU's index.
        index: u32,
        /// Bytes asked for.
        requested: u64,
        /// Bytes that were free at the time.
        free: u64,
    },

    /// The device stopped answering (it fell off the bus, its driver was
    /// reset, or its context was lost); nothing more can run on it.
    #[error("GPU {index} was lost: {reason}")]
    DeviceLost {
        /// The GPU's index.
        index: u32,
        /// What happened, as the driver or simulator put it.
        reason: String,
    },

    /// A model does not fit in GPU memory even after unloading idle
    /// models, and falling back to the CPU is not allowed.
    #[error(
        "{model} needs {} of GPU memory but at most {} would fit on GPU {index}",
        crate::units::format_bytes(*requested),
        crate::units::format_bytes(*available)
    )]
    InsufficientMemory {
        /// The model that was refused.
        model: String,
        /// Bytes the model's reservation asked for.
        requested: u64,
        /// The largest reservation that would have been admitted.
        available: u64,
        /// The GPU's index.
        index: u32,
    },

    /// A resident model that would have to be unloaded is in use.
    #[error("{model} is in use and cannot be unloaded now; try again when it finishes")]
    ModelBusy {
        /// The model that is in use.
        model: String,
    },
}
