//! Switching the library to another embedding model without downtime.
//!
//! The new model embeds every passage again (nothing is reused across
//! models) into a shadow vector table while search, ingest and answers keep
//! using the current model and table. When every document has its new
//! vectors, the library's manifest is replaced atomically to name the new
//! model and table, and the engine moves its query embedder and chunker to
//! the new model at the same moment. A crash or a cancel before that leaves
//! the current model fully in use; switching to the same model again
//! resumes with the documents already done.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use lectern_ingest::Chunker;
use lectern_models::Embedder;
use serde::Serialize;

use crate::{config, Engine, EngineError};

/// A value the engine replaces as a whole while readers keep the one they
/// took (the embedder and chunker across an embedding model switch).
pub(crate) struct Current<T> {
    inner: RwLock<Arc<T>>,
}

impl<T> Current<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: RwLock::new(Arc::new(value)),
        }
    }

    /// The value now in use (named like `Arc::clone`: callers keep a
    /// handle that stays valid after a replacement).
    pub(crate) fn clone(&self) -> Arc<T> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, value: Arc<T>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

impl Current<Embedder> {
    /// Texts per forward pass of the embedder now in use.
    pub(crate) fn batch_size(&self) -> usize {
        self.clone().batch_size()
    }
}

/// Progress of [`Engine::switch_embedder`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReembedEvent {
    /// The new model is loaded and the switch recorded.
    Started {
        /// The model switched to.
        embedder: String,
        /// Its vector dimensions.
        dim: usize,
        /// Documents in the library.
        documents: usize,
        /// Documents that still need new vectors (fewer than `documents`
        /// when an interrupted switch is resumed).
        pending: usize,
    },
    /// New vectors of some documents were written.
    Progress {
        /// Documents with new vectors.
        documents_done: usize,
        /// Documents in the library.
        documents: usize,
        /// Passages embedded so far in this run.
        chunks_embedded: usize,
    },
    /// The library now uses the new model.
    Finished {
        /// The model switched to.
        embedder: String,
        /// Its vector dimensions.
        dim: usize,
    },
}

/// Callback receiving [`ReembedEvent`]s.
pub type ReembedProgressFn = Arc<dyn Fn(ReembedEvent) + Send + Sync>;

/// What [`Engine::switch_embedder`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReembedReport {
    /// The model the library uses now.
    pub embedder: String,
    /// Its vector dimensions.
    pub dim: usize,
    /// Documents in the library.
    pub documents: usize,
    /// Passages embedded in this run.
    pub chunks_embedded: usize,
    /// Wall time of this run in seconds.
    pub seconds: f64,
}

/// Documents embedded between two writes to the shadow table.
const DOCUMENTS_PER_WRITE: usize = 16;

impl Engine {
    /// The embedding model the library's vectors come from.
    pub async fn embedder_name(&self) -> Option<String> {
        self.library.embedder().await
    }

    /// The embedding model switch that has begun and not finished, if any:
    /// `(model, dimensions)`.
    pub async fn embedder_switch_in_progress(&self) -> Option<(String, usize)> {
        self.library
            .switch_in_progress()
            .await
            .map(|s| (s.embedder, s.dim))
    }

    /// Switches the library to the embedding model `id_or_path` (a catalog
    /// id or a model folder): every passage is embedded again into a shadow
    /// table while search keeps using the current model, then the library
    /// and this engine move to the new model at once. Setting `cancel`
    /// stops between documents with [`EngineError::Cancelled`]; the current
    /// model stays in use and a later call resumes where this one stopped.
    pub async fn switch_embedder(
        &self,
        id_or_path: &str,
        progress: ReembedProgressFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<ReembedReport, EngineError> {
        let started = Instant::now();
        let dir = config::resolve_embedder(&self.config.models_dir, id_or_path);
        let name = config::embedder_name(&dir).ok_or_else(|| {
            EngineError::InvalidInput(format!("`{id_or_path}` does not name an embedding model"))
        })?;
        let (embedder, chunker) = self.load_embedder(&dir).await?;
        let dim = embedder.dim();
        self.library.begin_switch(&name, dim).await?;
        let documents = self.library.documents().await.len();
        let mut pending = self.library.switch_pending().await?;
        progress(ReembedEvent::Started {
            embedder: name.clone(),
            dim,
            documents,
            pending: pending.len(),
        });
        let mut chunks_embedded = 0usize;
        loop {
            if pending.is_empty() {
                // Ingest waits while the library and the engine change model
                // together, so no document is written with the old model's
                // vectors into the new table.
                let gate = self.switch_gate.write().await;
                if self.library.finish_switch().await? {
                    self.embedder.replace(embedder.clone());
                    self.chunker.replace(chunker.clone());
                    *self.embedder_id.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(name.clone());
                    break;
                }
                drop(gate);
                pending = self.library.switch_pending().await?;
                continue;
            }
            let total_now = self.library.documents().await.len();
            let mut left = pending.len();
            for group in pending.chunks(DOCUMENTS_PER_WRITE) {
                if cancel.load(Ordering::Relaxed) {
                    return Err(EngineError::Cancelled);
                }
                let mut chunks = self.library.chunks_of(group).await?;
                let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
                let e = embedder.clone();
                let vectors = tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    e.embed_passages(&refs)
                })
                .await
                .map_err(EngineError::join)??;
                if vectors.len() != chunks.len() {
                    return Err(EngineError::Internal(format!(
                        "{} vectors for {} passages",
                        vectors.len(),
                        chunks.len()
                    )));
                }
                chunks_embedded += chunks.len();
                for (c, v) in chunks.iter_mut().zip(vectors) {
                    c.vector = v;
                }
                self.library.put_switch_vectors(group, chunks).await?;
                left -= group.len();
                progress(ReembedEvent::Progress {
                    documents_done: total_now.saturating_sub(left),
                    documents: total_now,
                    chunks_embedded,
                });
            }
            pending = self.library.switch_pending().await?;
        }
        progress(ReembedEvent::Finished {
            embedder: name.clone(),
            dim,
        });
        Ok(ReembedReport {
            embedder: name,
            dim,
            documents: self.library.documents().await.len(),
            chunks_embedded,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Gives up an embedding model switch in progress; the library keeps
    /// its current model. Returns whether a switch was in progress.
    pub async fn cancel_embedder_switch(&self) -> Result<bool, EngineError> {
        Ok(self.library.cancel_switch().await?)
    }

    /// Loads the embedder in `dir` (with its catalog settings) and a
    /// chunker on its tokenizer, on a blocking thread.
    async fn load_embedder(
        &self,
        dir: &Path,
    ) -> Result<(Arc<Embedder>, Arc<Chunker>), EngineError> {
        let cfg = config::embedder_config_for(dir)?;
        let chunk_cfg = self.config.chunking.clone();
        let device = self.device;
        tokio::task::spawn_blocking(move || {
            let candle_dev = lectern_models::candle_device(&device)?;
            let tok_path = cfg.dir.join("tokenizer.json");
            let embedder = Embedder::load(cfg, &candle_dev)?;
            let chunker = Chunker::from_tokenizer_file(&tok_path, chunk_cfg)?;
            Ok::<_, EngineError>((Arc::new(embedder), Arc::new(chunker)))
        })
        .await
        .map_err(EngineError::join)?
    }
}
