//! Switching a library to another embedding model while it stays usable.
//!
//! The new model's vectors are written to a table of their own (the
//! shadow table, named in [`Manifest::switch`](crate::Manifest::switch))
//! while search keeps using the current one. A document is done when the
//! shadow table holds exactly its current passages (same chunk ids, same
//! text hashes), so documents added, changed or removed meanwhile are
//! simply pending again. When nothing is pending, the manifest is rewritten
//! atomically to name the new model, dimensions and table, and the old
//! table is dropped. Until that rewrite the old model stays fully in use;
//! after a crash or a cancel the next switch to the same model resumes
//! with the documents already done.

use std::collections::HashSet;
use std::sync::Arc;

use crate::manifest::EmbedderSwitch;
use crate::vectors::{self, VectorStore};
use crate::{ChunkRecord, IndexError, Library};

/// How long a finished switch waits for searches still reading the old
/// table before leaving its removal to the next open.
const OLD_TABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where an embedding model switch stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwitchProgress {
    /// The model being switched to.
    pub embedder: String,
    /// Its vector dimensions.
    pub dim: usize,
    /// Documents in the library.
    pub documents: usize,
    /// Documents whose new vectors are not all written yet.
    pub pending: usize,
}

/// The shadow table's name for `embedder`, never the current table's.
fn table_for(embedder: &str, current: &str) -> String {
    let slug: String = embedder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("chunks_{slug}");
    if name == current {
        format!("{name}_next")
    } else {
        name
    }
}

impl Library {
    /// The embedding model the library's vectors come from, once known.
    pub async fn embedder(&self) -> Option<String> {
        self.manifest.read().await.embedder.clone()
    }

    /// Dimensions of the vectors search uses.
    pub fn vector_dim(&self) -> usize {
        self.vectors().dim()
    }

    /// The embedding model switch that has begun and not finished, if any
    /// (it may have been interrupted by a crash; beginning it again resumes).
    pub async fn switch_in_progress(&self) -> Option<EmbedderSwitch> {
        self.manifest.read().await.switch.clone()
    }

    /// Refuses a query vector that does not come from the model the
    /// library's vectors come from: vectors of two models are not
    /// comparable even when their dimensions agree.
    pub async fn check_query_embedder(
        &self,
        embedder: Option<&str>,
        dim: usize,
    ) -> Result<(), IndexError> {
        let m = self.manifest.read().await;
        if let (Some(have), Some(want)) = (m.embedder.as_deref(), embedder) {
            if have != want {
                return Err(IndexError::EmbedderMismatch {
                    library: have.to_string(),
                    model: want.to_string(),
                });
            }
        }
        let table = self.vectors().dim();
        if table != dim {
            return Err(IndexError::DimensionMismatch {
                library: table,
                model: dim,
            });
        }
        Ok(())
    }

    /// Begins (or resumes) switching to the model `embedder` of `dim`
    /// dimensions: records the switch in the manifest and opens its shadow
    /// table. A switch to another model that was in progress is given up.
    pub async fn begin_switch(&self, embedder: &str, dim: usize) -> Result<(), IndexError> {
        if embedder.is_empty() || dim == 0 {
            return Err(IndexError::InvalidInput(
                "an embedder switch needs a model name and its dimensions".into(),
            ));
        }
        let _guard = self.write_lock.lock().await;
        let lance_dir = self.dir.join("lance");
        let current = self.vectors().name().to_string();
        let wanted = {
            let m = self.manifest.read().await;
            if m.embedder.as_deref() == Some(embedder) && self.vectors().dim() == dim {
                return Err(IndexError::InvalidInput(format!(
                    "the library already uses the embedding model `{embedder}`"
                )));
            }
            EmbedderSwitch {
                embedder: embedder.to_string(),
                dim,
                table: table_for(embedder, &current),
            }
        };
        let mut shadow = self.shadow.lock().await;
        let previous = self.manifest.read().await.switch.clone();
        if previous.as_ref() != Some(&wanted) {
            // Another switch (or the same model at other dimensions) is
            // given up: nothing of it may be reused.
            *shadow = None;
            if let Some(old) = &previous {
                vectors::drop_table(&lance_dir, &old.table).await?;
            }
            vectors::drop_table(&lance_dir, &wanted.table).await?;
            let mut m = self.manifest.write().await;
            m.switch = Some(wanted.clone());
            m.save(&self.dir.join("manifest.json"))?;
        }
        if shadow.as_ref().map(|s| s.name()) != Some(wanted.table.as_str()) {
            let store = VectorStore::open_table(&lance_dir, &wanted.table, dim).await?;
            store.set_policy(self.vectors().policy());
            *shadow = Some(Arc::new(store));
        }
        Ok(())
    }

    async fn shadow_store(&self) -> Result<Arc<VectorStore>, IndexError> {
        self.shadow
            .lock()
            .await
            .clone()
            .ok_or_else(|| IndexError::InvalidInput("no embedding model switch has begun".into()))
    }

    /// Documents whose passages the shadow table does not hold exactly.
    async fn pending_in(&self, shadow: &VectorStore) -> Result<Vec<String>, IndexError> {
        let current = self.vectors().chunk_keys().await?;
        let done = shadow.chunk_keys().await?;
        let m = self.manifest.read().await;
        Ok(m.documents
            .keys()
            .filter(|d| current.get(*d) != done.get(*d))
            .cloned()
            .collect())
    }

    /// Documents that still need vectors from the new model.
    pub async fn switch_pending(&self) -> Result<Vec<String>, IndexError> {
        let shadow = self.shadow_store().await?;
        self.pending_in(&shadow).await
    }

    /// How far the switch in progress has come.
    pub async fn switch_progress(&self) -> Result<SwitchProgress, IndexError> {
        let shadow = self.shadow_store().await?;
        let pending = self.pending_in(&shadow).await?.len();
        let m = self.manifest.read().await;
        let sw = m.switch.clone().ok_or_else(|| {
            IndexError::InvalidInput("no embedding model switch has begun".into())
        })?;
        Ok(SwitchProgress {
            embedder: sw.embedder,
            dim: sw.dim,
            documents: m.documents.len(),
            pending,
        })
    }

    /// The current passages of these documents (vectors left empty), to be
    /// embedded with the new model.
    pub async fn chunks_of(&self, doc_ids: &[String]) -> Result<Vec<ChunkRecord>, IndexError> {
        self.vectors().records_of(doc_ids).await
    }

    /// Writes the new model's vectors of whole documents to the shadow
    /// table, replacing what it held for them.
    pub async fn put_switch_vectors(
        &self,
        doc_ids: &[String],
        chunks: Vec<ChunkRecord>,
    ) -> Result<(), IndexError> {
        let shadow = self.shadow_store().await?;
        let ids: HashSet<&str> = doc_ids.iter().map(String::as_str).collect();
        for c in &chunks {
            if !ids.contains(c.doc_id.as_str()) {
                return Err(IndexError::InvalidInput(format!(
                    "chunk {} belongs to {}, which is not among the documents written",
                    c.chunk_id, c.doc_id
                )));
            }
            if c.vector.len() != shadow.dim() {
                return Err(IndexError::DimensionMismatch {
                    library: shadow.dim(),
                    model: c.vector.len(),
                });
            }
        }
        shadow.delete_documents(doc_ids).await?;
        shadow.add(&chunks).await
    }

    /// Finishes the switch if every document has its new vectors: the
    /// manifest is replaced atomically to name the new model and table,
    /// search moves to it, and the old table is dropped. Returns `false`
    /// (and changes nothing) while documents are still pending.
    pub async fn finish_switch(&self) -> Result<bool, IndexError> {
        let guard = self.write_lock.lock().await;
        let shadow = self.shadow_store().await?;
        if !self.pending_in(&shadow).await?.is_empty() {
            return Ok(false);
        }
        let known = self.manifest_doc_ids().await;
        let gone: Vec<String> = shadow
            .doc_ids()
            .await?
            .into_iter()
            .filter(|d| !known.contains(d))
            .collect();
        shadow.delete_documents(&gone).await?;
        let old = self.vectors();
        {
            let mut m = self.manifest.write().await;
            let sw = m.switch.clone().ok_or_else(|| {
                IndexError::InvalidInput("no embedding model switch has begun".into())
            })?;
            let mut next = m.clone();
            next.embedder = Some(sw.embedder);
            next.dim = Some(sw.dim);
            next.vector_table = Some(sw.table);
            next.switch = None;
            // The switch happens here, in one atomic file replacement.
            next.save(&self.dir.join("manifest.json"))?;
            *m = next;
            *self.vectors.write().unwrap_or_else(|e| e.into_inner()) = shadow.clone();
        }
        *self.shadow.lock().await = None;
        drop(guard);
        // Searches that took the old table before the flip finish first.
        // A crash before the drop leaves the table behind; the next open
        // drops it.
        let deadline = std::time::Instant::now() + OLD_TABLE_GRACE;
        while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let name = old.name().to_string();
        if Arc::strong_count(&old) > 1 {
            tracing::info!(table = %name, "old vector table still in use; it is dropped on the next open");
        } else if let Err(e) = vectors::drop_table(&self.dir.join("lance"), &name).await {
            tracing::warn!(table = %name, error = %e, "could not drop the old vector table");
        }
        shadow.schedule_maintenance();
        tracing::info!(table = %shadow.name(), dim = shadow.dim(), "embedding model switched");
        Ok(true)
    }

    /// Gives up the switch in progress: its table is dropped and the
    /// library stays with its current model. Returns whether one was.
    pub async fn cancel_switch(&self) -> Result<bool, IndexError> {
        let _guard = self.write_lock.lock().await;
        let mut shadow = self.shadow.lock().await;
        let mut m = self.manifest.write().await;
        let Some(sw) = m.switch.take() else {
            return Ok(false);
        };
        m.save(&self.dir.join("manifest.json"))?;
        *shadow = None;
        vectors::drop_table(&self.dir.join("lance"), &sw.table).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::table_for;

    #[test]
    fn shadow_table_names_are_safe_and_differ_from_the_current_table() {
        assert_eq!(
            table_for("qwen3-embedding-0.6b", "chunks"),
            "chunks_qwen3_embedding_0_6b"
        );
        assert_eq!(
            table_for("all-MiniLM-L6-v2", "chunks_all_minilm_l6_v2"),
            "chunks_all_minilm_l6_v2_next"
        );
    }
}
