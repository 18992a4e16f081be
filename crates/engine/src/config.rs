use std::path::PathBuf;

use lectern_gpu::DevicePreference;
use lectern_ingest::ChunkConfig;
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// Everything the engine needs to know to open a library.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Where the library lives.
    pub data_dir: PathBuf,
    /// Where models are kept.
    pub models_dir: PathBuf,
    /// The embedding model's folder.
    pub embedder_dir: PathBuf,
    /// The default language model (folder or .gguf), if any.
    pub llm_path: Option<PathBuf>,
    /// Chunk size and overlap.
    pub chunking: ChunkConfig,
    /// Which device to run models on.
    pub device: DevicePreference,
    /// Most tokens of context the language model may use.
    pub max_context: usize,
    /// Ingestion writes finished documents to the stores once this many
    /// chunks are waiting (or after two seconds): fewer, larger commits.
    pub write_batch_chunks: usize,
}

/// Default for [`EngineConfig::write_batch_chunks`].
pub const DEFAULT_WRITE_BATCH_CHUNKS: usize = 512;

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl EngineConfig {
    /// The default configuration, with overrides from the environment:
    /// `LECTERN_DATA_DIR` (the platform data dir otherwise),
    /// `LECTERN_MODELS_DIR` (the platform cache dir's `lectern/models`
    /// otherwise), `LECTERN_EMBEDDER`, `LECTERN_LLM`, `LECTERN_DEVICE` and
    /// `LECTERN_WRITE_BATCH_CHUNKS`.
    /// An explicit `data_dir` wins over the environment.
    pub fn from_env(data_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        let dirs = directories::ProjectDirs::from("app", "lectern", "Lectern");
        let data_dir = data_dir
            .or_else(|| env_path("LECTERN_DATA_DIR"))
            .or_else(|| dirs.as_ref().map(|d| d.data_dir().to_path_buf()))
            .ok_or_else(|| {
                EngineError::NotConfigured(
                    "no data folder: set LECTERN_DATA_DIR or pass --data-dir".into(),
                )
            })?;
        let models_dir = env_path("LECTERN_MODELS_DIR")
            .or_else(|| {
                directories::BaseDirs::new().map(|b| b.cache_dir().join("lectern").join("models"))
            })
            .unwrap_or_else(|| data_dir.join("models"));
        let embedder_dir =
            env_path("LECTERN_EMBEDDER").unwrap_or_else(|| models_dir.join("all-MiniLM-L6-v2"));
        let llm_path = env_path("LECTERN_LLM");
        let device = DevicePreference::from_env()?;
        let write_batch_chunks = match std::env::var("LECTERN_WRITE_BATCH_CHUNKS") {
            Ok(v) if !v.is_empty() => {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "LECTERN_WRITE_BATCH_CHUNKS must be a positive number, not {v:?}"
                    ))
                })?
            }
            _ => DEFAULT_WRITE_BATCH_CHUNKS,
        };
        Ok(Self {
            data_dir,
            models_dir,
            embedder_dir,
            llm_path,
            chunking: ChunkConfig::default(),
            device,
            max_context: 32_768,
            write_batch_chunks,
        })
    }
}
