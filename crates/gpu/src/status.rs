//! A complete picture of device selection and GPU state, for the desktop UI
//! (as JSON) and the CLI (as text).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    select_device, Capabilities, DeviceKind, DevicePreference, GpuError, GpuSnapshot,
    TelemetryBackend,
};

/// The selected device, why it was chosen, and the state of every GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStatus {
    /// The device Lectern runs on.
    pub selected: DeviceKind,
    /// Why that device was chosen.
    pub reason: String,
    /// What the user asked for.
    pub preference: DevicePreference,
    /// Name of the telemetry backend, e.g. `"nvml"` or `"none"`.
    pub telemetry_backend: String,
    /// GPU driver version, when known.
    pub driver_version: Option<String>,
    /// Why no GPU is reported, when none is.
    pub no_gpu_reason: Option<String>,
    /// A snapshot of every GPU the telemetry backend can read.
    pub gpus: Vec<GpuSnapshot>,
    /// Compute backends this build supports.
    pub capabilities: Capabilities,
}

/// Selects the device for `pref` and reads every GPU.
///
/// Fails only when [`select_device`] does, i.e. for an explicit request
/// that cannot be met.
pub fn status(
    pref: DevicePreference,
    caps: Capabilities,
    telemetry: &dyn TelemetryBackend,
) -> Result<GpuStatus, GpuError> {
    let selection = select_device(pref, caps, telemetry)?;
    Ok(GpuStatus {
        selected: selection.kind,
        reason: selection.reason,
        preference: pref,
        telemetry_backend: telemetry.name().to_owned(),
        driver_version: telemetry.driver_version(),
        no_gpu_reason: telemetry.unavailable_reason(),
        gpus: telemetry.snapshots(),
        capabilities: caps,
    })
}

const NA: &str = "n/a";

impl GpuStatus {
    /// A multi-line, human-readable summary: the selected device and why,
    /// then each GPU's memory, temperature, power and utilisation. Readings
    /// the GPU does not report are shown as "n/a".
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "Device:    {} (requested: {})",
            self.selected, self.preference
        );
        let _ = writeln!(out, "Reason:    {}", self.reason);
        let _ = writeln!(
            out,
            "Build:     CUDA {}, Metal {}",
            yes_no(self.capabilities.cuda),
            yes_no(self.capabilities.metal)
        );
        let _ = writeln!(
            out,
            "Telemetry: {} (driver {})",
            self.telemetry_backend,
            self.driver_version.as_deref().unwrap_or(NA)
        );

        if self.gpus.is_empty() {
            let running = match self.selected {
                DeviceKind::Cpu => "Running on CPU.".to_owned(),
                DeviceKind::Metal => "Running on Metal.".to_owned(),
                DeviceKind::Cuda(index) => format!("Running on cuda:{index}."),
            };
            match &self.no_gpu_reason {
                Some(reason) => {
                    let reason = reason.trim_end_matches('.');
                    let _ = writeln!(out, "No NVIDIA GPU: {reason}. {running}");
                }
                None => {
                    let _ = writeln!(out, "No GPU readings available. {running}");
                }
            }
            return out;
        }

        for gpu in &self.gpus {
            let marker = if self.selected == DeviceKind::Cuda(gpu.index as usize) {
                " [selected]"
            } else {
                ""
            };
            let _ = writeln!(out, "GPU {}: {}{marker}", gpu.index, gpu.name);
            let _ = writeln!(out, "  UUID:         {}", gpu.uuid.as_deref().unwrap_or(NA));
            let _ = writeln!(out, "  VRAM:         {}", vram(gpu));
            let _ = writeln!(
                out,
                "  Temperature:  {}",
                gpu.temperature_c
                    .map_or_else(|| NA.to_owned(), |t| format!("{t} °C"))
            );
            let _ = writeln!(out, "  Power:        {}", power(gpu));
            let _ = writeln!(out, "  Utilisation:  {}", utilisation(gpu));
            let _ = writeln!(
                out,
                "  This process: {}",
                gpu.process_memory
                    .map_or_else(|| NA.to_owned(), |b| format!("{} GiB", gib(b)))
            );
        }
        out
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64)
}

fn watts(milliwatts: u32) -> String {
    format!("{:.1}", f64::from(milliwatts) / 1000.0)
}

/// "used / total unit", with "n/a" for a missing side, or just "n/a" when
/// both are missing.
fn ratio(used: Option<String>, total: Option<String>, unit: &str) -> String {
    if used.is_none() && total.is_none() {
        return NA.to_owned();
    }
    format!(
        "{} / {} {unit}",
        used.as_deref().unwrap_or(NA),
        total.as_deref().unwrap_or(NA)
    )
}

fn vram(gpu: &GpuSnapshot) -> String {
    let mut text = ratio(gpu.memory_used.map(gib), gpu.memory_total.map(gib), "GiB");
    if let Some(fraction) = gpu.memory_used_fraction() {
        let _ = write!(text, " ({:.1}%)", fraction * 100.0);
    }
    text
}

fn power(gpu: &GpuSnapshot) -> String {
    ratio(gpu.power_mw.map(watts), gpu.power_limit_mw.map(watts), "W")
}

fn utilisation(gpu: &GpuSnapshot) -> String {
    if gpu.utilization_gpu_pct.is_none() && gpu.utilization_mem_pct.is_none() {
        return NA.to_owned();
    }
    let pct = |v: Option<u32>| v.map_or_else(|| NA.to_owned(), |p| format!("{p}%"));
    format!(
        "GPU {}, memory {}",
        pct(gpu.utilization_gpu_pct),
        pct(gpu.utilization_mem_pct)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeTelemetry;
    use crate::{probe_telemetry, NoGpu};

    const NONE: Capabilities = Capabilities {
        cuda: false,
        metal: false,
    };
    const CUDA: Capabilities = Capabilities {
        cuda: true,
        metal: false,
    };

    #[test]
    fn status_on_this_machine_renders_and_runs_on_cpu() {
        let telemetry = probe_telemetry();
        let status = status(DevicePreference::Auto, NONE, telemetry.as_ref()).unwrap();
        assert_eq!(status.selected, DeviceKind::Cpu);
        let text = status.render_text();
        assert!(text.contains("Device:    cpu (requested: auto)"), "{text}");
        if telemetry.device_count() == 0 {
            assert!(text.contains("No NVIDIA GPU: "), "{text}");
            assert!(text.contains("Running on CPU."), "{text}");
            assert!(status.gpus.is_empty());
            assert!(status.no_gpu_reason.is_some());
        } else {
            assert!(text.contains("GPU 0: "), "{text}");
        }
    }

    #[test]
    fn no_gpu_status_names_the_reason_and_the_cpu() {
        let telemetry = NoGpu::new("NVIDIA driver library libnvidia-ml.so.1 not found");
        let status = status(DevicePreference::Auto, CUDA, &telemetry).unwrap();
        let text = status.render_text();
        assert!(
            text.contains(
                "No NVIDIA GPU: NVIDIA driver library libnvidia-ml.so.1 not found. Running on CPU."
            ),
            "{text}"
        );
        assert!(text.contains("Build:     CUDA yes, Metal no"), "{text}");
        assert!(text.contains("Telemetry: none (driver n/a)"), "{text}");
    }

    #[test]
    fn status_propagates_selection_errors() {
        let err = status(DevicePreference::Cuda(5), CUDA, &FakeTelemetry::two_gpus()).unwrap_err();
        assert_eq!(err, GpuError::NoSuchDevice { index: 5, count: 2 });
    }

    #[test]
    fn gpu_readings_render_with_units() {
        let status = status(DevicePreference::Auto, CUDA, &FakeTelemetry::two_gpus()).unwrap();
        assert_eq!(status.gpus.len(), 2);
        assert_eq!(status.driver_version.as_deref(), Some("999.1"));
        assert_eq!(status.no_gpu_reason, None);
        let text = status.render_text();
        assert!(text.contains("GPU 0: Fake GPU 0 [selected]"), "{text}");
        assert!(text.contains("GPU 1: Fake GPU 1\n"), "{text}");
        assert!(
            text.contains("VRAM:         6.00 / 24.00 GiB (25.0%)"),
            "{text}"
        );
        assert!(
            text.contains("VRAM:         12.00 / 24.00 GiB (50.0%)"),
            "{text}"
        );
        assert!(text.contains("Temperature:  50 °C"), "{text}");
        assert!(text.contains("Power:        120.5 / 450.0 W"), "{text}");
        assert!(text.contains("Utilisation:  GPU 37%, memory 12%"), "{text}");
        assert!(text.contains("This process: 1.00 GiB"), "{text}");
        assert!(!text.contains(NA), "{text}");
    }

    #[test]
    fn unreported_readings_render_as_not_available() {
        let telemetry = FakeTelemetry {
            gpus: vec![GpuSnapshot::new(0, "Laptop GPU")],
        };
        let text = status(DevicePreference::Cpu, CUDA, &telemetry)
            .unwrap()
            .render_text();
        for label in [
            "UUID:         n/a",
            "VRAM:         n/a",
            "Temperature:  n/a",
            "Power:        n/a",
            "Utilisation:  n/a",
            "This process: n/a",
        ] {
            assert!(text.contains(label), "missing {label:?} in\n{text}");
        }
        assert!(!text.contains("GiB"), "{text}");
        assert!(!text.contains("[selected]"), "{text}");
    }

    #[test]
    fn partly_reported_readings_mark_the_missing_side() {
        let mut gpu = GpuSnapshot::new(0, "Laptop GPU");
        gpu.memory_total = Some(8 << 30);
        gpu.power_mw = Some(15_000);
        gpu.utilization_gpu_pct = Some(3);
        let text = status(
            DevicePreference::Cpu,
            CUDA,
            &FakeTelemetry { gpus: vec![gpu] },
        )
        .unwrap()
        .render_text();
        assert!(text.contains("VRAM:         n/a / 8.00 GiB\n"), "{text}");
        assert!(text.contains("Power:        15.0 / n/a W"), "{text}");
        assert!(text.contains("Utilisation:  GPU 3%, memory n/a"), "{text}");
    }

    #[test]
    fn status_serialises_with_text_forms() {
        let status = status(DevicePreference::Cpu, NONE, &NoGpu::new("none here")).unwrap();
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["selected"], "cpu");
        assert_eq!(json["preference"], "cpu");
        assert_eq!(json["no_gpu_reason"], "none here");
        assert_eq!(json["capabilities"]["cuda"], false);
        let back: GpuStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
