//! The commands the web UI invokes. Each one checks its input, calls the
//! engine and reshapes the answer for the UI; progress and answer text
//! stream through a `Channel`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lectern_engine::{AskEvent, AskRequest, IngestEvent, ProgressFn, SearchRequest};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::view::{
    file_name, AnswerUpdate, AnswerView, GpuView, Hit, IngestSummary, IngestUpdate, LibraryStats,
    Question, SearchQuery, SearchResults, Source,
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
#[tauri::command]
pub async fn ingest(
    state: State<'_, AppState>,
    paths: Vec<String>,
    on_event: Channel<IngestUpdate>,
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
        });
    }

    let engine = state.engine().await?;
    let targets: Vec<PathBuf> = inputs.iter().map(|i| i.canonical.clone()).collect();
    let tracker = Arc::new(Mutex::new(Tracker {
        inputs,
        files: 0,
        outcomes: Vec::new(),
    }));
    let cancel = Arc::new(AtomicBool::new(false));

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
                        warnings,
                    }]
                }
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

    let report = engine.ingest(targets, progress, cancel).await?;

    if let Ok(t) = tracker.lock() {
        for update in t.folder_summaries() {
            send(update);
        }
    }
    Ok(IngestSummary {
        indexed: report.indexed,
        unchanged: report.unchanged,
        skipped: report.skipped.len(),
        failed: report.failed.len() + rejected,
        chunks: report.chunks,
        seconds: report.seconds,
    })
}

// ---------------------------------------------------------------- search

/// Searches the library: hybrid, dense or BM25, with each leg's rank.
#[tauri::command]
pub async fn search(
    state: State<'_, AppState>,
    request: SearchQuery,
) -> CommandResult<SearchResults> {
    let query = request.query.trim().to_owned();
    if query.is_empty() {
        return Err(CommandError::invalid_input("the search box is empty"));
    }
    let engine = state.engine().await?;
    let started = Instant::now();
    let hits = engine
        .search(&SearchRequest {
            query,
            mode: request.mode.into(),
            top_k: request.limit.clamp(1, MAX_SEARCH_HITS),
        })
        .await?;
    Ok(SearchResults {
        hits: hits.into_iter().map(Hit::from).collect(),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

// ---------------------------------------------------------------- ask

/// Answers a question from the library, streaming the answer as it is
/// written; the result lists the numbered sources and which ones it cites.
#[tauri::command]
pub async fn ask(
    state: State<'_, AppState>,
    request: Question,
    on_event: Channel<AnswerUpdate>,
) -> CommandResult<AnswerView> {
    let question = request.question.trim().to_owned();
    if question.is_empty() {
        return Err(CommandError::invalid_input("the question is empty"));
    }
    let engine = state.engine().await?;
    let mut ask = AskRequest::new(question);
    ask.mode = request.mode.into();

    let stop = state.begin_answer();
    let events: Arc<dyn Fn(AskEvent) + Send + Sync> = {
        let stop = stop.clone();
        Arc::new(move |event: AskEvent| {
            let update = match event {
                AskEvent::Sources {
                    sources,
                    prompt_tokens,
                } => AnswerUpdate::Sources {
                    sources: sources.iter().map(Source::from).collect(),
                    prompt_tokens,
                },
                AskEvent::Token { text } => AnswerUpdate::Token { text },
            };
            if on_event.send(update).is_err() {
                // Nobody is reading any more: stop generating.
                stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let started = Instant::now();
    let result = engine.ask(ask, events, stop.clone()).await;
    state.end_answer(&stop);
    let answer = result?;
    Ok(AnswerView::new(
        answer,
        stop.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64() * 1000.0,
    ))
}

/// Stops the answer being written; the text so far is kept.
#[tauri::command]
pub async fn stop_answer(state: State<'_, AppState>) -> CommandResult<bool> {
    Ok(state.stop_answer())
}

// ---------------------------------------------------------------- status

/// The compute device and live GPU readings. Works before the library has
/// opened, so the UI can say where models will run even when opening fails.
#[tauri::command]
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
pub async fn library_stats(state: State<'_, AppState>) -> CommandResult<LibraryStats> {
    let engine = state.engine().await?;
    Ok(engine.stats().await?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
