//! The telemetry abstraction: a [`TelemetryBackend`] reports live readings
//! for each GPU as a [`GpuSnapshot`].

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::GpuError;

/// A point-in-time reading of one GPU.
///
/// Every measurement is optional because drivers, especially on laptops and
/// consumer cards, decline to report some of them. Memory is in bytes, power
/// in milliwatts, temperature in degrees Celsius and utilisation in percent
/// over the driver's last sampling period.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuSnapshot {
    /// The GPU's index as the driver numbers it (the `N` in `cuda:N`).
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA GeForce RTX 4090".
    pub name: String,
    /// Stable unique identifier, e.g. "GPU-5f3c…".
    pub uuid: Option<String>,
    /// Installed video memory, in bytes.
    pub memory_total: Option<u64>,
    /// Video memory in use by all processes, in bytes.
    pub memory_used: Option<u64>,
    /// Video memory not yet allocated, in bytes.
    pub memory_free: Option<u64>,
    /// Die temperature, in degrees Celsius.
    pub temperature_c: Option<u32>,
    /// Current board power draw, in milliwatts.
    pub power_mw: Option<u32>,
    /// Power limit currently enforced, in milliwatts.
    pub power_limit_mw: Option<u32>,
    /// Percent of time a kernel was running.
    pub utilization_gpu_pct: Option<u32>,
    /// Percent of time device memory was being read or written.
    pub utilization_mem_pct: Option<u32>,
    /// Video memory used by this process, in bytes.
    pub process_memory: Option<u64>,
}

impl GpuSnapshot {
    /// A snapshot that knows only the GPU's index and name; every reading is
    /// `None`.
    pub fn new(index: u32, name: impl Into<String>) -> Self {
        Self {
            index,
            name: name.into(),
            ..Self::default()
        }
    }

    /// Fraction of video memory in use, from 0.0 to 1.0, when both the used
    /// and total amounts are known and the total is non-zero.
    pub fn memory_used_fraction(&self) -> Option<f64> {
        match (self.memory_used, self.memory_total) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 / total as f64),
            _ => None,
        }
    }
}

/// A source of live GPU readings.
///
/// Implementations are shared across threads and polled repeatedly, so
/// [`TelemetryBackend::snapshot`] should be cheap and must not block for long.
/// GPUs are numbered `0..device_count()`, matching CUDA device indices.
pub trait TelemetryBackend: Send + Sync + Debug {
    /// Short identifier of the backend, e.g. `"nvml"`.
    fn name(&self) -> &'static str;

    /// Version of the GPU driver, when known.
    fn driver_version(&self) -> Option<String>;

    /// Number of GPUs this backend can report on.
    fn device_count(&self) -> u32;

    /// Reads the current state of GPU `index`.
    ///
    /// Readings the hardware does not support are `None`; an index outside
    /// `0..device_count()` is [`GpuError::NoSuchDevice`].
    fn snapshot(&self, index: u32) -> Result<GpuSnapshot, GpuError>;

    /// Why no GPUs are reported, phrased for a person, or `None` when there
    /// are GPUs.
    fn unavailable_reason(&self) -> Option<String> {
        (self.device_count() == 0).then(|| "no NVIDIA GPU detected".to_owned())
    }

    /// The newest CUDA version the driver supports, e.g. `"12.4"`, when
    /// known.
    fn cuda_driver_version(&self) -> Option<String> {
        None
    }

    /// GPU `index`'s CUDA compute capability as `(major, minor)`, when
    /// known.
    fn compute_capability(&self, _index: u32) -> Option<(u32, u32)> {
        None
    }

    /// The simulator behind this backend, when it is one, so callers can
    /// drive its allocations and load.
    fn as_simulated(&self) -> Option<&crate::SimulatedGpu> {
        None
    }

    /// Snapshots of every GPU, in index order. A GPU whose snapshot fails is
    /// logged and left out.
    fn snapshots(&self) -> Vec<GpuSnapshot> {
        (0..self.device_count())
            .filter_map(|index| match self.snapshot(index) {
                Ok(snapshot) => Some(snapshot),
                Err(error) => {
                    tracing::warn!(backend = self.name(), index, %error, "GPU snapshot failed");
                    None
                }
            })
            .collect()
    }
}

/// The telemetry backend used when no GPU can be observed: it reports no
/// devices and remembers why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoGpu {
    /// Why no GPU is available, phrased for a person, e.g. "NVIDIA driver
    /// not loaded".
    pub reason: String,
}

impl NoGpu {
    /// A backend with no devices for the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl TelemetryBackend for NoGpu {
    fn name(&self) -> &'static str {
        "none"
    }

    fn driver_version(&self) -> Option<String> {
        None
    }

    fn device_count(&self) -> u32 {
        0
    }

    fn snapshot(&self, index: u32) -> Result<GpuSnapshot, GpuError> {
        Err(GpuError::NoSuchDevice {
            index: index as usize,
            count: 0,
        })
    }

    fn unavailable_reason(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeTelemetry;

    #[test]
    fn no_gpu_reports_nothing_and_keeps_its_reason() {
        let backend = NoGpu::new("NVIDIA driver not loaded");
        assert_eq!(backend.device_count(), 0);
        assert_eq!(backend.driver_version(), None);
        assert_eq!(
            backend.unavailable_reason().as_deref(),
            Some("NVIDIA driver not loaded")
        );
        assert!(backend.snapshots().is_empty());
        assert_eq!(
            backend.snapshot(0),
            Err(GpuError::NoSuchDevice { index: 0, count: 0 })
        );
    }

    #[test]
    fn default_snapshots_cover_every_device_in_order() {
        let backend = FakeTelemetry::two_gpus();
        let indices: Vec<u32> = backend.snapshots().iter().map(|s| s.index).collect();
        assert_eq!(indices, vec![0, 1]);
        assert_eq!(backend.unavailable_reason(), None);
    }

    #[test]
    fn memory_fraction_needs_both_readings() {
        let mut snapshot = GpuSnapshot::new(0, "x");
        assert_eq!(snapshot.memory_used_fraction(), None);
        snapshot.memory_total = Some(8);
        snapshot.memory_used = Some(2);
        assert_eq!(snapshot.memory_used_fraction(), Some(0.25));
        snapshot.memory_total = Some(0);
        assert_eq!(snapshot.memory_used_fraction(), None);
    }

    #[test]
    fn snapshot_serde_round_trips() {
        let snapshot = FakeTelemetry::two_gpus().snapshot(1).unwrap();
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: GpuSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
    }
}
