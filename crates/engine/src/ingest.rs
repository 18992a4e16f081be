//! The ingest pipeline: discover → parse → chunk → embed → index.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lectern_index::{ChunkRecord, DocumentEntry};
use lectern_ingest::{Chunk, ParsedDocument};
use serde::Serialize;

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
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The stored form of a chunk of document `doc_id`.
pub(crate) fn chunk_record(
    doc_id: &str,
    path: &str,
    title: &str,
    c: Chunk,
    vector: Vec<f32>,
) -> ChunkRecord {
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
        text: c.text,
        vector,
    }
}

/// A stable document id for a path: the first 16 hex digits of its blake3.
pub(crate) fn doc_id_for(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn page_count(doc: &ParsedDocument) -> u32 {
    doc.pages.len() as u32
}

impl Engine {
    /// Ingests files and folders. A file that fails is reported and the
    /// rest go on; setting `cancel` stops after the current file.
    pub async fn ingest(
        &self,
        paths: Vec<PathBuf>,
        progress: ProgressFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<IngestReport, EngineError> {
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
        for (index, path) in discovery.files.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            progress(IngestEvent::FileStarted {
                index,
                path: path.clone(),
            });
            match self.ingest_file(path, &progress).await {
                Ok(Some(chunks)) => {
                    report.indexed += 1;
                    report.chunks += chunks;
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
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Indexes one file; `None` when it was already indexed unchanged.
    async fn ingest_file(
        &self,
        path: &Path,
        progress: &ProgressFn,
    ) -> Result<Option<usize>, EngineError> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let key = canonical.to_string_lossy().into_owned();
        let doc_id = doc_id_for(&key);
        let p = canonical.clone();
        let doc = tokio::task::spawn_blocking(move || lectern_ingest::parse_file(&p))
            .await
            .map_err(EngineError::join)??;
        if let Some(existing) = self.library.document(&doc_id).await {
            if existing.content_hash == doc.content_hash {
                return Ok(None);
            }
        }
        let n = self.index_parsed(doc_id, key, doc, progress).await?;
        Ok(Some(n))
    }

    /// Chunks, embeds and stores an already parsed document under `doc_id`.
    pub(crate) async fn index_parsed(
        &self,
        doc_id: String,
        path_key: String,
        doc: ParsedDocument,
        progress: &ProgressFn,
    ) -> Result<usize, EngineError> {
        let chunker = self.chunker.clone();
        let doc = Arc::new(doc);
        let d = doc.clone();
        let chunks: Vec<Chunk> = tokio::task::spawn_blocking(move || chunker.chunk(&d))
            .await
            .map_err(EngineError::join)?;
        let title = doc.title.clone().unwrap_or_else(|| {
            doc.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path_key.clone())
        });
        let total = chunks.len();
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(total);
        // Embed in slices so progress keeps moving on long documents.
        let slice = (self.embedder.batch_size() * 4).max(1);
        for part in chunks.chunks(slice) {
            let texts: Vec<String> = part.iter().map(|c| c.text.clone()).collect();
            let embedder = self.embedder.clone();
            let v = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embedder.embed_passages(&refs)
            })
            .await
            .map_err(EngineError::join)??;
            vectors.extend(v);
            progress(IngestEvent::Embedded {
                path: doc.path.clone(),
                done: vectors.len(),
                total,
            });
        }
        let records: Vec<ChunkRecord> = chunks
            .into_iter()
            .zip(vectors)
            .map(|(c, vector)| chunk_record(&doc_id, &path_key, &title, c, vector))
            .collect();
        let entry = DocumentEntry {
            doc_id: doc_id.clone(),
            path: path_key,
            title,
            format: doc.format.to_string(),
            content_hash: doc.content_hash.clone(),
            bytes: doc.byte_len,
            pages: page_count(&doc),
            chunks: total as u32,
            indexed_at: now_secs(),
            warnings: doc.warnings.clone(),
        };
        self.library.put_document(entry, records).await?;
        progress(IngestEvent::FileIndexed {
            path: doc.path.clone(),
            pages: page_count(&doc),
            chunks: total,
            warnings: doc.warnings.clone(),
        });
        Ok(total)
    }
}
