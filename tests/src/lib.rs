//! Helpers shared by the end-to-end tests: where the real documents and the
//! provisioned models are, and an engine opened on a fresh data folder.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use lectern_engine::{Engine, EngineConfig, IngestEvent, IngestReport, ProgressFn};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the repository")
        .to_path_buf()
}

/// `shared/` beside the repository: real documents and evaluation data.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared"));
    assert!(
        dir.join("eval").is_dir(),
        "shared evaluation data not found at {} (set LECTERN_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// A real document from `shared/eval/docs`.
pub fn doc(rel: &str) -> PathBuf {
    let p = shared_dir().join("eval").join("docs").join(rel);
    assert!(p.is_file(), "missing test document {}", p.display());
    p
}

/// Where `models/provision.sh` put the test models.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache")
                .join("lectern")
                .join("models")
        });
    assert!(
        dir.join("all-MiniLM-L6-v2")
            .join("model.safetensors")
            .is_file(),
        "test models not found in {}: run models/provision.sh",
        dir.display()
    );
    dir
}

/// An engine configuration on `data_dir` with the provisioned models, on CPU.
pub fn config(data_dir: PathBuf) -> EngineConfig {
    let models = models_dir();
    let mut cfg = EngineConfig::from_env(Some(data_dir)).expect("config");
    cfg.embedder_dir = models.join("all-MiniLM-L6-v2");
    cfg.llm_path = Some(models.join("tiny-qwen3"));
    cfg.models_dir = models;
    cfg.device = lectern_engine::DevicePreference::Cpu;
    cfg
}

/// Opens an engine on `data_dir`.
pub async fn open(data_dir: PathBuf) -> Engine {
    Engine::open(config(data_dir)).await.expect("engine opens")
}

/// Ingests `paths`, returning the report and every progress event.
pub async fn ingest(engine: &Engine, paths: Vec<PathBuf>) -> (IngestReport, Vec<IngestEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let sink: ProgressFn = Arc::new(move |e| sink_events.lock().unwrap().push(e));
    let report = engine
        .ingest(paths, sink, Arc::new(AtomicBool::new(false)))
        .await
        .expect("ingest runs");
    let events = events.lock().unwrap().clone();
    (report, events)
}
