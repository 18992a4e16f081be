//! Finding the files to ingest among the paths a user picked.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::format::{detect_format, supported_summary};

/// The outcome of [`discover`]: the files to ingest and the paths passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Supported files, sorted and free of duplicates.
    pub files: Vec<PathBuf>,
    /// Paths that were not taken, each with a human-readable reason, sorted by path.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Expands the given paths into the list of files to ingest.
///
/// A file given directly is kept when its format is supported (see
/// [`detect_format`]) and otherwise reported in [`Discovery::skipped`]. A
/// folder is walked recursively: hidden files and folders (names starting with
/// `.`) are ignored, supported files are kept and unsupported ones are
/// reported as skipped. Symbolic links are followed, each folder is visited at
/// most once, and a file reached by two routes (for example `docs/a.md` and
/// `docs/../docs/a.md`) is listed once, under the first path in sort order.
pub fn discover(paths: &[PathBuf]) -> Discovery {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut visited_dirs = HashSet::new();
    for path in paths {
        match fs::metadata(path) {
            Err(e) => skipped.push((path.clone(), format!("cannot read: {e}"))),
            Ok(meta) if meta.is_dir() => {
                walk(path, &mut visited_dirs, &mut found, &mut skipped);
            }
            Ok(meta) if meta.is_file() => match detect_format(path) {
                Some(_) => found.push(path.clone()),
                None => skipped.push((path.clone(), unsupported_reason(path))),
            },
            Ok(_) => skipped.push((path.clone(), "not a regular file or folder".to_string())),
        }
    }

    found.sort();
    let mut seen = HashSet::new();
    found.retain(|p| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    skipped.sort();
    skipped.dedup();
    tracing::debug!(
        files = found.len(),
        skipped = skipped.len(),
        "discovered documents"
    );
    Discovery {
        files: found,
        skipped,
    }
}

fn walk(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    found: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
) {
    let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !visited.insert(key) {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            skipped.push((dir.to_path_buf(), format!("cannot list folder: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                skipped.push((dir.to_path_buf(), format!("cannot list folder: {e}")));
                continue;
            }
        };
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `fs::metadata` follows symbolic links, so a link to a folder is walked
        // and a link to a file is judged by the file it points to.
        match fs::metadata(&path) {
            Err(e) => skipped.push((path, format!("cannot read: {e}"))),
            Ok(meta) if meta.is_dir() => walk(&path, visited, found, skipped),
            Ok(meta) if meta.is_file() => match detect_format(&path) {
                Some(_) => found.push(path),
                None => {
                    let reason = unsupported_reason(&path);
                    skipped.push((path, reason));
                }
            },
            Ok(_) => skipped.push((path, "not a regular file or folder".to_string())),
        }
    }
}

pub(crate) fn unsupported_reason(path: &Path) -> String {
    match path.extension() {
        Some(ext) => format!(
            "unsupported file type \".{}\" ({})",
            ext.to_string_lossy(),
            supported_summary()
        ),
        None => format!(
            "no file extension to tell its format ({})",
            supported_summary()
        ),
    }
}
