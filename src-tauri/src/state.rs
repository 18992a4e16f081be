//! The engine handle the commands share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lectern_engine::{DevicePreference, Engine, EngineConfig};
use tokio::sync::OnceCell;

use crate::error::{CommandError, CommandResult};

/// Managed by Tauri: the configuration, the engine once it has opened, and
/// the stop flag of the answer being written.
pub struct AppState {
    config: Result<EngineConfig, CommandError>,
    engine: OnceCell<Arc<Engine>>,
    answering: Mutex<Option<Arc<AtomicBool>>>,
}

impl AppState {
    pub fn new(config: Result<EngineConfig, CommandError>) -> Self {
        Self {
            config,
            engine: OnceCell::new(),
            answering: Mutex::new(None),
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
}
