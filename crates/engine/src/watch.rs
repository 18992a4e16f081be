//! Keeping a folder and the library in step: an initial sync, then file
//! system notifications for new, changed, renamed and deleted files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use serde::Serialize;

use crate::{DocumentEntry, Engine, EngineError, IngestReport, ProgressFn};

/// What a folder watch did, for displays.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// The folder and the library were brought in step.
    Synced {
        /// Files indexed or re-indexed.
        indexed: usize,
        /// Files already indexed with the same content.
        unchanged: usize,
        /// Documents removed because their file is gone.
        removed: usize,
        /// Files that failed, with the reason.
        failed: Vec<(PathBuf, String)>,
    },
    /// The watch is running; changes from now on are picked up.
    Watching {
        /// The folder.
        folder: PathBuf,
    },
    /// A notification could not be processed; the watch goes on.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Receives watch events.
pub type WatchFn = Arc<dyn Fn(WatchEvent) + Send + Sync>;

/// How long the folder must be quiet before changes are processed.
const DEBOUNCE: Duration = Duration::from_millis(400);

/// Whether `path` is `folder` or lies inside it (compared as strings of
/// canonical paths, which is what the library stores).
fn is_under(path: &str, folder: &Path) -> bool {
    Path::new(path).starts_with(folder)
}

impl Engine {
    /// Brings the library in step with `folder`: indexes new and changed
    /// files and removes documents under the folder whose file is gone.
    pub async fn sync_folder(
        &self,
        folder: &Path,
        progress: ProgressFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<(IngestReport, usize), EngineError> {
        let folder = canonical_folder(folder)?;
        let report = self.ingest(vec![folder.clone()], progress, cancel).await?;
        let removed = self.remove_missing(&[folder]).await?;
        Ok((report, removed))
    }

    /// Removes documents whose file no longer exists and that lie at or
    /// under one of `roots`; compacts once if anything was removed.
    async fn remove_missing(&self, roots: &[PathBuf]) -> Result<usize, EngineError> {
        let docs = self.library.documents().await;
        let roots = roots.to_vec();
        // Checking each file is disk I/O: keep it off the async runtime.
        let gone: Vec<DocumentEntry> = tokio::task::spawn_blocking(move || {
            docs.into_iter()
                .filter(|d| roots.iter().any(|r| is_under(&d.path, r)))
                .filter(|d| !Path::new(&d.path).exists())
                .collect()
        })
        .await
        .map_err(EngineError::join)?;
        let mut removed = 0;
        for doc in gone {
            tracing::info!(path = %doc.path, "file is gone; removing it from the library");
            if self.library.delete_document(&doc.doc_id).await? {
                removed += 1;
            }
            self.forget_in_collections(vec![doc.doc_id.clone()]).await?;
        }
        if removed > 0 {
            self.library.compact().await?;
        }
        Ok(removed)
    }

    /// Syncs `folder`, then keeps it in sync until `cancel` is set: new and
    /// changed files are indexed (unchanged passages reuse their
    /// embeddings, so a rename costs no embedding), deleted files are
    /// removed. Errors on single files are reported, not fatal.
    pub async fn watch(
        &self,
        folder: &Path,
        progress: ProgressFn,
        on_event: WatchFn,
        cancel: Arc<AtomicBool>,
    ) -> Result<(), EngineError> {
        let folder = canonical_folder(folder)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
        let mut debouncer = new_debouncer(DEBOUNCE, move |res| {
            let _ = tx.send(res);
        })
        .map_err(|e| EngineError::Watch(format!("cannot watch {}: {e}", folder.display())))?;
        // Watch before the initial sync so nothing that changes during it is
        // missed (it is then simply looked at twice).
        debouncer
            .watcher()
            .watch(&folder, RecursiveMode::Recursive)
            .map_err(|e| EngineError::Watch(format!("cannot watch {}: {e}", folder.display())))?;
        let (report, removed) = self
            .sync_folder(&folder, progress.clone(), cancel.clone())
            .await?;
        on_event(WatchEvent::Synced {
            indexed: report.indexed,
            unchanged: report.unchanged,
            removed,
            failed: report.failed,
        });
        on_event(WatchEvent::Watching {
            folder: folder.clone(),
        });
        let data_dir = std::fs::canonicalize(&self.config.data_dir)
            .unwrap_or_else(|_| self.config.data_dir.clone());
        while !cancel.load(Ordering::Relaxed) {
            let batch = match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    on_event(WatchEvent::Error {
                        message: e.to_string(),
                    });
                    continue;
                }
                Ok(Some(Ok(events))) => events,
            };
            let paths: BTreeSet<PathBuf> = batch
                .into_iter()
                .map(|e| e.path)
                .filter(|p| !p.starts_with(&data_dir))
                .collect();
            let (present, gone): (Vec<PathBuf>, Vec<PathBuf>) =
                paths.into_iter().partition(|p| p.exists());
            let present: Vec<PathBuf> = present
                .into_iter()
                .filter(|p| p.is_dir() || lectern_ingest::detect_format(p).is_some())
                .collect();
            let mut indexed = 0;
            let mut unchanged = 0;
            let mut failed = Vec::new();
            if !present.is_empty() {
                match self.ingest(present, progress.clone(), cancel.clone()).await {
                    Ok(r) => {
                        indexed = r.indexed;
                        unchanged = r.unchanged;
                        failed = r.failed;
                    }
                    Err(EngineError::Cancelled) => break,
                    Err(e) => on_event(WatchEvent::Error {
                        message: e.to_string(),
                    }),
                }
            }
            let removed = if gone.is_empty() {
                0
            } else {
                match self.remove_missing(&gone).await {
                    Ok(n) => n,
                    Err(e) => {
                        on_event(WatchEvent::Error {
                            message: e.to_string(),
                        });
                        0
                    }
                }
            };
            if indexed + removed + failed.len() > 0 {
                on_event(WatchEvent::Synced {
                    indexed,
                    unchanged,
                    removed,
                    failed,
                });
            }
        }
        Ok(())
    }
}

fn canonical_folder(folder: &Path) -> Result<PathBuf, EngineError> {
    let c = std::fs::canonicalize(folder).map_err(|e| {
        EngineError::InvalidInput(format!("cannot open folder {}: {e}", folder.display()))
    })?;
    if !c.is_dir() {
        return Err(EngineError::InvalidInput(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    Ok(c)
}
