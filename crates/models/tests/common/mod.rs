//! Where the test models are: `LECTERN_MODELS_DIR`, else
//! `~/.cache/lectern/models`, as `models/provision.sh` puts them.

use std::path::PathBuf;

/// The models folder, checked to hold every path in `needed`.
pub fn models_dir_with(needed: &[&str]) -> PathBuf {
    let dir = std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        });
    for path in needed {
        assert!(
            dir.join(path).exists(),
            "test model {path} missing in {}: run models/provision.sh",
            dir.display()
        );
    }
    dir
}
