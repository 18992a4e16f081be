//! The rerank stage: a cross-encoder re-scores the top candidates of any
//! search (after fusion in hybrid mode) and reorders them by its score.
//!
//! Which reranker runs is configuration ([`EngineConfig::reranker`]):
//! `LECTERN_RERANKER` names a catalog id or a folder (`none` turns the stage
//! off); without it, the first installed reranker of the catalog (random
//! test models left out) is used. The model is loaded on first use, on a
//! blocking thread, after the GPU manager admits it as a small model; the
//! manager may unload it later and it is loaded again when next needed.
//!
//! In [`RerankMode::Auto`] (the default) a reranker that is missing,
//! corrupt or fails is logged and search returns the unreranked results;
//! [`RerankMode::On`] makes those cases errors; [`RerankMode::Off`] skips
//! the stage.
//!
//! [`EngineConfig::reranker`]: crate::EngineConfig::reranker

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use lectern_gpu::Reservation;
use lectern_index::SearchHit;
use lectern_models::{Reranker, RerankerConfig};
use serde::{Deserialize, Serialize};

use crate::device::GpuSide;
use crate::{Engine, EngineError};

/// Environment variable naming the reranker: a catalog id, a folder, or
/// `none` to turn reranking off.
pub const RERANKER_ENV_VAR: &str = "LECTERN_RERANKER";

/// Environment variable setting how many top candidates are reranked.
pub const RERANK_DEPTH_ENV_VAR: &str = "LECTERN_RERANK_DEPTH";

/// Candidates the reranker re-scores by default.
pub const DEFAULT_RERANK_DEPTH: usize = 30;

/// Whether search runs the rerank stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerankMode {
    /// Rerank when a reranker is configured and loads; otherwise search
    /// without it (logged).
    #[default]
    Auto,
    /// Always rerank; a missing or broken reranker is an error.
    On,
    /// Never rerank.
    Off,
}

impl std::str::FromStr for RerankMode {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(EngineError::InvalidInput(format!(
                "unknown rerank setting {other:?}: use auto, on or off"
            ))),
        }
    }
}

impl std::fmt::Display for RerankMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// The reranker folder chosen by `LECTERN_RERANKER` or, without it, the
/// first installed reranker of the built-in catalog (models with random
/// weights left out). `Ok(None)` means no reranker.
pub fn reranker_from_env(models_dir: &Path) -> Result<Option<PathBuf>, EngineError> {
    let value = std::env::var(RERANKER_ENV_VAR).unwrap_or_default();
    resolve_reranker(value.trim(), models_dir)
}

/// Resolves a reranker setting: `""` (look in the catalog), `none`/`off`,
/// a catalog id, or a folder.
pub fn resolve_reranker(value: &str, models_dir: &Path) -> Result<Option<PathBuf>, EngineError> {
    let catalog = lectern_hub::Catalog::builtin();
    if value.is_empty() {
        return Ok(catalog
            .models
            .iter()
            .filter(|m| m.kind == lectern_hub::ModelKind::Reranker)
            .filter(|m| m.params.get("weights").and_then(|w| w.as_str()) != Some("random"))
            .find_map(|m| match m.install_state(models_dir) {
                lectern_hub::InstallState::Installed { path } => Some(path),
                _ => None,
            }));
    }
    if value.eq_ignore_ascii_case("none") || value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if let Some(entry) = catalog.models.iter().find(|m| m.id == value) {
        if entry.kind != lectern_hub::ModelKind::Reranker {
            return Err(EngineError::InvalidInput(format!(
                "{RERANKER_ENV_VAR}={value} names a model that is not a reranker"
            )));
        }
        return Ok(Some(entry.local_dir(models_dir)));
    }
    let path = PathBuf::from(value);
    if path.is_dir() || value.contains(std::path::MAIN_SEPARATOR) || value.contains('/') {
        return Ok(Some(path));
    }
    Err(EngineError::InvalidInput(format!(
        "{RERANKER_ENV_VAR}={value} is neither a reranker in the catalog nor a folder"
    )))
}

/// The loaded reranker, or why it could not be loaded.
enum Slot {
    Empty,
    Loaded(Arc<Reranker>),
    Failed(String),
}

/// The engine's reranker: configuration, the lazily loaded model and its
/// GPU reservation.
pub(crate) struct RerankSide {
    dir: Option<PathBuf>,
    depth: usize,
    mode: RwLock<RerankMode>,
    slot: Arc<Mutex<Slot>>,
    reservation: Arc<Mutex<Option<Reservation>>>,
}

impl RerankSide {
    pub(crate) fn new(dir: Option<PathBuf>, depth: usize) -> Self {
        Self {
            dir,
            depth: depth.max(1),
            mode: RwLock::new(RerankMode::default()),
            slot: Arc::new(Mutex::new(Slot::Empty)),
            reservation: Arc::new(Mutex::new(None)),
        }
    }

    fn name(&self) -> Option<String> {
        self.dir.as_ref().map(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.display().to_string())
        })
    }

    /// The loaded reranker, loading it (after the GPU manager's admission)
    /// on first use. A failed load is logged once and remembered, so later
    /// searches do not retry it. Blocking: call from a blocking thread.
    fn get(&self, dir: &Path, gpu: &GpuSide) -> Result<Arc<Reranker>, String> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Slot::Loaded(r) => return Ok(r.clone()),
            Slot::Failed(why) => return Err(why.clone()),
            Slot::Empty => {}
        }
        let loaded = self.load(dir, gpu);
        *slot = match &loaded {
            Ok(r) => Slot::Loaded(r.clone()),
            Err(why) => {
                tracing::warn!(reranker = %dir.display(), reason = %why, "reranker unavailable");
                Slot::Failed(why.clone())
            }
        };
        loaded
    }

    fn load(&self, dir: &Path, gpu: &GpuSide) -> Result<Arc<Reranker>, String> {
        let config = RerankerConfig::new(dir);
        let bytes = footprint(dir, &config);
        let name = self.name().unwrap_or_default();
        let slot = Arc::downgrade(&self.slot);
        let reservation = Arc::downgrade(&self.reservation);
        let unloader = move || {
            if let Some(slot) = slot.upgrade() {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Slot::Empty;
            }
            if let Some(r) = reservation.upgrade() {
                r.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
        };
        let (device, held) = gpu
            .admit_small(&name, bytes, unloader)
            .map_err(|e| e.to_string())?;
        let dev = lectern_models::candle_device(&device).map_err(|e| e.to_string())?;
        tracing::info!(reranker = %dir.display(), %device, "loading reranker");
        let reranker = Reranker::load(config, &dev).map_err(|e| e.to_string())?;
        if let Some(r) = &held {
            r.loaded();
        }
        *self
            .reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = held;
        Ok(Arc::new(reranker))
    }
}

/// GPU memory a reranker needs: its weights plus the activations of one
/// batch of full-length pairs.
fn footprint(dir: &Path, config: &RerankerConfig) -> u64 {
    let weights = std::fs::metadata(dir.join("model.safetensors"))
        .map(|m| m.len())
        .unwrap_or(0);
    let hidden = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("hidden_size").and_then(serde_json::Value::as_u64))
        .unwrap_or(768);
    let activations = (config.batch_size as u64)
        .saturating_mul(config.max_tokens as u64)
        .saturating_mul(hidden)
        .saturating_mul(8 * 4);
    weights.saturating_add(activations)
}

impl Engine {
    /// Whether search reranks its candidates.
    pub fn rerank_mode(&self) -> RerankMode {
        *self
            .reranker
            .mode
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Chooses whether search reranks from now on.
    pub fn set_rerank_mode(&self, mode: RerankMode) {
        *self
            .reranker
            .mode
            .write()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Candidates the reranker re-scores per search.
    pub fn rerank_depth(&self) -> usize {
        self.reranker.depth
    }

    /// The configured reranker's folder, if any.
    pub fn reranker_dir(&self) -> Option<&Path> {
        self.reranker.dir.as_deref()
    }

    /// The name of the reranker a search would run now (loading it if
    /// needed), or `None` when searches go unreranked. With
    /// [`RerankMode::On`] a missing or broken reranker is an error.
    pub async fn active_reranker(&self) -> Result<Option<String>, EngineError> {
        Ok(self
            .reranker_for_search()
            .await?
            .map(|_| self.reranker.name().unwrap_or_default()))
    }

    /// The reranker to run for a search under the current mode.
    pub(crate) async fn reranker_for_search(&self) -> Result<Option<Arc<Reranker>>, EngineError> {
        let mode = self.rerank_mode();
        if mode == RerankMode::Off {
            return Ok(None);
        }
        let Some(dir) = self.reranker.dir.clone() else {
            return match mode {
                RerankMode::On => Err(EngineError::NotConfigured(format!(
                    "reranking is on but no reranker is installed: set {RERANKER_ENV_VAR} to a \
                     reranker's catalog id or folder, or download one"
                ))),
                _ => Ok(None),
            };
        };
        let side = self.reranker.clone();
        let gpu = self.gpu_side.clone();
        let got = tokio::task::spawn_blocking(move || side.get(&dir, &gpu))
            .await
            .map_err(EngineError::join)?;
        match (got, mode) {
            (Ok(r), _) => Ok(Some(r)),
            (Err(why), RerankMode::On) => Err(EngineError::NotConfigured(format!(
                "the reranker could not be loaded: {why}"
            ))),
            (Err(why), _) => {
                tracing::debug!(reason = %why, "results are not reranked");
                Ok(None)
            }
        }
    }

    /// Re-scores the first [`Engine::rerank_depth`] hits with `reranker`,
    /// orders them by that score (ties keep the retrieval order), keeps the
    /// rest after them in retrieval order, and returns the first `top_k`.
    /// In [`RerankMode::Auto`] a scoring failure is logged and the
    /// retrieval order returned.
    pub(crate) async fn rerank_hits(
        &self,
        reranker: Arc<Reranker>,
        query: &str,
        mut hits: Vec<SearchHit>,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, EngineError> {
        let n = hits.len().min(self.reranker.depth);
        if n == 0 {
            return Ok(hits);
        }
        let texts: Vec<String> = hits[..n].iter().map(|h| h.chunk.text.clone()).collect();
        let q = query.to_string();
        let gpu_in_use = self
            .reranker
            .reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Reservation::begin_use);
        let scored = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            reranker.score(&q, &refs)
        })
        .await
        .map_err(EngineError::join)?;
        drop(gpu_in_use);
        let scores = match scored {
            Ok(scores) => scores,
            Err(e) if self.rerank_mode() == RerankMode::On => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "reranking failed; results are not reranked");
                hits.truncate(top_k);
                return Ok(hits);
            }
        };
        for (hit, s) in hits.iter_mut().zip(scores) {
            hit.rerank_score = Some(s);
        }
        hits[..n].sort_by(|a, b| {
            b.rerank_score
                .unwrap_or(f32::NEG_INFINITY)
                .total_cmp(&a.rerank_score.unwrap_or(f32::NEG_INFINITY))
        });
        hits.truncate(top_k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in [RerankMode::Auto, RerankMode::On, RerankMode::Off] {
            assert_eq!(m.to_string().parse::<RerankMode>().unwrap(), m);
        }
        assert_eq!(" ON ".parse::<RerankMode>().unwrap(), RerankMode::On);
        let err = "maybe".parse::<RerankMode>().unwrap_err().to_string();
        assert!(err.contains("auto, on or off"), "{err}");
    }

    #[test]
    fn settings_resolve_to_folders() {
        let models = std::env::temp_dir().join("lectern-rerank-resolve");
        assert_eq!(resolve_reranker("none", &models).unwrap(), None);
        assert_eq!(resolve_reranker("OFF", &models).unwrap(), None);
        assert_eq!(
            resolve_reranker("ms-marco-MiniLM-L-6-v2", &models).unwrap(),
            Some(models.join("ms-marco-MiniLM-L-6-v2"))
        );
        assert_eq!(
            resolve_reranker("tiny-reranker", &models).unwrap(),
            Some(models.join("tiny-reranker"))
        );
        assert_eq!(
            resolve_reranker("/some/folder", &models).unwrap(),
            Some(PathBuf::from("/some/folder"))
        );
        let err = resolve_reranker("all-MiniLM-L6-v2", &models).unwrap_err();
        assert!(err.to_string().contains("not a reranker"), "{err}");
        let err = resolve_reranker("no-such-model", &models).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
        // Nothing installed there: no reranker.
        assert_eq!(resolve_reranker("", &models).unwrap(), None);
    }

    /// Test models with random weights are never picked up on their own.
    #[test]
    fn random_weight_rerankers_are_not_chosen_automatically() {
        let models =
            std::env::temp_dir().join(format!("lectern-rerank-auto-{}", std::process::id()));
        let tiny = models.join("tiny-reranker");
        std::fs::create_dir_all(&tiny).unwrap();
        let catalog = lectern_hub::Catalog::builtin();
        let entry = catalog.get("tiny-reranker").unwrap();
        for f in &entry.files {
            let len = f.size.unwrap() as usize;
            std::fs::write(tiny.join(&f.path), vec![0u8; len]).unwrap();
        }
        assert!(matches!(
            entry.install_state(&models),
            lectern_hub::InstallState::Installed { .. }
        ));
        assert_eq!(resolve_reranker("", &models).unwrap(), None);
        std::fs::remove_dir_all(&models).unwrap();
    }
}
