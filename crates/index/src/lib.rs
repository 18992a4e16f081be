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
mod filter;
mod fusion;
mod manifest;
mod switch;
mod text;
mod types;
mod vectors;

pub use error::IndexError;
pub use filter::DocFilter;
pub use fusion::{
    fuse, normalized_fusion, reciprocal_rank_fusion, Fusion, DEFAULT_DENSE_WEIGHT, RRF_K,
};
pub use manifest::{DocumentEntry, EmbedderSwitch, Manifest, LIBRARY_FORMAT};
pub use switch::SwitchProgress;
pub use types::{ChunkRecord, LegHit, SearchHit, SearchMode};
use vectors::IdHit;
pub use vectors::{AnnPolicy, VectorIndexState};

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// The vector table search uses; replaced when an embedder switch
    /// finishes.
    vectors: std::sync::RwLock<Arc<vectors::VectorStore>>,
    /// The table an embedder switch in progress writes to.
    shadow: Mutex<Option<Arc<vectors::VectorStore>>>,
    write_lock: Mutex<()>,
    /// Documents whose write began in this process but has not finished.
    dirty: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("dir", &self.dir).finish()
    }
}

/// The outcome of [`Library::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Consistency {
    /// Documents in the manifest.
    pub documents: usize,
    /// Chunks the manifest lists.
    pub chunks: usize,
    /// Rows in LanceDB.
    pub vector_rows: usize,
    /// Live chunks in tantivy.
    pub text_rows: usize,
    /// Documents with chunks in a store but not in the manifest (hidden
    /// from search, removed on the next open).
    pub unfinished: Vec<String>,
    /// Disagreements between the stores about finished documents.
    pub problems: Vec<String>,
}

impl Consistency {
    /// Whether every finished document has all its chunks in both stores.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
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
        Self::open_for(dir, dim, None).await
    }

    /// Like [`Library::open`], and also checks that the library's vectors
    /// come from the embedding model `embedder` (any name that identifies
    /// it), since vectors of two models must never mix.
    ///
    /// A library in an older on-disk format is rebuilt empty; the paths of
    /// its documents are kept in [`Library::pending_reindex`] until they are
    /// indexed again.
    pub async fn open_for(
        dir: &Path,
        dim: usize,
        embedder: Option<&str>,
    ) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let manifest_path = dir.join("manifest.json");
        let mut manifest = Manifest::load(&manifest_path)?;
        // The model's name first: it says what to do about a mismatch.
        if let (Some(have), Some(want)) = (manifest.embedder.as_deref(), embedder) {
            if have != want && !manifest.documents.is_empty() {
                return Err(IndexError::EmbedderMismatch {
                    library: have.to_string(),
                    model: want.to_string(),
                });
            }
        }
        if let Some(existing) = manifest.dim {
            if existing != dim {
                return Err(IndexError::DimensionMismatch {
                    library: existing,
                    model: dim,
                });
            }
        }
        let text_dir = dir.join("tantivy");
        let lance_dir = dir.join("lance");
        // The tantivy writer lock doubles as the library's process lock, so
        // take it before anything else is touched.
        let td = text_dir.clone();
        let text = tokio::task::spawn_blocking(move || text::TextIndex::open(&td))
            .await
            .map_err(IndexError::join)??;
        let text = Arc::new(text);
        let mut table_name = manifest
            .vector_table
            .clone()
            .unwrap_or_else(|| vectors::TABLE.to_string());
        let (outdated, store) =
            if manifest.version < LIBRARY_FORMAT && !manifest.documents.is_empty() {
                (Some(format!("format {}", manifest.version)), None)
            } else {
                match vectors::VectorStore::open_table(&lance_dir, &table_name, dim).await {
                    Err(IndexError::OutdatedLibrary(why)) => (Some(why), None),
                    Err(e) => return Err(e),
                    Ok(v) => (None, Some(v)),
                }
            };
        if let Some(why) = outdated {
            tracing::warn!(dir = %dir.display(), reason = %why, "rebuilding a library written in an older format");
            let mut pending: Vec<String> = manifest
                .documents
                .values()
                .map(|d| d.path.clone())
                .chain(manifest.pending_reindex.iter().cloned())
                .collect();
            pending.sort();
            pending.dedup();
            // Record what must be re-indexed before anything is removed.
            manifest = Manifest {
                version: LIBRARY_FORMAT,
                dim: Some(dim),
                embedder: embedder.map(str::to_string),
                vector_table: None,
                switch: None,
                pending_reindex: pending,
                documents: BTreeMap::new(),
            };
            table_name = vectors::TABLE.to_string();
            manifest.save(&manifest_path)?;
            let t = text.clone();
            tokio::task::spawn_blocking(move || t.clear())
                .await
                .map_err(IndexError::join)??;
            if lance_dir.exists() {
                std::fs::remove_dir_all(&lance_dir).map_err(|e| IndexError::io(&lance_dir, e))?;
            }
        }
        manifest.version = LIBRARY_FORMAT;
        let vectors = match store {
            Some(v) => v,
            None => vectors::VectorStore::open_table(&lance_dir, &table_name, dim).await?,
        };
        // Tables of a given-up switch, or the old table of a switch whose
        // last step was interrupted, hold nothing search may use.
        let mut keep = vec![table_name.as_str()];
        if let Some(sw) = &manifest.switch {
            keep.push(sw.table.as_str());
        }
        for name in vectors::drop_tables_except(&lance_dir, &keep).await? {
            tracing::info!(table = %name, "dropped a vector table no longer in use");
        }
        if manifest.embedder.is_none() && embedder.is_some() {
            manifest.embedder = embedder.map(str::to_string);
        }
        let lib = Self {
            dir: dir.to_path_buf(),
            manifest: RwLock::new(manifest),
            text,
            vectors: std::sync::RwLock::new(Arc::new(vectors)),
            shadow: Mutex::new(None),
            write_lock: Mutex::new(()),
            dirty: Mutex::new(HashSet::new()),
        };
        lib.recover().await?;
        Ok(lib)
    }

    /// Paths of documents from an older library format that still need to
    /// be indexed again.
    pub async fn pending_reindex(&self) -> Vec<PathBuf> {
        self.manifest
            .read()
            .await
            .pending_reindex
            .iter()
            .map(PathBuf::from)
            .collect()
    }

    /// The library folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The vector table search uses now.
    fn vectors(&self) -> Arc<vectors::VectorStore> {
        self.vectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ids of the documents the manifest lists.
    pub(crate) async fn manifest_doc_ids(&self) -> HashSet<String> {
        self.manifest
            .read()
            .await
            .documents
            .keys()
            .cloned()
            .collect()
    }

    async fn recover(&self) -> Result<(), IndexError> {
        let known = self.manifest_doc_ids().await;
        let text = self.text.clone();
        let text_docs = tokio::task::spawn_blocking(move || text.doc_ids())
            .await
            .map_err(IndexError::join)??;
        let vector_docs = self.vectors().doc_ids().await?;
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
        self.vectors().delete_documents(&ids).await?;
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

    /// Whether no document is fully indexed (read from the manifest alone).
    pub async fn is_empty(&self) -> bool {
        self.manifest.read().await.documents.is_empty()
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
            }
        }
        let _guard = self.write_lock.lock().await;
        // Checked under the write lock: an embedder switch may have replaced
        // the vector table since the vectors were computed.
        let dim = self.vectors().dim();
        if let Some(c) = batch
            .iter()
            .flat_map(|(_, chunks)| chunks)
            .find(|c| c.vector.len() != dim)
        {
            return Err(IndexError::DimensionMismatch {
                library: dim,
                model: c.vector.len(),
            });
        }
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
            self.vectors().delete_documents(&stale).await?;
            let text = self.text.clone();
            tokio::task::spawn_blocking(move || text.delete_documents(&stale))
                .await
                .map_err(IndexError::join)??;
        }
        let (entries, chunks): (Vec<DocumentEntry>, Vec<Vec<ChunkRecord>>) =
            batch.into_iter().unzip();
        let chunks: Vec<ChunkRecord> = chunks.into_iter().flatten().collect();
        let chunks = Arc::new(chunks);
        self.vectors().add(&chunks).await?;
        self.vectors().schedule_maintenance();
        let text = self.text.clone();
        let c = chunks.clone();
        tokio::task::spawn_blocking(move || text.add_chunks(&c))
            .await
            .map_err(IndexError::join)??;
        let mut m = self.manifest.write().await;
        m.dim = Some(self.vectors().dim());
        let mut dirty = self.dirty.lock().await;
        for entry in entries {
            dirty.remove(&entry.doc_id);
            m.pending_reindex.retain(|p| p != &entry.path);
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

    /// Forgets paths that were waiting to be re-indexed (for example files
    /// that no longer exist).
    pub async fn drop_pending(&self, paths: &[PathBuf]) -> Result<(), IndexError> {
        let _guard = self.write_lock.lock().await;
        let mut m = self.manifest.write().await;
        let before = m.pending_reindex.len();
        m.pending_reindex
            .retain(|p| !paths.iter().any(|q| q.as_os_str() == p.as_str()));
        if m.pending_reindex.len() != before {
            m.save(&self.dir.join("manifest.json"))?;
        }
        Ok(())
    }

    /// Stored embeddings of chunk texts with these [`ChunkRecord::chunk_hash`]es,
    /// from any document, so unchanged passages need not be embedded again.
    pub async fn vectors_by_hash(
        &self,
        hashes: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, IndexError> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        self.vectors().vectors_by_hash(hashes).await
    }

    /// Rewrites both stores without deleted chunks and removes old versions
    /// and unused files, so the text of deleted documents leaves the disk.
    pub async fn compact(&self) -> Result<(), IndexError> {
        let _guard = self.write_lock.lock().await;
        self.vectors().compact().await?;
        let text = self.text.clone();
        tokio::task::spawn_blocking(move || text.compact())
            .await
            .map_err(IndexError::join)??;
        Ok(())
    }

    /// Checks that the manifest, LanceDB and tantivy agree, document by
    /// document. Chunks of unfinished documents (which search hides and the
    /// next open removes) are reported as such, not as problems.
    pub async fn verify(&self) -> Result<Consistency, IndexError> {
        let _guard = self.write_lock.lock().await;
        let manifest: BTreeMap<String, usize> = self
            .manifest
            .read()
            .await
            .documents
            .iter()
            .map(|(id, d)| (id.clone(), d.chunks as usize))
            .collect();
        let vector_rows = self.vectors().rows_per_doc().await?;
        let text = self.text.clone();
        let text_rows = tokio::task::spawn_blocking(move || text.chunks_per_doc())
            .await
            .map_err(IndexError::join)??;
        let mut problems = Vec::new();
        for (id, &want) in &manifest {
            let v = vector_rows.get(id).copied().unwrap_or(0);
            let t = text_rows.get(id).copied().unwrap_or(0);
            if v != want || t != want {
                problems.push(format!(
                    "document {id}: manifest says {want} chunks, LanceDB has {v}, tantivy has {t}"
                ));
            }
        }
        let mut unfinished: Vec<String> = vector_rows
            .keys()
            .chain(text_rows.keys())
            .filter(|id| !manifest.contains_key(*id))
            .cloned()
            .collect();
        unfinished.sort();
        unfinished.dedup();
        Ok(Consistency {
            documents: manifest.len(),
            chunks: manifest.values().sum(),
            vector_rows: vector_rows.values().sum(),
            text_rows: text_rows.values().sum(),
            unfinished,
            problems,
        })
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
            vector_rows: self.vectors().count().await?,
            text_docs,
        })
    }

    /// BM25 leg: best `k` chunks for `query`.
    pub async fn search_bm25(&self, query: &str, k: usize) -> Result<Vec<LegHit>, IndexError> {
        self.search_bm25_filtered(query, k, None).await
    }

    /// Like [`Library::search_bm25`], among the documents `filter` allows
    /// (all when `None`): the best `k` of their chunks, however they rank in
    /// the whole library.
    pub async fn search_bm25_filtered(
        &self,
        query: &str,
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<LegHit>, IndexError> {
        if filter.is_some_and(DocFilter::is_empty) {
            return Ok(Vec::new());
        }
        let text = self.text.clone();
        let q = query.to_string();
        let f = filter.cloned();
        // Over-fetch a little so hits of unfinished documents can be dropped.
        let hits = tokio::task::spawn_blocking(move || text.search(&q, k + 16, f.as_ref()))
            .await
            .map_err(IndexError::join)??;
        Ok(self.visible(hits, k).await)
    }

    /// Dense leg: the `k` chunks nearest to `vector` (cosine), through the
    /// approximate-nearest-neighbour index where the table has one.
    pub async fn search_dense(&self, vector: &[f32], k: usize) -> Result<Vec<LegHit>, IndexError> {
        self.search_dense_filtered(vector, k, None).await
    }

    /// Like [`Library::search_dense`], among the documents `filter` allows
    /// (all when `None`). LanceDB applies the filter before choosing the
    /// nearest rows, with or without the ANN index.
    pub async fn search_dense_filtered(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<LegHit>, IndexError> {
        self.dense(vector, k, false, filter).await
    }

    /// Like [`Library::search_dense`], but always exact: compares `vector`
    /// with every stored vector, ignoring any index (the reference for
    /// measuring the index's recall).
    pub async fn search_dense_exact(
        &self,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<LegHit>, IndexError> {
        self.dense(vector, k, true, None).await
    }

    /// Like [`Library::search_dense_exact`], among the documents `filter`
    /// allows (all when `None`).
    pub async fn search_dense_exact_filtered(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<LegHit>, IndexError> {
        self.dense(vector, k, true, filter).await
    }

    async fn dense(
        &self,
        vector: &[f32],
        k: usize,
        exact: bool,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<LegHit>, IndexError> {
        let store = self.vectors();
        if allows_nothing(&store, vector, filter)? {
            return Ok(Vec::new());
        }
        let predicate = filter.map(DocFilter::sql_predicate);
        let hits = store
            .search(vector, k + 16, k, exact, predicate.as_deref())
            .await?;
        Ok(self.visible(hits, k).await)
    }

    /// The policy for the dense leg's approximate-nearest-neighbour index.
    pub fn ann_policy(&self) -> AnnPolicy {
        self.vectors().policy()
    }

    /// Changes when the ANN index is built and how it is searched; takes
    /// effect with the next search and the next write.
    pub fn set_ann_policy(&self, policy: AnnPolicy) {
        self.vectors().set_policy(policy);
    }

    /// How much of the vector table the ANN index covers.
    pub async fn vector_index(&self) -> Result<VectorIndexState, IndexError> {
        self.vectors().index_state().await
    }

    /// Builds, extends or retrains the ANN index now as the policy asks
    /// (waiting for a background run first) and returns the new state. The
    /// work runs on a thread of its own; searches keep working meanwhile.
    pub async fn build_vector_index(&self) -> Result<VectorIndexState, IndexError> {
        self.vectors().maintain_index().await
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
    /// with [`Fusion::default`] (score-normalised).
    pub async fn search(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        mode: SearchMode,
        k: usize,
    ) -> Result<Vec<SearchHit>, IndexError> {
        self.search_fused(query, vector, mode, k, Fusion::default())
            .await
    }

    /// Like [`Library::search`], fusing hybrid results with `fusion`.
    pub async fn search_fused(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        mode: SearchMode,
        k: usize,
        fusion: Fusion,
    ) -> Result<Vec<SearchHit>, IndexError> {
        self.search_fused_filtered(query, vector, mode, k, fusion, None)
            .await
    }

    /// Like [`Library::search_fused`], among the documents `filter` allows
    /// (all when `None`). Both legs apply the filter before ranking, so
    /// fusion sees each leg's best chunks of those documents.
    pub async fn search_fused_filtered(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        mode: SearchMode,
        k: usize,
        fusion: Fusion,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let need_vector = || {
            vector
                .ok_or_else(|| IndexError::InvalidInput("dense search needs a query vector".into()))
        };
        match mode {
            SearchMode::Bm25 => Ok(self
                .search_bm25_filtered(query, k, filter)
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, h)| SearchHit::from_leg(h, i, SearchMode::Bm25))
                .collect()),
            SearchMode::Dense => Ok(self
                .search_dense_filtered(need_vector()?, k, filter)
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, h)| SearchHit::from_leg(h, i, SearchMode::Dense))
                .collect()),
            SearchMode::Hybrid => {
                let v = need_vector()?;
                let depth = k.max(FUSION_DEPTH);
                // The dense leg reads only ids and distances; the records of
                // the dense hits fusion keeps are read afterwards (BM25 hits
                // carry theirs from the text index).
                let (bm25, dense) = tokio::try_join!(
                    self.search_bm25_filtered(query, depth, filter),
                    self.dense_ids(v, depth, filter)
                )?;
                let legs = dense
                    .iter()
                    .map(|h| LegHit {
                        chunk: ChunkRecord::ids_only(&h.chunk_id, &h.doc_id),
                        score: h.distance,
                    })
                    .collect();
                let mut fused = fuse(bm25, legs, fusion, k);
                let by_id: HashMap<&str, &IdHit> =
                    dense.iter().map(|h| (h.chunk_id.as_str(), h)).collect();
                let unread: Vec<&IdHit> = fused
                    .iter()
                    .filter(|h| h.bm25_rank.is_none())
                    .filter_map(|h| by_id.get(h.chunk.chunk_id.as_str()).copied())
                    .collect();
                let mut records = self.vectors().records_at(&unread).await?;
                // A chunk deleted since the search has no record: drop it.
                fused.retain_mut(|h| {
                    h.bm25_rank.is_some()
                        || records.remove(&h.chunk.chunk_id).is_some_and(|r| {
                            h.chunk = r;
                            true
                        })
                });
                Ok(fused)
            }
        }
    }

    /// The dense leg as ids and distances (see [`Library::search_dense_filtered`]).
    async fn dense_ids(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&DocFilter>,
    ) -> Result<Vec<IdHit>, IndexError> {
        let store = self.vectors();
        if allows_nothing(&store, vector, filter)? {
            return Ok(Vec::new());
        }
        let predicate = filter.map(DocFilter::sql_predicate);
        let hits = store
            .search_ids(vector, k + 16, k, predicate.as_deref())
            .await?;
        let m = self.manifest.read().await;
        Ok(hits
            .into_iter()
            .filter(|h| m.documents.contains_key(&h.doc_id))
            .take(k)
            .collect())
    }
}

/// Whether `filter` allows no document at all, so a dense search has
/// nothing to find; a query vector of the wrong size is refused either way.
fn allows_nothing(
    store: &vectors::VectorStore,
    vector: &[f32],
    filter: Option<&DocFilter>,
) -> Result<bool, IndexError> {
    if !filter.is_some_and(DocFilter::is_empty) {
        return Ok(false);
    }
    if vector.len() != store.dim() {
        return Err(IndexError::DimensionMismatch {
            library: store.dim(),
            model: vector.len(),
        });
    }
    Ok(true)
}
