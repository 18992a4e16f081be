//! GPU detection, telemetry and memory management for Lectern.
//!
//! Lectern runs its models on CUDA, Metal or the CPU. This crate decides
//! which to use, watches what the GPUs are doing and owns their memory on
//! behalf of every model, without depending on the compute library itself.
//!
//! # Devices and telemetry
//!
//! * [`DevicePreference`] is what the user asked for (`auto`, `cuda`,
//!   `cuda:N`, `metal`, `cpu`), from configuration or the `LECTERN_DEVICE`
//!   environment variable ([`DevicePreference::from_env`]).
//! * [`Capabilities`] says which compute backends the running binary was
//!   built with; the models crate supplies it.
//! * [`TelemetryBackend`] reads live GPU state. [`NvmlBackend`] talks to the
//!   NVIDIA driver through NVML; [`NoGpu`] stands in when there is no usable
//!   NVIDIA driver and records why; [`SimulatedGpu`] is a faithful simulated
//!   GPU with a fault script, for tests and demonstrations (its
//!   configuration grammar is in the [`sim`] module).
//! * [`probe_telemetry`] picks the backend and never fails. It honours the
//!   `LECTERN_GPU` environment variable ([`TelemetrySource`]): unset or
//!   `auto` for the driver, `none` for no telemetry, `sim:OPTIONS` for the
//!   simulator, e.g. `LECTERN_GPU=sim:vram=16GiB,temp=45,oom_at=3`.
//!   [`telemetry_from_env`] does the same but reports a malformed variable
//!   as an error.
//! * [`select_device`] combines the three into a [`DeviceSelection`]: `auto`
//!   always succeeds and explains its choice, while an explicit request for
//!   hardware that is not there is an error rather than a silent fallback.
//! * [`status`] gathers everything into a [`GpuStatus`] that serialises for
//!   the desktop UI and renders as text for the CLI.
//!
//! # Monitoring
//!
//! * [`Thresholds`] sets the warning lines (memory 85 % and 95 %,
//!   temperature 80 °C and 87 °C, power above the enforced limit), each
//!   with a lower clear line so readings near a line do not flap.
//!   [`ThresholdMonitor`] turns readings into [`GpuEvent`]s once per
//!   crossing.
//! * [`Sampler`] reads every GPU on a background thread, every second while
//!   an [`ActiveGuard`] exists and every five seconds otherwise, keeps the
//!   last 100 [`Sample`]s for charts and publishes events on an
//!   [`EventBus`] (channels or callbacks). Dropping it stops the thread.
//!
//! # Memory
//!
//! * [`ModelFootprint::estimate`] sizes a reservation: weights + KV cache
//!   for the requested context + activations + a 10 % margin.
//! * [`GpuManager::admit`] places each model load: on the GPU with a
//!   [`Reservation`], after unloading other models if needed (one large
//!   language model at a time; small models share while they fit), or on
//!   the CPU with a reason, or refuses with how much would fit. Owners
//!   implement [`Evictable`] so the manager can unload their models, and
//!   [`GpuManager::unload_idle`] unloads models idle past a timeout.
//! * [`RecoveryPolicy`] (and [`run_with_recovery`]) retries batched work
//!   after an out-of-memory error: free caches, halve the batch, move to
//!   the CPU; at most three steps, each reported. A lost GPU moves the work
//!   to the CPU at once. [`BatchSizer`] sizes batches to stay below the
//!   85 % line; [`ThermalBackoff`] shrinks or pauses background work when
//!   the GPU is hot or over its power limit, and never slows interactive
//!   work.
//!
//! * [`BatchPacer`] combines them for a stream of batches, and
//!   [`RecoveryPolicy::map_batches_paced`] runs the batches: sizes from
//!   free memory on the GPU and from throughput on the CPU, pauses for
//!   background work while the GPU is hot ([`GpuEvent::BackgroundPaused`]).
//! * [`GpuManager::start_idle_reaper`] unloads idle models on a timer;
//!   [`GpuReport`] lists what the manager holds next to the device status.
//! * [`recommend_llm`] picks the largest language model variant that fits
//!   the memory with the requested context, and the context it affords.
//! * [`HostInfo`] and [`NvmlProbe`] describe the machine for `lectern
//!   doctor`.
//!
//! Everything that depends on elapsed time takes a [`Clock`]; tests use a
//! [`ManualClock`] and stay deterministic.
//!
//! Every telemetry reading is optional: consumer and laptop GPUs often do not
//! report power, utilisation or per-process memory, and those fields are
//! `None` rather than errors. Memory is in bytes, power in milliwatts and
//! temperature in degrees Celsius.

mod clock;
mod error;
mod estimate;
mod events;
mod host;
mod manager;
mod nvml;
mod pacing;
mod preference;
mod recommend;
mod recovery;
mod report;
mod sampler;
mod select;
pub mod sim;
mod source;
mod status;
mod telemetry;
mod thresholds;
mod units;

#[cfg(test)]
mod test_support;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::GpuError;
pub use estimate::{KvBytes, MemoryEstimate, ModelFootprint, SAFETY_MARGIN};
pub use events::{EventBus, GpuEvent, RecoveryStep, UnloadReason};
pub use host::{HostInfo, NvmlProbe};
pub use manager::{
    Admission, Evictable, GpuManager, IdleReaper, InUse, ManagerConfig, ModelKind, ModelRequest,
    Reservation, ResidentModel, SwitchReport,
};
pub use nvml::{NvmlBackend, NVML_LIBRARY};
pub use pacing::{BatchPacer, Pace, PaceReport, PacedHooks, ThroughputSizer};
pub use preference::{DeviceKind, DevicePreference, DEVICE_ENV_VAR};
pub use recommend::{
    recommend_llm, recommend_llm_with_kv, LlmCandidate, LlmShape, MemoryBudget, Recommendation,
    VariantFit, WeightFormat, CPU_PARAMETER_LIMIT, MIN_CONTEXT,
};
pub use recovery::{
    is_out_of_memory_message, run_with_recovery, Attempt, Backoff, BatchSizer, Priority, Recovered,
    RecoveryError, RecoveryPolicy, Target, ThermalBackoff, WorkError,
};
pub use report::GpuReport;
pub use sampler::{ActiveGuard, Sample, Sampler, SamplerConfig};
pub use select::{select_device, Capabilities, DeviceSelection};
pub use sim::{SimConfig, SimulatedGpu};
pub use source::{probe_telemetry, telemetry_from_env, TelemetrySource, GPU_ENV_VAR};
pub use status::{status, GpuStatus};
pub use telemetry::{GpuSnapshot, NoGpu, TelemetryBackend};
pub use thresholds::{AlertState, ThresholdMonitor, Thresholds};
pub use units::{format_bytes, parse_duration};
