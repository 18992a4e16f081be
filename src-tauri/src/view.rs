//! What the web UI sends and receives. These types are the UI's contract
//! (see `ui/src/api.ts`); they are built from the engine's types so the
//! engine can change without the UI noticing.

use std::path::Path;

use lectern_engine::{Answer, GpuStatus, LibraryCounts, SearchHit, SearchMode, SourceRef};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- ingest

/// Progress of an ingest run, streamed to the UI.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum IngestUpdate {
    /// A path the user gave, before anything is read.
    #[serde(rename_all = "camelCase")]
    Queued {
        path: String,
        name: String,
        folder: bool,
    },
    /// Supported files found under the given paths.
    #[serde(rename_all = "camelCase")]
    Discovered { files: usize },
    /// A file started.
    #[serde(rename_all = "camelCase")]
    Started {
        path: String,
        name: String,
        index: usize,
        total: usize,
    },
    /// Work on the current file advanced.
    #[serde(rename_all = "camelCase")]
    Progress {
        path: String,
        stage: String,
        done: Option<usize>,
        total: Option<usize>,
    },
    /// A file is fully indexed.
    #[serde(rename_all = "camelCase")]
    Indexed {
        path: String,
        pages: Option<u32>,
        chunks: usize,
        warnings: Vec<String>,
    },
    /// A file was already in the library with the same content.
    #[serde(rename_all = "camelCase")]
    Unchanged { path: String },
    /// A path that is not a supported document.
    #[serde(rename_all = "camelCase")]
    Skipped {
        path: String,
        name: String,
        reason: String,
    },
    /// A file failed; the rest of the run goes on.
    #[serde(rename_all = "camelCase")]
    Failed { path: String, reason: String },
    /// Everything under a folder the user gave has been handled.
    #[serde(rename_all = "camelCase")]
    FolderDone {
        path: String,
        indexed: usize,
        unchanged: usize,
        skipped: usize,
        failed: usize,
    },
}

/// The outcome of an ingest run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestSummary {
    pub indexed: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
    pub chunks: usize,
    pub seconds: f64,
}

// ---------------------------------------------------------------- search

/// Which retrieval to run, as the UI names it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Dense => SearchMode::Dense,
            Mode::Bm25 => SearchMode::Bm25,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    pub query: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    20
}

/// 1-based ranks of a hit in each retrieval leg.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegRanks {
    pub dense: Option<usize>,
    pub bm25: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    pub document: String,
    pub path: Option<String>,
    pub page: Option<u32>,
    pub headings: Vec<String>,
    pub score: f32,
    pub ranks: LegRanks,
    pub text: String,
}

impl From<SearchHit> for Hit {
    fn from(hit: SearchHit) -> Self {
        let chunk = hit.chunk;
        Hit {
            document: document_name(&chunk.title, &chunk.path),
            path: non_empty(chunk.path),
            page: chunk.page,
            headings: chunk.heading_path,
            score: hit.score,
            ranks: LegRanks {
                dense: hit.dense_rank,
                bm25: hit.bm25_rank,
            },
            text: chunk.text,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    pub took_ms: f64,
}

// ---------------------------------------------------------------- ask

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub mode: Mode,
}

/// A numbered source the answer may cite.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub n: usize,
    pub document: String,
    pub path: Option<String>,
    pub page: Option<u32>,
    pub cited: bool,
}

impl From<&SourceRef> for Source {
    fn from(s: &SourceRef) -> Self {
        Source {
            n: s.n,
            document: document_name(&s.title, &s.path),
            path: non_empty(s.path.clone()),
            page: s.page,
            cited: s.cited,
        }
    }
}

/// Progress of an answer, streamed to the UI.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AnswerUpdate {
    /// Retrieval finished; these numbered sources go to the model.
    #[serde(rename_all = "camelCase")]
    Sources {
        sources: Vec<Source>,
        prompt_tokens: usize,
    },
    /// A piece of the answer.
    #[serde(rename_all = "camelCase")]
    Token { text: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerView {
    pub answer: String,
    /// Every source given to the model, `cited` set on those the answer cites.
    pub sources: Vec<Source>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub stopped: bool,
    pub took_ms: f64,
}

impl AnswerView {
    pub fn new(answer: Answer, stopped: bool, took_ms: f64) -> Self {
        AnswerView {
            sources: answer.sources.iter().map(Source::from).collect(),
            answer: answer.text,
            prompt_tokens: answer.stats.prompt_tokens,
            generated_tokens: answer.stats.generated_tokens,
            prefill_ms: answer.stats.prefill_ms,
            decode_ms: answer.stats.decode_ms,
            stopped,
            took_ms,
        }
    }
}

// ---------------------------------------------------------------- library

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryStats {
    pub documents: usize,
    pub chunks: usize,
}

impl From<LibraryCounts> for LibraryStats {
    fn from(c: LibraryCounts) -> Self {
        LibraryStats {
            documents: c.documents,
            chunks: c.manifest_chunks,
        }
    }
}

// ---------------------------------------------------------------- compute

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    pub label: String,
    pub value: String,
}

fn field(label: &str, value: impl Into<String>) -> Field {
    Field {
        label: label.to_owned(),
        value: value.into(),
    }
}

/// The compute device and GPU readings, shaped for the UI's panel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuView {
    pub on_cpu: bool,
    pub device: String,
    pub summary: String,
    pub fields: Vec<Field>,
    pub text: String,
}

const NA: &str = "n/a";

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl From<&GpuStatus> for GpuView {
    fn from(status: &GpuStatus) -> Self {
        let on_cpu = !status.selected.is_gpu();
        let selected = status.selected.to_string();
        let selected_gpu = status
            .gpus
            .iter()
            .find(|g| format!("cuda:{}", g.index) == selected);
        let device = match (on_cpu, selected_gpu) {
            (true, _) => "CPU".to_owned(),
            (false, Some(gpu)) => format!("{selected} · {}", gpu.name),
            (false, None) => selected.clone(),
        };

        let mut fields = vec![
            field(
                "Device",
                format!("{selected} (requested {})", status.preference),
            ),
            field(
                "Build",
                format!(
                    "CUDA {}, Metal {}",
                    yes_no(status.capabilities.cuda),
                    yes_no(status.capabilities.metal)
                ),
            ),
        ];
        if let Some(driver) = &status.driver_version {
            fields.push(field("Driver", driver.clone()));
        }
        if status.gpus.is_empty() {
            let reason = status
                .no_gpu_reason
                .clone()
                .unwrap_or_else(|| "no readings available".to_owned());
            fields.push(field("NVIDIA GPU", reason));
        }
        for gpu in &status.gpus {
            let prefix = if status.gpus.len() > 1 {
                format!("GPU {} ", gpu.index)
            } else {
                String::new()
            };
            fields.push(field(&format!("{prefix}Name"), gpu.name.clone()));
            let vram = match (gpu.memory_used, gpu.memory_total) {
                (Some(used), Some(total)) if total > 0 => format!(
                    "{} / {} GiB ({:.0}%)",
                    gib(used),
                    gib(total),
                    used as f64 * 100.0 / total as f64
                ),
                (used, total) => format!(
                    "{} / {} GiB",
                    used.map_or_else(|| NA.to_owned(), gib),
                    total.map_or_else(|| NA.to_owned(), gib)
                ),
            };
            fields.push(field(&format!("{prefix}VRAM"), vram));
            if let Some(t) = gpu.temperature_c {
                fields.push(field(&format!("{prefix}Temperature"), format!("{t} °C")));
            }
            if let Some(mw) = gpu.power_mw {
                let limit = gpu
                    .power_limit_mw
                    .map(|l| format!(" / {:.0} W", f64::from(l) / 1000.0))
                    .unwrap_or_default();
                fields.push(field(
                    &format!("{prefix}Power"),
                    format!("{:.0} W{limit}", f64::from(mw) / 1000.0),
                ));
            }
            if let Some(u) = gpu.utilization_gpu_pct {
                fields.push(field(&format!("{prefix}Utilisation"), format!("{u}%")));
            }
            if let Some(b) = gpu.process_memory {
                fields.push(field(
                    &format!("{prefix}Lectern uses"),
                    format!("{} GiB", gib(b)),
                ));
            }
        }

        GpuView {
            on_cpu,
            device,
            summary: status.reason.clone(),
            fields,
            text: status.render_text(),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// The name to show for a document: its title, or its file name.
pub fn document_name(title: &str, path: &str) -> String {
    if !title.trim().is_empty() {
        return title.to_owned();
    }
    file_name(Path::new(path))
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}
