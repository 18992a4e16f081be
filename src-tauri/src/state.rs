//! The engine handle the commands share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lectern_engine::{DevicePreference, Engine, EngineConfig};
use tokio::sync::OnceCell;

use crate::error::{CommandError, CommandResult};

/// Managed by Tauri: the configuration, the engine once it has opened, the
/// stop flag of the answer being written and the cancel flags of the ingest
/// runs in progress.
pub struct AppState {
    config: Result<EngineConfig, CommandError>,
    engine: OnceCell<Arc<Engine>>,
    answering: Mutex<Option<Arc<AtomicBool>>>,
    ingesting: CancelFlags,
    downloading: CancelFlags,
}

/// The cancel flags of the runs of one kind in progress.
#[derive(Default)]
struct CancelFlags(Mutex<Vec<Arc<AtomicBool>>>);

impl CancelFlags {
    /// A fresh flag, remembered until `end`.
    fn begin(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut runs) = self.0.lock() {
            runs.push(flag.clone());
        }
        flag
    }

    /// Forgets the flag of a finished run.
    fn end(&self, flag: &Arc<AtomicBool>) {
        if let Ok(mut runs) = self.0.lock() {
            runs.retain(|f| !Arc::ptr_eq(f, flag));
        }
    }

    /// Sets every flag; returns how many runs there were.
    fn raise_all(&self) -> usize {
        match self.0.lock() {
            Ok(runs) => {
                for flag in runs.iter() {
                    flag.store(true, Ordering::Relaxed);
                }
                runs.len()
            }
            Err(_) => 0,
        }
    }
}

impl AppState {
    pub fn new(config: Result<EngineConfig, CommandError>) -> Self {
        Self {
            config,
            engine: OnceCell::new(),
            answering: Mutex::new(None),
            ingesting: CancelFlags::default(),
            downloading: CancelFlags::default(),
        }
    }

    pub fn config(&self) -> CommandResult<&EngineConfig> {
        self.config.as_ref().map_err(Clone::clone)
    }

    /// The device the user asked for, `auto` when the configuration failed.
    pub fn device_preference(&self) -> DevicePreference {
        self.config.as_ref().map(|c| c.device).unwrap_or_default()
    }

    /// The engine, opening it on first use. Callers that arrive while it
    /// opens wait for it; a failed open is tried again on the next call.
    pub async fn engine(&self) -> CommandResult<Arc<Engine>> {
        let config = self.config()?;
        self.engine
            .get_or_try_init(|| async {
                Engine::open(config.clone())
                    .await
                    .map(Arc::new)
                    .map_err(CommandError::from)
            })
            .await
            .cloned()
    }

    /// The engine if it is already open.
    pub fn opened(&self) -> Option<Arc<Engine>> {
        self.engine.get().cloned()
    }

    /// A fresh stop flag for a new answer; it replaces the previous one.
    pub fn begin_answer(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut slot) = self.answering.lock() {
            *slot = Some(flag.clone());
        }
        flag
    }

    /// Forgets `flag` if it still belongs to the current answer.
    pub fn end_answer(&self, flag: &Arc<AtomicBool>) {
        if let Ok(mut slot) = self.answering.lock() {
            if slot.as_ref().is_some_and(|f| Arc::ptr_eq(f, flag)) {
                *slot = None;
            }
        }
    }

    /// Asks the answer being written to stop; false when there is none.
    pub fn stop_answer(&self) -> bool {
        match self.answering.lock() {
            Ok(slot) => match slot.as_ref() {
                Some(flag) => {
                    flag.store(true, Ordering::Relaxed);
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// A cancel flag for a new ingest run, remembered until `end_ingest`.
    pub fn begin_ingest(&self) -> Arc<AtomicBool> {
        self.ingesting.begin()
    }

    /// Forgets the cancel flag of a finished run.
    pub fn end_ingest(&self, flag: &Arc<AtomicBool>) {
        self.ingesting.end(flag)
    }

    /// Asks every ingest run in progress to stop after its current file;
    /// returns how many were running.
    pub fn cancel_ingests(&self) -> usize {
        self.ingesting.raise_all()
    }

    /// A cancel flag for a new model download, remembered until
    /// `end_download`.
    pub fn begin_download(&self) -> Arc<AtomicBool> {
        self.downloading.begin()
    }

    /// Forgets the cancel flag of a finished download.
    pub fn end_download(&self, flag: &Arc<AtomicBool>) {
        self.downloading.end(flag)
    }

    /// Asks every download in progress to stop; returns how many there were.
    pub fn cancel_downloads(&self) -> usize {
        self.downloading.raise_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AppState {
        AppState::new(Err(CommandError::new("not_configured", "no config")))
    }

    #[test]
    fn cancel_reaches_every_running_ingest_and_only_those() {
        let state = state();
        assert_eq!(state.cancel_ingests(), 0);
        let a = state.begin_ingest();
        let b = state.begin_ingest();
        state.end_ingest(&b);
        assert_eq!(state.cancel_ingests(), 1);
        assert!(a.load(Ordering::Relaxed));
        assert!(!b.load(Ordering::Relaxed), "a finished run is not touched");
    }

    #[test]
    fn stop_answer_only_stops_the_current_answer() {
        let state = state();
        assert!(!state.stop_answer());
        let first = state.begin_answer();
        let second = state.begin_answer();
        state.end_answer(&first);
        assert!(state.stop_answer());
        assert!(second.load(Ordering::Relaxed));
        assert!(!first.load(Ordering::Relaxed));
        state.end_answer(&second);
        assert!(!state.stop_answer());
    }

    #[test]
    fn a_failed_configuration_is_reported_by_every_engine_call() {
        let state = state();
        let err = state.config().unwrap_err();
        assert_eq!(err.code, "not_configured");
        assert!(state.opened().is_none());
    }
}
