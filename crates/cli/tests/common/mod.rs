//! Where the command-line tests find models and real documents.

use std::path::PathBuf;

/// Where `models/provision.sh` put the test models.
pub fn models_dir() -> PathBuf {
    std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        })
}

/// `shared/eval/docs` beside the repository (or under `LECTERN_SHARED_DIR`).
pub fn shared_docs() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("shared"))
        .join("eval/docs")
}
