//! Helpers for the tests that run the real `lectern-worker` binary: the
//! test model, SciFact passages from the shared evaluation data, and
//! process checks.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use lectern_engine::WorkerConfig;

/// The `lectern-worker` binary cargo built for these tests.
pub fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lectern-worker"))
}

/// A worker configuration for the test binary with `faults` in
/// `LECTERN_WORKER_FAULT` (empty: none) and short timeouts.
pub fn worker_config(faults: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(worker_binary());
    config.handshake_timeout = Duration::from_secs(30);
    config.load_timeout = Duration::from_secs(120);
    config.request_timeout = Duration::from_secs(120);
    if !faults.is_empty() {
        config
            .env
            .insert("LECTERN_WORKER_FAULT".into(), faults.into());
    }
    config
}

/// The models folder (`LECTERN_MODELS_DIR`, else `~/.cache/lectern/models`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        })
}

/// The all-MiniLM-L6-v2 test embedder's folder.
pub fn minilm() -> PathBuf {
    let dir = models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "test model missing in {}: run models/provision.sh",
        dir.display()
    );
    dir
}

/// The embedder settings the engine uses for `dir`, as the worker gets
/// them.
pub fn embedder_settings(dir: &std::path::Path) -> serde_json::Value {
    serde_json::to_value(lectern_engine::embedder_config_for(dir).expect("embedder settings"))
        .expect("settings serialise")
}

/// `shared/` beside the repository (or `LECTERN_SHARED_DIR`).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("eval").is_dir(),
        "shared evaluation data not found at {} (set LECTERN_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// The first `n` SciFact abstracts (title and text), each cut to at most
/// `max_chars` characters.
pub fn scifact_passages(n: usize, max_chars: usize) -> Vec<String> {
    let path = shared_dir().join("eval/scifact/corpus.jsonl.gz");
    let file = std::fs::File::open(&path).expect("SciFact corpus");
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .take(n)
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
            let text = format!(
                "{}. {}",
                doc["title"].as_str().unwrap_or_default(),
                doc["text"].as_str().unwrap_or_default()
            );
            text.chars().take(max_chars).collect()
        })
        .collect()
}

/// The largest absolute difference between two sets of vectors, which
/// must have the same shape.
pub fn max_abs_diff(expected: &[Vec<f32>], got: &[Vec<f32>]) -> f32 {
    assert_eq!(expected.len(), got.len(), "as many vectors as texts");
    expected
        .iter()
        .zip(got)
        .map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "same dimensions");
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        })
        .fold(0.0f32, f32::max)
}

/// Whether process `pid` is gone: neither running nor left as a zombie.
pub fn process_gone(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        !PathBuf::from(format!("/proc/{pid}")).exists()
    } else {
        true
    }
}
