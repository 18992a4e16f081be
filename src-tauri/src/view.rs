//! What the web UI sends and receives. These types are the UI's contract
//! (generated into `ui/src/bindings.ts`, see `bindings.rs`); they are built
//! from the engine's types so the engine can change without the UI noticing.

use std::path::Path;

use lectern_engine::{
    Answer, Conversation, ConversationSummary, DocumentEntry, GpuStatus, LibraryCounts, Message,
    MessageRole, RerankMode, SearchHit, SearchMode, SourceRef,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- ingest

/// Progress of an ingest run, streamed to the UI.
#[derive(Debug, Clone, Serialize, specta::Type)]
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
        /// Some pages had no text layer and need OCR to be searchable.
        needs_ocr: bool,
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
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct IngestSummary {
    pub indexed: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
    pub chunks: usize,
    pub seconds: f64,
    /// The run was cancelled; files finished before that stay indexed.
    pub cancelled: bool,
}

// ---------------------------------------------------------------- search

/// Which retrieval to run, as the UI names it.
#[derive(Debug, Clone, Copy, Default, Deserialize, specta::Type)]
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

/// Whether the cross-encoder reranks what retrieval found: `auto` when a
/// reranker is installed, `on` always (an error without one), `off` never.
#[derive(Debug, Clone, Copy, Default, Deserialize, specta::Type)]
#[serde(rename_all = "lowercase")]
pub enum Rerank {
    #[default]
    Auto,
    On,
    Off,
}

impl From<Rerank> for RerankMode {
    fn from(rerank: Rerank) -> Self {
        match rerank {
            Rerank::Auto => RerankMode::Auto,
            Rerank::On => RerankMode::On,
            Rerank::Off => RerankMode::Off,
        }
    }
}

#[derive(Debug, Clone, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    pub query: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub rerank: Rerank,
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// The collection to search in; the whole library when absent.
    #[serde(default)]
    pub collection: Option<String>,
}

fn default_limit() -> usize {
    20
}

/// 1-based ranks of a hit in each retrieval leg.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct LegRanks {
    pub dense: Option<usize>,
    pub bm25: Option<usize>,
}

#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    pub document: String,
    pub path: Option<String>,
    pub page: Option<u32>,
    pub headings: Vec<String>,
    pub location: Option<String>,
    pub score: f32,
    pub ranks: LegRanks,
    pub bm25_score: Option<f32>,
    pub dense_distance: Option<f32>,
    /// The cross-encoder reranker's score, when one ordered the hits.
    #[specta(optional)]
    pub rerank_score: Option<f32>,
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
            location: non_empty(chunk.location),
            score: hit.score,
            ranks: LegRanks {
                dense: hit.dense_rank,
                bm25: hit.bm25_rank,
            },
            bm25_score: hit.bm25_score,
            dense_distance: hit.dense_distance,
            rerank_score: hit.rerank_score,
            text: chunk.text,
        }
    }
}

#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    pub took_ms: f64,
}

// ---------------------------------------------------------------- ask

#[derive(Debug, Clone, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub rerank: Rerank,
    /// The conversation the question and its answer are added to.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Let the model reason before it answers (models that can think).
    #[serde(default)]
    pub think: bool,
    /// The collection to answer from when there is no conversation (a
    /// conversation answers from its own collection).
    #[serde(default)]
    pub collection: Option<String>,
}

/// A numbered source the answer may cite.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub n: usize,
    pub document: String,
    pub path: Option<String>,
    pub page: Option<u32>,
    /// Where the passage is, for people ("p. 3", "slide 4").
    pub location: String,
    pub headings: Vec<String>,
    pub chunk_id: String,
    pub char_start: u64,
    pub char_end: u64,
    /// The passage the model was given.
    pub text: String,
    /// Final retrieval score (fused in hybrid mode).
    pub score: f32,
    pub ranks: LegRanks,
    pub bm25_score: Option<f32>,
    pub dense_distance: Option<f32>,
    /// The cross-encoder reranker's score, when one ordered the passages.
    #[specta(optional)]
    pub rerank_score: Option<f32>,
    pub cited: bool,
}

impl From<&SourceRef> for Source {
    fn from(s: &SourceRef) -> Self {
        let location = if !s.location.trim().is_empty() {
            s.location.clone()
        } else {
            s.page.map(|p| format!("p. {p}")).unwrap_or_default()
        };
        Source {
            n: s.n,
            document: document_name(&s.title, &s.path),
            path: non_empty(s.path.clone()),
            page: s.page,
            location,
            headings: s.heading_path.clone(),
            chunk_id: s.chunk_id.clone(),
            char_start: s.char_start,
            char_end: s.char_end,
            text: s.text.clone(),
            score: s.score,
            ranks: LegRanks {
                dense: s.dense_rank,
                bm25: s.bm25_rank,
            },
            bm25_score: s.bm25_score,
            dense_distance: s.dense_distance,
            rerank_score: s.rerank_score,
            cited: s.cited,
        }
    }
}

/// Progress of an answer, streamed to the UI.
#[derive(Debug, Clone, Serialize, specta::Type)]
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
    /// A piece of the model's reasoning before the answer.
    #[serde(rename_all = "camelCase")]
    Thinking { text: String },
    /// The answer starts over on another device: discard the text and
    /// reasoning shown so far; what follows is the whole answer.
    #[serde(rename_all = "camelCase")]
    Restarted { reason: String },
}

#[derive(Debug, Clone, Serialize, specta::Type)]
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
    /// Nothing in the library matched, so no answer was written.
    pub not_in_documents: bool,
    pub took_ms: f64,
    /// The conversation as stored after this answer, when there is one.
    pub conversation: Option<ConversationSummaryView>,
    /// The quote check of each cited sentence.
    pub checks: Vec<CheckView>,
    /// The model's reasoning before the answer; empty when it did not think.
    pub thinking: String,
}

/// How well one cited sentence is backed by the source it cites.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    /// The source number cited.
    pub n: usize,
    /// The sentence, as the answer has it.
    pub sentence: String,
    /// "supported", "partial", "unsupported" or "noSuchSource".
    pub support: String,
    /// Whether the UI should mark the citation as unsupported.
    pub flagged: bool,
    /// Why, in words.
    pub reason: String,
}

impl From<&lectern_engine::CitationCheck> for CheckView {
    fn from(c: &lectern_engine::CitationCheck) -> Self {
        let support = match c.support {
            lectern_engine::Support::Supported => "supported",
            lectern_engine::Support::Partial => "partial",
            lectern_engine::Support::Unsupported => "unsupported",
            lectern_engine::Support::NoSuchSource => "noSuchSource",
        };
        CheckView {
            n: c.n,
            sentence: c.sentence.clone(),
            support: support.to_owned(),
            flagged: c.flagged,
            reason: c.reason.clone(),
        }
    }
}

impl AnswerView {
    /// The view of a finished (or stopped) answer. An answer given no
    /// sources is reported as "not in your documents" with no text: without
    /// passages the model could only make something up.
    pub fn new(answer: Answer, stopped: bool, took_ms: f64) -> Self {
        let not_in_documents = answer.sources.is_empty();
        AnswerView {
            checks: if not_in_documents {
                Vec::new()
            } else {
                answer.checks.iter().map(CheckView::from).collect()
            },
            sources: answer.sources.iter().map(Source::from).collect(),
            answer: if not_in_documents {
                String::new()
            } else {
                answer.text
            },
            prompt_tokens: answer.stats.prompt_tokens,
            generated_tokens: answer.stats.generated_tokens,
            prefill_ms: answer.stats.prefill_ms,
            decode_ms: answer.stats.decode_ms,
            stopped: stopped && !not_in_documents,
            not_in_documents,
            took_ms,
            conversation: None,
            thinking: if not_in_documents {
                String::new()
            } else {
                answer.thinking
            },
        }
    }

    /// The answer when the library holds no documents: nothing was asked of
    /// the model.
    pub fn empty_library(took_ms: f64) -> Self {
        AnswerView {
            answer: String::new(),
            sources: Vec::new(),
            prompt_tokens: 0,
            generated_tokens: 0,
            prefill_ms: 0.0,
            decode_ms: 0.0,
            stopped: false,
            not_in_documents: true,
            took_ms,
            conversation: None,
            checks: Vec::new(),
            thinking: String::new(),
        }
    }
}

// ---------------------------------------------------------------- conversations

/// A conversation in the sidebar.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummaryView {
    pub id: String,
    pub title: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub messages: usize,
}

impl From<&ConversationSummary> for ConversationSummaryView {
    fn from(c: &ConversationSummary) -> Self {
        ConversationSummaryView {
            id: c.id.clone(),
            title: c.title.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            messages: c.messages,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub text: String,
    pub sources: Vec<Source>,
    pub stopped: bool,
    /// An answer that found nothing in the library.
    pub not_in_documents: bool,
    pub created_at: u64,
    /// The quote check of the answer's citations.
    pub checks: Vec<CheckView>,
    /// The model's reasoning before the answer; empty when it did not think.
    pub thinking: String,
    /// For an answer, the documents it was retrieved from; null on
    /// questions and on answers stored before the scope was kept.
    pub scope: Option<AnswerScopeView>,
}

/// The documents an answer was retrieved from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct AnswerScopeView {
    /// The collection, by the name it had then; the whole library when null.
    pub collection: Option<String>,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        let assistant = m.role == MessageRole::Assistant;
        MessageView {
            role: if assistant { "assistant" } else { "user" },
            text: m.text.clone(),
            sources: m.sources.iter().map(Source::from).collect(),
            stopped: m.stopped,
            not_in_documents: assistant && m.sources.is_empty(),
            created_at: m.created_at,
            checks: m.checks.iter().map(CheckView::from).collect(),
            thinking: m.thinking.clone(),
            scope: m.scope.as_ref().map(|s| AnswerScopeView {
                collection: s.collection.clone(),
            }),
        }
    }
}

/// A conversation with its messages.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub id: String,
    pub title: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub messages: Vec<MessageView>,
    /// The collection its questions are answered from; the whole library
    /// when null.
    pub collection: Option<String>,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        ConversationView {
            id: c.id.clone(),
            title: c.title.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            messages: c.messages.iter().map(MessageView::from).collect(),
            collection: c.collection.clone(),
        }
    }
}

/// A title for a new conversation from its first question: the first line,
/// cut at a word boundary near 60 characters.
pub fn title_from_question(question: &str) -> String {
    const LIMIT: usize = 60;
    let line = question.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= LIMIT {
        return line;
    }
    let cut: String = line.chars().take(LIMIT).collect();
    let cut = match cut.rfind(' ') {
        Some(at) if at > LIMIT / 2 => cut[..at].to_owned(),
        _ => cut,
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':', '.']))
}

// ---------------------------------------------------------------- library

#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct LibraryStats {
    pub documents: usize,
    pub chunks: usize,
}

/// A document in the library screen.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct DocumentView {
    pub id: String,
    pub title: String,
    pub path: String,
    pub file_name: String,
    pub format: String,
    pub pages: u32,
    pub chunks: u32,
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub indexed_at: u64,
    pub warnings: Vec<String>,
    /// Some pages had no text layer and need OCR to be searchable.
    pub needs_ocr: bool,
}

impl From<&DocumentEntry> for DocumentView {
    fn from(d: &DocumentEntry) -> Self {
        DocumentView {
            id: d.doc_id.clone(),
            title: document_name(&d.title, &d.path),
            path: d.path.clone(),
            file_name: file_name(Path::new(&d.path)),
            format: d.format.clone(),
            pages: d.pages,
            chunks: d.chunks,
            bytes: d.bytes,
            indexed_at: d.indexed_at,
            warnings: d.warnings.clone(),
            needs_ocr: d.warnings.iter().any(|w| mentions_ocr(w)),
        }
    }
}

/// Whether a parser warning says text is missing until OCR runs.
pub fn mentions_ocr(warning: &str) -> bool {
    let w = warning.to_ascii_lowercase();
    w.contains("ocr") || w.contains("no text layer") || w.contains("scanned")
}

/// The library's documents, newest first, then by title.
pub fn document_list(entries: &[DocumentEntry]) -> Vec<DocumentView> {
    let mut docs: Vec<DocumentView> = entries.iter().map(DocumentView::from).collect();
    docs.sort_by(|a, b| {
        b.indexed_at
            .cmp(&a.indexed_at)
            .then_with(|| a.title.to_lowercase().cmp(&b.title.to_lowercase()))
    });
    docs
}

impl From<LibraryCounts> for LibraryStats {
    fn from(c: LibraryCounts) -> Self {
        LibraryStats {
            documents: c.documents,
            chunks: c.manifest_chunks,
        }
    }
}

// ---------------------------------------------------------------- models

/// One model file or folder the configuration names.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// What it is for: `embedder` or `llm`.
    pub role: &'static str,
    pub name: String,
    pub path: String,
    /// Every file the loader needs is there.
    pub present: bool,
    /// Bytes on disk of the files found.
    pub bytes: u64,
    /// What is missing, or what was found.
    pub detail: String,
}

/// The models screen: where models live and whether they are there.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ModelsView {
    pub models_dir: String,
    pub data_dir: String,
    pub embedder: ModelView,
    /// The language model for answers; `None` when none is configured.
    pub llm: Option<ModelView>,
    /// The most tokens of context the language model may use.
    pub max_context: usize,
    pub device_preference: String,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn missing_files(dir: &Path, needed: &[&str]) -> Vec<String> {
    needed
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| (*f).to_owned())
        .collect()
}

fn has_safetensors(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("safetensors"))
            })
        })
        .unwrap_or(false)
}

/// Checks an embedder folder: BERT-family `config.json`, `tokenizer.json`
/// and `model.safetensors`.
pub fn embedder_view(dir: &Path) -> ModelView {
    let name = file_name(dir);
    if !dir.is_dir() {
        return ModelView {
            role: "embedder",
            name,
            path: dir.display().to_string(),
            present: false,
            bytes: 0,
            detail: "folder not found".to_owned(),
        };
    }
    let missing = missing_files(dir, &["config.json", "tokenizer.json", "model.safetensors"]);
    ModelView {
        role: "embedder",
        name,
        path: dir.display().to_string(),
        present: missing.is_empty(),
        bytes: dir_bytes(dir),
        detail: if missing.is_empty() {
            "config, tokenizer and weights found".to_owned()
        } else {
            format!("missing {}", missing.join(", "))
        },
    }
}

/// Checks a language model: a `.gguf` file, or a folder with `config.json`,
/// `tokenizer.json`, `tokenizer_config.json` and safetensors weights.
pub fn llm_view(path: &Path) -> ModelView {
    let mut view = ModelView {
        role: "llm",
        name: file_name(path),
        path: path.display().to_string(),
        present: false,
        bytes: 0,
        detail: String::new(),
    };
    if path.is_file() {
        let gguf = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("gguf"));
        view.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        view.present = gguf;
        view.detail = if gguf {
            "GGUF file".to_owned()
        } else {
            "not a .gguf file or a model folder".to_owned()
        };
    } else if path.is_dir() {
        let mut missing = missing_files(
            path,
            &["config.json", "tokenizer.json", "tokenizer_config.json"],
        );
        if !has_safetensors(path) {
            missing.push("*.safetensors".to_owned());
        }
        view.bytes = dir_bytes(path);
        view.present = missing.is_empty();
        view.detail = if missing.is_empty() {
            "safetensors folder".to_owned()
        } else {
            format!("missing {}", missing.join(", "))
        };
    } else {
        view.detail = "not found".to_owned();
    }
    view
}

// ---------------------------------------------------------------- compute

#[derive(Debug, Clone, Serialize, specta::Type)]
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
#[derive(Debug, Clone, Serialize, specta::Type)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn source_ref(n: usize, cited: bool) -> SourceRef {
        SourceRef {
            n,
            title: String::new(),
            path: "/docs/rust-book.pdf".into(),
            page: Some(12),
            chunk_id: format!("d1:{n}"),
            char_start: 40,
            char_end: 90,
            location: String::new(),
            heading_path: vec!["Ownership".into(), "Rules".into()],
            text: "Each value has an owner.".into(),
            score: 0.032,
            bm25_rank: Some(2),
            bm25_score: Some(7.5),
            dense_rank: None,
            dense_distance: None,
            rerank_score: None,
            cited,
        }
    }

    fn answer(text: &str, sources: Vec<SourceRef>) -> Answer {
        Answer {
            text: text.into(),
            sources,
            stats: serde_json::from_value(serde_json::json!({
                "text": text,
                "prompt_tokens": 120,
                "generated_tokens": 5,
                "prefill_ms": 10.0,
                "decode_ms": 20.0,
                "stop_reason": "end_of_turn",
            }))
            .expect("generation stats"),
            thinking: String::new(),
            citations: Vec::new(),
            checks: Vec::new(),
            retrieval: Default::default(),
            timings: Default::default(),
        }
    }

    fn entry(id: &str, title: &str, indexed_at: u64, warnings: &[&str]) -> DocumentEntry {
        DocumentEntry {
            doc_id: id.into(),
            path: format!("/docs/{id}.pdf"),
            title: title.into(),
            format: "pdf".into(),
            content_hash: "h".into(),
            bytes: 2048,
            pages: 3,
            chunks: 9,
            indexed_at,
            warnings: warnings.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn sources_carry_the_passage_its_place_and_each_legs_evidence() {
        let s = Source::from(&source_ref(1, true));
        assert_eq!(
            s.document, "rust-book.pdf",
            "untitled documents show the file name"
        );
        assert_eq!(
            s.location, "p. 12",
            "a page stands in for a missing location"
        );
        assert_eq!(s.text, "Each value has an owner.");
        assert_eq!((s.char_start, s.char_end), (40, 90));
        assert_eq!((s.ranks.bm25, s.ranks.dense), (Some(2), None));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["bm25Score"], 7.5);
        assert!(json["denseDistance"].is_null());
        assert_eq!(json["headings"][1], "Rules");

        let mut with_location = source_ref(2, false);
        with_location.location = "slide 4".into();
        with_location.title = "Deck".into();
        let s = Source::from(&with_location);
        assert_eq!(
            (s.document.as_str(), s.location.as_str()),
            ("Deck", "slide 4")
        );
    }

    #[test]
    fn an_answer_without_sources_is_not_in_the_documents() {
        let view = AnswerView::new(answer("Made up text.", Vec::new()), true, 5.0);
        assert!(view.not_in_documents);
        assert!(view.answer.is_empty(), "an unsupported answer is not shown");
        assert!(
            !view.stopped,
            "stopping an unsupported answer is not the user's stop"
        );

        let view = AnswerView::new(answer("Owners [1].", vec![source_ref(1, true)]), true, 5.0);
        assert!(!view.not_in_documents);
        assert!(view.stopped);
        assert_eq!(view.answer, "Owners [1].");
        assert_eq!(view.sources.len(), 1);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["notInDocuments"], false);
        assert_eq!(json["promptTokens"], 120);

        let empty = AnswerView::empty_library(1.0);
        assert!(empty.not_in_documents && empty.sources.is_empty());
    }

    #[test]
    fn stored_messages_map_roles_and_the_not_in_documents_state() {
        let user = MessageView::from(&Message::user("Who owns a value?"));
        assert_eq!(user.role, "user");
        assert!(!user.not_in_documents, "questions never carry that state");
        let empty = MessageView::from(&Message::assistant("", Vec::new(), false));
        assert_eq!(empty.role, "assistant");
        assert!(empty.not_in_documents);
        let cited = MessageView::from(&Message::assistant(
            "Each value [1].",
            vec![source_ref(1, true)],
            true,
        ));
        assert!(!cited.not_in_documents);
        assert!(cited.stopped);
        assert_eq!(cited.sources[0].text, "Each value has an owner.");
        assert_eq!(cited.scope, None, "an answer stored without its scope");
        let scoped = MessageView::from(
            &Message::assistant("Each value [1].", vec![source_ref(1, true)], false)
                .with_scope(Some("Papers".into())),
        );
        assert_eq!(
            serde_json::to_value(&scoped).unwrap()["scope"],
            serde_json::json!({ "collection": "Papers" })
        );
        let everything =
            MessageView::from(&Message::assistant("", Vec::new(), false).with_scope(None));
        assert_eq!(everything.scope, Some(AnswerScopeView { collection: None }));
    }

    #[test]
    fn documents_list_newest_first_and_flag_pages_that_need_ocr() {
        let docs = document_list(&[
            entry("a1", "Older", 100, &[]),
            entry("b2", "", 300, &["page 2 has no text layer; it needs OCR"]),
            entry("c3", "Newer", 300, &["table cut at page end"]),
        ]);
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        // Same time: by title, an untitled document by its file name.
        assert_eq!(ids, ["b2", "c3", "a1"]);
        assert_eq!(docs[0].title, "b2.pdf");
        assert!(docs[0].needs_ocr);
        assert!(!docs[1].needs_ocr, "other warnings are not OCR");
        assert_eq!(docs[1].warnings.len(), 1);
        assert_eq!(docs[2].file_name, "a1.pdf");
    }

    #[test]
    fn titles_from_questions_are_one_line_and_cut_at_a_word() {
        assert_eq!(title_from_question("  Is   Rust\nfast? "), "Is Rust fast?");
        let t = title_from_question(&"word ".repeat(40));
        assert!(t.ends_with('…'));
        assert!(!t.contains("wor…"), "cut at a word boundary: {t}");
        let t = title_from_question(&"x".repeat(100));
        assert_eq!(t.chars().count(), 61);
    }

    #[test]
    fn model_checks_name_what_is_missing() {
        let root = std::env::temp_dir().join(format!("lectern-app-models-{}", std::process::id()));
        let emb = root.join("mini");
        std::fs::create_dir_all(&emb).unwrap();
        std::fs::write(emb.join("config.json"), "{}").unwrap();
        let view = embedder_view(&emb);
        assert!(!view.present);
        assert_eq!(view.detail, "missing tokenizer.json, model.safetensors");
        std::fs::write(emb.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(emb.join("model.safetensors"), [0u8; 10]).unwrap();
        let view = embedder_view(&emb);
        assert!(view.present, "{}", view.detail);
        assert_eq!(view.bytes, 2 + 2 + 10);
        assert!(!embedder_view(&root.join("none")).present);

        let gguf = root.join("tiny.gguf");
        std::fs::write(&gguf, [1u8; 7]).unwrap();
        let view = llm_view(&gguf);
        assert!(view.present);
        assert_eq!(view.bytes, 7);
        let txt = root.join("notes.txt");
        std::fs::write(&txt, "x").unwrap();
        assert!(!llm_view(&txt).present);
        let folder = llm_view(&emb);
        assert!(!folder.present);
        assert_eq!(folder.detail, "missing tokenizer_config.json");
        assert_eq!(llm_view(&root.join("absent")).detail, "not found");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_rerank_setting_arrives_with_searches_and_questions() {
        let q: Question =
            serde_json::from_str(r#"{"question":"What moves?","rerank":"off"}"#).unwrap();
        assert_eq!(RerankMode::from(q.rerank), RerankMode::Off);
        let q: SearchQuery = serde_json::from_str(r#"{"query":"moves","rerank":"on"}"#).unwrap();
        assert_eq!(RerankMode::from(q.rerank), RerankMode::On);
        // Older front ends send none: the engine's default applies.
        let q: SearchQuery = serde_json::from_str(r#"{"query":"moves"}"#).unwrap();
        assert_eq!(RerankMode::from(q.rerank), RerankMode::Auto);
        let err = serde_json::from_str::<Question>(r#"{"question":"q","rerank":"sometimes"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `sometimes`"), "{err}");
    }
}
