//! The commands the web UI invokes for the library, search and status. Each
//! one checks its input, calls the engine and reshapes the answer for the
//! UI; ingest progress streams through a `Channel`. Chat lives in `chat.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lectern_engine::{EngineError, IngestEvent, ProgressFn, SearchRequest};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::view::{
    document_list, embedder_view, file_name, llm_view, mentions_ocr, DocumentView, GpuView, Hit,
    IngestSummary, IngestUpdate, LibraryStats, ModelsView, SearchQuery, SearchResults,
};

const MAX_SEARCH_HITS: usize = 100;

// ---------------------------------------------------------------- ingest

/// A path the user gave, as the UI knows it and as the file system does.
struct Input {
    shown: String,
    canonical: PathBuf,
    folder: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Indexed,
    Unchanged,
    Skipped,
    Failed,
}

/// Follows an ingest run so that events name files the way the UI queued
/// them and folders can be summed up at the end.
struct Tracker {
    inputs: Vec<Input>,
    files: usize,
    outcomes: Vec<(PathBuf, Outcome)>,
}

impl Tracker {
    /// The UI's name for `path`: the path the user gave when it is that file.
    fn shown(&self, path: &Path) -> String {
        let canonical = canonical(path);
        self.inputs
            .iter()
            .find(|i| !i.folder && i.canonical == canonical)
            .map(|i| i.shown.clone())
            .unwrap_or_else(|| path.display().to_string())
    }

    fn record(&mut self, path: &Path, outcome: Outcome) {
        self.outcomes.push((canonical(path), outcome));
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.iter().filter(|(_, o)| *o == outcome).count()
    }

    fn folder_summaries(&self) -> Vec<IngestUpdate> {
        self.inputs
            .iter()
            .filter(|i| i.folder)
            .map(|folder| {
                let count = |o: Outcome| {
                    self.outcomes
                        .iter()
                        .filter(|(p, out)| *out == o && p.starts_with(&folder.canonical))
                        .count()
                };
                IngestUpdate::FolderDone {
                    path: folder.shown.clone(),
                    indexed: count(Outcome::Indexed),
                    unchanged: count(Outcome::Unchanged),
                    skipped: count(Outcome::Skipped),
                    failed: count(Outcome::Failed),
                }
            })
            .collect()
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Expands a leading `~` and insists on an absolute path: a desktop app has
/// no meaningful working directory.
fn resolve_path(raw: &str) -> Result<PathBuf, String> {
    let raw = raw.trim();
    let path = if raw == "~" || raw.starts_with("~/") {
        let home = std::env::var_os("HOME").ok_or("HOME is not set, so `~` has no meaning")?;
        PathBuf::from(home).join(raw.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(raw)
    };
    if !path.is_absolute() {
        return Err("give the full path, starting with / or ~".to_owned());
    }
    if !path.exists() {
        return Err("no such file or folder".to_owned());
    }
    Ok(path)
}

/// Adds files and folders to the library, streaming per-file progress.
/// `cancel_ingest` stops it after the file being read.
#[tauri::command]
#[specta::specta]
pub async fn ingest(
    state: State<'_, AppState>,
    paths: Vec<String>,
    on_event: Channel<IngestUpdate>,
) -> CommandResult<IngestSummary> {
    run_ingest(&state, paths, on_event, false).await
}

/// Reads the paths into the library; `again` reads unchanged files too.
async fn run_ingest(
    state: &AppState,
    paths: Vec<String>,
    on_event: Channel<IngestUpdate>,
    again: bool,
) -> CommandResult<IngestSummary> {
    let mut seen = std::collections::HashSet::new();
    let paths: Vec<String> = paths
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty() && seen.insert(p.clone()))
        .collect();
    if paths.is_empty() {
        return Err(CommandError::invalid_input("no files to add"));
    }

    let send = {
        let channel = on_event.clone();
        move |update: IngestUpdate| channel.send(update).is_ok()
    };

    let mut inputs = Vec::new();
    let mut rejected = 0;
    for shown in paths {
        match resolve_path(&shown) {
            Ok(path) => {
                let folder = path.is_dir();
                send(IngestUpdate::Queued {
                    name: file_name(&path),
                    path: shown.clone(),
                    folder,
                });
                inputs.push(Input {
                    shown,
                    canonical: canonical(&path),
                    folder,
                });
            }
            Err(reason) => {
                rejected += 1;
                send(IngestUpdate::Queued {
                    name: file_name(Path::new(&shown)),
                    path: shown.clone(),
                    folder: false,
                });
                send(IngestUpdate::Failed {
                    path: shown,
                    reason,
                });
            }
        }
    }
    if inputs.is_empty() {
        return Ok(IngestSummary {
            indexed: 0,
            unchanged: 0,
            skipped: 0,
            failed: rejected,
            chunks: 0,
            seconds: 0.0,
            cancelled: false,
        });
    }

    let engine = state.engine().await?;
    let targets: Vec<PathBuf> = inputs.iter().map(|i| i.canonical.clone()).collect();
    let tracker = Arc::new(Mutex::new(Tracker {
        inputs,
        files: 0,
        outcomes: Vec::new(),
    }));
    let cancel = state.begin_ingest();
    let started = Instant::now();

    let progress: ProgressFn = {
        let tracker = tracker.clone();
        let cancel = cancel.clone();
        let send = send.clone();
        Arc::new(move |event: IngestEvent| {
            let Ok(mut t) = tracker.lock() else { return };
            let updates = match event {
                IngestEvent::Discovered { files, skipped } => {
                    t.files = files;
                    let mut updates = vec![IngestUpdate::Discovered { files }];
                    for (path, reason) in skipped {
                        t.record(&path, Outcome::Skipped);
                        updates.push(IngestUpdate::Skipped {
                            path: t.shown(&path),
                            name: file_name(&path),
                            reason,
                        });
                    }
                    updates
                }
                IngestEvent::FileStarted { index, path } => vec![IngestUpdate::Started {
                    path: t.shown(&path),
                    name: file_name(&path),
                    index,
                    total: t.files,
                }],
                IngestEvent::Embedded { path, done, total } => vec![IngestUpdate::Progress {
                    path: t.shown(&path),
                    stage: "Embedding".to_owned(),
                    done: Some(done),
                    total: Some(total),
                }],
                IngestEvent::FileIndexed {
                    path,
                    pages,
                    chunks,
                    warnings,
                } => {
                    t.record(&path, Outcome::Indexed);
                    vec![IngestUpdate::Indexed {
                        path: t.shown(&path),
                        pages: Some(pages),
                        chunks,
                        needs_ocr: warnings.iter().any(|w| mentions_ocr(w)),
                        warnings,
                    }]
                }
                IngestEvent::Stage { path, stage } => vec![IngestUpdate::Progress {
                    path: t.shown(&path),
                    stage: capitalised(stage.verb()),
                    done: None,
                    total: None,
                }],
                IngestEvent::OcrPage {
                    path,
                    page,
                    done,
                    total,
                } => vec![IngestUpdate::Progress {
                    path: t.shown(&path),
                    stage: format!("Reading scanned page {page} (OCR)"),
                    done: Some(done),
                    total: Some(total),
                }],
                // The window works out the run's ETA from per-file updates.
                IngestEvent::Overall(_) => Vec::new(),
                IngestEvent::FileUnchanged { path } => {
                    t.record(&path, Outcome::Unchanged);
                    vec![IngestUpdate::Unchanged {
                        path: t.shown(&path),
                    }]
                }
                IngestEvent::FileFailed { path, error } => {
                    t.record(&path, Outcome::Failed);
                    vec![IngestUpdate::Failed {
                        path: t.shown(&path),
                        reason: error,
                    }]
                }
            };
            drop(t);
            for update in updates {
                if !send(update) {
                    // The window is gone: finish the current file and stop.
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        })
    };

    let result = if again {
        engine.reindex(targets, progress, cancel.clone()).await
    } else {
        engine.ingest(targets, progress, cancel.clone()).await
    };
    state.end_ingest(&cancel);

    let Ok(t) = tracker.lock() else {
        return Err(CommandError::internal("ingest progress lock poisoned"));
    };
    for update in t.folder_summaries() {
        send(update);
    }
    match result {
        Ok(report) => Ok(IngestSummary {
            indexed: report.indexed,
            unchanged: report.unchanged,
            skipped: report.skipped.len(),
            failed: report.failed.len() + rejected,
            chunks: report.chunks,
            seconds: report.seconds,
            cancelled: false,
        }),
        Err(EngineError::Cancelled) => Ok(cancelled_summary(&t, rejected, started)),
        Err(e) => Err(e.into()),
    }
}

/// What a cancelled run finished, from the events it sent.
fn cancelled_summary(t: &Tracker, rejected: usize, started: Instant) -> IngestSummary {
    IngestSummary {
        indexed: t.count(Outcome::Indexed),
        unchanged: t.count(Outcome::Unchanged),
        skipped: t.count(Outcome::Skipped),
        failed: t.count(Outcome::Failed) + rejected,
        chunks: 0,
        seconds: started.elapsed().as_secs_f64(),
        cancelled: true,
    }
}

/// Stops every ingest run after the file it is reading; true when one was
/// running.
#[tauri::command]
#[specta::specta]
pub async fn cancel_ingest(state: State<'_, AppState>) -> CommandResult<bool> {
    Ok(state.cancel_ingests() > 0)
}

// ---------------------------------------------------------------- library

/// The library's documents, most recently indexed first.
#[tauri::command]
#[specta::specta]
pub async fn documents(state: State<'_, AppState>) -> CommandResult<Vec<DocumentView>> {
    let engine = state.engine().await?;
    Ok(document_list(&engine.documents().await))
}

/// Checks that `id` looks like a document id before it reaches the engine.
pub(crate) fn check_document_id(id: &str) -> CommandResult<&str> {
    let id = id.trim();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CommandError::invalid_input(format!(
            "`{}` is not a document id",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(id)
}

/// Removes a document from both stores; false when it was not in the library.
#[tauri::command]
#[specta::specta]
pub async fn delete_document(state: State<'_, AppState>, id: String) -> CommandResult<bool> {
    let id = check_document_id(&id)?;
    let engine = state.engine().await?;
    Ok(engine.delete_document(id).await?)
}

/// Reads a document again from its path, with progress on `on_event`. The
/// indexed version is replaced only once the new reading succeeded; a file
/// that is gone is refused with nothing changed.
#[tauri::command]
#[specta::specta]
pub async fn reindex_document(
    state: State<'_, AppState>,
    id: String,
    on_event: Channel<IngestUpdate>,
) -> CommandResult<IngestSummary> {
    let id = check_document_id(&id)?;
    let engine = state.engine().await?;
    let entry = engine
        .documents()
        .await
        .into_iter()
        .find(|d| d.doc_id == id)
        .ok_or_else(|| {
            CommandError::new("not_found", "that document is no longer in the library")
        })?;
    if !Path::new(&entry.path).is_file() {
        return Err(CommandError::new(
            "not_found",
            format!("{} is no longer there; nothing was changed", entry.path),
        ));
    }
    // Read in place: the document keeps its id (and its collections), and a
    // file that no longer reads leaves the indexed version untouched.
    run_ingest(&state, vec![entry.path], on_event, true).await
}

// ---------------------------------------------------------------- search

/// Searches the library: hybrid, dense or BM25, with each leg's rank.
#[tauri::command]
#[specta::specta]
pub async fn search(
    state: State<'_, AppState>,
    request: SearchQuery,
) -> CommandResult<SearchResults> {
    let query = request.query.trim().to_owned();
    if query.is_empty() {
        return Err(CommandError::invalid_input("the search box is empty"));
    }
    let engine = state.engine().await?;
    // The setting is the app's one preference, sent with every search.
    engine.set_rerank_mode(request.rerank.into());
    let started = Instant::now();
    let hits = engine
        .search(&SearchRequest {
            query,
            mode: request.mode.into(),
            top_k: request.limit.clamp(1, MAX_SEARCH_HITS),
            collection: request.collection,
        })
        .await?;
    Ok(SearchResults {
        hits: hits.into_iter().map(Hit::from).collect(),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

// ---------------------------------------------------------------- status

/// The compute device and live GPU readings. Works before the library has
/// opened, so the UI can say where models will run even when opening fails.
#[tauri::command]
#[specta::specta]
pub async fn gpu_status(state: State<'_, AppState>) -> CommandResult<GpuView> {
    let preference = state.device_preference();
    let mut status =
        tauri::async_runtime::spawn_blocking(move || lectern_engine::gpu_status(preference))
            .await
            .map_err(|e| CommandError::internal(e.to_string()))??;
    if let Some(engine) = state.opened() {
        // Report the device the models were loaded on, with fresh readings.
        let used = engine.gpu_status();
        status.selected = used.selected;
        status.reason = used.reason.clone();
        status.preference = used.preference;
    }
    Ok(GpuView::from(&status))
}

/// How many documents and chunks the library holds.
#[tauri::command]
#[specta::specta]
pub async fn library_stats(state: State<'_, AppState>) -> CommandResult<LibraryStats> {
    let engine = state.engine().await?;
    Ok(engine.stats().await?.into())
}

/// The configured models and whether their files are there. Works before
/// the library has opened (a missing embedder keeps it from opening).
#[tauri::command]
#[specta::specta]
pub async fn models_status(state: State<'_, AppState>) -> CommandResult<ModelsView> {
    let config = state.config()?.clone();
    tauri::async_runtime::spawn_blocking(move || ModelsView {
        models_dir: config.models_dir.display().to_string(),
        data_dir: config.data_dir.display().to_string(),
        embedder: embedder_view(&config.embedder_dir),
        llm: config.llm_path.as_deref().map(llm_view),
        max_context: config.max_context,
        device_preference: config.device.to_string(),
    })
    .await
    .map_err(|e| CommandError::internal(e.to_string()))
}

/// "parsing" → "Parsing".
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::AnswerUpdate;

    #[test]
    fn resolve_path_expands_home_and_rejects_relative_or_missing_paths() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        assert_eq!(resolve_path("~").unwrap(), home);
        assert_eq!(resolve_path("  ~/ ").unwrap(), home);
        assert!(resolve_path("relative/file.pdf")
            .unwrap_err()
            .contains("full path"));
        assert_eq!(
            resolve_path("/no/such/lectern/file.pdf").unwrap_err(),
            "no such file or folder"
        );
    }

    #[test]
    fn tracker_names_files_as_given_and_sums_up_folders() {
        let dir = std::env::temp_dir().join(format!("lectern-app-test-{}", std::process::id()));
        let sub = dir.join("notes");
        std::fs::create_dir_all(&sub).unwrap();
        let a = sub.join("a.md");
        let b = sub.join("b.md");
        let lone = dir.join("lone.txt");
        for f in [&a, &b, &lone] {
            std::fs::write(f, "text").unwrap();
        }
        let mut t = Tracker {
            inputs: vec![
                Input {
                    shown: "~/lone.txt".into(),
                    canonical: canonical(&lone),
                    folder: false,
                },
                Input {
                    shown: sub.display().to_string(),
                    canonical: canonical(&sub),
                    folder: true,
                },
            ],
            files: 3,
            outcomes: Vec::new(),
        };
        assert_eq!(t.shown(&lone), "~/lone.txt");
        assert_eq!(t.shown(&a), a.display().to_string());
        t.record(&a, Outcome::Indexed);
        t.record(&b, Outcome::Failed);
        t.record(&lone, Outcome::Indexed);
        let summaries = t.folder_summaries();
        assert_eq!(summaries.len(), 1);
        match &summaries[0] {
            IngestUpdate::FolderDone {
                indexed,
                failed,
                unchanged,
                skipped,
                ..
            } => assert_eq!((*indexed, *failed, *unchanged, *skipped), (1, 1, 0, 0)),
            other => panic!("unexpected {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn updates_serialise_in_the_shape_the_ui_reads() {
        let json = serde_json::to_value(IngestUpdate::FolderDone {
            path: "/docs".into(),
            indexed: 2,
            unchanged: 0,
            skipped: 1,
            failed: 0,
        })
        .unwrap();
        assert_eq!(json["kind"], "folderDone");
        assert_eq!(json["indexed"], 2);
        let json = serde_json::to_value(AnswerUpdate::Sources {
            sources: Vec::new(),
            prompt_tokens: 7,
        })
        .unwrap();
        assert_eq!(json["kind"], "sources");
        assert_eq!(json["promptTokens"], 7);
        let err = serde_json::to_value(CommandError::invalid_input("empty")).unwrap();
        assert_eq!(err["code"], "invalid_input");
        assert_eq!(err["message"], "empty");
    }
}
