//! Watched folders: the list is kept by the engine in the data folder; each
//! folder has a running watch that keeps it and the library in step, and
//! its state is broadcast as `folder-status` events. Watches restart when
//! the app starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use lectern_engine::{Engine, IngestEvent, ProgressFn, WatchEvent, WatchFn, WatchedFolders};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, State};
use tauri_specta::Event;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// A watched folder and what its watch is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct FolderStatus {
    pub path: String,
    /// `starting`, `syncing`, `watching`, `error` or `stopped`.
    pub state: String,
    /// The file being read while syncing, or what went wrong.
    pub message: Option<String>,
    /// Files indexed by the last sync.
    pub indexed: u32,
    /// Documents removed by the last sync because their file was gone.
    pub removed: u32,
    /// Files that failed in the last sync.
    pub failed: u32,
    /// Unix time of the last finished sync, in seconds.
    pub synced_at: Option<u64>,
}

impl Event for FolderStatus {
    const NAME: &'static str = "folder-status";
}

impl FolderStatus {
    fn new(path: &Path, state: &str) -> Self {
        Self {
            path: path.display().to_string(),
            state: state.to_owned(),
            message: None,
            indexed: 0,
            removed: 0,
            failed: 0,
            synced_at: None,
        }
    }

    /// Follows one event of the folder's watch.
    fn apply(&mut self, event: &WatchEvent) {
        match event {
            WatchEvent::Synced {
                indexed,
                removed,
                failed,
                ..
            } => {
                self.state = "watching".to_owned();
                self.indexed = count(*indexed);
                self.removed = count(*removed);
                self.failed = count(failed.len());
                self.message = failed
                    .first()
                    .map(|(path, why)| format!("{}: {why}", crate::view::file_name(path)));
                self.synced_at = Some(unix_now());
            }
            WatchEvent::Watching { .. } => {
                self.state = "watching".to_owned();
            }
            WatchEvent::Error { message } => {
                self.message = Some(message.clone());
            }
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Delivers a watch's new state (to the window, as a `folder-status` event).
pub type Publish = Arc<dyn Fn(&FolderStatus) + Send + Sync>;

/// Publishes states as `folder-status` events to every window of `app`.
pub fn emitter(app: &AppHandle) -> Publish {
    let app = app.clone();
    Arc::new(move |status: &FolderStatus| {
        if let Err(e) = status.emit(&app) {
            tracing::debug!(error = %e, "folder status not delivered");
        }
    })
}

struct Running {
    cancel: Arc<AtomicBool>,
    status: Arc<Mutex<FolderStatus>>,
}

/// The running watches, by folder. Managed by Tauri.
#[derive(Default)]
pub struct Watches {
    list: OnceLock<WatchedFolders>,
    running: Mutex<HashMap<PathBuf, Running>>,
}

impl Watches {
    fn list(&self, engine: &Engine) -> &WatchedFolders {
        self.list.get_or_init(|| engine.watched_folders())
    }

    fn status_of(&self, folder: &Path) -> FolderStatus {
        self.running
            .lock()
            .ok()
            .and_then(|r| {
                r.get(folder)
                    .and_then(|w| w.status.lock().ok().map(|s| s.clone()))
            })
            .unwrap_or_else(|| FolderStatus::new(folder, "stopped"))
    }

    fn statuses(&self, folders: &[PathBuf]) -> Vec<FolderStatus> {
        folders.iter().map(|f| self.status_of(f)).collect()
    }

    /// Starts watching `folder` unless a watch of it is running.
    fn start(&self, publish_to: Publish, engine: Arc<Engine>, folder: PathBuf) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if running
            .get(&folder)
            .is_some_and(|w| !w.cancel.load(Ordering::Relaxed))
        {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(FolderStatus::new(&folder, "starting")));
        running.insert(
            folder.clone(),
            Running {
                cancel: cancel.clone(),
                status: status.clone(),
            },
        );
        drop(running);
        let app = publish_to;
        publish(&app, &status, &cancel, |_| {});

        let progress: ProgressFn = {
            let (app, status, cancel) = (app.clone(), status.clone(), cancel.clone());
            // Files of the current run not finished yet: a run that changes
            // nothing sends no sync report, so its end is counted here.
            let pending = AtomicUsize::new(0);
            Arc::new(move |event: IngestEvent| match event {
                IngestEvent::Discovered { files, .. } => pending.store(files, Ordering::SeqCst),
                IngestEvent::FileStarted { path, .. } => {
                    publish(&app, &status, &cancel, |s| {
                        s.state = "syncing".to_owned();
                        s.message = Some(format!("Reading {}", crate::view::file_name(&path)));
                    });
                }
                IngestEvent::FileIndexed { .. }
                | IngestEvent::FileUnchanged { .. }
                | IngestEvent::FileFailed { .. } => {
                    let before = pending
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .unwrap_or(0);
                    if before <= 1 {
                        publish(&app, &status, &cancel, |s| {
                            if s.state == "syncing" {
                                s.state = "watching".to_owned();
                                s.message = None;
                            }
                        });
                    }
                }
                _ => {}
            })
        };
        let on_event: WatchFn = {
            let (app, status, cancel) = (app.clone(), status.clone(), cancel.clone());
            Arc::new(move |event: WatchEvent| publish(&app, &status, &cancel, |s| s.apply(&event)))
        };
        tauri::async_runtime::spawn(async move {
            publish(&app, &status, &cancel, |s| s.state = "syncing".to_owned());
            let result = engine
                .watch(&folder, progress, on_event, cancel.clone())
                .await;
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            publish(&app, &status, &cancel, |s| match &result {
                Ok(()) => s.state = "stopped".to_owned(),
                Err(e) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "folder watch ended");
                    s.state = "error".to_owned();
                    s.message = Some(e.to_string());
                }
            });
        });
    }

    /// Stops the watch of `folder`, if one runs.
    fn stop(&self, folder: &Path) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(w) = running.remove(folder) {
                w.cancel.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Changes a watch's status and broadcasts it, unless the watch was removed.
fn publish(
    app: &Publish,
    status: &Mutex<FolderStatus>,
    cancel: &AtomicBool,
    change: impl FnOnce(&mut FolderStatus),
) {
    if cancel.load(Ordering::Relaxed) {
        return;
    }
    let snapshot = match status.lock() {
        Ok(mut s) => {
            change(&mut s);
            s.clone()
        }
        Err(_) => return,
    };
    app(&snapshot);
}

/// Restarts the watch of every remembered folder; called once the engine
/// has opened.
pub fn restart_all(app: &AppHandle, engine: Arc<Engine>) {
    let watches = app.state::<Watches>();
    match watches.list(&engine).list() {
        Ok(folders) => {
            for folder in folders {
                watches.start(emitter(app), engine.clone(), folder);
            }
        }
        Err(e) => tracing::error!(error = %e, "the watched folders could not be read"),
    }
}

/// The watched folders and what each watch is doing.
#[tauri::command]
#[specta::specta]
pub async fn watched_folders(
    state: State<'_, AppState>,
    watches: State<'_, Watches>,
) -> CommandResult<Vec<FolderStatus>> {
    let engine = state.engine().await?;
    let folders = watches.list(&engine).list()?;
    Ok(watches.statuses(&folders))
}

/// Watches a folder: it is synced now and kept in step from then on, also
/// after a restart. Returns every watched folder.
#[tauri::command]
#[specta::specta]
pub async fn add_watched_folder(
    app: AppHandle,
    state: State<'_, AppState>,
    watches: State<'_, Watches>,
    path: String,
) -> CommandResult<Vec<FolderStatus>> {
    let path = path.trim();
    if path.is_empty() || !Path::new(path).is_absolute() {
        return Err(CommandError::invalid_input(
            "give the full path of a folder, starting with /",
        ));
    }
    let engine = state.engine().await?;
    let (folders, _) = watches.list(&engine).add(Path::new(path))?;
    let canonical =
        std::fs::canonicalize(path).map_err(|e| CommandError::internal(e.to_string()))?;
    watches.start(emitter(&app), engine, canonical);
    Ok(watches.statuses(&folders))
}

/// Stops watching a folder. Its documents stay in the library. Returns
/// every watched folder left.
#[tauri::command]
#[specta::specta]
pub async fn remove_watched_folder(
    state: State<'_, AppState>,
    watches: State<'_, Watches>,
    path: String,
) -> CommandResult<Vec<FolderStatus>> {
    let engine = state.engine().await?;
    let folder = PathBuf::from(path.trim());
    let (folders, removed) = watches.list(&engine).remove(&folder)?;
    if !removed {
        return Err(CommandError::new(
            "not_found",
            format!("{} is not a watched folder", folder.display()),
        ));
    }
    watches.stop(&folder);
    if let Ok(canonical) = std::fs::canonicalize(&folder) {
        watches.stop(&canonical);
    }
    Ok(watches.statuses(&folders))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_follows_its_watch() {
        let mut s = FolderStatus::new(Path::new("/docs"), "starting");
        assert_eq!(s.state, "starting");
        s.apply(&WatchEvent::Synced {
            indexed: 3,
            unchanged: 9,
            removed: 1,
            failed: vec![(PathBuf::from("/docs/bad.pdf"), "encrypted".into())],
        });
        assert_eq!(s.state, "watching");
        assert_eq!((s.indexed, s.removed, s.failed), (3, 1, 1));
        assert_eq!(s.message.as_deref(), Some("bad.pdf: encrypted"));
        assert!(s.synced_at.is_some());
        s.apply(&WatchEvent::Error {
            message: "queue overflow".into(),
        });
        assert_eq!(s.state, "watching", "a notification error does not stop it");
        assert_eq!(s.message.as_deref(), Some("queue overflow"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["syncedAt"], s.synced_at.unwrap());
        assert_eq!(json["path"], "/docs");
    }

    /// A fresh folder under the system's temporary folder.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lectern-app-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An engine on `data` with the provisioned embedder, on the CPU.
    async fn engine(data: &Path) -> Arc<Engine> {
        let models = std::env::var_os("LECTERN_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
            });
        let embedder = models.join("all-MiniLM-L6-v2");
        assert!(
            embedder.join("model.safetensors").is_file(),
            "test models not found in {}: run models/provision.sh",
            models.display()
        );
        let mut config = lectern_engine::EngineConfig::from_env(Some(data.to_path_buf())).unwrap();
        config.embedder_dir = embedder;
        config.llm_path = None;
        config.models_dir = models;
        config.device = lectern_engine::DevicePreference::Cpu;
        Arc::new(Engine::open(config).await.expect("engine opens"))
    }

    fn shared_doc(rel: &str) -> PathBuf {
        let shared = std::env::var_os("LECTERN_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        let path = shared.join("eval/docs").join(rel);
        assert!(path.is_file(), "missing test document {}", path.display());
        path
    }

    /// Waits up to a minute until the latest published state satisfies `pred`.
    async fn wait_for(
        seen: &Mutex<Vec<FolderStatus>>,
        what: &str,
        pred: impl Fn(&FolderStatus) -> bool,
    ) -> FolderStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = seen.lock().unwrap().last().filter(|s| pred(s)) {
                return s.clone();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "timed out waiting until {what}; states: {:?}",
                seen.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watched_folder_is_synced_followed_and_stopped_with_the_real_engine() {
        let data = temp_dir("watch-data");
        let folder = temp_dir("watch-docs");
        std::fs::copy(
            shared_doc("md/rust-book-README.md"),
            folder.join("readme.md"),
        )
        .unwrap();
        std::fs::copy(
            shared_doc("pdf/habibi-arabic.pdf"),
            folder.join("habibi.pdf"),
        )
        .unwrap();
        let engine = engine(&data).await;
        let watches = Watches::default();
        let (folders, added) = watches.list(&engine).add(&folder).unwrap();
        assert!(added);
        let folder = folders[0].clone();

        let seen: Arc<Mutex<Vec<FolderStatus>>> = Arc::default();
        let publish: Publish = {
            let seen = seen.clone();
            Arc::new(move |s: &FolderStatus| seen.lock().unwrap().push(s.clone()))
        };
        watches.start(publish.clone(), engine.clone(), folder.clone());
        // A second start of a running watch is a no-op.
        watches.start(publish, engine.clone(), folder.clone());

        let synced = wait_for(&seen, "the first sync", |s| {
            s.synced_at.is_some() && s.state == "watching"
        })
        .await;
        assert_eq!((synced.indexed, synced.failed), (2, 0), "{synced:?}");
        let states = seen.lock().unwrap().clone();
        assert_eq!(states[0].state, "starting");
        assert!(
            states.iter().any(|s| s.state == "syncing"
                && s.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Reading "))),
            "{states:?}"
        );
        // The list the window asks for carries what was last published.
        let listed = watches.statuses(std::slice::from_ref(&folder));
        assert_eq!(Some(&listed[0]), seen.lock().unwrap().last());

        // Only the PDF is served to the source panel.
        let docs = engine.documents().await;
        let id_of = |name: &str| {
            docs.iter()
                .find(|d| d.path.ends_with(name))
                .map(|d| d.doc_id.clone())
                .unwrap()
        };
        let pdf = crate::files::pdf_path(&docs, &id_of("habibi.pdf")).unwrap();
        assert_eq!(pdf, folder.join("habibi.pdf"));
        let refused = crate::files::pdf_path(&docs, &id_of("readme.md")).unwrap_err();
        assert_eq!(refused.code, "invalid_input");

        // A deleted file is noticed and its document removed.
        seen.lock().unwrap().clear();
        std::fs::remove_file(folder.join("readme.md")).unwrap();
        let resynced = wait_for(&seen, "the deletion", |s| {
            s.removed == 1 && s.state == "watching"
        })
        .await;
        assert_eq!(resynced.indexed, 0);
        assert!(!engine
            .documents()
            .await
            .iter()
            .any(|d| d.path.ends_with("readme.md")));

        // Once stopped, changes are no longer followed or published.
        watches.stop(&folder);
        assert_eq!(
            watches.statuses(std::slice::from_ref(&folder))[0].state,
            "stopped"
        );
        seen.lock().unwrap().clear();
        std::fs::copy(
            shared_doc("md/rust-book-README.md"),
            folder.join("again.md"),
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
        assert!(!engine
            .documents()
            .await
            .iter()
            .any(|d| d.path.ends_with("again.md")));
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&folder);
    }

    #[test]
    fn folders_without_a_watch_are_stopped() {
        let watches = Watches::default();
        let statuses = watches.statuses(&[PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(statuses.len(), 2);
        assert!(statuses.iter().all(|s| s.state == "stopped"));
        watches.stop(Path::new("/a"));
    }
}
