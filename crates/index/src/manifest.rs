use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::IndexError;

/// A fully indexed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentEntry {
    /// Stable id derived from the document's path.
    pub doc_id: String,
    /// Where the document was read from.
    pub path: String,
    /// Title shown in citations.
    pub title: String,
    /// `text`, `markdown`, `pdf`, …
    pub format: String,
    /// blake3 of the file's bytes when it was indexed.
    pub content_hash: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Pages (1 for formats without pages).
    pub pages: u32,
    /// Chunks written for it.
    pub chunks: u32,
    /// Seconds since the Unix epoch when indexing finished.
    pub indexed_at: u64,
    /// Parser warnings (for example pages that need OCR).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The library format this code reads and writes. Libraries written in an
/// older format are rebuilt on open (see [`Manifest::pending_reindex`]).
pub const LIBRARY_FORMAT: u32 = 2;

/// The list of fully indexed documents, saved as JSON and replaced atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the library.
    pub version: u32,
    /// Embedding dimensions of the library, once known.
    pub dim: Option<usize>,
    /// The embedding model the vectors came from, once known.
    #[serde(default)]
    pub embedder: Option<String>,
    /// The LanceDB table holding the vectors search uses (`chunks` when
    /// absent: a library that never switched embedding model).
    #[serde(default)]
    pub vector_table: Option<String>,
    /// A switch to another embedding model that has begun and not finished:
    /// its vectors are being built in a table of their own while search
    /// keeps using [`Manifest::vector_table`].
    #[serde(default)]
    pub switch: Option<EmbedderSwitch>,
    /// Paths of documents that were indexed in an older library format and
    /// still have to be indexed again; kept here so a crash does not lose them.
    #[serde(default)]
    pub pending_reindex: Vec<String>,
    /// Documents by id.
    pub documents: BTreeMap<String, DocumentEntry>,
}

/// An embedding model switch in progress (see [`Manifest::switch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedderSwitch {
    /// The model the new vectors come from.
    pub embedder: String,
    /// Its vector dimensions.
    pub dim: usize,
    /// The LanceDB table the new vectors are written to.
    pub table: String,
}

impl Manifest {
    /// Reads the manifest, or an empty one if the file does not exist.
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| IndexError::CorruptManifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: LIBRARY_FORMAT,
                ..Default::default()
            }),
            Err(e) => Err(IndexError::io(path, e)),
        }
    }

    /// Writes the manifest to a temporary file, syncs it and renames it over
    /// the old one, so a crash leaves either the old or the new manifest.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| IndexError::Internal(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| IndexError::io(&tmp, e))?;
        f.sync_all().map_err(|e| IndexError::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
