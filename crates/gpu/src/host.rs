//! The machine outside the GPU: operating system, CPU and its vector
//! features, and system memory, as a bug report needs them.

use serde::{Deserialize, Serialize};

use crate::nvml::NvmlBackend;
use crate::TelemetryBackend;

/// The operating system, CPU and memory of this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Operating system family, e.g. `"linux"`.
    pub os: String,
    /// Distribution or release name, when known (e.g. "Debian GNU/Linux 12").
    pub os_release: Option<String>,
    /// CPU architecture, e.g. `"x86_64"`.
    pub arch: String,
    /// CPU model name, when known.
    pub cpu_model: Option<String>,
    /// Logical CPUs available to this process.
    pub logical_cpus: usize,
    /// Vector and matrix features the CPU has, of those the compute
    /// kernels use (`avx`, `avx2`, `fma`, `f16c`, `avx512f`, `avx512bw`,
    /// `avx512vnni`, `neon`, …).
    pub cpu_features: Vec<String>,
    /// Installed memory, in bytes, when known.
    pub memory_total: Option<u64>,
    /// Memory available to new work, in bytes, when known.
    pub memory_available: Option<u64>,
}

impl HostInfo {
    /// Reads this machine's details. Never fails: what cannot be read is
    /// `None`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Self {
            os: std::env::consts::OS.to_owned(),
            os_release: os_release_name(&os_release),
            arch: std::env::consts::ARCH.to_owned(),
            cpu_model: cpu_model(&cpuinfo),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_features: cpu_features(),
            memory_total: meminfo_bytes(&meminfo, "MemTotal"),
            memory_available: meminfo_bytes(&meminfo, "MemAvailable"),
        }
    }
}

/// Whether the NVIDIA management library answers on this machine, and why
/// not when it does not, independent of `LECTERN_GPU`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlProbe {
    /// Whether NVML initialised.
    pub available: bool,
    /// Why it did not, phrased for a person.
    pub reason: Option<String>,
    /// Driver version, when it answered.
    pub driver_version: Option<String>,
    /// The newest CUDA version the driver supports, when it answered.
    pub cuda_version: Option<String>,
    /// GPUs it reports.
    pub device_count: u32,
    /// Compute capability of each GPU, as `"major.minor"`, in index order.
    pub compute_capabilities: Vec<Option<String>>,
}

impl NvmlProbe {
    /// Loads NVML once and reads what a bug report needs.
    pub fn detect() -> Self {
        match NvmlBackend::init() {
            Ok(nvml) => Self {
                available: true,
                reason: nvml.unavailable_reason(),
                driver_version: nvml.driver_version(),
                cuda_version: nvml.cuda_driver_version(),
                device_count: nvml.device_count(),
                compute_capabilities: (0..nvml.device_count())
                    .map(|i| {
                        nvml.compute_capability(i)
                            .map(|(major, minor)| format!("{major}.{minor}"))
                    })
                    .collect(),
            },
            Err(error) => Self {
                available: false,
                reason: Some(match error {
                    crate::GpuError::Nvml(reason) => reason,
                    other => other.to_string(),
                }),
                driver_version: None,
                cuda_version: None,
                device_count: 0,
                compute_capabilities: Vec::new(),
            },
        }
    }
}

fn os_release_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| {
            let key = key.trim();
            key == "model name" || key == "Model" || key == "Hardware"
        })
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.split(':').next() == Some(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! check {
        ($($feature:tt),*) => {
            $(if std::arch::is_x86_feature_detected!($feature) {
                found.push($feature.to_owned());
            })*
        };
    }
    check!(
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vnni"
    );
    found
}

#[cfg(target_arch = "aarch64")]
fn cpu_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! check {
        ($($feature:tt),*) => {
            $(if std::arch::is_aarch64_feature_detected!($feature) {
                found.push($feature.to_owned());
            })*
        };
    }
    check!("neon", "fp16", "dotprod", "i8mm", "bf16");
    found
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo =
            "MemTotal:       24613800 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24_613_800 * 1024));
        assert_eq!(
            meminfo_bytes(meminfo, "MemAvailable"),
            Some(20_000_000 * 1024)
        );
        assert_eq!(meminfo_bytes(meminfo, "SwapTotal"), None);
        assert_eq!(
            os_release_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn this_machine_is_described() {
        let host = HostInfo::detect();
        assert_eq!(host.os, std::env::consts::OS);
        assert!(host.logical_cpus >= 1);
        if cfg!(target_os = "linux") {
            assert!(host.memory_total.unwrap() > 0);
            assert!(host.memory_available.unwrap() <= host.memory_total.unwrap());
        }
        if cfg!(target_arch = "x86_64") {
            // Every x86-64 CPU this decade has SSE4.2.
            assert!(
                host.cpu_features.iter().any(|f| f == "sse4.2"),
                "{:?}",
                host.cpu_features
            );
        }
        let nvml = NvmlProbe::detect();
        if nvml.available {
            assert_eq!(nvml.compute_capabilities.len(), nvml.device_count as usize);
        } else {
            assert_eq!(nvml.device_count, 0);
            let reason = nvml.reason.expect("a missing NVML says why");
            assert!(reason.contains("NVIDIA"), "{reason}");
        }
    }
}
