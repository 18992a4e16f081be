//! Lectern's library index: BM25 over tantivy, dense vectors in LanceDB,
//! and the fusion of both.
//!
//! One [`Library`] lives in one folder on disk:
//!
//! ```text
//! <dir>/manifest.json   documents that are fully indexed (the source of truth)
//! <dir>/tantivy/        BM25 index, one tantivy document per chunk
//! <dir>/lance/          LanceDB database with the `chunks` table (vectors)
//! ```
//!
//! Both stores hold every chunk with the fields a citation needs, so either
//! leg of a search returns complete hits without a second lookup.
//!
//! The commit protocol keeps the two stores in step: a document's chunks are
//! written to LanceDB, then to tantivy (committed), and only then is the
//! document recorded in the manifest, which is replaced atomically. Search
//! ignores chunks whose document is not in the manifest, and opening a
//! library removes such leftovers from both stores. A crash at any point
//! therefore leaves a document either fully searchable or absent.

mod error;
mod fusion;
mod manifest;
mod text;
mod types;
mod vectors;

pub use error::IndexError;
pub use fusion::{reciprocal_rank_fusion, RRF_K};
pub use manifest::{DocumentEntry, Manifest};
pub use types::{ChunkRecord, LegHit, SearchHit, SearchMode};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};

/// How many candidates each leg contributes to hybrid fusion.
pub const FUSION_DEPTH: usize = 100;

/// The on-disk library: manifest, tantivy and LanceDB together.
pub struct Library {
    dir: PathBuf,
    manifest: RwLock<Manifest>,
    text: Arc<text::TextIndex>,
    vectors: vectors::VectorStore,
    write_lock: Mutex<()>,
    /// Documents whose write began in this process but has not finished.
    dirty: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("dir", &self.dir).finish()
    }
}

/// Counts of what each store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LibraryCounts {
    /// Documents in the manifest.
    pub documents: usize,
    /// Chunks the manifest says exist.
    pub manifest_chunks: usize,
    /// Rows in the LanceDB table.
    pub vector_rows: usize,
    /// Documents in the tantivy index.
    pub text_docs: usize,
}

impl Library {
    /// Opens (or creates) the library in `dir` for vectors of `dim`
    /// dimensions, and removes chunks of documents that never finished
    /// indexing.
    pub async fn open(dir: &Path, dim: usize) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let manifest = Manifest::load(&dir.join("manifest.json"))?;
        if let Some(existing) = manifest.dim {
            if existing != dim {
                return Err(IndexError::DimensionMismatch {
                    library: existing,
                    model: dim,
                });
            }
        }
        let text_dir = dir.join("tantivy");
        let text = Arc::new(
            tokio::task::spawn_blocking(move || text::TextIndex::open(&text_dir))
                .await
                .map_err(IndexError::join)??,
        );
        let vectors = vectors::VectorStore::open(&dir.join("lance"), dim).await?;
        let lib = Self {
            dir: dir.to_path_buf(),
            manifest: RwLock::new(manifest),
            text,
            vectors,
            write_lock: Mutex::new(()),
            dirty: Mutex::new(HashSet::new()),
        };
        lib.recover().await?;
        Ok(lib)
    }

    /// The library folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn recover(&self) -> Result<(), IndexError> {
        let known: HashSet<String> = self
            .manifest
            .read()
            .await
            .documents
            .keys()
            .cloned()
            .collect();
        let text = self.text.clone();
        let text_docs = tokio::task::spawn_blocking(move || text.doc_ids())
            .await
            .map_err(IndexError::join)??;
        let vector_docs = self.vectors.doc_ids().await?;
        let orphans: HashSet<String> = text_docs
            .into_iter()
            .chain(vector_docs)
            .filter(|d| !known.contains(d))
            .collect();
        for doc in orphans {
            tracing::warn!(doc_id = %doc, "removing chunks of a document that did not finish indexing");
            self.remove_chunks(&doc).await?;
        }
        Ok(())
    }

    async fn remove_chunks(&self, doc_id: &str) -> Result<(), IndexError> {
        let ids = vec![doc_id.to_string()];
        self.vectors.delete_documents(&ids).await?;
        let text = self.text.clone();
        tokio::task::spawn_blocking(move || text.delete_documents(&ids))
            .await
            .map_err(IndexError::join)??;
        Ok(())
    }

    /// The manifest entry of a document, if it is fully indexed.
    pub async fn document(&self, doc_id: &str) -> Option<DocumentEntry> {
        self.manifest.read().await.documents.get(doc_id).cloned()
    }

    /// All fully indexed documents.
    pub async fn documents(&self) -> Vec<DocumentEntry> {
        let mut docs: Vec<DocumentEntry> = self
            .manifest
            .read()
            .await
            .documents
            .values()
            .cloned()
            .collect();
        docs.sort_by(|a, b| a.path.cmp(&b.path));
        docs
    }

    /// Replaces a document's chunks with `chunks` and records it as indexed.
    pub async fn put_document(
        &self,
        entry: DocumentEntry,
        chunks: Vec<ChunkRecord>,
    ) -> Result<(), IndexError> {
        self.put_documents(vec![(entry, chunks)]).await
    }

    /// Replaces the chunks of several documents at once: one LanceDB write,
    /// one tantivy commit and one manifest write for the whole batch.
    pub async fn put_documents(
        &self,
        batch: Vec<(DocumentEntry, Vec<ChunkRecord>)>,
    ) -> Result<(), IndexError> {
        for (entry, chunks) in &batch {
            for c in chunks {
                if c.doc_id != entry.doc_id {
                    return Err(IndexError::InvalidInput(format!(
                        "chunk {} belongs to {}, not {}",
                        c.chunk_id, c.doc_id, entry.doc_id
                    )));
                }
                if c.vector.len() != self.vectors.dim() {
                    return Err(IndexError::DimensionMismatch {
                        library: self.vectors.dim(),
                        model: c.vector.len(),
                    });
                }
            }
        }
        let _guard = self.write_lock.lock().await;
        let manifest_path = self.dir.join("manifest.json");
        // Out of the manifest first: from here until the final manifest write
        // these documents are invisible to search and removed on recovery.
        let mut stale: Vec<String> = Vec::new();
        {
            let mut m = self.manifest.write().await;
            let mut dirty = self.dirty.lock().await;
            for (entry, _) in &batch {
                let known = m.documents.remove(&entry.doc_id).is_some();
                if known || dirty.contains(&entry.doc_id) {
                    stale.push(entry.doc_id.clone());
                }
                dirty.insert(entry.doc_id.clone());
            }
            if !stale.is_empty() {
                m.save(&manifest_path)?;
            }
        }
        if !stale.is_empty() {
            self.vectors.delete_documents(&stale).await?;
            let text = self.text.clone();
            tokio::task::spawn_blocking(move || text.delete_documents(&stale))
                .await
                .map_err(IndexError::join)??;
        }
        let (entries, chunks): (Vec<DocumentEntry>, Vec<Vec<ChunkRecord>>) =
            batch.into_iter().unzip();
        let chunks: Vec<ChunkRecord> = chunks.into_iter().flatten().collect();
        let chunks = Arc::new(chunks);
        self.vectors.add(&chunks).await?;
        let text = self.text.clone();
        let c = chunks.clone();
        tokio::task::spawn_blocking(move || text.add_chunks(&c))
            .await
            .map_err(IndexError::join)??;
        let mut m = self.manifest.write().await;
        m.dim = Some(self.vectors.dim());
        let mut dirty = self.dirty.lock().await;
        for entry in entries {
            dirty.remove(&entry.doc_id);
            m.documents.insert(entry.doc_id.clone(), entry);
        }
        m.save(&manifest_path)?;
        Ok(())
    }

    /// Removes a document from the library.
    pub async fn delete_document(&self, doc_id: &str) -> Result<bool, IndexError> {
        let _guard = self.write_lock.lock().await;
        let existed = {
            let mut m = self.manifest.write().await;
            let existed = m.documents.remove(doc_id).is_some();
            if existed {
                m.save(&self.dir.join("manifest.json"))?;
            }
            existed
        };
        self.remove_chunks(doc_id).await?;
        Ok(existed)
    }

    /// Counts per store; after a clean open they agree.
    pub async fn counts(&self) -> Result<LibraryCounts, IndexError> {
        let (documents, manifest_chunks) = {
            let m = self.manifest.read().await;
            (
                m.documents.len(),
                m.documents.values().map(|d| d.chunks as usize).sum(),
            )
        };
        let text = self.text.clone();
        let text_docs = tokio::task::spawn_blocking(move || text.num_docs())
            .await
            .map_err(IndexError::join)??;
        Ok(LibraryCounts {
            documents,
            manifest_chunks,
            vector_rows: self.vectors.count().await?,
            text_docs,
        })
    }

    /// BM25 leg: best `k` chunks for `query`.
    pub async fn search_bm25(&self, query: &str, k: usize) -> Result<Vec<LegHit>, IndexError> {
        let text = self.text.clone();
        let q = query.to_string();
        // Over-fetch a little so hits of unfinished documents can be dropped.
        let hits = tokio::task::spawn_blocking(move || text.search(&q, k + 16))
            .await
            .map_err(IndexError::join)??;
        Ok(self.visible(hits, k).await)
    }

    /// Dense leg: the `k` chunks nearest to `vector` (cosine).
    pub async fn search_dense(&self, vector: &[f32], k: usize) -> Result<Vec<LegHit>, IndexError> {
        let hits = self.vectors.search(vector, k + 16).await?;
        Ok(self.visible(hits, k).await)
    }

    async fn visible(&self, hits: Vec<LegHit>, k: usize) -> Vec<LegHit> {
        let m = self.manifest.read().await;
        hits.into_iter()
            .filter(|h| m.documents.contains_key(&h.chunk.doc_id))
            .take(k)
            .collect()
    }

    /// Searches with `mode`; `vector` is the query embedding (needed for
    /// dense and hybrid). Hybrid runs both legs concurrently and fuses them
    /// with reciprocal rank fusion.
    pub async fn search(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        mode: SearchMode,
        k: usize,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let need_vector = || {
            vector
                .ok_or_else(|| IndexError::InvalidInput("dense search needs a query vector".into()))
        };
        match mode {
            SearchMode::Bm25 => Ok(self
                .search_bm25(query, k)
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, h)| SearchHit::from_leg(h, i, SearchMode::Bm25))
                .collect()),
            SearchMode::Dense => Ok(self
                .search_dense(need_vector()?, k)
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, h)| SearchHit::from_leg(h, i, SearchMode::Dense))
                .collect()),
            SearchMode::Hybrid => {
                let v = need_vector()?;
                let depth = k.max(FUSION_DEPTH);
                let (bm25, dense) =
                    tokio::try_join!(self.search_bm25(query, depth), self.search_dense(v, depth))?;
                Ok(reciprocal_rank_fusion(bm25, dense, RRF_K, k))
            }
        }
    }
}
