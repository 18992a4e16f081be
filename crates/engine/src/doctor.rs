//! `lectern doctor`: the environment a bug report needs, checked in one go.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lectern_gpu::{format_bytes, HostInfo, NvmlProbe, Recommendation};
use lectern_hub::{Catalog, InstallState};
use lectern_index::Consistency;
use serde::Serialize;

use crate::{Engine, EngineConfig, GpuStatus};

/// Context length the doctor's model recommendation plans for.
pub const DOCTOR_CONTEXT: u32 = 8192;

/// One catalog model and whether it is on disk.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCheck {
    /// Catalog id.
    pub id: String,
    /// What it is for.
    pub kind: lectern_hub::ModelKind,
    /// Whether its files are there with the expected sizes.
    pub install: InstallState,
}

/// The library in the data folder.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryCheck {
    /// Whether a library exists there.
    pub present: bool,
    /// How its three stores compare, when it could be opened.
    pub consistency: Option<Consistency>,
    /// Why it could not be opened or checked.
    pub error: Option<String>,
}

/// The data folder.
#[derive(Debug, Clone, Serialize)]
pub struct DataDirCheck {
    /// Where it is.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Whether a file can be written there (or where it would be created).
    pub writable: bool,
    /// The library inside it.
    pub library: LibraryCheck,
}

/// Everything `lectern doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Lectern's version.
    pub version: String,
    /// Operating system, CPU and memory.
    pub host: HostInfo,
    /// The compute device, why, the build's backends and each GPU's
    /// readings.
    pub gpu: GpuStatus,
    /// Whether the NVIDIA management library answers, and why not.
    pub nvml: NvmlProbe,
    /// The models folder.
    pub models_dir: PathBuf,
    /// The embedding model folder and whether it holds a model.
    pub embedder_dir: PathBuf,
    /// Every catalog model and its install state.
    pub models: Vec<ModelCheck>,
    /// The language model this machine should run, for
    /// [`DOCTOR_CONTEXT`] tokens.
    pub recommendation: Option<Recommendation>,
    /// The data folder and library.
    pub data_dir: DataDirCheck,
    /// What needs attention, phrased for a person; empty when all is well.
    pub problems: Vec<String>,
}

/// Gathers the report. Never fails: whatever cannot be checked is
/// reported as a problem.
pub async fn doctor(config: &EngineConfig) -> DoctorReport {
    let mut problems = Vec::new();
    let pref = config.device;
    let (host, gpu, nvml) = tokio::task::spawn_blocking(move || {
        (
            HostInfo::detect(),
            crate::gpu_status(pref),
            NvmlProbe::detect(),
        )
    })
    .await
    .unwrap_or_else(|e| {
        (
            HostInfo::detect(),
            Err(crate::EngineError::join(e)),
            NvmlProbe::detect(),
        )
    });
    let gpu = match gpu {
        Ok(gpu) => gpu,
        Err(error) => {
            problems.push(format!("device: {error}"));
            let telemetry = lectern_gpu::probe_telemetry();
            // `cpu` always selects.
            match lectern_gpu::status(
                lectern_gpu::DevicePreference::Cpu,
                lectern_models::capabilities(),
                telemetry.as_ref(),
            ) {
                Ok(status) => status,
                Err(error) => {
                    problems.push(format!("device: {error}"));
                    return empty_report(config, host, nvml, problems);
                }
            }
        }
    };
    if gpu.capabilities.cuda && !nvml.available {
        problems.push(format!(
            "this build can use CUDA but the NVIDIA driver does not answer: {}",
            nvml.reason.as_deref().unwrap_or("unknown reason")
        ));
    }

    let models: Vec<ModelCheck> = Catalog::builtin()
        .models
        .iter()
        .map(|m| ModelCheck {
            id: m.id.clone(),
            kind: m.kind,
            install: m.install_state(&config.models_dir),
        })
        .collect();
    for m in &models {
        if let InstallState::Partial { missing } = &m.install {
            problems.push(format!(
                "model {} is incomplete: {} missing or of the wrong size",
                m.id,
                missing.join(", ")
            ));
        }
    }
    if !config.embedder_dir.join("model.safetensors").is_file() {
        problems.push(format!(
            "no embedding model in {} (run models/provision.sh or `lectern models pull all-MiniLM-L6-v2`)",
            config.embedder_dir.display()
        ));
    }

    let models_dir = config.models_dir.clone();
    let recommendation = match tokio::task::spawn_blocking(move || {
        crate::device::recommend_llm(&models_dir, pref, DOCTOR_CONTEXT)
    })
    .await
    {
        Ok(Ok(r)) => Some(r),
        Ok(Err(error)) => {
            problems.push(format!("model recommendation: {error}"));
            None
        }
        Err(error) => {
            problems.push(format!("model recommendation: {error}"));
            None
        }
    };

    let data_dir = check_data_dir(config, &mut problems).await;
    DoctorReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        host,
        gpu,
        nvml,
        models_dir: config.models_dir.clone(),
        embedder_dir: config.embedder_dir.clone(),
        models,
        recommendation,
        data_dir,
        problems,
    }
}

fn empty_report(
    config: &EngineConfig,
    host: HostInfo,
    nvml: NvmlProbe,
    problems: Vec<String>,
) -> DoctorReport {
    let gpu = GpuStatus {
        selected: lectern_gpu::DeviceKind::Cpu,
        reason: "device selection failed".to_owned(),
        preference: config.device,
        telemetry_backend: "none".to_owned(),
        driver_version: None,
        no_gpu_reason: None,
        gpus: Vec::new(),
        capabilities: lectern_models::capabilities(),
    };
    DoctorReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        host,
        gpu,
        nvml,
        models_dir: config.models_dir.clone(),
        embedder_dir: config.embedder_dir.clone(),
        models: Vec::new(),
        recommendation: None,
        data_dir: DataDirCheck {
            path: config.data_dir.clone(),
            exists: config.data_dir.is_dir(),
            writable: false,
            library: LibraryCheck {
                present: false,
                consistency: None,
                error: None,
            },
        },
        problems,
    }
}

/// Whether a file can be created in `dir` (or in its nearest existing
/// ancestor, where `dir` would be created).
fn writable(dir: &Path) -> bool {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    let probe = at.join(format!(".lectern-doctor-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"probe").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

async fn check_data_dir(config: &EngineConfig, problems: &mut Vec<String>) -> DataDirCheck {
    let path = config.data_dir.clone();
    let exists = path.is_dir();
    let writable = writable(&path);
    if !writable {
        problems.push(format!(
            "cannot write to the data folder {}",
            path.display()
        ));
    }
    let present = path.join("library").join("manifest.json").is_file();
    let mut library = LibraryCheck {
        present,
        consistency: None,
        error: None,
    };
    if present {
        let checked = match Engine::open(config.clone()).await {
            Ok(engine) => engine.verify().await,
            Err(error) => Err(error),
        };
        match checked {
            Ok(consistency) => {
                if !consistency.is_consistent() {
                    problems.push(format!(
                        "the library's stores disagree: {} (run `lectern ingest` on the affected files)",
                        consistency.problems.join("; ")
                    ));
                }
                library.consistency = Some(consistency);
            }
            Err(error) => {
                problems.push(format!("the library could not be checked: {error}"));
                library.error = Some(error.to_string());
            }
        }
    }
    DataDirCheck {
        path,
        exists,
        writable,
        library,
    }
}

const NA: &str = "n/a";

impl DoctorReport {
    /// The report as text for a terminal or a bug report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let h = &self.host;
        let _ = writeln!(out, "Lectern {}", self.version);
        let _ = writeln!(
            out,
            "OS:          {} {} ({})",
            h.os,
            h.arch,
            h.os_release.as_deref().unwrap_or(NA)
        );
        let _ = writeln!(
            out,
            "CPU:         {} ({} logical)",
            h.cpu_model.as_deref().unwrap_or(NA),
            h.logical_cpus
        );
        let _ = writeln!(
            out,
            "CPU features: {}",
            if h.cpu_features.is_empty() {
                NA.to_owned()
            } else {
                h.cpu_features.join(" ")
            }
        );
        let _ = writeln!(
            out,
            "Memory:      {} available of {}",
            h.memory_available
                .map_or_else(|| NA.to_owned(), format_bytes),
            h.memory_total.map_or_else(|| NA.to_owned(), format_bytes)
        );
        let n = &self.nvml;
        if n.available {
            let caps: Vec<String> = n
                .compute_capabilities
                .iter()
                .enumerate()
                .map(|(i, c)| format!("GPU {i} {}", c.as_deref().unwrap_or(NA)))
                .collect();
            let _ = writeln!(
                out,
                "NVML:        available, driver {}, CUDA {}, {} GPU(s); compute capability: {}",
                n.driver_version.as_deref().unwrap_or(NA),
                n.cuda_version.as_deref().unwrap_or(NA),
                n.device_count,
                if caps.is_empty() {
                    NA.to_owned()
                } else {
                    caps.join(", ")
                }
            );
        } else {
            let _ = writeln!(
                out,
                "NVML:        not available: {}",
                n.reason.as_deref().unwrap_or(NA)
            );
        }
        out.push('\n');
        out.push_str(&self.gpu.render_text());
        out.push('\n');
        let _ = writeln!(out, "Models in {}:", self.models_dir.display());
        for m in &self.models {
            let state = match &m.install {
                InstallState::Installed { .. } => "installed".to_owned(),
                InstallState::Partial { missing } => {
                    format!("incomplete ({} missing)", missing.len())
                }
                InstallState::Absent => "not installed".to_owned(),
            };
            let kind = serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:<28} {:<10} {state}", m.id, kind);
        }
        let _ = writeln!(out, "Embedder:    {}", self.embedder_dir.display());
        if let Some(r) = &self.recommendation {
            let _ = writeln!(out, "Recommended: {}", r.reason);
        }
        out.push('\n');
        let d = &self.data_dir;
        let _ = writeln!(
            out,
            "Data folder: {} ({}, {})",
            d.path.display(),
            if d.exists {
                "exists"
            } else {
                "not created yet"
            },
            if d.writable {
                "writable"
            } else {
                "NOT writable"
            }
        );
        match (&d.library.consistency, &d.library.error) {
            (Some(c), _) => {
                let _ = writeln!(
                    out,
                    "Library:     {} document(s), {} chunk(s); vectors {}, text index {}; {}",
                    c.documents,
                    c.chunks,
                    c.vector_rows,
                    c.text_rows,
                    if c.is_consistent() {
                        "consistent"
                    } else {
                        "INCONSISTENT"
                    }
                );
            }
            (None, Some(error)) => {
                let _ = writeln!(out, "Library:     could not be checked: {error}");
            }
            (None, None) => {
                let _ = writeln!(out, "Library:     none yet");
            }
        }
        out.push('\n');
        if self.problems.is_empty() {
            let _ = writeln!(out, "No problems found.");
        } else {
            let _ = writeln!(out, "Problems:");
            for p in &self.problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
        out
    }
}
