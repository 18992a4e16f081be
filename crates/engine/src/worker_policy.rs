//! Whether the engine runs its models through the model worker, and how
//! the worker is reported in `lectern gpu status` and `lectern doctor`.
//!
//! The worker exists for GPUs: the app and the CLI are CPU-only binaries,
//! and CUDA models live in `lectern-worker` built with `--features cuda`.
//! A worker on the CPU only adds a process boundary, so in
//! [`WorkerMode::Auto`] (the default) [`plan_worker`] starts it only when
//!
//! 1. the device preference allows a GPU (`auto` or `cuda[:N]`),
//! 2. the GPU telemetry (NVML, or the simulator) reports an NVIDIA GPU,
//! 3. the worker binary exists (beside the running executable, or the
//!    configured path), and
//! 4. its hello says it was built with CUDA and runs on that GPU (a CUDA
//!    build on a machine whose driver or CUDA libraries are missing
//!    answers with the CPU and the reason).
//!
//! Otherwise models run in this process, without an error, and
//! [`WorkerPlan::reason`] says which condition failed. Checking 4 starts
//! the worker once, reads its hello and shuts it down; that happens only
//! when 1–3 hold. An explicit worker ([`EngineConfig::worker`],
//! `LECTERN_WORKER=<path>`) is used for every run, and `LECTERN_WORKER=off`
//! turns the worker off.

use std::path::PathBuf;

use lectern_gpu::{DeviceKind, DevicePreference, GpuStatus};
use serde::{Deserialize, Serialize};

use crate::config::WorkerMode;
use crate::worker::{Hello, WorkerConfig, WorkerError, WorkerProcess, WorkerStatus};
use crate::EngineConfig;

/// How the worker was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerModeKind {
    /// Turned off.
    Off,
    /// Started only where it helps.
    Auto,
    /// An explicit binary, used for every run.
    Path,
}

impl std::fmt::Display for WorkerModeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Auto => "auto",
            Self::Path => "path",
        })
    }
}

/// The engine's decision about the model worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// How the worker was asked for.
    pub mode: WorkerModeKind,
    /// The worker binary considered (`None` when turned off).
    pub program: Option<PathBuf>,
    /// Whether that binary exists.
    pub found: bool,
    /// What the worker said about itself when it was started to check it
    /// (`auto` with a GPU and a binary); `None` when it was not started.
    pub hello: Option<Hello>,
    /// Whether ingestion sends its batches to the worker.
    pub used: bool,
    /// Why the worker is or is not used, phrased for a person.
    pub reason: String,
    /// The worker to run, when [`WorkerPlan::used`].
    #[serde(skip)]
    pub config: Option<WorkerConfig>,
}

impl WorkerPlan {
    fn not_used(
        mode: WorkerModeKind,
        program: Option<PathBuf>,
        found: bool,
        reason: String,
    ) -> Self {
        Self {
            mode,
            program,
            found,
            hello: None,
            used: false,
            reason,
            config: None,
        }
    }
}

/// Decides whether to use the model worker.
///
/// `explicit` (a worker configured by path) is always used unless `mode`
/// is [`WorkerMode::Off`]. In [`WorkerMode::Auto`] the worker at
/// `program` (or `beside`, the binary next to the running executable) is
/// used only when `device` allows a GPU, `gpu` reports one, the binary
/// exists, and `probe` (which starts it and returns its hello) says it
/// has CUDA and runs on the GPU.
pub fn plan_worker(
    explicit: Option<&WorkerConfig>,
    mode: &WorkerMode,
    device: DevicePreference,
    gpu: &GpuStatus,
    beside: PathBuf,
    probe: impl FnOnce(&WorkerConfig) -> Result<Hello, WorkerError>,
) -> WorkerPlan {
    let program = match (mode, explicit) {
        (WorkerMode::Off, _) => {
            return WorkerPlan::not_used(
                WorkerModeKind::Off,
                None,
                false,
                format!(
                    "turned off ({}=off); models run in this process",
                    crate::WORKER_ENV_VAR
                ),
            )
        }
        (_, Some(config)) => {
            let found = config.program.is_file();
            return WorkerPlan {
                mode: WorkerModeKind::Path,
                program: Some(config.program.clone()),
                found,
                hello: None,
                used: true,
                reason: format!(
                    "configured explicitly ({}={})",
                    crate::WORKER_ENV_VAR,
                    config.program.display()
                ),
                config: Some(config.clone()),
            };
        }
        (WorkerMode::Auto { program }, None) => program.clone().unwrap_or(beside),
    };
    let auto = WorkerModeKind::Auto;
    let found = program.is_file();
    if device == DevicePreference::Cpu {
        return WorkerPlan::not_used(
            auto,
            Some(program),
            found,
            "the CPU was requested; models run in this process".into(),
        );
    }
    if gpu.gpus.is_empty() {
        let why = gpu
            .no_gpu_reason
            .clone()
            .unwrap_or_else(|| "no NVIDIA GPU detected".into());
        return WorkerPlan::not_used(
            auto,
            Some(program),
            found,
            format!("no usable NVIDIA GPU ({why}); models run in this process"),
        );
    }
    if !found {
        return WorkerPlan::not_used(
            auto,
            Some(program.clone()),
            false,
            format!(
                "an NVIDIA GPU is present, but there is no model worker at {}; models run in this process on the CPU",
                program.display()
            ),
        );
    }
    let config = WorkerConfig::new(&program);
    let hello = match probe(&config) {
        Ok(hello) => hello,
        Err(error) => {
            return WorkerPlan::not_used(
                auto,
                Some(program),
                true,
                format!("{error}; models run in this process"),
            )
        }
    };
    let mut plan = WorkerPlan::not_used(auto, Some(program), true, String::new());
    plan.reason = if !hello.capabilities.cuda {
        "the model worker was built without CUDA; models run in this process".into()
    } else if !matches!(hello.device, DeviceKind::Cuda(_)) {
        format!(
            "the model worker cannot use the GPU: {}; models run in this process",
            hello.device_reason
        )
    } else {
        plan.used = true;
        plan.config = Some(config);
        format!("the model worker runs on the GPU: {}", hello.device_reason)
    };
    plan.hello = Some(hello);
    plan
}

/// Starts the worker, takes its hello and shuts it down. Blocks (at most
/// the handshake timeout).
pub fn probe_hello(config: &WorkerConfig) -> Result<Hello, WorkerError> {
    let process = WorkerProcess::start(config)?;
    let hello = process.hello().clone();
    if let Err(error) = process.shutdown() {
        tracing::warn!(%error, "model worker did not stop cleanly after its check");
    }
    Ok(hello)
}

/// [`plan_worker`] for `config`, with the real probe, the binary beside
/// the running executable and [`crate::worker::WORKER_TIMEOUT_ENV_VAR`].
/// Blocks; call it from a blocking thread.
pub fn plan_for(config: &EngineConfig, gpu: &GpuStatus) -> WorkerPlan {
    let beside = WorkerConfig::beside_current_exe()
        .map(|c| c.program)
        .unwrap_or_else(|_| PathBuf::from(crate::worker::WORKER_BINARY));
    let timeout = std::env::var(crate::worker::WORKER_TIMEOUT_ENV_VAR).ok();
    let mut plan = plan_worker(
        config.worker.as_ref(),
        &config.worker_mode,
        config.device,
        gpu,
        beside,
        probe_hello,
    );
    if plan.mode == WorkerModeKind::Auto {
        if let (Some(chosen), Some(program)) = (plan.config.as_mut(), plan.program.as_ref()) {
            // The timeout setting applies to the auto worker too.
            if let Ok(Some(with_timeout)) =
                WorkerConfig::from_values(Some(&program.to_string_lossy()), timeout.as_deref())
            {
                *chosen = with_timeout;
            }
        }
    }
    plan
}

/// [`plan_for`] on a blocking thread.
pub async fn plan_in_background(
    config: &EngineConfig,
    gpu: &GpuStatus,
) -> Result<WorkerPlan, crate::EngineError> {
    let (config, gpu) = (config.clone(), gpu.clone());
    tokio::task::spawn_blocking(move || plan_for(&config, &gpu))
        .await
        .map_err(crate::EngineError::join)
}

/// The model worker as `lectern gpu status` and `lectern doctor` show it:
/// the decision, what the worker said about itself and the supervisor's
/// state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The decision.
    #[serde(flatten)]
    pub plan: WorkerPlan,
    /// Whether the worker's build has CUDA, from its hello; `None` when it
    /// has not been started.
    pub cuda_build: Option<bool>,
    /// The device the worker runs on, from its hello.
    pub device: Option<DeviceKind>,
    /// Why that device, from its hello.
    pub device_reason: Option<String>,
    /// `running`, `not started`, `lost` (it crashed, hung or broke the
    /// protocol, and has not been replaced yet), `failed to start` or
    /// `stopped`.
    pub state: String,
    /// The supervisor's counters and last error (absent when the worker
    /// is not used).
    pub status: Option<WorkerStatus>,
}

impl WorkerReport {
    /// The report for `plan` and the supervisor's `status` (`None` when no
    /// worker is used, or no engine runs).
    pub fn new(plan: WorkerPlan, status: Option<WorkerStatus>) -> Self {
        let hello = status
            .as_ref()
            .and_then(|s| s.hello.clone())
            .or_else(|| plan.hello.clone());
        let state = match &status {
            Some(s) if s.pid.is_some() => "running",
            Some(s) if s.lost > 0 => "lost",
            Some(s) if s.last_error.is_some() => "failed to start",
            Some(s) if s.starts > 0 => "stopped",
            _ => "not started",
        }
        .to_owned();
        Self {
            cuda_build: hello.as_ref().map(|h| h.capabilities.cuda),
            device: status
                .as_ref()
                .and_then(|s| s.device)
                .or(hello.as_ref().map(|h| h.device)),
            device_reason: hello.map(|h| h.device_reason),
            state,
            status,
            plan,
        }
    }

    /// A few lines for the terminal.
    pub fn render_text(&self) -> String {
        let plan = &self.plan;
        let mut out = format!(
            "Model worker: {} ({})\n",
            if plan.used { "used" } else { "not used" },
            plan.mode
        );
        out.push_str(&format!("  why:      {}\n", plan.reason));
        if let Some(program) = &plan.program {
            out.push_str(&format!(
                "  binary:   {}{}\n",
                program.display(),
                if plan.found { "" } else { " (not found)" }
            ));
        }
        let build = match self.cuda_build {
            Some(true) => "CUDA",
            Some(false) => "CPU only (no CUDA)",
            None => "unknown (not started)",
        };
        out.push_str(&format!("  build:    {build}\n"));
        if let Some(device) = self.device {
            out.push_str(&format!("  device:   {device}"));
            if let Some(reason) = &self.device_reason {
                out.push_str(&format!(" — {reason}"));
            }
            out.push('\n');
        }
        out.push_str(&format!("  state:    {}", self.state));
        if let Some(status) = &self.status {
            if let Some(pid) = status.pid {
                out.push_str(&format!(", pid {pid}"));
            }
            out.push_str(&format!(
                "; {} start(s), {} lost",
                status.starts, status.lost
            ));
        }
        out.push('\n');
        if let Some(error) = self.status.as_ref().and_then(|s| s.last_error.as_ref()) {
            out.push_str(&format!("  last error: {error}\n"));
        }
        out
    }
}

/// The worker report for `config` when no engine runs (`lectern gpu
/// status`, `lectern doctor`): the decision, with the worker started
/// briefly when that is needed to decide. Blocks.
pub fn report_for(config: &EngineConfig, gpu: &GpuStatus) -> WorkerReport {
    WorkerReport::new(plan_for(config, gpu), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_gpu::{Capabilities, SimConfig, SimulatedGpu};

    fn gpu_status(telemetry: &dyn lectern_gpu::TelemetryBackend) -> GpuStatus {
        lectern_gpu::status(DevicePreference::Auto, Capabilities::default(), telemetry).unwrap()
    }

    fn simulated() -> GpuStatus {
        gpu_status(&SimulatedGpu::new(SimConfig::default()))
    }

    fn no_gpu() -> GpuStatus {
        gpu_status(&lectern_gpu::NoGpu::new("NVML library not found"))
    }

    fn hello(cuda: bool, device: DeviceKind, reason: &str) -> Hello {
        Hello {
            protocol: crate::worker::PROTOCOL_VERSION,
            worker_version: "0".into(),
            device,
            device_reason: reason.into(),
            capabilities: Capabilities { cuda, metal: false },
            pid: 1,
        }
    }

    /// A file that exists, standing for a worker binary.
    fn existing_binary() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lectern-worker");
        std::fs::write(&path, b"").unwrap();
        (dir, path)
    }

    fn never(_: &WorkerConfig) -> Result<Hello, WorkerError> {
        panic!("the worker must not be started")
    }

    #[test]
    fn a_simulated_gpu_and_a_cpu_only_worker_keep_models_in_process() {
        let (_dir, binary) = existing_binary();
        let mut started = 0;
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Auto,
            &simulated(),
            binary.clone(),
            |config| {
                started += 1;
                assert_eq!(config.program, binary);
                Ok(hello(
                    false,
                    DeviceKind::Cpu,
                    "no CUDA support in this build",
                ))
            },
        );
        assert_eq!(started, 1, "the worker is started once, to read its hello");
        assert!(!plan.used);
        assert!(plan.config.is_none());
        assert_eq!(plan.mode, WorkerModeKind::Auto);
        assert!(
            plan.reason.contains("built without CUDA"),
            "{}",
            plan.reason
        );
        let report = WorkerReport::new(plan, None);
        assert_eq!(report.cuda_build, Some(false));
        assert_eq!(report.state, "not started");
    }

    #[test]
    fn a_cuda_worker_that_cannot_open_the_gpu_is_not_used() {
        let (_dir, binary) = existing_binary();
        let reason =
            "CUDA build, but no NVIDIA driver: libcuda.so.1 could not be loaded; running on CPU";
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Auto,
            &simulated(),
            binary,
            |_| Ok(hello(true, DeviceKind::Cpu, reason)),
        );
        assert!(!plan.used);
        assert!(
            plan.reason.contains("libcuda.so.1 could not be loaded"),
            "{}",
            plan.reason
        );
        let report = WorkerReport::new(plan, None);
        assert_eq!(report.cuda_build, Some(true));
        assert_eq!(report.device, Some(DeviceKind::Cpu));
    }

    #[test]
    fn a_cuda_worker_on_the_gpu_is_used() {
        let (_dir, binary) = existing_binary();
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Auto,
            &simulated(),
            binary.clone(),
            |_| {
                Ok(hello(
                    true,
                    DeviceKind::Cuda(0),
                    "NVIDIA H200 detected; running on cuda:0",
                ))
            },
        );
        assert!(plan.used);
        assert_eq!(plan.config.as_ref().unwrap().program, binary);
        assert!(plan.reason.contains("runs on the GPU"), "{}", plan.reason);
    }

    #[test]
    fn a_simulated_gpu_without_a_binary_keeps_models_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("lectern-worker");
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Auto,
            &simulated(),
            missing.clone(),
            never,
        );
        assert!(!plan.used);
        assert!(!plan.found);
        assert_eq!(plan.program.as_ref(), Some(&missing));
        assert!(
            plan.reason.contains("there is no model worker at"),
            "{}",
            plan.reason
        );
    }

    #[test]
    fn without_a_gpu_the_worker_is_never_started() {
        let (_dir, binary) = existing_binary();
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Auto,
            &no_gpu(),
            binary,
            never,
        );
        assert!(!plan.used);
        assert!(plan.found);
        assert!(
            plan.reason
                .contains("no usable NVIDIA GPU (NVML library not found)"),
            "{}",
            plan.reason
        );
        // Nor when the CPU was asked for, GPU or not.
        let (_dir, binary) = existing_binary();
        let plan = plan_worker(
            None,
            &WorkerMode::default(),
            DevicePreference::Cpu,
            &simulated(),
            binary,
            never,
        );
        assert!(!plan.used);
        assert!(plan.reason.contains("CPU was requested"), "{}", plan.reason);
    }

    #[test]
    fn an_explicit_worker_is_used_and_off_wins() {
        let explicit = WorkerConfig::new("/opt/w/lectern-worker");
        let plan = plan_worker(
            Some(&explicit),
            &WorkerMode::default(),
            DevicePreference::Cpu,
            &no_gpu(),
            PathBuf::from("/elsewhere"),
            never,
        );
        assert!(plan.used);
        assert_eq!(plan.mode, WorkerModeKind::Path);
        assert_eq!(plan.config, Some(explicit.clone()));
        assert!(!plan.found);

        let plan = plan_worker(
            Some(&explicit),
            &WorkerMode::Off,
            DevicePreference::Auto,
            &simulated(),
            PathBuf::from("/elsewhere"),
            never,
        );
        assert!(!plan.used);
        assert_eq!(plan.mode, WorkerModeKind::Off);
        assert_eq!(plan.program, None);
    }

    #[test]
    fn a_worker_that_fails_its_start_check_is_not_used() {
        let (_dir, binary) = existing_binary();
        let plan = plan_worker(
            None,
            &WorkerMode::Auto {
                program: Some(binary.clone()),
            },
            DevicePreference::Cuda(0),
            &simulated(),
            PathBuf::from("/elsewhere"),
            |config| {
                Err(WorkerError::Spawn {
                    program: config.program.clone(),
                    message: "exec format error".into(),
                })
            },
        );
        assert!(!plan.used);
        assert_eq!(plan.program, Some(binary));
        assert!(plan.reason.contains("exec format error"), "{}", plan.reason);
        assert_eq!(WorkerReport::new(plan, None).cuda_build, None);
    }

    #[test]
    fn the_report_reads_the_supervisors_state() {
        let (_dir, binary) = existing_binary();
        let plan = plan_worker(
            Some(&WorkerConfig::new(&binary)),
            &WorkerMode::default(),
            DevicePreference::Auto,
            &simulated(),
            binary,
            never,
        );
        let running = WorkerStatus {
            pid: Some(42),
            last_pid: Some(42),
            device: Some(DeviceKind::Cpu),
            starts: 2,
            lost: 1,
            last_error: Some("model worker died during embedding".into()),
            hello: Some(hello(
                false,
                DeviceKind::Cpu,
                "no CUDA support in this build",
            )),
            ..WorkerStatus::default()
        };
        let report = WorkerReport::new(plan.clone(), Some(running.clone()));
        assert_eq!(report.state, "running");
        assert_eq!(report.cuda_build, Some(false));
        let text = report.render_text();
        assert!(text.contains("Model worker: used (path)"), "{text}");
        assert!(
            text.contains("state:    running, pid 42; 2 start(s), 1 lost"),
            "{text}"
        );
        assert!(
            text.contains("last error: model worker died during embedding"),
            "{text}"
        );
        assert!(text.contains("build:    CPU only"), "{text}");

        let lost = WorkerStatus {
            pid: None,
            ..running
        };
        assert_eq!(WorkerReport::new(plan.clone(), Some(lost)).state, "lost");
        let fresh = WorkerReport::new(plan, Some(WorkerStatus::default()));
        assert_eq!(fresh.state, "not started");
        assert!(fresh
            .render_text()
            .contains("build:    unknown (not started)"));
    }
}
