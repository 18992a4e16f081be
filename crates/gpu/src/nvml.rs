//! Telemetry from the NVIDIA driver through NVML, and the probe that falls
//! back to [`NoGpu`] when the driver is missing.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{Device, Nvml};

use crate::{GpuError, GpuSnapshot, NoGpu, TelemetryBackend};

/// File name of the NVIDIA management library loaded at run time.
#[cfg(windows)]
pub const NVML_LIBRARY: &str = "nvml.dll";
/// File name of the NVIDIA management library loaded at run time.
#[cfg(not(windows))]
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Telemetry for NVIDIA GPUs through the driver's management library.
///
/// Initialise it once with [`NvmlBackend::init`] and share it (it is `Send`
/// and `Sync`); each initialisation loads the driver library.
#[derive(Debug)]
pub struct NvmlBackend {
    nvml: Nvml,
    driver_version: Option<String>,
    device_count: u32,
}

impl NvmlBackend {
    /// Loads the NVIDIA management library and connects to the driver.
    ///
    /// Fails with [`GpuError::Nvml`] carrying a readable reason when the
    /// library is missing or the driver is not running.
    pub fn init() -> Result<Self, GpuError> {
        let nvml = Nvml::init().map_err(|error| GpuError::Nvml(init_failure_reason(&error)))?;
        let driver_version = reading("driver version", None, nvml.sys_driver_version());
        let device_count = nvml
            .device_count()
            .map_err(|error| GpuError::Nvml(format!("could not count NVIDIA GPUs: {error}")))?;
        tracing::debug!(
            driver_version = driver_version.as_deref().unwrap_or("unknown"),
            device_count,
            "NVML initialised"
        );
        Ok(Self {
            nvml,
            driver_version,
            device_count,
        })
    }

    fn read(&self, index: u32, device: &Device<'_>) -> GpuSnapshot {
        let at = Some(index);
        let memory = reading("memory", at, device.memory_info());
        let utilization = reading("utilisation", at, device.utilization_rates());
        let power_limit_mw = reading("power limit", at, device.enforced_power_limit())
            .or_else(|| reading("power limit", at, device.power_management_limit()));
        GpuSnapshot {
            index,
            name: reading("name", at, device.name())
                .unwrap_or_else(|| format!("NVIDIA GPU {index}")),
            uuid: reading("uuid", at, device.uuid()),
            memory_total: memory.as_ref().map(|m| m.total),
            memory_used: memory.as_ref().map(|m| m.used),
            memory_free: memory.as_ref().map(|m| m.free),
            temperature_c: reading(
                "temperature",
                at,
                device.temperature(TemperatureSensor::Gpu),
            ),
            power_mw: reading("power", at, device.power_usage()),
            power_limit_mw,
            utilization_gpu_pct: utilization.as_ref().map(|u| u.gpu),
            utilization_mem_pct: utilization.as_ref().map(|u| u.memory),
            process_memory: process_memory(index, device),
        }
    }
}

impl TelemetryBackend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn driver_version(&self) -> Option<String> {
        self.driver_version.clone()
    }

    fn device_count(&self) -> u32 {
        self.device_count
    }

    fn snapshot(&self, index: u32) -> Result<GpuSnapshot, GpuError> {
        if index >= self.device_count {
            return Err(GpuError::NoSuchDevice {
                index: index as usize,
                count: self.device_count,
            });
        }
        let device = self
            .nvml
            .device_by_index(index)
            .map_err(|error| GpuError::Nvml(format!("GPU {index}: {error}")))?;
        Ok(self.read(index, &device))
    }

    fn unavailable_reason(&self) -> Option<String> {
        (self.device_count == 0).then(|| "the NVIDIA driver reports no GPUs".to_owned())
    }

    fn cuda_driver_version(&self) -> Option<String> {
        let version = reading("CUDA version", None, self.nvml.sys_cuda_driver_version())?;
        Some(format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(version),
            nvml_wrapper::cuda_driver_version_minor(version)
        ))
    }

    fn compute_capability(&self, index: u32) -> Option<(u32, u32)> {
        let device = self.nvml.device_by_index(index).ok()?;
        let cc = reading(
            "compute capability",
            Some(index),
            device.cuda_compute_capability(),
        )?;
        Some((u32::try_from(cc.major).ok()?, u32::try_from(cc.minor).ok()?))
    }
}

/// Connects to the NVIDIA driver, or explains why it cannot.
///
/// Returns an [`NvmlBackend`] when the NVIDIA driver answers, otherwise a
/// [`NoGpu`] whose reason says what is missing. Never fails and never
/// waits: a machine without NVIDIA hardware costs one failed library load.
pub(crate) fn probe_nvml() -> Box<dyn TelemetryBackend> {
    match NvmlBackend::init() {
        Ok(backend) => {
            tracing::info!(
                gpus = backend.device_count(),
                driver_version = backend.driver_version.as_deref().unwrap_or("unknown"),
                "NVIDIA telemetry available"
            );
            Box::new(backend)
        }
        Err(error) => {
            let reason = match error {
                GpuError::Nvml(reason) => reason,
                other => other.to_string(),
            };
            tracing::info!(%reason, "no NVIDIA GPU telemetry");
            Box::new(NoGpu::new(reason))
        }
    }
}

/// Phrases an NVML initialisation failure for a person.
fn init_failure_reason(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            format!("NVIDIA driver library {NVML_LIBRARY} not found")
        }
        NvmlError::DriverNotLoaded => "NVIDIA driver not loaded".to_owned(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_owned(),
        NvmlError::FailedToLoadSymbol(detail) => {
            format!("NVIDIA driver library {NVML_LIBRARY} is too old or incomplete: {detail}")
        }
        other => format!("NVIDIA driver library failed to initialise: {other}"),
    }
}

/// Turns one NVML reading into an `Option`, logging failures other than
/// the hardware simply not supporting the reading.
fn reading<T>(what: &str, index: Option<u32>, result: Result<T, NvmlError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(NvmlError::NotSupported) => None,
        Err(error) => {
            tracing::debug!(what, ?index, %error, "NVML reading unavailable");
            None
        }
    }
}

/// Video memory this process holds on `device`, from the driver's lists of
/// compute and graphics processes.
///
/// `None` when the lists cannot be read, or when this process is not in
/// them: either it holds no memory on this GPU or it runs in a PID
/// namespace (a container) whose process ids the driver does not see.
fn process_memory(index: u32, device: &Device<'_>) -> Option<u64> {
    let at = Some(index);
    let compute = reading("compute processes", at, device.running_compute_processes());
    let graphics = reading(
        "graphics processes",
        at,
        device.running_graphics_processes(),
    );
    if compute.is_none() && graphics.is_none() {
        return None;
    }
    own_memory(
        std::process::id(),
        compute.iter().chain(graphics.iter()).flatten(),
    )
}

/// Sums the memory listed for `pid`; `None` if `pid` is not listed.
fn own_memory<'a>(pid: u32, processes: impl Iterator<Item = &'a ProcessInfo>) -> Option<u64> {
    let mut found = false;
    let mut total = 0u64;
    for process in processes.filter(|p| p.pid == pid) {
        found = true;
        if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
            total = total.saturating_add(bytes);
        }
    }
    found.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_failures_map_to_readable_reasons() {
        assert_eq!(
            init_failure_reason(&NvmlError::DriverNotLoaded),
            "NVIDIA driver not loaded"
        );
        let missing = init_failure_reason(&NvmlError::LibraryNotFound);
        assert!(missing.contains(NVML_LIBRARY), "{missing}");
        assert!(missing.contains("not found"), "{missing}");
        let other = init_failure_reason(&NvmlError::Unknown);
        assert!(other.contains("failed to initialise"), "{other}");
    }

    #[test]
    fn probe_never_fails_and_explains_a_missing_gpu() {
        let backend = probe_nvml();
        if backend.device_count() == 0 {
            let reason = backend
                .unavailable_reason()
                .expect("a backend without GPUs says why");
            assert!(
                reason.contains("libnvidia-ml")
                    || reason.contains("nvml.dll")
                    || reason.contains("driver"),
                "{reason}"
            );
            assert!(backend.snapshots().is_empty());
        } else {
            assert_eq!(backend.name(), "nvml");
            assert_eq!(backend.unavailable_reason(), None);
            let snapshot = backend.snapshot(0).expect("GPU 0 answers");
            assert_eq!(snapshot.index, 0);
            assert!(!snapshot.name.is_empty());
        }
    }

    #[test]
    fn nvml_init_without_a_driver_is_an_nvml_error_not_a_panic() {
        match NvmlBackend::init() {
            Ok(backend) => assert_eq!(backend.name(), "nvml"),
            Err(GpuError::Nvml(reason)) => assert!(reason.contains("NVIDIA"), "{reason}"),
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }

    fn process(pid: u32, used: UsedGpuMemory) -> ProcessInfo {
        ProcessInfo {
            pid,
            used_gpu_memory: used,
            gpu_instance_id: None,
            compute_instance_id: None,
        }
    }

    #[test]
    fn own_memory_sums_only_this_process() {
        let list = [
            process(7, UsedGpuMemory::Used(100)),
            process(9, UsedGpuMemory::Used(5_000)),
            process(7, UsedGpuMemory::Used(20)),
            process(7, UsedGpuMemory::Unavailable),
        ];
        assert_eq!(own_memory(7, list.iter()), Some(120));
        assert_eq!(own_memory(9, list.iter()), Some(5_000));
        assert_eq!(own_memory(3, list.iter()), None);
    }
}
