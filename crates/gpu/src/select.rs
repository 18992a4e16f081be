//! Choosing the compute device from the user's preference, the build's
//! capabilities and what the telemetry backend can see.

use serde::{Deserialize, Serialize};

use crate::{DeviceKind, DevicePreference, GpuError, TelemetryBackend};

/// Which compute backends the running binary was built with.
///
/// The models crate fills this in from its own feature flags, since only it
/// links the compute library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Built with CUDA support.
    pub cuda: bool,
    /// Built with Metal support.
    pub metal: bool,
}

/// The chosen device and a sentence explaining the choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSelection {
    /// The device to run on.
    pub kind: DeviceKind,
    /// Why this device was chosen, phrased for a person.
    pub reason: String,
}

impl DeviceSelection {
    fn new(kind: DeviceKind, reason: impl Into<String>) -> Self {
        let selection = Self {
            kind,
            reason: reason.into(),
        };
        tracing::debug!(device = %selection.kind, reason = %selection.reason, "device selected");
        selection
    }
}

/// Whether Metal can run here: built in, and on macOS.
fn metal_usable(caps: Capabilities) -> bool {
    caps.metal && cfg!(target_os = "macos")
}

/// Chooses the device to run on.
///
/// * [`DevicePreference::Auto`] never fails. It takes CUDA GPU 0 when the
///   build has CUDA and a GPU is visible, otherwise Metal when the build has
///   Metal and this is macOS, otherwise the CPU; the reason says what was
///   missing.
/// * [`DevicePreference::Cuda`] and [`DevicePreference::Metal`] fail with
///   [`GpuError::Unavailable`] (or [`GpuError::NoSuchDevice`] for a CUDA
///   index past the last GPU) instead of falling back, so a user who asked
///   for a GPU learns that they are not getting one.
/// * [`DevicePreference::Cpu`] always succeeds.
pub fn select_device(
    pref: DevicePreference,
    caps: Capabilities,
    telemetry: &dyn TelemetryBackend,
) -> Result<DeviceSelection, GpuError> {
    match pref {
        DevicePreference::Auto => Ok(select_auto(caps, telemetry)),
        DevicePreference::Cuda(index) => select_cuda(index, caps, telemetry),
        DevicePreference::Metal => select_metal(caps),
        DevicePreference::Cpu => Ok(DeviceSelection::new(
            DeviceKind::Cpu,
            "CPU requested; running on CPU",
        )),
    }
}

fn select_auto(caps: Capabilities, telemetry: &dyn TelemetryBackend) -> DeviceSelection {
    let count = telemetry.device_count();
    if caps.cuda && count > 0 {
        let name = telemetry
            .snapshot(0)
            .map(|snapshot| snapshot.name)
            .unwrap_or_else(|_| "NVIDIA GPU".to_owned());
        let others = match count {
            1 => String::new(),
            n => format!(" (first of {n} NVIDIA GPUs)"),
        };
        return DeviceSelection::new(
            DeviceKind::Cuda(0),
            format!("{name} detected{others}; running on cuda:0"),
        );
    }

    let cuda_note = if caps.cuda {
        let why = telemetry
            .unavailable_reason()
            .unwrap_or_else(|| "no NVIDIA GPU detected".to_owned());
        format!("no usable NVIDIA GPU ({why})")
    } else if count > 0 {
        format!("no CUDA support in this build, although {count} NVIDIA GPU(s) are present")
    } else {
        "no CUDA support in this build".to_owned()
    };

    if metal_usable(caps) {
        return DeviceSelection::new(DeviceKind::Metal, format!("{cuda_note}; running on Metal"));
    }
    let reason = if cfg!(target_os = "macos") && !caps.metal {
        format!("{cuda_note}; no Metal support in this build; running on CPU")
    } else {
        format!("{cuda_note}; running on CPU")
    };
    DeviceSelection::new(DeviceKind::Cpu, reason)
}

fn select_cuda(
    index: usize,
    caps: Capabilities,
    telemetry: &dyn TelemetryBackend,
) -> Result<DeviceSelection, GpuError> {
    if !caps.cuda {
        return Err(GpuError::Unavailable(format!(
            "cuda:{index} requested, but this build has no CUDA support; \
             use a CUDA-enabled build or choose another device (auto, cpu)"
        )));
    }
    let count = telemetry.device_count();
    if count == 0 {
        let why = telemetry
            .unavailable_reason()
            .unwrap_or_else(|| "no NVIDIA GPU detected".to_owned());
        return Err(GpuError::Unavailable(format!(
            "cuda:{index} requested, but no NVIDIA GPU is available: {why}"
        )));
    }
    if index >= count as usize {
        return Err(GpuError::NoSuchDevice { index, count });
    }
    let name = u32::try_from(index)
        .ok()
        .and_then(|i| telemetry.snapshot(i).ok())
        .map(|snapshot| snapshot.name)
        .unwrap_or_else(|| "NVIDIA GPU".to_owned());
    Ok(DeviceSelection::new(
        DeviceKind::Cuda(index),
        format!("cuda:{index} requested; running on {name}"),
    ))
}

fn select_metal(caps: Capabilities) -> Result<DeviceSelection, GpuError> {
    if !cfg!(target_os = "macos") {
        return Err(GpuError::Unavailable(
            "metal requested, but Metal is only available on macOS; choose auto, cuda or cpu"
                .to_owned(),
        ));
    }
    if !caps.metal {
        return Err(GpuError::Unavailable(
            "metal requested, but this build has no Metal support; \
             use a Metal-enabled build or choose another device (auto, cpu)"
                .to_owned(),
        ));
    }
    Ok(DeviceSelection::new(
        DeviceKind::Metal,
        "Metal requested; running on Metal",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeTelemetry;
    use crate::NoGpu;

    const NONE: Capabilities = Capabilities {
        cuda: false,
        metal: false,
    };
    const CUDA: Capabilities = Capabilities {
        cuda: true,
        metal: false,
    };
    const METAL: Capabilities = Capabilities {
        cuda: false,
        metal: true,
    };
    const BOTH: Capabilities = Capabilities {
        cuda: true,
        metal: true,
    };
    const ON_MAC: bool = cfg!(target_os = "macos");

    fn no_gpu() -> NoGpu {
        NoGpu::new("NVIDIA driver not loaded")
    }

    #[test]
    fn auto_without_gpu_or_support_runs_on_cpu_and_says_why() {
        let selection = select_device(DevicePreference::Auto, NONE, &no_gpu()).unwrap();
        assert_eq!(selection.kind, DeviceKind::Cpu);
        assert!(
            selection.reason.contains("no CUDA support in this build"),
            "{}",
            selection.reason
        );
        assert!(
            selection.reason.ends_with("running on CPU"),
            "{}",
            selection.reason
        );
    }

    #[test]
    fn auto_with_cuda_build_but_no_gpu_reports_the_telemetry_reason() {
        let selection = select_device(DevicePreference::Auto, CUDA, &no_gpu()).unwrap();
        assert_eq!(selection.kind, DeviceKind::Cpu);
        assert!(
            selection.reason.contains("NVIDIA driver not loaded"),
            "{}",
            selection.reason
        );
    }

    #[test]
    fn auto_prefers_cuda_gpu_zero_when_built_and_present() {
        let fake = FakeTelemetry::two_gpus();
        for caps in [CUDA, BOTH] {
            let selection = select_device(DevicePreference::Auto, caps, &fake).unwrap();
            assert_eq!(selection.kind, DeviceKind::Cuda(0));
            assert!(
                selection.reason.contains("Fake GPU 0"),
                "{}",
                selection.reason
            );
            assert!(
                selection.reason.contains("2 NVIDIA GPUs"),
                "{}",
                selection.reason
            );
        }
    }

    #[test]
    fn auto_without_cuda_build_ignores_present_gpus() {
        let fake = FakeTelemetry::two_gpus();
        let selection = select_device(DevicePreference::Auto, NONE, &fake).unwrap();
        assert_eq!(selection.kind, DeviceKind::Cpu);
        assert!(
            selection.reason.contains("no CUDA support in this build"),
            "{}",
            selection.reason
        );
        assert!(
            selection.reason.contains("2 NVIDIA GPU"),
            "{}",
            selection.reason
        );
    }

    #[test]
    fn auto_uses_metal_only_on_macos_builds_with_metal() {
        for telemetry in [
            &no_gpu() as &dyn TelemetryBackend,
            &FakeTelemetry::two_gpus(),
        ] {
            let selection = select_device(DevicePreference::Auto, METAL, telemetry).unwrap();
            let expected = if ON_MAC {
                DeviceKind::Metal
            } else {
                DeviceKind::Cpu
            };
            assert_eq!(selection.kind, expected, "{}", selection.reason);
        }
        let selection = select_device(DevicePreference::Auto, BOTH, &no_gpu()).unwrap();
        let expected = if ON_MAC {
            DeviceKind::Metal
        } else {
            DeviceKind::Cpu
        };
        assert_eq!(selection.kind, expected, "{}", selection.reason);
    }

    #[test]
    fn auto_never_fails() {
        for caps in [NONE, CUDA, METAL, BOTH] {
            assert!(select_device(DevicePreference::Auto, caps, &no_gpu()).is_ok());
            assert!(
                select_device(DevicePreference::Auto, caps, &FakeTelemetry::two_gpus()).is_ok()
            );
        }
    }

    #[test]
    fn cpu_always_works() {
        for caps in [NONE, CUDA, METAL, BOTH] {
            for telemetry in [
                &no_gpu() as &dyn TelemetryBackend,
                &FakeTelemetry::two_gpus(),
            ] {
                let selection = select_device(DevicePreference::Cpu, caps, telemetry).unwrap();
                assert_eq!(selection.kind, DeviceKind::Cpu);
            }
        }
    }

    #[test]
    fn explicit_cuda_picks_the_requested_gpu() {
        let fake = FakeTelemetry::two_gpus();
        let selection = select_device(DevicePreference::Cuda(1), CUDA, &fake).unwrap();
        assert_eq!(selection.kind, DeviceKind::Cuda(1));
        assert!(
            selection.reason.contains("Fake GPU 1"),
            "{}",
            selection.reason
        );
    }

    #[test]
    fn explicit_cuda_past_the_last_gpu_is_no_such_device() {
        let fake = FakeTelemetry::two_gpus();
        let err = select_device(DevicePreference::Cuda(5), BOTH, &fake).unwrap_err();
        assert_eq!(err, GpuError::NoSuchDevice { index: 5, count: 2 });
        assert!(err.to_string().contains("index 5"), "{err}");
    }

    #[test]
    fn explicit_cuda_without_cuda_build_is_unavailable() {
        for telemetry in [
            &no_gpu() as &dyn TelemetryBackend,
            &FakeTelemetry::two_gpus(),
        ] {
            let err = select_device(DevicePreference::Cuda(0), METAL, telemetry).unwrap_err();
            match err {
                GpuError::Unavailable(message) => {
                    assert!(message.contains("no CUDA support"), "{message}")
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn explicit_cuda_without_gpu_is_unavailable_with_the_reason() {
        let err = select_device(DevicePreference::Cuda(0), CUDA, &no_gpu()).unwrap_err();
        match err {
            GpuError::Unavailable(message) => {
                assert!(message.contains("cuda:0"), "{message}");
                assert!(message.contains("NVIDIA driver not loaded"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn explicit_metal_requires_macos_and_a_metal_build() {
        for caps in [NONE, CUDA, METAL, BOTH] {
            let result = select_device(DevicePreference::Metal, caps, &no_gpu());
            if ON_MAC && caps.metal {
                assert_eq!(result.unwrap().kind, DeviceKind::Metal);
            } else {
                match result.unwrap_err() {
                    GpuError::Unavailable(message) => {
                        assert!(message.starts_with("metal requested"), "{message}")
                    }
                    other => panic!("expected Unavailable, got {other:?}"),
                }
            }
        }
    }
}
