//! The dense leg: chunks and their vectors in a LanceDB table.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use lancedb::arrow::arrow_array::{
    Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use lancedb::arrow::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lancedb::query::{ExecutableQuery, QueryBase, Select};
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
                Arc::new(vectors),
            ],
        )
        .map_err(|e| IndexError::Vectors(e.to_string()))?;
        self.table.add(batch).execute().await?;
        Ok(())
    }

    pub(crate) async fn delete_documents(&self, doc_ids: &[String]) -> Result<(), IndexError> {
        for group in doc_ids.chunks(512) {
            let list: Vec<String> = group
                .iter()
                .map(|d| format!("'{}'", d.replace('\'', "''")))
                .collect();
            let pred = format!("doc_id IN ({})", list.join(", "));
            self.table.delete(pred.as_str()).await?;
        }
        Ok(())
    }

    pub(crate) async fn count(&self) -> Result<usize, IndexError> {
        Ok(self.table.count_rows(None).await?)
    }

    pub(crate) async fn doc_ids(&self) -> Result<HashSet<String>, IndexError> {
        let batches: Vec<RecordBatch> = self
            .table
            .query()
            .select(Select::Columns(vec!["doc_id".into()]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut ids = HashSet::new();
        for b in &batches {
            let c = col::<StringArray>(b, "doc_id")?;
            for i in 0..c.len() {
                ids.insert(c.value(i).to_string());
            }
        }
        Ok(ids)
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
                [
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
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ))
            .limit(k)
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut hits = Vec::new();
        for b in &batches {
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
            let dist = col::<Float32Array>(b, "_distance")?;
            for i in 0..b.num_rows() {
                hits.push(LegHit {
                    chunk: ChunkRecord {
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
                        vector: Vec::new(),
                    },
                    score: dist.value(i),
                });
            }
        }
        hits.sort_by(|a, b| a.score.total_cmp(&b.score));
        Ok(hits)
    }
}
