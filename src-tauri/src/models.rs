//! The model catalog for the Models screen: what Lectern knows, what is
//! installed, what fits this machine, and downloads with progress that a
//! user starts and can cancel.

use std::sync::Arc;

use lectern_engine::hub::{self, Catalog, DownloadEvent, DownloadOptions, HubError, InstallState};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// The context length the "fits this machine" column is computed for.
const PLANNED_CONTEXT: u32 = 8192;

/// One catalog model as the Models screen lists it.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CatalogModelView {
    pub id: String,
    /// "embedder", "llm", "reranker" or "tokenizer".
    pub kind: String,
    /// Hugging Face repository, when it can be downloaded.
    pub repo: Option<String>,
    pub size_bytes: Option<u64>,
    /// "installed", "partial" or "absent".
    pub state: String,
    /// Files missing from a partial install.
    pub missing: Vec<String>,
    pub downloadable: bool,
    pub license: Option<String>,
    /// For language models: whether it fits this machine at the planned
    /// context; `None` for other kinds.
    pub fits: Option<bool>,
    /// The variant the GPU manager recommends for this machine.
    pub recommended: bool,
    /// For language models: the longest context that fits.
    pub max_context: Option<u32>,
    /// Why it does not fit, or other remarks.
    pub note: String,
}

/// The catalog with the machine's recommendation.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CatalogView {
    pub models: Vec<CatalogModelView>,
    /// The recommendation, phrased for a person.
    pub recommendation: String,
    /// The context length the fits were computed for.
    pub planned_context: u32,
    pub models_dir: String,
}

/// Progress of a model download, streamed to the UI.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DownloadUpdate {
    /// A file started (or resumed).
    #[serde(rename_all = "camelCase")]
    FileStarted { file: String, size: u64 },
    /// Bytes of the current file arrived.
    #[serde(rename_all = "camelCase")]
    Progress { file: String, done: u64, size: u64 },
    /// A file matched its size (and digest, when known) and is in place.
    #[serde(rename_all = "camelCase")]
    FileVerified { file: String, digest_checked: bool },
    /// A file was already installed.
    #[serde(rename_all = "camelCase")]
    FileSkipped { file: String },
    /// Every file is in place.
    #[serde(rename_all = "camelCase")]
    Finished { path: String },
}

impl From<DownloadEvent> for DownloadUpdate {
    fn from(e: DownloadEvent) -> Self {
        match e {
            DownloadEvent::FileStarted { file, size } => DownloadUpdate::FileStarted { file, size },
            DownloadEvent::Progress { file, done, size } => {
                DownloadUpdate::Progress { file, done, size }
            }
            DownloadEvent::FileVerified {
                file,
                digest_checked,
            } => DownloadUpdate::FileVerified {
                file,
                digest_checked,
            },
            DownloadEvent::FileSkipped { file } => DownloadUpdate::FileSkipped { file },
            DownloadEvent::Finished { path } => DownloadUpdate::Finished {
                path: path.display().to_string(),
            },
        }
    }
}

impl From<HubError> for CommandError {
    fn from(err: HubError) -> Self {
        let (code, retryable) = match &err {
            HubError::UnknownModel(_) => ("not_found", false),
            HubError::NotDownloadable(_) => ("invalid_input", false),
            HubError::Cancelled => ("cancelled", true),
            HubError::Download { .. } => ("download_failed", true),
            HubError::Verification { .. } => ("verification_failed", true),
            HubError::Io { .. } => ("io", true),
            HubError::Catalog(_) => ("catalog", false),
        };
        CommandError {
            code: code.to_owned(),
            message: err.to_string(),
            retryable,
        }
    }
}

fn kind_name(kind: hub::ModelKind) -> &'static str {
    match kind {
        hub::ModelKind::Embedder => "embedder",
        hub::ModelKind::Llm => "llm",
        hub::ModelKind::Reranker => "reranker",
        hub::ModelKind::Tokenizer => "tokenizer",
    }
}

/// The catalog, what is installed and what fits this machine.
#[tauri::command]
#[specta::specta]
pub async fn model_catalog(state: State<'_, AppState>) -> CommandResult<CatalogView> {
    let config = state.config()?.clone();
    let pref = state.device_preference();
    tauri::async_runtime::spawn_blocking(move || {
        let catalog = Catalog::builtin();
        let recommendation =
            lectern_engine::recommend_llm(&config.models_dir, pref, PLANNED_CONTEXT);
        let (summary, fits) = match &recommendation {
            Ok(r) => (r.reason.clone(), Some(&r.variants)),
            Err(e) => (format!("No recommendation: {e}"), None),
        };
        let chosen = recommendation
            .as_ref()
            .ok()
            .and_then(|r| r.choice.as_ref())
            .map(|c| c.model.clone());
        let models = catalog
            .models
            .iter()
            .map(|m| {
                let (state, missing) = match m.install_state(&config.models_dir) {
                    InstallState::Installed { .. } => ("installed", Vec::new()),
                    InstallState::Partial { missing } => ("partial", missing),
                    InstallState::Absent => ("absent", Vec::new()),
                };
                let fit = fits.and_then(|v| v.iter().find(|f| f.model == m.id));
                CatalogModelView {
                    id: m.id.clone(),
                    kind: kind_name(m.kind).to_owned(),
                    repo: m.repo.clone(),
                    size_bytes: m.total_size(),
                    state: state.to_owned(),
                    missing,
                    downloadable: m.repo.is_some(),
                    license: m.license.clone(),
                    fits: fit.map(|f| f.fits),
                    recommended: chosen.as_deref() == Some(m.id.as_str()),
                    max_context: fit.and_then(|f| f.max_context),
                    note: fit.and_then(|f| f.excluded.clone()).unwrap_or_default(),
                }
            })
            .collect();
        CatalogView {
            models,
            recommendation: summary,
            planned_context: PLANNED_CONTEXT,
            models_dir: config.models_dir.display().to_string(),
        }
    })
    .await
    .map_err(|e| CommandError::internal(e.to_string()))
}

/// Downloads a catalog model into the models folder, verifying each file;
/// progress streams on `on_event`, `cancel_download` stops it. A failed or
/// cancelled download never leaves a loadable model behind.
#[tauri::command]
#[specta::specta]
pub async fn download_model(
    state: State<'_, AppState>,
    id: String,
    on_event: Channel<DownloadUpdate>,
) -> CommandResult<String> {
    let config = state.config()?.clone();
    let catalog = Catalog::builtin();
    let entry = catalog.get(&id)?.clone();
    let cancel = state.begin_download();
    let sink: hub::DownloadFn = Arc::new(move |e| {
        let _ = on_event.send(DownloadUpdate::from(e));
    });
    let result = hub::download(
        &entry,
        &DownloadOptions::new(&config.models_dir),
        sink,
        cancel.clone(),
    )
    .await;
    state.end_download(&cancel);
    Ok(result?.display().to_string())
}

/// Stops the downloads in progress; true when one was running.
#[tauri::command]
#[specta::specta]
pub async fn cancel_download(state: State<'_, AppState>) -> CommandResult<bool> {
    Ok(state.cancel_downloads() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_events_keep_their_fields_in_the_ui_shape() {
        let update = DownloadUpdate::from(DownloadEvent::Progress {
            file: "model.safetensors".into(),
            done: 5,
            size: 10,
        });
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            serde_json::json!({"kind": "progress", "file": "model.safetensors", "done": 5, "size": 10})
        );
        let done = DownloadUpdate::from(DownloadEvent::FileVerified {
            file: "a".into(),
            digest_checked: true,
        });
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            serde_json::json!({"kind": "fileVerified", "file": "a", "digestChecked": true})
        );
    }

    #[test]
    fn hub_errors_keep_a_stable_code() {
        let e = CommandError::from(HubError::UnknownModel("nope".into()));
        assert_eq!(e.code, "not_found");
        assert!(!e.retryable);
        assert_eq!(CommandError::from(HubError::Cancelled).code, "cancelled");
    }
}
