//! The live GPU panel: readings of every GPU (from the engine's sampler)
//! and of the host (CPU and memory) broadcast as `gpu-tick` events, and the
//! engine's GPU events (threshold crossings, device loss, model moves)
//! broadcast as `gpu-alert` events. `gpu_panel` gives a window that opens
//! the recent history and the current states.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lectern_engine::gpu::{GpuReport, ModelKind, Thresholds};
use lectern_engine::{Engine, GpuEvent, GpuSnapshot, Sample};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State};
use tauri_specta::Event;

use crate::error::CommandResult;
use crate::state::AppState;

/// How often the panel's readings are broadcast.
pub const TICK: Duration = Duration::from_secs(2);

/// `ok`, `warning` or `critical`.
pub type Level = String;

/// One GPU's readings at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct GpuReading {
    pub index: u32,
    pub name: String,
    pub memory_used: Option<u64>,
    pub memory_total: Option<u64>,
    pub temperature_c: Option<u32>,
    /// Board power draw, in watts.
    pub power_w: Option<f64>,
    /// Enforced power limit, in watts.
    pub power_limit_w: Option<f64>,
    pub utilization_pct: Option<u32>,
    /// Memory state by the threshold lines: `ok`, `warning`, `critical`.
    pub memory_level: Level,
    /// Temperature state: `ok`, `warning` or `critical` (at the limit).
    pub temperature_level: Level,
    /// Power state: `ok` or `warning` (over the enforced limit).
    pub power_level: Level,
}

/// The host's CPU and memory at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct HostReading {
    /// Percent of CPU time busy since the previous reading, all cores.
    pub cpu_pct: Option<f64>,
    pub memory_used: Option<u64>,
    pub memory_total: Option<u64>,
    pub cpus: u32,
}

/// A broadcast reading for the GPU panel's charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct GpuTick {
    /// Unix time of the reading, in milliseconds.
    pub at_ms: u64,
    /// Every GPU that answered; empty without an NVIDIA GPU.
    pub gpus: Vec<GpuReading>,
    pub host: HostReading,
    /// The language model holding GPU memory, or the configured one.
    pub active_model: Option<String>,
}

impl Event for GpuTick {
    const NAME: &'static str = "gpu-tick";
}

/// A GPU event for people: a threshold crossed or cleared, the device
/// lost, a model moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct GpuAlert {
    /// Unix time, in milliseconds.
    pub at_ms: u64,
    /// The GPU it concerns, when one.
    pub index: Option<u32>,
    /// What it is about: `memory`, `temperature`, `power`, `device`, `model`
    /// or `work`.
    pub topic: String,
    /// The state it leaves: `ok`, `warning`, `critical` or `info`.
    pub level: Level,
    pub message: String,
}

impl Event for GpuAlert {
    const NAME: &'static str = "gpu-alert";
}

/// What the GPU panel shows when it opens.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct GpuPanel {
    /// False when the engine has not opened yet (no sampler runs).
    pub live: bool,
    /// True when no NVIDIA GPU is observed.
    pub no_gpu: bool,
    /// Why, when there is none.
    pub no_gpu_reason: Option<String>,
    /// The device models run on, e.g. `cuda:0 · NVIDIA H200` or `CPU`.
    pub device: String,
    /// Recent readings, oldest first (GPU readings up to the last 100).
    pub history: Vec<GpuTick>,
    /// Models holding GPU memory: name, kind and size.
    pub residents: Vec<ResidentView>,
    /// Where models run when a GPU is seen or the model worker is used:
    /// in the model worker (on which device, in which state) or in this
    /// process (and why). `None` otherwise.
    pub worker: Option<String>,
}

/// A model holding GPU memory.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ResidentView {
    pub name: String,
    /// `llm` or `small`.
    pub kind: String,
    pub bytes: u64,
    pub in_use: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn level(critical: bool, warning: bool) -> Level {
    if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        "ok"
    }
    .to_owned()
}

/// A snapshot as the panel draws it, with its states by `t`'s lines.
pub fn reading(s: &GpuSnapshot, t: &Thresholds) -> GpuReading {
    let fraction = s.memory_used_fraction();
    let over = |line: f64| fraction.is_some_and(|f| f >= line);
    let temp = s.temperature_c;
    let power_over = matches!((s.power_mw, s.power_limit_mw), (Some(p), Some(l)) if l > 0 && p > l);
    GpuReading {
        index: s.index,
        name: s.name.clone(),
        memory_used: s.memory_used,
        memory_total: s.memory_total,
        temperature_c: temp,
        power_w: s.power_mw.map(|mw| f64::from(mw) / 1000.0),
        power_limit_w: s.power_limit_mw.map(|mw| f64::from(mw) / 1000.0),
        utilization_pct: s.utilization_gpu_pct,
        memory_level: level(over(t.vram_critical), over(t.vram_warning)),
        temperature_level: level(
            temp.is_some_and(|c| c >= t.temp_limit_c),
            temp.is_some_and(|c| c >= t.temp_warning_c),
        ),
        power_level: level(false, power_over),
    }
}

/// The panel's form of an engine GPU event.
pub fn alert(event: &GpuEvent, at_ms: u64) -> GpuAlert {
    use GpuEvent as E;
    let (index, topic, level) = match event {
        E::VramWarning { index, .. } => (Some(*index), "memory", "warning"),
        E::VramCritical { index, .. } => (Some(*index), "memory", "critical"),
        // The critical state clears into the warning state.
        E::VramCriticalCleared { index, .. } => (Some(*index), "memory", "warning"),
        E::VramWarningCleared { index, .. } => (Some(*index), "memory", "ok"),
        E::TemperatureWarning { index, .. } => (Some(*index), "temperature", "warning"),
        E::TemperatureLimit { index, .. } => (Some(*index), "temperature", "critical"),
        E::TemperatureLimitCleared { index, .. } => (Some(*index), "temperature", "warning"),
        E::TemperatureWarningCleared { index, .. } => (Some(*index), "temperature", "ok"),
        E::PowerOverLimit { index, .. } => (Some(*index), "power", "warning"),
        E::PowerCleared { index, .. } => (Some(*index), "power", "ok"),
        E::TelemetryFailed { index, .. } => (Some(*index), "device", "warning"),
        E::TelemetryRestored { index } => (Some(*index), "device", "ok"),
        E::DeviceLost { index, .. } => (Some(*index), "device", "critical"),
        E::ModelUnloaded { .. }
        | E::ModelSwitched { .. }
        | E::CpuFallback { .. }
        | E::Recovery { .. } => (None, "model", "info"),
        E::BackgroundPaused { .. } | E::BackgroundResumed { .. } => (None, "work", "info"),
    };
    GpuAlert {
        at_ms,
        index,
        topic: topic.to_owned(),
        level: level.to_owned(),
        message: event.to_string(),
    }
}

// ---------------------------------------------------------------- host

/// Busy and total CPU time from the first line of `/proc/stat`.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Installed and used memory from `/proc/meminfo` (used = total − available).
fn memory(meminfo: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal");
    let available = field("MemAvailable");
    let used = match (total, available) {
        (Some(t), Some(a)) => Some(t.saturating_sub(a)),
        _ => None,
    };
    (used, total)
}

/// Reads the host's CPU and memory use; CPU use is measured between calls.
#[derive(Default)]
pub struct HostSampler {
    last: Option<(u64, u64)>,
}

impl HostSampler {
    /// The host now. Figures that cannot be read are `None`.
    pub fn read(&mut self) -> HostReading {
        let times = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| cpu_times(&s));
        let cpu_pct = match (self.last, times) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                Some((busy1.saturating_sub(busy0)) as f64 * 100.0 / (total1 - total0) as f64)
            }
            _ => None,
        };
        if times.is_some() {
            self.last = times;
        }
        let (memory_used, memory_total) = std::fs::read_to_string("/proc/meminfo")
            .map(|m| memory(&m))
            .unwrap_or((None, None));
        HostReading {
            cpu_pct,
            memory_used,
            memory_total,
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
        }
    }
}

// ---------------------------------------------------------------- broadcast

/// The language model holding GPU memory, else the configured one.
fn active_model(report: Option<&GpuReport>, engine: &Engine) -> Option<String> {
    report
        .and_then(|r| r.residents.iter().find(|m| m.kind == ModelKind::Llm))
        .map(|m| m.name.clone())
        .or_else(|| {
            engine
                .default_llm()
                .map(|p| crate::view::file_name(&p) + " (configured)")
        })
}

fn tick_of(sample: Option<&Sample>, host: HostReading, active: Option<String>) -> GpuTick {
    let thresholds = Thresholds::default();
    GpuTick {
        at_ms: now_ms(),
        gpus: sample
            .map(|s| s.gpus.iter().map(|g| reading(g, &thresholds)).collect())
            .unwrap_or_default(),
        host,
        active_model: active,
    }
}

/// Broadcasts the engine's GPU events and a reading every [`TICK`] until
/// the app exits. Call once, after the engine has opened.
pub fn start_broadcast(app: AppHandle, engine: Arc<Engine>) {
    let events = app.clone();
    engine.on_gpu_event(move |event| {
        if let Err(e) = alert(event, now_ms()).emit(&events) {
            tracing::debug!(error = %e, "GPU alert not delivered");
        }
    });
    tauri::async_runtime::spawn(async move {
        let mut host = HostSampler::default();
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            let engine = engine.clone();
            let reading = tauri::async_runtime::spawn_blocking(move || {
                let report = engine
                    .gpu_status()
                    .selected
                    .is_gpu()
                    .then(|| engine.gpu_report());
                let history = engine.gpu_history();
                let active = active_model(report.as_ref(), &engine);
                (history.last().cloned(), active)
            })
            .await;
            let Ok((sample, active)) = reading else {
                continue;
            };
            let tick = tick_of(sample.as_ref(), host.read(), active);
            if let Err(e) = tick.emit(&app) {
                tracing::debug!(error = %e, "GPU reading not delivered");
            }
        }
    });
}

/// The GPU panel's opening state: the device, recent readings and the
/// models holding GPU memory.
#[tauri::command]
#[specta::specta]
pub async fn gpu_panel(state: State<'_, AppState>) -> CommandResult<GpuPanel> {
    let engine = state.opened();
    let preference = state.device_preference();
    let panel = tauri::async_runtime::spawn_blocking(move || {
        let mut host = HostSampler::default();
        let host = host.read();
        match engine {
            Some(engine) => {
                let status = engine.gpu_status().clone();
                let report = engine.gpu_report();
                let active = active_model(Some(&report), &engine);
                let thresholds = Thresholds::default();
                let samples = engine.gpu_history();
                // Sampler times count from its own origin; place them on the
                // wall clock by their distance from the newest one.
                let (now, newest) = (now_ms(), samples.last().map_or(0, |s| s.at_ms));
                let history: Vec<GpuTick> = samples
                    .iter()
                    .map(|s| GpuTick {
                        at_ms: now.saturating_sub(newest.saturating_sub(s.at_ms)),
                        gpus: s.gpus.iter().map(|g| reading(g, &thresholds)).collect(),
                        host: host.clone(),
                        active_model: active.clone(),
                    })
                    .collect();
                let mut panel = panel_of(&status, true, history, &report);
                panel.worker = worker_line(&engine.worker_report(), panel.no_gpu);
                panel
            }
            None => {
                let status = lectern_engine::gpu_status(preference).ok();
                GpuPanel {
                    live: false,
                    no_gpu: status.as_ref().is_none_or(|s| s.gpus.is_empty()),
                    no_gpu_reason: status.as_ref().and_then(|s| s.no_gpu_reason.clone()),
                    device: status
                        .as_ref()
                        .map(|s| crate::view::GpuView::from(s).device)
                        .unwrap_or_else(|| "CPU".to_owned()),
                    history: Vec::new(),
                    residents: Vec::new(),
                    worker: None,
                }
            }
        }
    })
    .await
    .map_err(|e| crate::error::CommandError::internal(e.to_string()))?;
    Ok(panel)
}

/// The panel's line on where models run, from the engine's worker report:
/// shown when the worker is used, or when a GPU is seen but models stay in
/// this process.
fn worker_line(report: &lectern_engine::WorkerReport, no_gpu: bool) -> Option<String> {
    if report.plan.used {
        let device = report
            .device
            .map_or_else(|| "its device".to_owned(), |d| d.to_string());
        Some(format!(
            "Models run in the model worker on {device} · {}",
            report.state
        ))
    } else if !no_gpu {
        Some(format!(
            "Models run in this process: {}",
            report.plan.reason
        ))
    } else {
        None
    }
}

fn panel_of(
    status: &lectern_engine::GpuStatus,
    live: bool,
    history: Vec<GpuTick>,
    report: &GpuReport,
) -> GpuPanel {
    GpuPanel {
        live,
        no_gpu: report.status.gpus.is_empty(),
        no_gpu_reason: status.no_gpu_reason.clone(),
        device: crate::view::GpuView::from(status).device,
        history,
        residents: report
            .residents
            .iter()
            .map(|m| ResidentView {
                name: m.name.clone(),
                kind: match m.kind {
                    ModelKind::Llm => "llm",
                    ModelKind::Small => "small",
                }
                .to_owned(),
                bytes: m.bytes,
                in_use: m.in_use,
            })
            .collect(),
        worker: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use lectern_engine::gpu::DeviceKind;

    fn worker_report(used: bool, device: Option<DeviceKind>) -> lectern_engine::WorkerReport {
        lectern_engine::WorkerReport {
            plan: lectern_engine::WorkerPlan {
                mode: lectern_engine::WorkerModeKind::Auto,
                program: None,
                found: used,
                hello: None,
                used,
                reason: "no model worker binary was found".into(),
                config: None,
            },
            cuda_build: Some(used),
            device,
            device_reason: None,
            state: if used { "running" } else { "not started" }.into(),
            status: None,
        }
    }

    #[test]
    fn the_panel_says_where_models_run() {
        let used = worker_report(true, Some(DeviceKind::Cuda(0)));
        assert_eq!(
            worker_line(&used, false).as_deref(),
            Some("Models run in the model worker on cuda:0 · running")
        );
        let unused = worker_report(false, None);
        assert_eq!(
            worker_line(&unused, false).as_deref(),
            Some("Models run in this process: no model worker binary was found")
        );
        // Without a GPU there is nothing to say.
        assert_eq!(worker_line(&unused, true), None);
    }

    fn snapshot(used_gib: u64, temp: u32, power_w: u32) -> GpuSnapshot {
        GpuSnapshot {
            memory_total: Some(16 << 30),
            memory_used: Some(used_gib << 30),
            temperature_c: Some(temp),
            power_mw: Some(power_w * 1000),
            power_limit_mw: Some(300_000),
            utilization_gpu_pct: Some(42),
            ..GpuSnapshot::new(0, "Sim GPU")
        }
    }

    #[test]
    fn readings_carry_watts_and_the_state_of_each_line() {
        let t = Thresholds::default();
        let calm = reading(&snapshot(4, 60, 120), &t);
        assert_eq!(calm.power_w, Some(120.0));
        assert_eq!(calm.utilization_pct, Some(42));
        assert_eq!(
            (
                calm.memory_level.as_str(),
                calm.temperature_level.as_str(),
                calm.power_level.as_str()
            ),
            ("ok", "ok", "ok")
        );
        let busy = reading(&snapshot(14, 82, 310), &t);
        assert_eq!(busy.memory_level, "warning", "14/16 GiB is past 85 %");
        assert_eq!(busy.temperature_level, "warning");
        assert_eq!(busy.power_level, "warning");
        let hot = reading(&snapshot(16, 90, 100), &t);
        assert_eq!(
            (hot.memory_level.as_str(), hot.temperature_level.as_str()),
            ("critical", "critical")
        );
        let blind = reading(&GpuSnapshot::new(1, "Unknown"), &t);
        assert_eq!(blind.memory_level, "ok", "no readings is no alarm");
        let json = serde_json::to_value(&busy).unwrap();
        assert_eq!(json["temperatureC"], 82);
        assert_eq!(json["memoryLevel"], "warning");
    }

    #[test]
    fn engine_events_become_alerts_with_the_state_they_leave() {
        let a = alert(
            &GpuEvent::VramCritical {
                index: 0,
                used: 15 << 30,
                total: 16 << 30,
            },
            7,
        );
        assert_eq!(
            (a.topic.as_str(), a.level.as_str(), a.index, a.at_ms),
            ("memory", "critical", Some(0), 7)
        );
        assert!(a.message.contains("memory critical"), "{}", a.message);
        let cleared = alert(
            &GpuEvent::VramCriticalCleared {
                index: 0,
                used: 14 << 30,
                total: 16 << 30,
            },
            8,
        );
        assert_eq!(cleared.level, "warning", "critical clears into warning");
        let cool = alert(
            &GpuEvent::TemperatureWarningCleared {
                index: 2,
                celsius: 70,
            },
            9,
        );
        assert_eq!(
            (cool.topic.as_str(), cool.level.as_str(), cool.index),
            ("temperature", "ok", Some(2))
        );
        let lost = alert(
            &GpuEvent::DeviceLost {
                index: 0,
                reason: "fell off the bus".into(),
            },
            10,
        );
        assert_eq!(lost.level, "critical");
        let moved = alert(
            &GpuEvent::CpuFallback {
                model: "qwen3".into(),
                reason: "not enough memory".into(),
            },
            11,
        );
        assert_eq!(
            (moved.topic.as_str(), moved.level.as_str(), moved.index),
            ("model", "info", None)
        );
    }

    #[test]
    fn host_figures_come_from_proc_files() {
        let a = cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (200, 1000));
        assert!(cpu_times("intr 1 2 3").is_none());
        let (used, total) =
            memory("MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:   4000 kB\n");
        assert_eq!(total, Some(16000 * 1024));
        assert_eq!(used, Some(12000 * 1024));
        assert_eq!(memory("garbage"), (None, None));

        let mut host = HostSampler::default();
        let first = host.read();
        assert!(
            first.cpu_pct.is_none(),
            "the first reading has nothing to compare with"
        );
        assert!(first.cpus >= 1);
        if cfg!(target_os = "linux") {
            assert!(first.memory_total.unwrap() >= first.memory_used.unwrap());
            std::thread::sleep(Duration::from_millis(50));
            let second = host.read();
            if let Some(pct) = second.cpu_pct {
                assert!((0.0..=100.0).contains(&pct), "{pct}");
            }
        }
    }

    #[test]
    fn ticks_without_a_gpu_still_carry_the_host() {
        let host = HostReading {
            cpu_pct: Some(12.5),
            memory_used: Some(1),
            memory_total: Some(2),
            cpus: 2,
        };
        let tick = tick_of(None, host.clone(), None);
        assert!(tick.gpus.is_empty());
        assert_eq!(tick.host, host);
        let sample = Sample {
            at_ms: 5,
            gpus: vec![snapshot(1, 50, 50)],
        };
        let tick = tick_of(Some(&sample), host, Some("qwen3-0.6b".into()));
        assert_eq!(tick.gpus[0].name, "Sim GPU");
        assert_eq!(tick.active_model.as_deref(), Some("qwen3-0.6b"));
        assert!(tick.at_ms > 1_600_000_000_000, "wall-clock milliseconds");
    }
}
