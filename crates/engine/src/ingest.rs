//! The ingest pipeline: discover → parse → chunk → embed → index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lectern_index::{ChunkRecord, DocumentEntry};
use lectern_ingest::{Chunk, ParseProgress, ParsedDocument};
use serde::Serialize;

use crate::now_secs;
use crate::{Engine, EngineError};

/// Something that happened during an ingest, for progress displays.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IngestEvent {
    /// Files were found; `skipped` lists unsupported ones with the reason.
    Discovered {
        /// Supported files to process.
        files: usize,
        /// Unsupported or unreadable entries.
        skipped: Vec<(PathBuf, String)>,
    },
    /// A file started.
    FileStarted {
        /// 0-based position in the run.
        index: usize,
        /// The file.
        path: PathBuf,
    },
    /// Chunks of the current file were embedded.
    Embedded {
        /// The file.
        path: PathBuf,
        /// Chunks embedded so far.
        done: usize,
        /// Chunks in the file.
        total: usize,
    },
    /// A file is fully indexed.
    FileIndexed {
        /// The file.
        path: PathBuf,
        /// Pages read.
        pages: u32,
        /// Chunks written.
        chunks: usize,
        /// Parser warnings (for example pages that need OCR).
        warnings: Vec<String>,
    },
    /// A file was already indexed with the same content.
    FileUnchanged {
        /// The file.
        path: PathBuf,
    },
    /// A file failed; the rest of the run goes on.
    FileFailed {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The current file entered a stage of the pipeline.
    Stage {
        /// The file.
        path: PathBuf,
        /// The stage it entered.
        stage: IngestStage,
    },
    /// A scanned page of the current file is being read by OCR.
    OcrPage {
        /// The file.
        path: PathBuf,
        /// The page's 1-based number.
        page: usize,
        /// Scanned pages of the file finished before this one.
        done: usize,
        /// Scanned pages in the file.
        total: usize,
    },
    /// The whole run's progress, sent after each file.
    Overall(OverallProgress),
}

/// A stage of the ingest pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestStage {
    /// Reading the file and extracting its text (OCR included).
    Parse,
    /// Splitting the text into passages.
    Chunk,
    /// Computing embeddings for passages with new text.
    Embed,
    /// Writing to the vector table and the full-text index.
    Index,
}

impl IngestStage {
    /// A lowercase word for progress displays: "parsing", "chunking", …
    pub fn verb(self) -> &'static str {
        match self {
            IngestStage::Parse => "parsing",
            IngestStage::Chunk => "chunking",
            IngestStage::Embed => "embedding",
            IngestStage::Index => "indexing",
        }
    }
}

/// How far a whole ingest run has come.
#[derive(Debug, Clone, Serialize)]
pub struct OverallProgress {
    /// Files finished (indexed, unchanged or failed).
    pub files_done: usize,
    /// Files in the run.
    pub files_total: usize,
    /// Bytes of the finished files.
    pub bytes_done: u64,
    /// Bytes of all files in the run.
    pub bytes_total: u64,
    /// Chunks prepared so far.
    pub chunks: usize,
    /// Seconds since the run started.
    pub elapsed_seconds: f64,
    /// Estimated seconds left, from the bytes done so far; `None` until
    /// there is something to estimate from.
    pub eta_seconds: Option<f64>,
}

/// Seconds spent in each stage of an ingest run, summed over its files.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimes {
    /// Hashing files to find unchanged ones.
    pub hash: f64,
    /// Reading and extracting text (OCR included).
    pub parse: f64,
    /// Splitting into passages.
    pub chunk: f64,
    /// Looking up stored embeddings and computing new ones.
    pub embed: f64,
    /// Writing to the stores.
    pub index: f64,
}

impl StageTimes {
    fn add(&mut self, other: &StageTimes) {
        self.hash += other.hash;
        self.parse += other.parse;
        self.chunk += other.chunk;
        self.embed += other.embed;
        self.index += other.index;
    }
}

/// Receives progress events.
pub type ProgressFn = Arc<dyn Fn(IngestEvent) + Send + Sync>;

/// What an ingest run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Files newly indexed (or re-indexed).
    pub indexed: usize,
    /// Files skipped because they were unchanged.
    pub unchanged: usize,
    /// Files that failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Entries that were not supported.
    pub skipped: Vec<(PathBuf, String)>,
    /// Chunks written.
    pub chunks: usize,
    /// Chunks that had to be embedded.
    pub embedded: usize,
    /// Chunks whose embedding was reused because their text was already in
    /// the library.
    pub reused: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Where the time went.
    pub stages: StageTimes,
    /// Pages read from the files that were indexed.
    pub pages: u64,
    /// Bytes of the files that were indexed.
    pub bytes: u64,
}

/// The stored form of a chunk of document `doc_id`.
pub(crate) fn chunk_record(
    doc_id: &str,
    path: &str,
    title: &str,
    format: &str,
    c: Chunk,
    vector: Vec<f32>,
) -> ChunkRecord {
    let location = c.location_label();
    let ocr = c.ocr;
    ChunkRecord {
        chunk_id: format!("{doc_id}:{}", c.ordinal),
        doc_id: doc_id.to_string(),
        path: path.to_string(),
        title: title.to_string(),
        page: c.page,
        heading_path: c.heading_path,
        ordinal: c.ordinal,
        char_start: c.char_start as u64,
        char_end: c.char_end as u64,
        chunk_hash: ChunkRecord::hash_text(&c.text),
        format: format.to_string(),
        location,
        ocr,
        text: c.text,
        vector,
    }
}

/// A stable document id for a path: the first 16 hex digits of its blake3.
pub(crate) fn doc_id_for(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
}

fn page_count(doc: &ParsedDocument) -> u32 {
    doc.pages.len() as u32
}

/// Seconds left at the rate the finished files' bytes went through; `None`
/// before anything finished or when nothing is left.
fn eta(p: &OverallProgress) -> Option<f64> {
    if p.bytes_done == 0 || p.elapsed_seconds <= 0.0 || p.files_done >= p.files_total {
        return None;
    }
    let left = p.bytes_total.saturating_sub(p.bytes_done) as f64;
    Some(left * p.elapsed_seconds / p.bytes_done as f64)
}

/// blake3 of a file's bytes, in lowercase hex (the same hash the parser
/// records), read in a streaming way.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    h.update_reader(&mut f)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Documents parsed and embedded but not yet written: written together so a
/// folder of small files costs a few store writes, not one per file.
#[derive(Default)]
struct PendingBatch {
    docs: Vec<(DocumentEntry, Vec<ChunkRecord>)>,
    events: Vec<IngestEvent>,
    vectors: HashMap<String, Vec<f32>>,
    chunks: usize,
    since: Option<Instant>,
}

/// Write the pending batch once it holds `write_batch_chunks` chunks, or
/// once its oldest document has waited this long.
const BATCH_SECONDS: f64 = 2.0;

impl PendingBatch {
    fn is_due(&self, max_chunks: usize) -> bool {
        self.chunks >= max_chunks
            || self
                .since
                .is_some_and(|t| t.elapsed().as_secs_f64() >= BATCH_SECONDS)
    }
}

/// A document ready to be written, with its indexing counts.
struct Prepared {
    times: StageTimes,
    entry: DocumentEntry,
    records: Vec<ChunkRecord>,
    event: IngestEvent,
    embedded: usize,
    reused: usize,
}

impl Engine {
    /// Ingests files and folders. A file that fails is reported and the
    /// rest go on. Unchanged files (same path, same content hash) are
    /// skipped before parsing, and passages whose text is already in the
    /// library reuse their stored embedding. Setting `cancel` stops after
    /// the current file; what was finished before stays indexed.
    pub async fn ingest(
        &self,
        paths: Vec<PathBuf>,
        progress: ProgressFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<IngestReport, EngineError> {
        self.ingest_files(paths, progress, cancel, false).await
    }

    /// Reads files again even when their content is unchanged (after a
    /// parser or chunking change, or to repair a document). Each document
    /// keeps its id, and so its collections, and its old passages stay
    /// searchable until the new ones replace them in one write: a file that
    /// now fails to read leaves the indexed version as it was.
    pub async fn reindex(
        &self,
        paths: Vec<PathBuf>,
        progress: ProgressFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<IngestReport, EngineError> {
        self.ingest_files(paths, progress, cancel, true).await
    }

    async fn ingest_files(
        &self,
        paths: Vec<PathBuf>,
        progress: ProgressFn,
        cancel: Arc<AtomicBool>,
        force: bool,
    ) -> Result<IngestReport, EngineError> {
        // An embedding model switch waits for this run to end before it
        // changes the library's model (see `Engine::switch_embedder`).
        let _switch = self.switch_gate.read().await;
        let started = Instant::now();
        let discovery = tokio::task::spawn_blocking(move || lectern_ingest::discover(&paths))
            .await
            .map_err(EngineError::join)?;
        progress(IngestEvent::Discovered {
            files: discovery.files.len(),
            skipped: discovery.skipped.clone(),
        });
        let mut report = IngestReport {
            skipped: discovery.skipped.clone(),
            ..Default::default()
        };
        let sizes: Vec<u64> = discovery
            .files
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .collect();
        let mut overall = OverallProgress {
            files_done: 0,
            files_total: discovery.files.len(),
            bytes_done: 0,
            bytes_total: sizes.iter().sum(),
            chunks: 0,
            elapsed_seconds: 0.0,
            eta_seconds: None,
        };
        let mut batch = PendingBatch::default();
        for (index, path) in discovery.files.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                self.flush(&mut batch, &progress, &mut report).await?;
                return Err(EngineError::Cancelled);
            }
            progress(IngestEvent::FileStarted {
                index,
                path: path.clone(),
            });
            match self
                .prepare_file(path, &progress, &batch.vectors, &mut report.stages, force)
                .await
            {
                Ok(Some(p)) => {
                    report.embedded += p.embedded;
                    report.reused += p.reused;
                    report.stages.add(&p.times);
                    report.pages += u64::from(p.entry.pages);
                    report.bytes += p.entry.bytes;
                    overall.chunks += p.records.len();
                    for r in &p.records {
                        batch
                            .vectors
                            .entry(r.chunk_hash.clone())
                            .or_insert_with(|| r.vector.clone());
                    }
                    batch.chunks += p.records.len();
                    batch.since.get_or_insert_with(Instant::now);
                    batch.docs.push((p.entry, p.records));
                    batch.events.push(p.event);
                }
                Ok(None) => {
                    report.unchanged += 1;
                    progress(IngestEvent::FileUnchanged { path: path.clone() });
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "file failed");
                    progress(IngestEvent::FileFailed {
                        path: path.clone(),
                        error: e.to_string(),
                    });
                    report.failed.push((path.clone(), e.to_string()));
                }
            }
            overall.files_done += 1;
            overall.bytes_done += sizes[index];
            overall.elapsed_seconds = started.elapsed().as_secs_f64();
            overall.eta_seconds = eta(&overall);
            progress(IngestEvent::Overall(overall.clone()));
            if batch.is_due(self.config().write_batch_chunks) {
                self.flush(&mut batch, &progress, &mut report).await?;
            }
        }
        self.flush(&mut batch, &progress, &mut report).await?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Writes the pending documents in one library transaction and reports
    /// them as indexed.
    async fn flush(
        &self,
        batch: &mut PendingBatch,
        progress: &ProgressFn,
        report: &mut IngestReport,
    ) -> Result<(), EngineError> {
        let done = std::mem::take(batch);
        if done.docs.is_empty() {
            return Ok(());
        }
        let files = done.docs.len();
        let chunks = done.chunks;
        for e in &done.events {
            if let IngestEvent::FileIndexed { path, .. } = e {
                progress(IngestEvent::Stage {
                    path: path.clone(),
                    stage: IngestStage::Index,
                });
            }
        }
        let started = Instant::now();
        self.library.put_documents(done.docs).await?;
        report.stages.index += started.elapsed().as_secs_f64();
        report.indexed += files;
        report.chunks += chunks;
        for e in done.events {
            progress(e);
        }
        Ok(())
    }

    /// Parses, chunks and embeds one file; `None` when it is already indexed
    /// with the same content (unless `force`).
    async fn prepare_file(
        &self,
        path: &Path,
        progress: &ProgressFn,
        pending: &HashMap<String, Vec<f32>>,
        times: &mut StageTimes,
        force: bool,
    ) -> Result<Option<Prepared>, EngineError> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let key = canonical.to_string_lossy().into_owned();
        let doc_id = doc_id_for(&key);
        let known = if force {
            None
        } else {
            self.library.document(&doc_id).await
        };
        if let Some(existing) = known {
            let started = Instant::now();
            let p = canonical.clone();
            let hash = tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(EngineError::join)?;
            times.hash += started.elapsed().as_secs_f64();
            if hash.ok().as_deref() == Some(existing.content_hash.as_str()) {
                return Ok(None);
            }
        }
        progress(IngestEvent::Stage {
            path: path.to_path_buf(),
            stage: IngestStage::Parse,
        });
        let started = Instant::now();
        let p = canonical.clone();
        let shown = path.to_path_buf();
        let observer = progress.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let observe = |step: ParseProgress| match step {
                ParseProgress::OcrPage { page, done, total } => observer(IngestEvent::OcrPage {
                    path: shown.clone(),
                    page,
                    done,
                    total,
                }),
            };
            lectern_ingest::parse_file_observed(
                &p,
                &lectern_ingest::ParseOptions::default(),
                &observe,
            )
        })
        .await
        .map_err(EngineError::join);
        times.parse += started.elapsed().as_secs_f64();
        let mut doc = parsed??;
        // Progress speaks of the file as it was given, like `FileStarted`.
        doc.path = path.to_path_buf();
        self.prepare_parsed(doc_id, key, doc, progress, pending)
            .await
            .map(Some)
    }

    /// Chunks a parsed document and embeds the chunks whose text has no
    /// stored embedding yet (in the library or in `pending`).
    async fn prepare_parsed(
        &self,
        doc_id: String,
        path_key: String,
        doc: ParsedDocument,
        progress: &ProgressFn,
        pending: &HashMap<String, Vec<f32>>,
    ) -> Result<Prepared, EngineError> {
        let mut times = StageTimes::default();
        progress(IngestEvent::Stage {
            path: doc.path.clone(),
            stage: IngestStage::Chunk,
        });
        let started = Instant::now();
        let chunker = self.chunker.clone();
        let doc = Arc::new(doc);
        let d = doc.clone();
        let chunks: Vec<Chunk> = tokio::task::spawn_blocking(move || chunker.chunk(&d))
            .await
            .map_err(EngineError::join)?;
        times.chunk = started.elapsed().as_secs_f64();
        progress(IngestEvent::Stage {
            path: doc.path.clone(),
            stage: IngestStage::Embed,
        });
        let started = Instant::now();
        let title = doc.title.clone().unwrap_or_else(|| {
            doc.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path_key.clone())
        });
        let total = chunks.len();
        let hashes: Vec<String> = chunks
            .iter()
            .map(|c| ChunkRecord::hash_text(&c.text))
            .collect();
        let missing: Vec<String> = hashes
            .iter()
            .filter(|h| !pending.contains_key(*h))
            .cloned()
            .collect();
        let stored = self.library.vectors_by_hash(&missing).await?;
        let known = |h: &str| pending.get(h).or_else(|| stored.get(h)).cloned();
        // Embed only the chunks with new text, in slices so progress keeps
        // moving on long documents.
        let to_embed: Vec<usize> = (0..total)
            .filter(|&i| known(&hashes[i]).is_none())
            .collect();
        let mut fresh: HashMap<usize, Vec<f32>> = HashMap::with_capacity(to_embed.len());
        let slice = (self.embedder.batch_size() * 4).max(1);
        let reused = total - to_embed.len();
        for part in to_embed.chunks(slice) {
            let texts: Vec<String> = part.iter().map(|&i| chunks[i].text.clone()).collect();
            // Through the GPU manager: out-of-memory recovery, telemetry.
            let v = self.embed_passages_managed(texts).await?;
            fresh.extend(part.iter().copied().zip(v));
            progress(IngestEvent::Embedded {
                path: doc.path.clone(),
                done: reused + fresh.len(),
                total,
            });
        }
        times.embed = started.elapsed().as_secs_f64();
        let format = doc.format.to_string();
        let mut records = Vec::with_capacity(total);
        for (i, c) in chunks.into_iter().enumerate() {
            let vector = match fresh.remove(&i) {
                Some(v) => v,
                None => known(&hashes[i]).ok_or_else(|| {
                    EngineError::Internal(format!("no embedding for chunk {i} of {path_key}"))
                })?,
            };
            records.push(chunk_record(&doc_id, &path_key, &title, &format, c, vector));
        }
        let entry = DocumentEntry {
            doc_id: doc_id.clone(),
            path: path_key,
            title,
            format,
            content_hash: doc.content_hash.clone(),
            bytes: doc.byte_len,
            pages: page_count(&doc),
            chunks: total as u32,
            indexed_at: now_secs(),
            warnings: doc.warnings.clone(),
        };
        let event = IngestEvent::FileIndexed {
            path: doc.path.clone(),
            pages: page_count(&doc),
            chunks: total,
            warnings: doc.warnings.clone(),
        };
        Ok(Prepared {
            times,
            entry,
            records,
            event,
            embedded: total - reused,
            reused,
        })
    }
}
