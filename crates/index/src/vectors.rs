//! The dense leg: chunks and their vectors in a LanceDB table.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use lancedb::arrow::arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use lancedb::arrow::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lancedb::index::vector::IvfPqIndexBuilder;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::optimize::Duration;
use lancedb::table::{CompactionOptions, OptimizeAction, OptimizeOptions};
use lancedb::{Connection, DistanceType, Table};

use crate::{ChunkRecord, IndexError, LegHit};

/// The vector table of a library that never switched embedding model.
pub(crate) const TABLE: &str = "chunks";

/// Name of the approximate-nearest-neighbour index on the `vector` column.
const ANN_INDEX: &str = "vector_idx";

/// When the dense leg uses an approximate-nearest-neighbour (IVF-PQ) index
/// instead of exact search, and how that index is searched.
///
/// Below [`AnnPolicy::min_rows`] rows the dense leg compares the query with
/// every stored vector (exact, and fast enough at that size). From there on
/// an IVF-PQ index is trained in the background; queries probe
/// [`AnnPolicy::nprobes`] partitions and re-rank `refine_factor` times the
/// requested candidates by their exact distance, so recall stays high. Rows
/// added after training are still searched exactly until they are folded
/// into the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnPolicy {
    /// Rows from which an index is built.
    pub min_rows: usize,
    /// Rows not yet in the index, as a share of indexed rows, from which
    /// they are added to the existing index (no retraining).
    pub append_ratio: f64,
    /// Rows not yet in the index, as a share of indexed rows, from which the
    /// index is trained again on all rows (its partitions no longer fit the
    /// data once the table has grown this much).
    pub retrain_ratio: f64,
    /// IVF partitions probed per query.
    pub nprobes: usize,
    /// Candidates fetched per row asked of the index and re-ranked by exact
    /// distance.
    pub refine_factor: u32,
    /// Most candidates re-ranked by exact distance in one query. A deep
    /// request (hybrid fusion asks each leg for 100 hits) uses a smaller
    /// factor so that it costs no more than this many exact distances; a
    /// top-10 request keeps the whole `refine_factor`. See
    /// [`AnnPolicy::refine_for`].
    pub refine_budget: usize,
    /// Whether writes start index maintenance in the background. When off,
    /// only [`crate::Library::build_vector_index`] maintains the index.
    pub background: bool,
}

impl Default for AnnPolicy {
    fn default() -> Self {
        Self {
            // Exact search over 50,000 384-d vectors takes ~45 ms on a
            // two-core laptop: beyond that the dense leg alone would spend
            // the whole latency budget of a hybrid query.
            min_rows: 50_000,
            append_ratio: 0.05,
            retrain_ratio: 1.0,
            nprobes: 24,
            refine_factor: 8,
            // A fusion leg (100 hits) then re-ranks only its own candidates
            // (factor 1), a top 10 keeps the whole factor. At 1M chunks
            // (`lectern bench search`) the hybrid query is 20 ms faster than
            // with a factor of 8 for both, and a top 10 re-ranked by a
            // factor below 8 loses recall (0.79 at 2, 0.88 at 3).
            refine_budget: 100,
            background: true,
        }
    }
}

impl AnnPolicy {
    /// The refine factor for a request that keeps `k` hits:
    /// `refine_factor`, lowered so that `k × factor` stays within
    /// `refine_budget`, and at least 1. It applies to every row asked of
    /// the index, slack included.
    pub fn refine_for(&self, k: usize) -> u32 {
        let by_budget = u32::try_from(self.refine_budget / k.max(1)).unwrap_or(u32::MAX);
        self.refine_factor.min(by_budget).max(1)
    }
}

/// The state of the dense leg's approximate-nearest-neighbour index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VectorIndexState {
    /// Rows in the table.
    pub rows: usize,
    /// Rows covered by the index (0 when there is none).
    pub indexed_rows: usize,
    /// Rows searched exactly because the index does not cover them yet.
    pub unindexed_rows: usize,
    /// Whether an index exists.
    pub has_index: bool,
}

/// What index maintenance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Maintenance {
    Nothing,
    Trained,
    Appended,
}

pub(crate) struct VectorStore {
    name: String,
    table: Table,
    schema: SchemaRef,
    dim: usize,
    policy: Arc<RwLock<AnnPolicy>>,
    /// Held while the index is being built or extended.
    maintaining: Arc<tokio::sync::Mutex<()>>,
    /// Set when a background maintenance run is queued or running.
    scheduled: Arc<AtomicBool>,
    _conn: Connection,
}

fn schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("chunk_id", DataType::Utf8, false),
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("page", DataType::UInt32, true),
        Field::new("heading_path", DataType::Utf8, false),
        Field::new("ordinal", DataType::UInt32, false),
        Field::new("char_start", DataType::UInt64, false),
        Field::new("char_end", DataType::UInt64, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("chunk_hash", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("ocr", DataType::Boolean, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                dim as i32,
            ),
            false,
        ),
    ]))
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, IndexError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| IndexError::Vectors(format!("column `{name}` missing or mistyped")))
}

/// The columns that make a [`ChunkRecord`] without its vector.
const RECORD_COLUMNS: [&str; 14] = [
    "chunk_id",
    "doc_id",
    "path",
    "title",
    "page",
    "heading_path",
    "ordinal",
    "char_start",
    "char_end",
    "text",
    "chunk_hash",
    "format",
    "location",
    "ocr",
];

/// Reads the [`RECORD_COLUMNS`] of every row of `b` (vectors left empty).
fn records(b: &RecordBatch) -> Result<Vec<ChunkRecord>, IndexError> {
    let chunk_id = col::<StringArray>(b, "chunk_id")?;
    let doc_id = col::<StringArray>(b, "doc_id")?;
    let path = col::<StringArray>(b, "path")?;
    let title = col::<StringArray>(b, "title")?;
    let page = col::<UInt32Array>(b, "page")?;
    let heading = col::<StringArray>(b, "heading_path")?;
    let ordinal = col::<UInt32Array>(b, "ordinal")?;
    let cs = col::<UInt64Array>(b, "char_start")?;
    let ce = col::<UInt64Array>(b, "char_end")?;
    let text = col::<StringArray>(b, "text")?;
    let chunk_hash = col::<StringArray>(b, "chunk_hash")?;
    let format = col::<StringArray>(b, "format")?;
    let location = col::<StringArray>(b, "location")?;
    let ocr = col::<BooleanArray>(b, "ocr")?;
    Ok((0..b.num_rows())
        .map(|i| ChunkRecord {
            chunk_id: chunk_id.value(i).to_string(),
            doc_id: doc_id.value(i).to_string(),
            path: path.value(i).to_string(),
            title: title.value(i).to_string(),
            page: (!page.is_null(i)).then(|| page.value(i)),
            heading_path: serde_json::from_str(heading.value(i)).unwrap_or_default(),
            ordinal: ordinal.value(i),
            char_start: cs.value(i),
            char_end: ce.value(i),
            text: text.value(i).to_string(),
            chunk_hash: chunk_hash.value(i).to_string(),
            format: format.value(i).to_string(),
            location: location.value(i).to_string(),
            ocr: ocr.value(i),
            vector: Vec::new(),
        })
        .collect())
}

/// Quotes a string as an SQL literal for LanceDB filters.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn connect(dir: &Path) -> Result<Connection, IndexError> {
    let uri = dir
        .to_str()
        .ok_or_else(|| IndexError::InvalidInput(format!("non UTF-8 path {}", dir.display())))?;
    Ok(lancedb::connect(uri).execute().await?)
}

/// Drops every table in the LanceDB database at `dir` whose name is not in
/// `keep` (left behind by an embedder switch that was given up or whose
/// last step was interrupted). Returns the names dropped.
pub(crate) async fn drop_tables_except(
    dir: &Path,
    keep: &[&str],
) -> Result<Vec<String>, IndexError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let conn = connect(dir).await?;
    let mut dropped = Vec::new();
    for name in conn.table_names().execute().await? {
        if !keep.contains(&name.as_str()) {
            conn.drop_table(&name, &[]).await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Drops the table `name` from the LanceDB database at `dir`, if it exists.
pub(crate) async fn drop_table(dir: &Path, name: &str) -> Result<(), IndexError> {
    if !dir.exists() {
        return Ok(());
    }
    let conn = connect(dir).await?;
    if conn
        .table_names()
        .execute()
        .await?
        .iter()
        .any(|n| n == name)
    {
        conn.drop_table(name, &[]).await?;
    }
    Ok(())
}

impl VectorStore {
    /// Opens (or creates) the table `name` for vectors of `dim` dimensions.
    pub(crate) async fn open_table(dir: &Path, name: &str, dim: usize) -> Result<Self, IndexError> {
        let conn = connect(dir).await?;
        let schema = schema(dim);
        let names = conn.table_names().execute().await?;
        let mut opened = None;
        if names.iter().any(|n| n == name) {
            match conn.open_table(name).execute().await {
                Ok(t) => opened = Some(t),
                Err(lancedb::Error::TableNotFound { .. }) => {
                    // Its folder exists but no version was ever committed: a
                    // creation cut short by a crash. Nothing in it was ever
                    // readable, so it is made again.
                    let path = dir.join(format!("{name}.lance"));
                    tracing::warn!(path = %path.display(), "replacing a vector table whose creation was interrupted");
                    std::fs::remove_dir_all(&path).map_err(|e| IndexError::io(&path, e))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let table = if let Some(t) = opened {
            let existing = t.schema().await?;
            let missing: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| existing.field_with_name(n).is_err())
                .collect();
            if !missing.is_empty() {
                return Err(IndexError::OutdatedLibrary(format!(
                    "the vector table lacks the columns {}",
                    missing.join(", ")
                )));
            }
            if let Ok(f) = existing.field_with_name("vector") {
                if let DataType::FixedSizeList(_, n) = f.data_type() {
                    if *n as usize != dim {
                        return Err(IndexError::DimensionMismatch {
                            library: *n as usize,
                            model: dim,
                        });
                    }
                }
            }
            t
        } else {
            conn.create_empty_table(name, schema.clone())
                .execute()
                .await?
        };
        Ok(Self {
            name: name.to_string(),
            table,
            schema,
            dim,
            policy: Arc::new(RwLock::new(AnnPolicy::default())),
            maintaining: Arc::new(tokio::sync::Mutex::new(())),
            scheduled: Arc::new(AtomicBool::new(false)),
            _conn: conn,
        })
    }

    pub(crate) fn policy(&self) -> AnnPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_policy(&self, policy: AnnPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Rows, indexed rows and whether an index exists.
    pub(crate) async fn index_state(&self) -> Result<VectorIndexState, IndexError> {
        index_state(&self.table).await
    }

    /// Builds, extends or retrains the index as the policy asks, now.
    /// Heavy work runs on a thread of its own, never on the caller's
    /// runtime workers.
    pub(crate) async fn maintain_index(&self) -> Result<VectorIndexState, IndexError> {
        let _running = self.maintaining.lock().await;
        let table = self.table.clone();
        let policy = self.policy();
        let dim = self.dim;
        run_off_runtime(move || async move { maintain(&table, dim, &policy).await }).await??;
        self.index_state().await
    }

    /// Starts index maintenance in the background if the policy allows it
    /// and none is queued or running. Failures are logged; the next write
    /// tries again.
    pub(crate) fn schedule_maintenance(&self) {
        let policy = self.policy();
        if !policy.background || self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let table = self.table.clone();
        let dim = self.dim;
        let lock = self.maintaining.clone();
        let scheduled = self.scheduled.clone();
        let spawned = std::thread::Builder::new()
            .name("lectern-ann-index".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the vector index maintenance runtime");
                        scheduled.store(false, Ordering::Release);
                        return;
                    }
                };
                rt.block_on(async {
                    let _running = lock.lock().await;
                    scheduled.store(false, Ordering::Release);
                    match maintain(&table, dim, &policy).await {
                        Ok(Maintenance::Nothing) => {}
                        Ok(done) => tracing::info!(action = ?done, "vector index updated"),
                        Err(e) => tracing::warn!(error = %e, "vector index maintenance failed"),
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start vector index maintenance");
            self.scheduled.store(false, Ordering::Release);
        }
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// The table's name in the LanceDB database.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The rows of these documents, without their vectors.
    pub(crate) async fn records_of(
        &self,
        doc_ids: &[String],
    ) -> Result<Vec<ChunkRecord>, IndexError> {
        let mut out = Vec::new();
        for group in doc_ids.chunks(512) {
            let list: Vec<String> = group.iter().map(|d| sql_str(d)).collect();
            let batches: Vec<RecordBatch> = self
                .table
                .query()
                .only_if(format!("doc_id IN ({})", list.join(", ")))
                .select(Select::Columns(
                    RECORD_COLUMNS.iter().map(|s| s.to_string()).collect(),
                ))
                .execute()
                .await?
                .try_collect()
                .await?;
            for b in &batches {
                out.extend(records(b)?);
            }
        }
        Ok(out)
    }

    /// Each document's chunks as `(chunk_id, chunk_hash)` pairs: two tables
    /// hold the same passages of a document exactly when these agree.
    pub(crate) async fn chunk_keys(
        &self,
    ) -> Result<HashMap<String, BTreeSet<(String, String)>>, IndexError> {
        let batches: Vec<RecordBatch> = self
            .table
            .query()
            .select(Select::Columns(vec![
                "doc_id".into(),
                "chunk_id".into(),
                "chunk_hash".into(),
            ]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut keys: HashMap<String, BTreeSet<(String, String)>> = HashMap::new();
        for b in &batches {
            let doc = col::<StringArray>(b, "doc_id")?;
            let chunk = col::<StringArray>(b, "chunk_id")?;
            let hash = col::<StringArray>(b, "chunk_hash")?;
            for i in 0..b.num_rows() {
                keys.entry(doc.value(i).to_string())
                    .or_default()
                    .insert((chunk.value(i).to_string(), hash.value(i).to_string()));
            }
        }
        Ok(keys)
    }

    pub(crate) async fn add(&self, chunks: &[ChunkRecord]) -> Result<(), IndexError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let s = |f: fn(&ChunkRecord) -> &str| -> Arc<dyn Array> {
            Arc::new(StringArray::from_iter_values(chunks.iter().map(f)))
        };
        let headings: Vec<String> = chunks
            .iter()
            .map(|c| serde_json::to_string(&c.heading_path).unwrap_or_else(|_| "[]".into()))
            .collect();
        let flat: Vec<f32> = chunks
            .iter()
            .flat_map(|c| c.vector.iter().copied())
            .collect();
        let vectors = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            self.dim as i32,
            Arc::new(Float32Array::from(flat)),
            None,
        )
        .map_err(|e| IndexError::Vectors(e.to_string()))?;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                s(|c| &c.chunk_id),
                s(|c| &c.doc_id),
                s(|c| &c.path),
                s(|c| &c.title),
                Arc::new(UInt32Array::from(
                    chunks.iter().map(|c| c.page).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from_iter_values(headings.iter())),
                Arc::new(UInt32Array::from_iter_values(
                    chunks.iter().map(|c| c.ordinal),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    chunks.iter().map(|c| c.char_start),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    chunks.iter().map(|c| c.char_end),
                )),
                s(|c| &c.text),
                s(|c| &c.chunk_hash),
                s(|c| &c.format),
                s(|c| &c.location),
                Arc::new(BooleanArray::from(
                    chunks.iter().map(|c| c.ocr).collect::<Vec<_>>(),
                )),
                Arc::new(vectors),
            ],
        )
        .map_err(|e| IndexError::Vectors(e.to_string()))?;
        self.table.add(batch).execute().await?;
        Ok(())
    }

    pub(crate) async fn delete_documents(&self, doc_ids: &[String]) -> Result<(), IndexError> {
        for group in doc_ids.chunks(512) {
            let list: Vec<String> = group.iter().map(|d| sql_str(d)).collect();
            let pred = format!("doc_id IN ({})", list.join(", "));
            self.table.delete(pred.as_str()).await?;
        }
        Ok(())
    }

    pub(crate) async fn count(&self) -> Result<usize, IndexError> {
        Ok(self.table.count_rows(None).await?)
    }

    pub(crate) async fn doc_ids(&self) -> Result<HashSet<String>, IndexError> {
        Ok(self.rows_per_doc().await?.into_keys().collect())
    }

    /// Stored embeddings for chunk texts with these hashes (any document).
    pub(crate) async fn vectors_by_hash(
        &self,
        hashes: &[String],
    ) -> Result<HashMap<String, Vec<f32>>, IndexError> {
        let mut found = HashMap::new();
        for group in hashes.chunks(512) {
            let list: Vec<String> = group.iter().map(|h| sql_str(h)).collect();
            let batches: Vec<RecordBatch> = self
                .table
                .query()
                .only_if(format!("chunk_hash IN ({})", list.join(", ")))
                .select(Select::Columns(vec!["chunk_hash".into(), "vector".into()]))
                .execute()
                .await?
                .try_collect()
                .await?;
            for b in &batches {
                let hash = col::<StringArray>(b, "chunk_hash")?;
                let vectors = col::<FixedSizeListArray>(b, "vector")?;
                for i in 0..b.num_rows() {
                    let v = vectors.value(i);
                    let v = v
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .ok_or_else(|| IndexError::Vectors("vector column mistyped".into()))?;
                    found
                        .entry(hash.value(i).to_string())
                        .or_insert_with(|| v.values().to_vec());
                }
            }
        }
        Ok(found)
    }

    /// Number of rows per document id.
    pub(crate) async fn rows_per_doc(&self) -> Result<HashMap<String, usize>, IndexError> {
        let batches: Vec<RecordBatch> = self
            .table
            .query()
            .select(Select::Columns(vec!["doc_id".into()]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut counts = HashMap::new();
        for b in &batches {
            let c = col::<StringArray>(b, "doc_id")?;
            for i in 0..c.len() {
                *counts.entry(c.value(i).to_string()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Rewrites data files without deleted rows and removes every older
    /// version, so deleted text leaves the disk. Only safe while no other
    /// process writes the table (the library holds the tantivy writer lock,
    /// which no second process can take).
    pub(crate) async fn compact(&self) -> Result<(), IndexError> {
        self.table
            .optimize(OptimizeAction::Compact {
                // Rewrite every fragment that has any deleted row: deleted
                // text must not stay on disk, however little of it there is.
                options: CompactionOptions {
                    materialize_deletions: true,
                    materialize_deletions_threshold: 0.0,
                    ..CompactionOptions::default()
                },
                remap_options: None,
            })
            .await?;
        self.table
            .optimize(OptimizeAction::Prune {
                older_than: Some(Duration::zero()),
                delete_unverified: Some(true),
                error_if_tagged_old_versions: Some(false),
            })
            .await?;
        Ok(())
    }

    /// The `k` rows nearest to `vector`, among the rows matching the SQL
    /// predicate `filter` when there is one. The filter is applied before
    /// the nearest neighbours are chosen (a prefilter), with or without the
    /// ANN index, so `k` rows come back whenever `k` rows match.
    ///
    /// `wanted` is how many of them the caller keeps (the rest is slack for
    /// rows it may drop); the exact re-ranking is sized for it, see
    /// [`AnnPolicy::refine_for`].
    pub(crate) async fn search(
        &self,
        vector: &[f32],
        k: usize,
        wanted: usize,
        exact: bool,
        filter: Option<&str>,
    ) -> Result<Vec<LegHit>, IndexError> {
        let Some(query) = self
            .nearest(vector, k, wanted, exact, filter, &RECORD_COLUMNS)
            .await?
        else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
        let mut hits = Vec::new();
        for b in &batches {
            let dist = col::<Float32Array>(b, "_distance")?;
            for (i, chunk) in records(b)?.into_iter().enumerate() {
                hits.push(LegHit {
                    chunk,
                    score: dist.value(i),
                });
            }
        }
        hits.sort_by(|a, b| a.score.total_cmp(&b.score));
        Ok(hits)
    }

    /// [`VectorStore::search`] reading only each row's ids and distance:
    /// what fusion needs to rank a candidate, without the text and the
    /// citation fields of rows fusion will drop. [`VectorStore::records_at`]
    /// reads the rest for the rows that are kept.
    pub(crate) async fn search_ids(
        &self,
        vector: &[f32],
        k: usize,
        wanted: usize,
        filter: Option<&str>,
    ) -> Result<Vec<IdHit>, IndexError> {
        let Some(query) = self
            .nearest(vector, k, wanted, false, filter, &["chunk_id", "doc_id"])
            .await?
        else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> = query.with_row_id().execute().await?.try_collect().await?;
        let mut hits = Vec::new();
        for b in &batches {
            let dist = col::<Float32Array>(b, "_distance")?;
            let row_id = col::<UInt64Array>(b, "_rowid")?;
            let chunk_id = col::<StringArray>(b, "chunk_id")?;
            let doc_id = col::<StringArray>(b, "doc_id")?;
            for i in 0..b.num_rows() {
                hits.push(IdHit {
                    chunk_id: chunk_id.value(i).to_owned(),
                    doc_id: doc_id.value(i).to_owned(),
                    row_id: row_id.value(i),
                    distance: dist.value(i),
                });
            }
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(hits)
    }

    /// The records of `hits` (from [`VectorStore::search_ids`]), by chunk id.
    /// Rows are read by row id; a row id that a write since the search has
    /// moved (compaction rewrites rows) no longer names its chunk, and such
    /// chunks are looked up by id instead. A chunk deleted meanwhile is
    /// missing from the result.
    pub(crate) async fn records_at(
        &self,
        hits: &[&IdHit],
    ) -> Result<HashMap<String, ChunkRecord>, IndexError> {
        let mut found = HashMap::new();
        if hits.is_empty() {
            return Ok(found);
        }
        let columns = || Select::Columns(RECORD_COLUMNS.iter().map(|s| s.to_string()).collect());
        let batches: Vec<RecordBatch> = self
            .table
            .take_row_ids(hits.iter().map(|h| h.row_id).collect())
            .select(columns())
            .with_row_id()
            .execute()
            .await?
            .try_collect()
            .await?;
        let wanted: HashMap<u64, &str> = hits
            .iter()
            .map(|h| (h.row_id, h.chunk_id.as_str()))
            .collect();
        for b in &batches {
            let row_id = col::<UInt64Array>(b, "_rowid")?;
            for (i, record) in records(b)?.into_iter().enumerate() {
                if wanted.get(&row_id.value(i)) == Some(&record.chunk_id.as_str()) {
                    found.insert(record.chunk_id.clone(), record);
                }
            }
        }
        let moved: Vec<String> = hits
            .iter()
            .filter(|h| !found.contains_key(&h.chunk_id))
            .map(|h| sql_str(&h.chunk_id))
            .collect();
        if !moved.is_empty() {
            let batches: Vec<RecordBatch> = self
                .table
                .query()
                .only_if(format!("chunk_id IN ({})", moved.join(", ")))
                .select(columns())
                .execute()
                .await?
                .try_collect()
                .await?;
            for b in &batches {
                for record in records(b)? {
                    found.insert(record.chunk_id.clone(), record);
                }
            }
        }
        Ok(found)
    }

    /// The nearest-neighbour query behind [`VectorStore::search`] and
    /// [`VectorStore::search_ids`], reading `columns`; `None` when the table
    /// is empty or `k` is 0.
    async fn nearest(
        &self,
        vector: &[f32],
        k: usize,
        wanted: usize,
        exact: bool,
        filter: Option<&str>,
        columns: &[&str],
    ) -> Result<Option<lancedb::query::VectorQuery>, IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                library: self.dim,
                model: vector.len(),
            });
        }
        if k == 0 || self.count().await? == 0 {
            return Ok(None);
        }
        let policy = self.policy();
        let query = self
            .table
            .vector_search(vector)?
            .column("vector")
            .distance_type(DistanceType::Cosine)
            .select(Select::Columns(
                columns.iter().map(|s| s.to_string()).collect(),
            ))
            .limit(k);
        let query = match filter {
            Some(predicate) => query.only_if(predicate),
            None => query,
        };
        // Without an index lance searches exactly and ignores the probe and
        // refine settings.
        Ok(Some(if exact {
            query.bypass_vector_index()
        } else {
            query
                .minimum_nprobes(policy.nprobes.max(1))?
                .refine_factor(policy.refine_for(wanted))
        }))
    }
}

/// A dense hit before its record is read (see [`VectorStore::search_ids`]).
#[derive(Debug, Clone)]
pub(crate) struct IdHit {
    pub(crate) chunk_id: String,
    pub(crate) doc_id: String,
    /// The row's id in the table as it was searched.
    pub(crate) row_id: u64,
    /// Cosine distance.
    pub(crate) distance: f32,
}

/// Runs `work` to completion on a thread of its own with its own runtime,
/// so CPU-heavy LanceDB work never occupies the caller's runtime workers.
async fn run_off_runtime<F, Fut, T>(work: F) -> Result<T, IndexError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("lectern-ann-index".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let out = rt.map(|rt| rt.block_on(work()));
            let _ = tx.send(out);
        })
        .map_err(|e| IndexError::Internal(format!("cannot start a thread: {e}")))?;
    rx.await
        .map_err(|_| IndexError::Internal("vector index maintenance thread died".into()))?
        .map_err(|e| IndexError::Internal(format!("cannot start a runtime: {e}")))
}

async fn index_state(table: &Table) -> Result<VectorIndexState, IndexError> {
    let rows = table.count_rows(None).await?;
    Ok(match table.index_stats(ANN_INDEX).await? {
        Some(s) => VectorIndexState {
            rows,
            indexed_rows: s.num_indexed_rows,
            unindexed_rows: s.num_unindexed_rows,
            has_index: true,
        },
        None => VectorIndexState {
            rows,
            indexed_rows: 0,
            unindexed_rows: rows,
            has_index: false,
        },
    })
}

/// Rounds of k-means when training the IVF partitions and PQ codebooks.
const KMEANS_ITERATIONS: u32 = 20;

/// IVF partitions for `rows` vectors: about √rows, so each partition holds
/// about as many vectors as there are partitions.
fn num_partitions(rows: usize) -> u32 {
    ((rows as f64).sqrt().round() as u32).clamp(1, 4096)
}

/// PQ sub-vectors: 8 dimensions each where the dimension allows.
fn num_sub_vectors(dim: usize) -> u32 {
    [8, 4, 2, 1]
        .into_iter()
        .find(|w| dim.is_multiple_of(*w))
        .map(|w| (dim / w) as u32)
        .unwrap_or(1)
}

/// Decides what the index needs and does it.
async fn maintain(
    table: &Table,
    dim: usize,
    policy: &AnnPolicy,
) -> Result<Maintenance, IndexError> {
    let state = index_state(table).await?;
    // PQ training needs at least 256 vectors.
    let min_rows = policy.min_rows.max(256);
    let train = if state.has_index {
        state.unindexed_rows as f64 > policy.retrain_ratio * state.indexed_rows as f64
    } else {
        state.rows >= min_rows
    };
    if train {
        let started = std::time::Instant::now();
        table
            .create_index(
                &["vector"],
                Index::IvfPq(
                    IvfPqIndexBuilder::default()
                        .distance_type(DistanceType::Cosine)
                        .num_partitions(num_partitions(state.rows))
                        .num_sub_vectors(num_sub_vectors(dim))
                        // k-means settles well before the default 50
                        // rounds; the refine step corrects the rest.
                        .max_iterations(KMEANS_ITERATIONS),
                ),
            )
            .name(ANN_INDEX.to_string())
            .replace(true)
            .execute()
            .await?;
        tracing::info!(
            rows = state.rows,
            seconds = started.elapsed().as_secs_f64(),
            "vector index trained"
        );
        return Ok(Maintenance::Trained);
    }
    if state.has_index
        && state.unindexed_rows > 0
        && state.unindexed_rows as f64 > policy.append_ratio * state.indexed_rows as f64
    {
        table
            .optimize(OptimizeAction::Index(OptimizeOptions::merge(1)))
            .await?;
        return Ok(Maintenance::Appended);
    }
    Ok(Maintenance::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_table_whose_creation_was_cut_short_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        // A table folder with no committed version: what a crash in the
        // middle of creating the table leaves.
        let store = VectorStore::open_table(dir.path(), TABLE, 8).await.unwrap();
        drop(store);
        let versions = dir.path().join(format!("{TABLE}.lance")).join("_versions");
        std::fs::remove_dir_all(&versions).unwrap();
        let store = VectorStore::open_table(dir.path(), TABLE, 8).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0);
        drop(store);
        // And a bare folder.
        let other = dir.path().join("other.lance");
        std::fs::create_dir_all(&other).unwrap();
        let store = VectorStore::open_table(dir.path(), "other", 8)
            .await
            .unwrap();
        assert_eq!(store.count().await.unwrap(), 0);
    }

    fn chunk(doc: usize, i: usize) -> ChunkRecord {
        let mut c = ChunkRecord::ids_only(&format!("doc{doc}:{i}"), &format!("doc{doc}"));
        c.text = format!("passage {i} of document {doc}");
        c.title = format!("Document {doc}");
        c.path = format!("/docs/{doc}.txt");
        c.ordinal = i as u32;
        c.chunk_hash = ChunkRecord::hash_text(&c.text);
        c.vector = (0..8)
            .map(|d| ((doc * 31 + i * 7 + d * 3) % 11) as f32 - 5.0)
            .collect();
        c
    }

    /// Records read after an id-only search are the searched chunks, also
    /// when compaction has rewritten the rows (and their row ids) between
    /// the search and the read; a chunk deleted meanwhile is missing.
    #[tokio::test]
    async fn records_follow_their_chunks_across_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = VectorStore::open_table(dir.path(), TABLE, 8).await.unwrap();
        let chunks: Vec<ChunkRecord> = (0..3)
            .flat_map(|doc| (0..5).map(move |i| chunk(doc, i)))
            .collect();
        // One write per document, so that each is a fragment of its own.
        for doc in chunks.chunks(5) {
            store.add(doc).await.unwrap();
        }
        let query: Vec<f32> = (0..8).map(|d| d as f32 - 3.5).collect();
        let hits = store.search_ids(&query, 15, 15, None).await.unwrap();
        assert_eq!(hits.len(), 15);
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        let check = |records: &HashMap<String, ChunkRecord>, docs: &[usize]| {
            for doc in docs {
                for i in 0..5 {
                    let want = chunk(*doc, i);
                    let got = &records[&want.chunk_id];
                    assert_eq!(got.text, want.text);
                    assert_eq!(got.doc_id, want.doc_id);
                }
            }
        };
        let all: Vec<&IdHit> = hits.iter().collect();
        let records = store.records_at(&all).await.unwrap();
        assert_eq!(records.len(), 15);
        check(&records, &[0, 1, 2]);

        store.delete_documents(&["doc0".to_string()]).await.unwrap();
        store.compact().await.unwrap();
        let after = store.search_ids(&query, 15, 15, None).await.unwrap();
        let moved = hits
            .iter()
            .filter(|h| h.doc_id != "doc0")
            .filter(|h| {
                !after
                    .iter()
                    .any(|a| a.row_id == h.row_id && a.chunk_id == h.chunk_id)
            })
            .count();
        assert!(
            moved > 0,
            "compaction kept every row id; the test shows nothing"
        );
        let records = store.records_at(&all).await.unwrap();
        assert_eq!(
            records.len(),
            10,
            "{:?}",
            records.keys().collect::<Vec<_>>()
        );
        check(&records, &[1, 2]);
    }

    #[test]
    fn index_shape_follows_table_size_and_dimension() {
        assert_eq!(num_partitions(1_000_000), 1000);
        let p = AnnPolicy::default();
        assert_eq!(p.refine_for(10), 8, "a top 10 keeps the whole factor");
        assert_eq!(p.refine_for(12), 8);
        assert_eq!(p.refine_for(20), 5);
        assert_eq!(p.refine_for(100), 1, "a fusion leg stays within the budget");
        assert_eq!(p.refine_for(1000), 1, "never below one");
        assert_eq!(p.refine_for(0), 8);
        assert_eq!(num_partitions(10_000), 100);
        assert_eq!(num_partitions(0), 1);
        assert_eq!(num_sub_vectors(384), 48);
        assert_eq!(num_sub_vectors(36), 9);
        assert_eq!(num_sub_vectors(7), 7);
    }
}
