//! Test doubles for [`TelemetryBackend`], whose real hardware is absent on
//! most machines that run the tests.

use crate::{GpuError, GpuSnapshot, TelemetryBackend};

/// A telemetry backend serving fixed snapshots.
#[derive(Debug, Clone)]
pub(crate) struct FakeTelemetry {
    pub(crate) gpus: Vec<GpuSnapshot>,
}

impl FakeTelemetry {
    /// Two 24 GiB GPUs with every reading filled in.
    pub(crate) fn two_gpus() -> Self {
        const GIB: u64 = 1 << 30;
        let gpu = |index: u32, used: u64| GpuSnapshot {
            index,
            name: format!("Fake GPU {index}"),
            uuid: Some(format!("GPU-fake-{index}")),
            memory_total: Some(24 * GIB),
            memory_used: Some(used),
            memory_free: Some(24 * GIB - used),
            temperature_c: Some(50 + index),
            power_mw: Some(120_500),
            power_limit_mw: Some(450_000),
            utilization_gpu_pct: Some(37),
            utilization_mem_pct: Some(12),
            process_memory: Some(GIB),
        };
        Self {
            gpus: vec![gpu(0, 6 * GIB), gpu(1, 12 * GIB)],
        }
    }
}

impl TelemetryBackend for FakeTelemetry {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn driver_version(&self) -> Option<String> {
        Some("999.1".to_owned())
    }

    fn device_count(&self) -> u32 {
        self.gpus.len() as u32
    }

    fn snapshot(&self, index: u32) -> Result<GpuSnapshot, GpuError> {
        self.gpus
            .get(index as usize)
            .cloned()
            .ok_or(GpuError::NoSuchDevice {
                index: index as usize,
                count: self.device_count(),
            })
    }
}
