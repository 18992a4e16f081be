//! Collections: named sets of documents in one library. A document may be
//! in several collections or in none; a search, an answer or a whole
//! conversation can be scoped to one collection, and retrieval then only
//! returns passages of its documents.
//!
//! The collections live beside the library's manifest, in
//! `<data_dir>/library/collections.json`, rewritten through a temporary
//! file, an fsync and a rename, so a crash leaves the old or the new list.
//! Changes within one process are serialised. The store is synchronous
//! file I/O: async callers run it on a blocking thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{now_secs, EngineError};

/// The file, in the library folder, that holds the collections.
pub const COLLECTIONS_FILE: &str = "collections.json";

/// Longest collection name, in characters.
pub const MAX_COLLECTION_NAME_CHARS: usize = 64;

/// Serialises every change made through any store in this process.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// What can go wrong with a collection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectionError {
    /// No collection has this name.
    #[error("there is no collection named `{0}`")]
    NotFound(String),
    /// Another collection already has this name (names are compared
    /// without regard to case).
    #[error("a collection named `{0}` already exists")]
    Exists(String),
    /// The name is empty, too long or has control characters.
    #[error("{0}")]
    InvalidName(String),
    /// A document id that is not in the library.
    #[error("no indexed document has the id `{0}`")]
    UnknownDocument(String),
    /// The collections file exists but cannot be read.
    #[error("collections file {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON reader said.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("collections storage at {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
}

impl From<CollectionError> for EngineError {
    fn from(err: CollectionError) -> Self {
        match err {
            CollectionError::NotFound(_)
            | CollectionError::Exists(_)
            | CollectionError::InvalidName(_)
            | CollectionError::UnknownDocument(_) => EngineError::InvalidInput(err.to_string()),
            CollectionError::Corrupt { .. } | CollectionError::Io { .. } => {
                EngineError::Internal(err.to_string())
            }
        }
    }
}

/// A named set of documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// The name, as the user wrote it (trimmed).
    pub name: String,
    /// Ids of its documents, sorted, without repeats.
    #[serde(default)]
    pub doc_ids: Vec<String>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CollectionsFile {
    #[serde(default)]
    collections: Vec<Collection>,
}

/// Checks and normalises a collection name: trimmed, not empty, at most
/// [`MAX_COLLECTION_NAME_CHARS`] characters, no control characters.
pub fn clean_collection_name(raw: &str) -> Result<String, CollectionError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(CollectionError::InvalidName(
            "a collection name cannot be empty".into(),
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_COLLECTION_NAME_CHARS {
        return Err(CollectionError::InvalidName(format!(
            "a collection name can have at most {MAX_COLLECTION_NAME_CHARS} characters (this one has {chars})"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(CollectionError::InvalidName(
            "a collection name cannot contain line breaks or control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// Where the collection called `name` (ignoring case) is in `list`.
fn position(list: &[Collection], name: &str) -> Result<usize, CollectionError> {
    list.iter()
        .position(|c| same_name(&c.name, name))
        .ok_or_else(|| CollectionError::NotFound(name.to_owned()))
}

fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
    WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The collections of one library.
#[derive(Debug, Clone)]
pub struct CollectionStore {
    path: PathBuf,
}

impl CollectionStore {
    /// The store in the library folder `library_dir`.
    pub fn new(library_dir: &Path) -> Self {
        Self {
            path: library_dir.join(COLLECTIONS_FILE),
        }
    }

    /// The file the collections are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<CollectionsFile, CollectionError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CollectionsFile::default())
            }
            Err(e) => {
                return Err(CollectionError::Io {
                    path: self.path.clone(),
                    source: Arc::new(e),
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| CollectionError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes the file atomically: temporary file, fsync, rename.
    fn write(&self, file: &CollectionsFile) -> Result<(), CollectionError> {
        let io = |e: std::io::Error| CollectionError::Io {
            path: self.path.clone(),
            source: Arc::new(e),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let json = serde_json::to_vec_pretty(file).map_err(|e| CollectionError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    /// Reads, changes and writes the file under the process-wide lock.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Vec<Collection>) -> Result<T, CollectionError>,
    ) -> Result<T, CollectionError> {
        let _guard = lock();
        let mut file = self.read()?;
        let out = f(&mut file.collections)?;
        self.write(&file)?;
        Ok(out)
    }

    /// Every collection, by name (case-insensitively).
    pub fn list(&self) -> Result<Vec<Collection>, CollectionError> {
        let mut list = self.read()?.collections;
        list.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(list)
    }

    /// The collection called `name` (compared without regard to case).
    pub fn get(&self, name: &str) -> Result<Collection, CollectionError> {
        let name = name.trim();
        self.read()?
            .collections
            .into_iter()
            .find(|c| same_name(&c.name, name))
            .ok_or_else(|| CollectionError::NotFound(name.to_owned()))
    }

    /// Makes an empty collection.
    pub fn create(&self, name: &str) -> Result<Collection, CollectionError> {
        let name = clean_collection_name(name)?;
        self.update(|list| {
            if let Some(c) = list.iter().find(|c| same_name(&c.name, &name)) {
                return Err(CollectionError::Exists(c.name.clone()));
            }
            let c = Collection {
                name,
                doc_ids: Vec::new(),
                created_at: now_secs(),
            };
            list.push(c.clone());
            Ok(c)
        })
    }

    /// Gives a collection a new name (which may differ only in case).
    pub fn rename(&self, name: &str, new_name: &str) -> Result<Collection, CollectionError> {
        let new_name = clean_collection_name(new_name)?;
        let name = name.trim();
        self.update(|list| {
            let at = position(list, name)?;
            if let Some(other) = list
                .iter()
                .enumerate()
                .find(|(i, c)| *i != at && same_name(&c.name, &new_name))
            {
                return Err(CollectionError::Exists(other.1.name.clone()));
            }
            list[at].name = new_name;
            Ok(list[at].clone())
        })
    }

    /// Removes a collection (its documents stay in the library).
    pub fn delete(&self, name: &str) -> Result<Collection, CollectionError> {
        let name = name.trim();
        self.update(|list| {
            let at = position(list, name)?;
            Ok(list.remove(at))
        })
    }

    /// Adds documents to a collection; ones already in it stay once.
    pub fn add(&self, name: &str, doc_ids: &[String]) -> Result<Collection, CollectionError> {
        let name = name.trim();
        self.update(|list| {
            let at = position(list, name)?;
            let c = &mut list[at];
            c.doc_ids.extend(doc_ids.iter().cloned());
            c.doc_ids.sort();
            c.doc_ids.dedup();
            Ok(c.clone())
        })
    }

    /// Removes documents from a collection; ones not in it are ignored.
    pub fn remove(&self, name: &str, doc_ids: &[String]) -> Result<Collection, CollectionError> {
        let name = name.trim();
        self.update(|list| {
            let at = position(list, name)?;
            let c = &mut list[at];
            c.doc_ids.retain(|d| !doc_ids.contains(d));
            Ok(c.clone())
        })
    }

    /// Takes documents that left the library out of every collection;
    /// collections left empty stay. Returns how many memberships ended.
    pub fn forget_documents(&self, doc_ids: &[String]) -> Result<usize, CollectionError> {
        if doc_ids.is_empty() || !self.path.exists() {
            return Ok(0);
        }
        self.update(|list| {
            let mut removed = 0;
            for c in list.iter_mut() {
                let before = c.doc_ids.len();
                c.doc_ids.retain(|d| !doc_ids.contains(d));
                removed += before - c.doc_ids.len();
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn collections_are_created_renamed_filled_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = CollectionStore::new(dir.path());
        assert!(store.list().unwrap().is_empty());
        let papers = store.create("  Papers ").unwrap();
        assert_eq!(papers.name, "Papers");
        assert!(papers.doc_ids.is_empty());
        store.create("notes").unwrap();

        let c = store.add("papers", &ids(&["bb", "aa", "bb"])).unwrap();
        assert_eq!(c.doc_ids, ids(&["aa", "bb"]));
        let c = store.add("PAPERS", &ids(&["cc", "aa"])).unwrap();
        assert_eq!(c.doc_ids, ids(&["aa", "bb", "cc"]));
        let c = store.remove("Papers", &ids(&["bb", "zz"])).unwrap();
        assert_eq!(c.doc_ids, ids(&["aa", "cc"]));

        // A new store over the same folder reads the same collections.
        let again = CollectionStore::new(dir.path());
        let names: Vec<String> = again.list().unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["notes", "Papers"]);
        assert_eq!(again.get("PAPERS").unwrap().doc_ids, ids(&["aa", "cc"]));

        // Renaming keeps the documents; a change of case alone is allowed.
        let c = store.rename("papers", "Reading list").unwrap();
        assert_eq!(c.doc_ids, ids(&["aa", "cc"]));
        store.rename("reading LIST", "Reading List").unwrap();
        assert_eq!(store.get("reading list").unwrap().name, "Reading List");
        assert!(matches!(
            store.get("Papers"),
            Err(CollectionError::NotFound(_))
        ));

        // Documents leaving the library leave every collection; an emptied
        // collection stays.
        store.add("notes", &ids(&["cc"])).unwrap();
        assert_eq!(store.forget_documents(&ids(&["cc", "aa"])).unwrap(), 3);
        assert!(store.get("reading list").unwrap().doc_ids.is_empty());
        assert!(store.get("notes").unwrap().doc_ids.is_empty());

        let gone = store.delete("NOTES").unwrap();
        assert_eq!(gone.name, "notes");
        assert_eq!(store.list().unwrap().len(), 1);
        // No temporary file is left behind.
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, [COLLECTIONS_FILE]);
    }

    #[test]
    fn bad_names_and_unknown_collections_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let store = CollectionStore::new(dir.path());
        store.create("Papers").unwrap();
        store.create("Notes").unwrap();
        let msg = |e: CollectionError| e.to_string();
        assert_eq!(
            msg(store.create("papers").unwrap_err()),
            "a collection named `Papers` already exists"
        );
        assert!(msg(store.create("   ").unwrap_err()).contains("cannot be empty"));
        assert!(msg(store.create(&"x".repeat(65)).unwrap_err()).contains("at most 64"));
        assert!(store.create(&"é".repeat(64)).is_ok());
        assert!(msg(store.create("two\nlines").unwrap_err()).contains("control characters"));
        assert_eq!(
            msg(store.rename("notes", "PAPERS").unwrap_err()),
            "a collection named `Papers` already exists"
        );
        for err in [
            store.add("Nope", &ids(&["aa"])).unwrap_err(),
            store.remove("Nope", &ids(&["aa"])).unwrap_err(),
            store.rename("Nope", "Other").unwrap_err(),
            store.delete("Nope").unwrap_err(),
            store.get("Nope").unwrap_err(),
        ] {
            assert_eq!(err.to_string(), "there is no collection named `Nope`");
            assert!(matches!(
                EngineError::from(err),
                EngineError::InvalidInput(_)
            ));
        }
        // A damaged file is reported, not silently replaced.
        std::fs::write(store.path(), b"{ not json").unwrap();
        assert!(matches!(
            store.list().unwrap_err(),
            CollectionError::Corrupt { .. }
        ));
        assert!(store.create("Other").is_err());
    }
}
