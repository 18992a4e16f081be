//! The list of models Lectern knows and whether each is installed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::HubError;

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Turns passages and queries into vectors.
    Embedder,
    /// Writes answers.
    Llm,
    /// Scores query–passage pairs.
    Reranker,
    /// A tokenizer on its own.
    Tokenizer,
}

/// One file a model needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// Path inside the repository (and inside the local model folder).
    pub path: String,
    /// Lowercase hex SHA-256 of the file, when known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Size in bytes, when known.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A model in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Short name used on the command line and in settings.
    pub id: String,
    /// What it is for.
    pub kind: ModelKind,
    /// Hugging Face repository (`owner/name`), if it can be downloaded.
    #[serde(default)]
    pub repo: Option<String>,
    /// Branch, tag or commit.
    #[serde(default)]
    pub revision: Option<String>,
    /// Where a local copy comes from when it is not downloaded.
    #[serde(default)]
    pub source: Option<String>,
    /// Folder (or file) name under the models folder; the id otherwise.
    #[serde(default)]
    pub local_path: Option<String>,
    /// The files it needs.
    pub files: Vec<CatalogFile>,
    /// Architecture details (dimensions, pooling, context length, …).
    #[serde(default)]
    pub params: serde_json::Value,
    /// Licence identifier.
    #[serde(default)]
    pub license: Option<String>,
}

/// Whether a model is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstallState {
    /// Every file is there with the expected size.
    Installed {
        /// Where it is.
        path: PathBuf,
    },
    /// Some files are there, others are missing or have the wrong size.
    Partial {
        /// Files missing or of the wrong size.
        missing: Vec<String>,
    },
    /// Nothing is there.
    Absent,
}

impl CatalogEntry {
    /// Where the model lives under `models_dir`: a folder, or a single
    /// file for one-file models such as GGUF.
    pub fn local_dir(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.local_path.as_deref().unwrap_or(&self.id))
    }

    /// Whether this model is a single file (for example a `.gguf`) that
    /// lives directly at [`CatalogEntry::local_dir`].
    pub fn is_single_file(&self) -> bool {
        self.files.len() == 1 && self.local_path.as_deref() == Some(self.files[0].path.as_str())
    }

    /// Where file `f` of this model lives under `models_dir`.
    pub fn local_file(&self, models_dir: &Path, f: &CatalogFile) -> PathBuf {
        if self.is_single_file() {
            self.local_dir(models_dir)
        } else {
            self.local_dir(models_dir).join(&f.path)
        }
    }

    /// Total size in bytes, when every file's size is known.
    pub fn total_size(&self) -> Option<u64> {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Checks which files are present (by existence and, where known, size;
    /// digests are checked when a file is downloaded, not on every look).
    pub fn install_state(&self, models_dir: &Path) -> InstallState {
        let mut missing = Vec::new();
        let mut present = 0;
        for f in &self.files {
            let p = self.local_file(models_dir, f);
            match std::fs::metadata(&p) {
                Ok(m) if f.size.is_none_or(|s| s == m.len()) => present += 1,
                Ok(_) => {
                    present += 1;
                    missing.push(f.path.clone());
                }
                Err(_) => missing.push(f.path.clone()),
            }
        }
        if missing.is_empty() {
            InstallState::Installed {
                path: self.local_dir(models_dir),
            }
        } else if present == 0 {
            InstallState::Absent
        } else {
            InstallState::Partial { missing }
        }
    }
}

/// The models Lectern knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalog {
    /// Entries in catalog order.
    pub models: Vec<CatalogEntry>,
}

const BUILTIN: &str = include_str!("../../../models/catalog.json");

impl Catalog {
    /// The catalog shipped with this build.
    pub fn builtin() -> Self {
        // The file is compiled in and checked by the tests, so this cannot
        // fail in a build that passed them.
        Self::parse(BUILTIN).unwrap_or(Catalog { models: Vec::new() })
    }

    /// Parses a catalog from JSON (an array of entries).
    pub fn parse(json: &str) -> Result<Self, HubError> {
        let c: Catalog =
            serde_json::from_str(json).map_err(|e| HubError::Catalog(e.to_string()))?;
        for m in &c.models {
            if m.files.is_empty() {
                return Err(HubError::Catalog(format!("`{}` lists no files", m.id)));
            }
            for f in &m.files {
                if f.path.contains("..") || f.path.starts_with('/') {
                    return Err(HubError::Catalog(format!(
                        "`{}` has an unsafe file path `{}`",
                        m.id, f.path
                    )));
                }
                if let Some(d) = &f.sha256 {
                    if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(HubError::Catalog(format!(
                            "`{}` file `{}` has a malformed sha256",
                            m.id, f.path
                        )));
                    }
                }
            }
        }
        Ok(c)
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Result<&CatalogEntry, HubError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| HubError::UnknownModel(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_names_the_default_models() {
        let c = Catalog::parse(BUILTIN).expect("catalog parses");
        assert_eq!(c, Catalog::builtin());
        let minilm = c.get("all-MiniLM-L6-v2").unwrap();
        assert_eq!(minilm.kind, ModelKind::Embedder);
        assert_eq!(
            minilm.repo.as_deref(),
            Some("sentence-transformers/all-MiniLM-L6-v2")
        );
        assert!(minilm.files.iter().all(|f| f.sha256.is_some()));
        assert!(c.get("qwen3-4b-instruct-2507").is_ok());
        assert!(matches!(c.get("gpt-5"), Err(HubError::UnknownModel(_))));
    }

    #[test]
    fn malformed_catalogs_are_refused_with_the_reason() {
        let bad = r#"[{"id":"x","kind":"llm","files":[{"path":"../../etc/passwd"}]}]"#;
        let e = Catalog::parse(bad).unwrap_err().to_string();
        assert!(e.contains("unsafe file path"), "{e}");
        let bad = r#"[{"id":"x","kind":"llm","files":[{"path":"a","sha256":"xyz"}]}]"#;
        assert!(Catalog::parse(bad)
            .unwrap_err()
            .to_string()
            .contains("malformed sha256"));
        assert!(Catalog::parse("{").is_err());
    }

    #[test]
    fn install_state_follows_the_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let entry = CatalogEntry {
            id: "m".into(),
            kind: ModelKind::Embedder,
            repo: Some("o/m".into()),
            revision: None,
            source: None,
            local_path: None,
            files: vec![
                CatalogFile {
                    path: "a.bin".into(),
                    sha256: None,
                    size: Some(3),
                },
                CatalogFile {
                    path: "b.json".into(),
                    sha256: None,
                    size: None,
                },
            ],
            params: serde_json::Value::Null,
            license: None,
        };
        assert_eq!(entry.install_state(dir.path()), InstallState::Absent);
        std::fs::create_dir_all(dir.path().join("m")).unwrap();
        std::fs::write(dir.path().join("m/a.bin"), b"abcd").unwrap();
        assert_eq!(
            entry.install_state(dir.path()),
            InstallState::Partial {
                missing: vec!["a.bin".into(), "b.json".into()]
            }
        );
        std::fs::write(dir.path().join("m/a.bin"), b"abc").unwrap();
        std::fs::write(dir.path().join("m/b.json"), b"{}").unwrap();
        assert_eq!(
            entry.install_state(dir.path()),
            InstallState::Installed {
                path: dir.path().join("m")
            }
        );
    }
}
