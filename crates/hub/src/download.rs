//! Downloading a catalog model through `hf-hub`, verified file by file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hf_hub::api::tokio::{ApiBuilder, Progress};
use hf_hub::{Repo, RepoType};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{CatalogEntry, CatalogFile, HubError};

/// Progress of a download, for progress bars.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DownloadEvent {
    /// A file started (or resumed).
    FileStarted {
        /// Path inside the repository.
        file: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes of the current file arrived.
    Progress {
        /// Path inside the repository.
        file: String,
        /// Bytes so far.
        done: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// A file matched its size and digest and is in place.
    FileVerified {
        /// Path inside the repository.
        file: String,
        /// Whether a digest was checked (the catalog may not know one).
        digest_checked: bool,
    },
    /// A file was already installed and verified earlier.
    FileSkipped {
        /// Path inside the repository.
        file: String,
    },
    /// Every file is in place.
    Finished {
        /// Where the model is.
        path: PathBuf,
    },
}

/// Receives download events.
pub type DownloadFn = Arc<dyn Fn(DownloadEvent) + Send + Sync>;

/// Where to download from and to.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The models folder the model is installed into.
    pub models_dir: PathBuf,
    /// The hub's base URL; `None` means `HF_ENDPOINT` or huggingface.co.
    pub endpoint: Option<String>,
    /// Access token for gated models (`HF_TOKEN` otherwise).
    pub token: Option<String>,
    /// Where `hf-hub` keeps its cache (partial downloads resume from it).
    pub cache_dir: PathBuf,
}

impl DownloadOptions {
    /// Options for `models_dir`, with the cache in `models_dir/.hub-cache`
    /// and endpoint and token from the environment.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|s| !s.is_empty()),
            token: std::env::var("HF_TOKEN").ok().filter(|s| !s.is_empty()),
            cache_dir: models_dir.join(".hub-cache"),
        }
    }
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[derive(Clone)]
struct Reporter {
    file: String,
    size: u64,
    done: Arc<std::sync::atomic::AtomicU64>,
    on_event: DownloadFn,
}

impl Progress for Reporter {
    async fn init(&mut self, size: usize, _filename: &str) {
        self.size = size as u64;
        (self.on_event)(DownloadEvent::FileStarted {
            file: self.file.clone(),
            size: self.size,
        });
    }

    async fn update(&mut self, size: usize) {
        let done = self.done.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
        (self.on_event)(DownloadEvent::Progress {
            file: self.file.clone(),
            done,
            size: self.size,
        });
    }

    async fn finish(&mut self) {}
}

/// Checks a file against the catalog: size, then digest when known.
/// Returns whether a digest was checked.
fn verify(entry: &CatalogEntry, f: &CatalogFile, path: &Path) -> Result<bool, HubError> {
    let fail = |message: String| HubError::Verification {
        model: entry.id.clone(),
        file: f.path.clone(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| HubError::io(path, e))?
        .len();
    if let Some(size) = f.size {
        if size != len {
            return Err(fail(format!("expected {size} bytes, got {len}")));
        }
    }
    match &f.sha256 {
        Some(want) => {
            let got = sha256_file(path).map_err(|e| HubError::io(path, e))?;
            if !got.eq_ignore_ascii_case(want) {
                return Err(fail(format!("sha256 is {got}, expected {want}")));
            }
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Downloads `entry` into `opts.models_dir`, skipping files that are
/// already installed and verified. Each file is verified before it is moved
/// into the model folder; a file that fails verification is deleted from
/// the cache so the next attempt fetches it again. Setting `cancel` stops
/// between progress updates.
pub async fn download(
    entry: &CatalogEntry,
    opts: &DownloadOptions,
    on_event: DownloadFn,
    cancel: Arc<AtomicBool>,
) -> Result<PathBuf, HubError> {
    let repo_id = entry
        .repo
        .clone()
        .ok_or_else(|| HubError::NotDownloadable(entry.id.clone()))?;
    let revision = entry.revision.clone().unwrap_or_else(|| "main".into());
    let mut builder = ApiBuilder::new()
        .with_progress(false)
        .with_cache_dir(opts.cache_dir.clone())
        .with_token(opts.token.clone());
    if let Some(endpoint) = &opts.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().map_err(|e| HubError::Download {
        model: entry.id.clone(),
        file: String::new(),
        message: e.to_string(),
    })?;
    let repo = api.repo(Repo::with_revision(repo_id, RepoType::Model, revision));
    for f in &entry.files {
        if cancel.load(Ordering::Relaxed) {
            return Err(HubError::Cancelled);
        }
        let target = entry.local_file(&opts.models_dir, f);
        if target.is_file() && verify_off_runtime(entry, f, &target).await.is_ok() {
            on_event(DownloadEvent::FileSkipped {
                file: f.path.clone(),
            });
            continue;
        }
        let reporter = Reporter {
            file: f.path.clone(),
            size: f.size.unwrap_or(0),
            done: Arc::default(),
            on_event: on_event.clone(),
        };
        let cached = tokio::select! {
            r = repo.download_with_progress(&f.path, reporter) => r.map_err(|e| HubError::Download {
                model: entry.id.clone(),
                file: f.path.clone(),
                message: e.to_string(),
            })?,
            _ = wait_for(cancel.clone()) => return Err(HubError::Cancelled),
        };
        let checked = match verify_off_runtime(entry, f, &cached).await {
            Ok(c) => c,
            Err(e) => {
                // Drop the bad copy (the cache entry is a link to a blob).
                if let Ok(real) = std::fs::canonicalize(&cached) {
                    let _ = std::fs::remove_file(real);
                }
                let _ = std::fs::remove_file(&cached);
                return Err(e);
            }
        };
        install(&cached, &target)?;
        on_event(DownloadEvent::FileVerified {
            file: f.path.clone(),
            digest_checked: checked,
        });
    }
    let path = entry.local_dir(&opts.models_dir);
    on_event(DownloadEvent::Finished { path: path.clone() });
    Ok(path)
}

/// [`verify`] on a blocking thread: hashing a model file takes seconds.
async fn verify_off_runtime(
    entry: &CatalogEntry,
    f: &CatalogFile,
    path: &Path,
) -> Result<bool, HubError> {
    let (e, f2, p) = (entry.clone(), f.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || verify(&e, &f2, &p))
        .await
        .map_err(|err| HubError::Download {
            model: entry.id.clone(),
            file: f.path.clone(),
            message: err.to_string(),
        })?
}

async fn wait_for(flag: Arc<AtomicBool>) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Moves a verified file from the download cache into the model folder
/// (copying when the two are on different file systems), through a
/// temporary name so the model folder never holds a partial file.
fn install(cached: &Path, to: &Path) -> Result<(), HubError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
    }
    let blob = std::fs::canonicalize(cached).map_err(|e| HubError::io(cached, e))?;
    let tmp = to.with_extension("part");
    if std::fs::rename(&blob, &tmp).is_err() {
        std::fs::copy(&blob, &tmp).map_err(|e| HubError::io(&tmp, e))?;
        let _ = std::fs::remove_file(&blob);
    }
    // The cache's pointer to the blob is dangling now; drop it.
    let _ = std::fs::remove_file(cached);
    std::fs::rename(&tmp, to).map_err(|e| HubError::io(to, e))?;
    Ok(())
}
