//! The folders the user asked to keep in step with the library, remembered
//! across launches in `watched_folders.json` in the data folder.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// The file, in the data folder, that lists the watched folders.
pub const WATCHED_FOLDERS_FILE: &str = "watched_folders.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    folders: Vec<PathBuf>,
}

/// The list of watched folders on disk. Every change is written to a
/// temporary file first and renamed over the list, so a crash leaves either
/// the old list or the new one.
#[derive(Debug)]
pub struct WatchedFolders {
    path: PathBuf,
    lock: Mutex<()>,
}

impl WatchedFolders {
    /// The list kept in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(WATCHED_FOLDERS_FILE),
            lock: Mutex::new(()),
        }
    }

    /// The folders, in the order they were added. A missing file is an
    /// empty list; an unreadable one is an error that names it.
    pub fn list(&self) -> Result<Vec<PathBuf>, EngineError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    /// Adds `folder` (made absolute and canonical; it must be a folder).
    /// Returns the list and whether the folder was new.
    pub fn add(&self, folder: &Path) -> Result<(Vec<PathBuf>, bool), EngineError> {
        let folder = std::fs::canonicalize(folder).map_err(|e| {
            EngineError::InvalidInput(format!("cannot open folder {}: {e}", folder.display()))
        })?;
        if !folder.is_dir() {
            return Err(EngineError::InvalidInput(format!(
                "{} is not a folder",
                folder.display()
            )));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut folders = self.read()?;
        if folders.contains(&folder) {
            return Ok((folders, false));
        }
        folders.push(folder);
        self.write(&folders)?;
        Ok((folders, true))
    }

    /// Removes `folder` (compared as given and in canonical form, so a
    /// folder that no longer exists can still be removed). Returns the list
    /// and whether it was there.
    pub fn remove(&self, folder: &Path) -> Result<(Vec<PathBuf>, bool), EngineError> {
        let canonical = std::fs::canonicalize(folder).ok();
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut folders = self.read()?;
        let before = folders.len();
        folders.retain(|f| f != folder && Some(f) != canonical.as_ref());
        let removed = folders.len() != before;
        if removed {
            self.write(&folders)?;
        }
        Ok((folders, removed))
    }

    fn read(&self) -> Result<Vec<PathBuf>, EngineError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(EngineError::Watch(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )))
            }
        };
        let stored: Stored = serde_json::from_str(&text).map_err(|e| {
            EngineError::Watch(format!(
                "{} is not a watched-folder list: {e}",
                self.path.display()
            ))
        })?;
        Ok(stored.folders)
    }

    fn write(&self, folders: &[PathBuf]) -> Result<(), EngineError> {
        let fail = |e: std::io::Error| {
            EngineError::Watch(format!("cannot write {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let json = serde_json::to_vec_pretty(&Stored {
            folders: folders.to_vec(),
        })
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

impl Engine {
    /// The folders the user asked to watch, remembered in the data folder.
    /// Keep one handle per process: it serialises its own changes.
    pub fn watched_folders(&self) -> WatchedFolders {
        WatchedFolders::new(&self.config.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_added_once_removed_and_survive_a_reopen() {
        let data = tempfile::tempdir().unwrap();
        let docs = tempfile::tempdir().unwrap();
        let notes = docs.path().join("notes");
        std::fs::create_dir(&notes).unwrap();
        let list = WatchedFolders::new(data.path());
        assert!(list.list().unwrap().is_empty());

        let (folders, added) = list.add(&notes).unwrap();
        assert!(added);
        let canonical = std::fs::canonicalize(&notes).unwrap();
        assert_eq!(folders, vec![canonical.clone()]);
        // The same folder by another spelling is not added twice.
        let (_, again) = list.add(&notes.join("../notes")).unwrap();
        assert!(!again);
        list.add(docs.path()).unwrap();

        let reopened = WatchedFolders::new(data.path());
        assert_eq!(reopened.list().unwrap().len(), 2);
        assert!(!data.path().join("watched_folders.json.tmp").exists());

        std::fs::remove_dir(&notes).unwrap();
        let (folders, removed) = reopened.remove(&canonical).unwrap();
        assert!(removed, "a folder that is gone can still be removed");
        assert_eq!(folders, vec![std::fs::canonicalize(docs.path()).unwrap()]);
        assert!(!reopened.remove(&canonical).unwrap().1);
    }

    #[test]
    fn files_missing_folders_and_corrupt_lists_are_refused_clearly() {
        let data = tempfile::tempdir().unwrap();
        let list = WatchedFolders::new(data.path());
        let file = data.path().join("a.txt");
        std::fs::write(&file, "x").unwrap();
        let err = list.add(&file).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        let err = list
            .add(&data.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open folder"), "{err}");

        std::fs::write(data.path().join(WATCHED_FOLDERS_FILE), "{oops").unwrap();
        let err = list.list().unwrap_err().to_string();
        assert!(err.contains("is not a watched-folder list"), "{err}");
    }
}
