//! Device status together with what the memory manager holds: the view
//! `lectern gpu status` prints and the app's GPU panel shows.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::units::format_bytes;
use crate::{GpuManager, GpuStatus, ModelKind, ResidentModel};

/// The device, live readings of every GPU, and the models holding GPU
/// memory.
///
/// Serialises as the [`GpuStatus`] fields plus `residents`,
/// `reserved_bytes` and `idle_timeout_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuReport {
    /// Device selection and GPU readings.
    #[serde(flatten)]
    pub status: GpuStatus,
    /// Models holding a reservation, in admission order.
    pub residents: Vec<ResidentModel>,
    /// Bytes held by all reservations.
    pub reserved_bytes: u64,
    /// Models unused for this long are unloaded, in milliseconds.
    pub idle_timeout_ms: u64,
}

impl GpuReport {
    /// The report for `status` and what `manager` holds now.
    pub fn new(status: GpuStatus, manager: &GpuManager) -> Self {
        Self {
            status,
            residents: manager.residents(),
            reserved_bytes: manager.reserved_bytes(),
            idle_timeout_ms: u64::try_from(manager.config().idle_timeout.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// [`GpuStatus::render_text`] followed by the reservations.
    pub fn render_text(&self) -> String {
        let mut out = self.status.render_text();
        // A timeout beyond a year means idle models are kept.
        let idle = if self.idle_timeout_ms >= 365 * 24 * 3_600_000 {
            "idle models stay loaded".to_owned()
        } else {
            format!("idle models unload after {} s", self.idle_timeout_ms / 1000)
        };
        if self.residents.is_empty() {
            let _ = writeln!(out, "Models:    none holding GPU memory ({idle})");
            return out;
        }
        let _ = writeln!(
            out,
            "Models:    {} reserved ({idle})",
            format_bytes(self.reserved_bytes)
        );
        for model in &self.residents {
            let kind = match model.kind {
                ModelKind::Llm => "language model",
                ModelKind::Small => "small model",
            };
            let state = if model.in_use {
                "in use".to_owned()
            } else if model.loaded {
                format!("idle {:.1} s", model.idle_ms as f64 / 1000.0)
            } else {
                "loading".to_owned()
            };
            let _ = writeln!(
                out,
                "  {}: {kind}, {}, {state}",
                model.name,
                format_bytes(model.bytes)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::{
        Capabilities, DeviceKind, DevicePreference, EventBus, ManagerConfig, ModelRequest,
        SimulatedGpu, TelemetryBackend,
    };

    #[test]
    fn report_lists_reservations_and_serialises_flat() {
        let gpu: Arc<dyn TelemetryBackend> =
            Arc::new(SimulatedGpu::new("vram=16GiB".parse().unwrap()));
        let caps = Capabilities {
            cuda: true,
            metal: false,
        };
        let status = crate::status(DevicePreference::Auto, caps, gpu.as_ref()).unwrap();
        let config = ManagerConfig {
            idle_timeout: Duration::from_secs(90),
            ..ManagerConfig::default()
        };
        let manager = GpuManager::new(gpu, DeviceKind::Cuda(0), config, EventBus::new());
        let llm = manager
            .admit(
                ModelRequest::new("qwen3-4b", ModelKind::Llm, 9 << 30),
                || {},
            )
            .unwrap();
        llm.reservation().unwrap().loaded();
        let small = manager
            .admit(
                ModelRequest::new("minilm", ModelKind::Small, 1 << 28),
                || {},
            )
            .unwrap();
        let _busy = small.reservation().unwrap().begin_use();

        let report = GpuReport::new(status, &manager);
        assert_eq!(report.reserved_bytes, (9 << 30) + (1 << 28));
        let text = report.render_text();
        assert!(
            text.contains("Models:    9.25 GiB reserved (idle models unload after 90 s)"),
            "{text}"
        );
        assert!(
            text.contains("  qwen3-4b: language model, 9.00 GiB, idle"),
            "{text}"
        );
        assert!(
            text.contains("  minilm: small model, 0.25 GiB, in use"),
            "{text}"
        );

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["selected"], "cuda:0");
        assert_eq!(json["residents"][0]["name"], "qwen3-4b");
        assert_eq!(json["residents"][1]["in_use"], true);
        assert_eq!(json["idle_timeout_ms"], 90_000);
        let back: GpuReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);

        let kept = GpuReport {
            idle_timeout_ms: u64::MAX,
            residents: Vec::new(),
            ..report
        };
        assert!(kept.render_text().contains("idle models stay loaded"));
    }
}
