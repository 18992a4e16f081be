//! The dense leg: chunks and their vectors in a LanceDB table.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use lancedb::arrow::arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use lancedb::arrow::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::optimize::Duration;
use lancedb::table::{CompactionOptions, OptimizeAction};
use lancedb::{Connection, DistanceType, Table};

use crate::{ChunkRecord, IndexError, LegHit};

const TABLE: &str = "chunks";

pub(crate) struct VectorStore {
    table: Table,
    schema: SchemaRef,
    dim: usize,
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

impl VectorStore {
    pub(crate) async fn open(dir: &Path, dim: usize) -> Result<Self, IndexError> {
        let uri = dir
            .to_str()
            .ok_or_else(|| IndexError::InvalidInput(format!("non UTF-8 path {}", dir.display())))?;
        let conn = lancedb::connect(uri).execute().await?;
        let schema = schema(dim);
        let names = conn.table_names().execute().await?;
        let table = if names.iter().any(|n| n == TABLE) {
            let t = conn.open_table(TABLE).execute().await?;
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
            conn.create_empty_table(TABLE, schema.clone())
                .execute()
                .await?
        };
        Ok(Self {
            table,
            schema,
            dim,
            _conn: conn,
        })
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
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

    pub(crate) async fn search(&self, vector: &[f32], k: usize) -> Result<Vec<LegHit>, IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                library: self.dim,
                model: vector.len(),
            });
        }
        if k == 0 || self.count().await? == 0 {
            return Ok(Vec::new());
        }
        let batches: Vec<RecordBatch> = self
            .table
            .vector_search(vector)?
            .column("vector")
            .distance_type(DistanceType::Cosine)
            .select(Select::Columns(
                RECORD_COLUMNS.iter().map(|s| s.to_string()).collect(),
            ))
            .limit(k)
            .execute()
            .await?
            .try_collect()
            .await?;
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
}
