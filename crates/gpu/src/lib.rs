//! GPU detection, device selection and telemetry for Lectern.
//!
//! Lectern runs its models on CUDA, Metal or the CPU. This crate decides
//! which of those to use and reports what the GPUs are doing, without
//! depending on the compute library itself:
//!
//! * [`DevicePreference`] is what the user asked for (`auto`, `cuda`,
//!   `cuda:N`, `metal`, `cpu`), from configuration or the `LECTERN_DEVICE`
//!   environment variable ([`DevicePreference::from_env`]).
//! * [`Capabilities`] says which compute backends the running binary was
//!   built with; the models crate supplies it.
//! * [`TelemetryBackend`] reads live GPU state. [`NvmlBackend`] talks to the
//!   NVIDIA driver through NVML; [`NoGpu`] stands in when there is no usable
//!   NVIDIA driver and records why. [`probe_telemetry`] picks between them
//!   and never fails.
//! * [`select_device`] combines the three into a [`DeviceSelection`]: `auto`
//!   always succeeds and explains its choice, while an explicit request for
//!   hardware that is not there is an error rather than a silent fallback.
//! * [`status`] gathers everything into a [`GpuStatus`] that serialises for
//!   the desktop UI and renders as text for the CLI.
//!
//! Every telemetry reading is optional: consumer and laptop GPUs often do not
//! report power, utilisation or per-process memory, and those fields are
//! `None` rather than errors. Memory is in bytes, power in milliwatts and
//! temperature in degrees Celsius.

mod error;
mod nvml;
mod preference;
mod select;
mod status;
mod telemetry;

#[cfg(test)]
mod test_support;

pub use error::GpuError;
pub use nvml::{probe_telemetry, NvmlBackend, NVML_LIBRARY};
pub use preference::{DeviceKind, DevicePreference, DEVICE_ENV_VAR};
pub use select::{select_device, Capabilities, DeviceSelection};
pub use status::{status, GpuStatus};
pub use telemetry::{GpuSnapshot, NoGpu, TelemetryBackend};
