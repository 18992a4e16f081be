use std::path::PathBuf;

use lectern_gpu::DevicePreference;
use lectern_hub::{Catalog, ModelKind};
use lectern_ingest::ChunkConfig;
use lectern_models::{EmbedderConfig, KvDtype};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// Everything the engine needs to know to open a library.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Where the library lives.
    pub data_dir: PathBuf,
    /// Where models are kept.
    pub models_dir: PathBuf,
    /// The embedding model's folder. When its folder name is a catalog
    /// embedder's (see [`EngineConfig::embedder_config`]), the catalog's
    /// parameters say how to run it.
    pub embedder_dir: PathBuf,
    /// Whether the embedder was chosen explicitly (`LECTERN_EMBEDDER`,
    /// `--embedder`). When it was not, opening a library that records
    /// another model whose folder is installed uses that model, so a
    /// library switched to another embedder keeps opening with it.
    #[serde(default)]
    pub embedder_explicit: bool,
    /// The default language model (folder or .gguf), if any.
    pub llm_path: Option<PathBuf>,
    /// Chunk size and overlap.
    pub chunking: ChunkConfig,
    /// Which device to run models on.
    pub device: DevicePreference,
    /// Most tokens of context the language model may use.
    pub max_context: usize,
    /// Storage type of the language model's key/value cache; `None` uses
    /// the model's default (f16 for GGUF files, else its activation
    /// dtype). Set from [`KV_DTYPE_ENV_VAR`].
    #[serde(default)]
    pub kv_dtype: Option<KvDtype>,
    /// Ingestion writes finished documents to the stores once this many
    /// chunks are waiting (or after two seconds): fewer, larger commits.
    pub write_batch_chunks: usize,
    /// The cross-encoder reranker's folder; `None` searches without the
    /// rerank stage.
    #[serde(default)]
    pub reranker: Option<PathBuf>,
    /// How many top candidates the reranker re-scores.
    #[serde(default = "default_rerank_depth")]
    pub rerank_depth: usize,
    /// The model worker that embeds passages for ingestion, in a process
    /// of its own (see [`crate::worker`]), used for every run whatever
    /// [`EngineConfig::worker_mode`] says. Set from `LECTERN_WORKER=<path>`;
    /// `None` leaves the choice to [`EngineConfig::worker_mode`].
    #[serde(default)]
    pub worker: Option<crate::WorkerConfig>,
    /// Whether to use the model worker when [`EngineConfig::worker`] is not
    /// set: only where it helps (`auto`, the default; see
    /// [`crate::worker_policy`]) or never (`off`). Set from
    /// `LECTERN_WORKER`.
    #[serde(default)]
    pub worker_mode: WorkerMode,
}

/// Whether the engine uses the model worker when no worker is configured
/// explicitly ([`EngineConfig::worker`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    /// Never: models run in this process (`LECTERN_WORKER=off`).
    Off,
    /// Only where it helps: NVML reports a usable NVIDIA GPU and the worker
    /// binary was built with CUDA and opens that GPU
    /// ([`crate::worker_policy::plan_worker`]); otherwise models run in
    /// this process, without an error. The binary is `program`, or
    /// `lectern-worker` beside the running executable when that is `None`
    /// (`LECTERN_WORKER=auto` or unset; `LECTERN_WORKER=auto:<path>`).
    Auto {
        /// The worker binary to consider.
        #[serde(default)]
        program: Option<PathBuf>,
    },
}

impl Default for WorkerMode {
    fn default() -> Self {
        Self::Auto { program: None }
    }
}

/// What a `LECTERN_WORKER` value asks for: an explicit worker binary
/// (used for every run) or a [`WorkerMode`]. Unset or empty is `auto`.
pub fn worker_setting(value: Option<&str>) -> Result<(Option<PathBuf>, WorkerMode), String> {
    let value = value.map(str::trim).unwrap_or_default();
    let lower = value.to_ascii_lowercase();
    if value.is_empty() || lower == "auto" {
        return Ok((None, WorkerMode::default()));
    }
    if ["off", "none", "no", "false", "0"].contains(&lower.as_str()) {
        return Ok((None, WorkerMode::Off));
    }
    if lower.starts_with("auto:") {
        let program = value["auto:".len()..].trim();
        if program.is_empty() {
            return Err(format!(
                "{}: `auto:` must be followed by the worker binary's path",
                crate::WORKER_ENV_VAR
            ));
        }
        return Ok((
            None,
            WorkerMode::Auto {
                program: Some(PathBuf::from(program)),
            },
        ));
    }
    Ok((Some(PathBuf::from(value)), WorkerMode::default()))
}

fn default_rerank_depth() -> usize {
    crate::rerank::DEFAULT_RERANK_DEPTH
}

/// Environment variable that sets the language model's key/value cache
/// type: `f32`, `f16`, `bf16` or `q8` (unset or empty: the model's default,
/// f16 for GGUF files, else its activation dtype).
pub const KV_DTYPE_ENV_VAR: &str = "LECTERN_KV_DTYPE";

/// The cache type [`KV_DTYPE_ENV_VAR`] asks for, if any.
fn kv_dtype_from_env() -> Result<Option<KvDtype>, EngineError> {
    kv_dtype_setting(std::env::var(KV_DTYPE_ENV_VAR).ok().as_deref())
}

/// The cache type a [`KV_DTYPE_ENV_VAR`] value asks for: none when unset or
/// empty.
fn kv_dtype_setting(value: Option<&str>) -> Result<Option<KvDtype>, EngineError> {
    match value {
        Some(v) if !v.trim().is_empty() => v
            .parse()
            .map(Some)
            .map_err(|e| EngineError::InvalidInput(format!("{KV_DTYPE_ENV_VAR}: {e}"))),
        _ => Ok(None),
    }
}

/// The catalog id of the embedder used when none is configured.
pub const DEFAULT_EMBEDDER: &str = "all-MiniLM-L6-v2";

/// Where the embedder named by `value` lives: a catalog embedder's id names
/// its folder under `models_dir`; anything else is a folder path.
pub fn resolve_embedder(models_dir: &std::path::Path, value: &str) -> PathBuf {
    let catalog = Catalog::builtin();
    match catalog
        .models
        .iter()
        .find(|m| m.kind == ModelKind::Embedder && m.id == value)
    {
        Some(entry) => entry.local_dir(models_dir),
        None => PathBuf::from(value),
    }
}

/// The catalog embedder whose folder name is `dir`'s (its `local_path`, or
/// its id), if any.
fn catalog_embedder(dir: &std::path::Path) -> Option<lectern_hub::CatalogEntry> {
    let name = dir.file_name()?.to_str()?;
    Catalog::builtin()
        .models
        .into_iter()
        .find(|m| m.kind == ModelKind::Embedder && m.local_path.as_deref().unwrap_or(&m.id) == name)
}

/// How to run the embedder in `dir`: with the parameters of the catalog
/// entry of the same folder name (pooling, prefixes or query instruction,
/// token limit, normalisation), or, for a folder no catalog entry
/// describes, from the sentence-transformers files beside the model.
pub fn embedder_config_for(dir: &std::path::Path) -> Result<EmbedderConfig, EngineError> {
    match catalog_embedder(dir) {
        Some(entry) => Ok(EmbedderConfig::from_catalog_params(dir, &entry.params)?),
        None => Ok(EmbedderConfig::from_folder(dir)),
    }
}

/// The name a library records for the embedder in `dir`: its folder name
/// (a catalog id for catalog models).
pub fn embedder_name(dir: &std::path::Path) -> Option<String> {
    dir.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Default for [`EngineConfig::write_batch_chunks`].
pub const DEFAULT_WRITE_BATCH_CHUNKS: usize = 512;

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl EngineConfig {
    /// How to run the configured embedder (see [`embedder_config_for`]).
    pub fn embedder_config(&self) -> Result<EmbedderConfig, EngineError> {
        embedder_config_for(&self.embedder_dir)
    }

    /// Chooses the embedder by catalog id or folder path.
    pub fn set_embedder(&mut self, id_or_path: &str) {
        self.embedder_dir = resolve_embedder(&self.models_dir, id_or_path);
        self.embedder_explicit = true;
    }

    /// Unless the embedder was chosen explicitly, uses the model the
    /// library in [`EngineConfig::data_dir`] records, when it is installed.
    pub fn follow_library_embedder(&mut self) {
        if self.embedder_explicit {
            return;
        }
        let path = self.data_dir.join("library").join("manifest.json");
        let Ok(manifest) = lectern_index::Manifest::load(&path) else {
            return;
        };
        let Some(name) = manifest.embedder else {
            return;
        };
        if embedder_name(&self.embedder_dir).as_deref() == Some(name.as_str()) {
            return;
        }
        let installed = [
            resolve_embedder(&self.models_dir, &name),
            self.models_dir.join(&name),
        ]
        .into_iter()
        .find(|d| d.join("tokenizer.json").is_file());
        if let Some(dir) = installed {
            tracing::info!(embedder = %name, dir = %dir.display(), "using the library's embedding model");
            self.embedder_dir = dir;
        }
    }

    /// The default configuration, with overrides from the environment:
    /// `LECTERN_DATA_DIR` (the platform data dir otherwise),
    /// `LECTERN_MODELS_DIR` (the platform cache dir's `lectern/models`
    /// otherwise), `LECTERN_EMBEDDER` (a catalog embedder id or a folder),
    /// `LECTERN_LLM`, `LECTERN_DEVICE`,
    /// `LECTERN_WRITE_BATCH_CHUNKS`, `LECTERN_RERANKER` (a catalog id, a
    /// folder or `none`; the first installed catalog reranker otherwise),
    /// `LECTERN_RERANK_DEPTH`, `LECTERN_WORKER` (`auto` or unset: the
    /// model worker only where it helps, see [`WorkerMode::Auto`];
    /// `auto:<path>`: the same with that binary; `off`: never; a path: that
    /// worker for every run) and `LECTERN_WORKER_TIMEOUT`.
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
        let (embedder_dir, embedder_explicit) = match std::env::var("LECTERN_EMBEDDER") {
            Ok(v) if !v.is_empty() => (resolve_embedder(&models_dir, &v), true),
            _ => (models_dir.join(DEFAULT_EMBEDDER), false),
        };
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
        let reranker = crate::rerank::reranker_from_env(&models_dir)?;
        let rerank_depth = match std::env::var(crate::rerank::RERANK_DEPTH_ENV_VAR) {
            Ok(v) if !v.is_empty() => {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "{} must be a positive number, not {v:?}",
                        crate::rerank::RERANK_DEPTH_ENV_VAR
                    ))
                })?
            }
            _ => crate::rerank::DEFAULT_RERANK_DEPTH,
        };
        let (worker, worker_mode) =
            worker_setting(std::env::var(crate::WORKER_ENV_VAR).ok().as_deref())
                .map_err(EngineError::InvalidInput)?;
        let worker = match worker {
            // Reads the path and LECTERN_WORKER_TIMEOUT.
            Some(_) => crate::WorkerConfig::from_env().map_err(EngineError::InvalidInput)?,
            None => None,
        };
        let kv_dtype = kv_dtype_from_env()?;
        Ok(Self {
            data_dir,
            models_dir,
            embedder_dir,
            embedder_explicit,
            llm_path,
            chunking: ChunkConfig::default(),
            device,
            max_context: 32_768,
            kv_dtype,
            write_batch_chunks,
            reranker,
            rerank_depth,
            worker,
            worker_mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_models::{EmbedderArchitecture, Pooling};

    #[test]
    fn kv_cache_type_setting_parses_or_names_the_choices() {
        assert_eq!(kv_dtype_setting(None).unwrap(), None);
        assert_eq!(kv_dtype_setting(Some(" ")).unwrap(), None);
        assert_eq!(kv_dtype_setting(Some("q8")).unwrap(), Some(KvDtype::Q8));
        assert_eq!(kv_dtype_setting(Some("BF16")).unwrap(), Some(KvDtype::Bf16));
        let err = kv_dtype_setting(Some("q4")).unwrap_err().to_string();
        assert!(
            err.contains("LECTERN_KV_DTYPE: unknown KV cache type \"q4\": expected one of f32, f16, bf16, q8"),
            "{err}"
        );
    }

    #[test]
    fn the_worker_setting_is_auto_unless_turned_off_or_given_a_path() {
        let auto = WorkerMode::Auto { program: None };
        assert_eq!(worker_setting(None).unwrap(), (None, auto.clone()));
        assert_eq!(worker_setting(Some(" ")).unwrap(), (None, auto.clone()));
        assert_eq!(worker_setting(Some("AUTO")).unwrap(), (None, auto.clone()));
        for off in ["off", "Off", "none", "0"] {
            assert_eq!(worker_setting(Some(off)).unwrap(), (None, WorkerMode::Off));
        }
        assert_eq!(
            worker_setting(Some("auto:/opt/lectern/lectern-worker")).unwrap(),
            (
                None,
                WorkerMode::Auto {
                    program: Some(PathBuf::from("/opt/lectern/lectern-worker"))
                }
            )
        );
        let error = worker_setting(Some("auto: ")).unwrap_err();
        assert!(error.contains("LECTERN_WORKER"), "{error}");
        assert_eq!(
            worker_setting(Some("/opt/w")).unwrap(),
            (Some(PathBuf::from("/opt/w")), auto)
        );
        // A saved configuration without the field is `auto`; `off` reads back.
        let mode: WorkerMode = serde_json::from_str(r#""off""#).unwrap();
        assert_eq!(mode, WorkerMode::Off);
        let mode: WorkerMode = serde_json::from_str(r#"{"auto": {}}"#).unwrap();
        assert_eq!(mode, WorkerMode::default());
    }

    #[test]
    fn catalog_ids_name_folders_and_their_params_configure_the_embedder() {
        let models = std::path::Path::new("/models");
        let bge = resolve_embedder(models, "bge-small-en-v1.5");
        assert_eq!(bge, models.join("bge-small-en-v1.5"));
        let cfg = embedder_config_for(&bge).unwrap();
        assert_eq!(cfg.pooling, Some(Pooling::Cls));
        assert_eq!(cfg.max_tokens, 512);
        assert_eq!(
            cfg.query_prefix,
            "Represent this sentence for searching relevant passages: "
        );
        assert!(cfg.passage_prefix.is_empty());

        let minilm = embedder_config_for(&resolve_embedder(models, DEFAULT_EMBEDDER)).unwrap();
        assert_eq!(minilm.pooling, Some(Pooling::Mean));
        assert_eq!(minilm.max_tokens, 256);
        assert!(minilm.query_prefix.is_empty());

        let qwen = embedder_config_for(&resolve_embedder(models, "qwen3-embedding-0.6b")).unwrap();
        assert_eq!(qwen.architecture, EmbedderArchitecture::Qwen3);
        assert_eq!(qwen.pooling, Some(Pooling::Last));
        assert!(qwen.normalize);
        assert!(qwen.query_prefix.starts_with("Instruct: "));
        assert!(qwen.query_prefix.ends_with("\nQuery:"));
        assert!(qwen.passage_prefix.is_empty());

        // Anything else is a folder, configured from its own files.
        let other = resolve_embedder(models, "/elsewhere/my-model");
        assert_eq!(other, std::path::PathBuf::from("/elsewhere/my-model"));
        let cfg = embedder_config_for(&other).unwrap();
        assert_eq!(cfg.architecture, EmbedderArchitecture::Bert);
        assert_eq!(cfg.pooling, None);
    }
}
