//! Events the app shows: threshold crossings, device loss, model
//! placement and out-of-memory recovery, and the bus that delivers them.

use std::fmt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::units::format_bytes;

/// Why the memory manager unloaded a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnloadReason {
    /// It had not been used for longer than the idle timeout.
    Idle,
    /// Another large language model replaced it.
    Switch,
    /// Its memory was needed for a new model.
    MakeRoom,
}

/// One step taken to recover from running out of GPU memory or losing the
/// GPU during batched work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RecoveryStep {
    /// Cached allocations were released and the batch retried as it was.
    FreedCaches {
        /// The batch size retried.
        batch: usize,
    },
    /// The batch was halved and retried.
    HalvedBatch {
        /// The batch size that failed.
        from: usize,
        /// The batch size retried.
        to: usize,
    },
    /// The work moved to the CPU.
    MovedToCpu {
        /// Why, phrased for a person.
        reason: String,
    },
}

impl fmt::Display for RecoveryStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FreedCaches { batch } => {
                write!(
                    f,
                    "freed cached GPU memory and retried the batch of {batch}"
                )
            }
            Self::HalvedBatch { from, to } => write!(f, "halved the batch from {from} to {to}"),
            Self::MovedToCpu { reason } => write!(f, "moved the work to the CPU: {reason}"),
        }
    }
}

/// Something the app should show or log about a GPU or the models on it.
///
/// Serialises with a `type` field naming the variant in snake case, e.g.
/// `{"type":"vram_warning","index":0,"used":…,"total":…}`. Memory is in
/// bytes, power in milliwatts, temperature in degrees Celsius.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GpuEvent {
    /// Video memory use rose above the warning line.
    VramWarning {
        /// The GPU's index.
        index: u32,
        /// Bytes in use.
        used: u64,
        /// Bytes installed.
        total: u64,
    },
    /// Video memory use rose above the critical line.
    VramCritical {
        /// The GPU's index.
        index: u32,
        /// Bytes in use.
        used: u64,
        /// Bytes installed.
        total: u64,
    },
    /// Video memory use fell back below the warning's clear line.
    VramWarningCleared {
        /// The GPU's index.
        index: u32,
        /// Bytes in use.
        used: u64,
        /// Bytes installed.
        total: u64,
    },
    /// Video memory use fell back below the critical's clear line.
    VramCriticalCleared {
        /// The GPU's index.
        index: u32,
        /// Bytes in use.
        used: u64,
        /// Bytes installed.
        total: u64,
    },
    /// The temperature rose to the warning level.
    TemperatureWarning {
        /// The GPU's index.
        index: u32,
        /// Degrees Celsius.
        celsius: u32,
    },
    /// The temperature rose to the limit; background work should pause.
    TemperatureLimit {
        /// The GPU's index.
        index: u32,
        /// Degrees Celsius.
        celsius: u32,
    },
    /// The temperature fell back below the warning's clear line.
    TemperatureWarningCleared {
        /// The GPU's index.
        index: u32,
        /// Degrees Celsius.
        celsius: u32,
    },
    /// The temperature fell back below the limit's clear line.
    TemperatureLimitCleared {
        /// The GPU's index.
        index: u32,
        /// Degrees Celsius.
        celsius: u32,
    },
    /// Power draw exceeded the enforced power limit.
    PowerOverLimit {
        /// The GPU's index.
        index: u32,
        /// Power draw, in milliwatts.
        power_mw: u32,
        /// Enforced limit, in milliwatts.
        limit_mw: u32,
    },
    /// Power draw fell back below the limit's clear line.
    PowerCleared {
        /// The GPU's index.
        index: u32,
        /// Power draw, in milliwatts.
        power_mw: u32,
        /// Enforced limit, in milliwatts.
        limit_mw: u32,
    },
    /// Reading the GPU's telemetry started failing.
    TelemetryFailed {
        /// The GPU's index.
        index: u32,
        /// The error.
        message: String,
    },
    /// Reading the GPU's telemetry works again.
    TelemetryRestored {
        /// The GPU's index.
        index: u32,
    },
    /// The GPU stopped answering; work moves to the CPU.
    DeviceLost {
        /// The GPU's index.
        index: u32,
        /// What happened.
        reason: String,
    },
    /// A model was unloaded from the GPU.
    ModelUnloaded {
        /// The model's name.
        model: String,
        /// Bytes its reservation held.
        bytes: u64,
        /// Why it was unloaded.
        reason: UnloadReason,
    },
    /// One large language model replaced another; the time covers
    /// unloading the old one and loading the new one.
    ModelSwitched {
        /// The model unloaded.
        from: String,
        /// The model loaded.
        to: String,
        /// Milliseconds the switch took.
        millis: u64,
    },
    /// A model was placed on the CPU instead of the GPU.
    CpuFallback {
        /// The model's name.
        model: String,
        /// Why, phrased for a person.
        reason: String,
    },
    /// A step of out-of-memory recovery during batched work.
    Recovery {
        /// What was done.
        step: RecoveryStep,
    },
    /// Background work (ingestion) paused because the GPU is too hot or
    /// over its power limit; answers are not affected.
    BackgroundPaused {
        /// Why, phrased for a person.
        reason: String,
    },
    /// Background work resumed after a pause.
    BackgroundResumed {
        /// Milliseconds it waited.
        waited_ms: u64,
    },
}

impl fmt::Display for GpuEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |used: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                used as f64 * 100.0 / total as f64
            }
        };
        match self {
            Self::VramWarning { index, used, total } => write!(
                f,
                "GPU {index} memory high: {} of {} ({:.1}%)",
                format_bytes(*used),
                format_bytes(*total),
                pct(*used, *total)
            ),
            Self::VramCritical { index, used, total } => write!(
                f,
                "GPU {index} memory critical: {} of {} ({:.1}%)",
                format_bytes(*used),
                format_bytes(*total),
                pct(*used, *total)
            ),
            Self::VramWarningCleared { index, used, total }
            | Self::VramCriticalCleared { index, used, total } => write!(
                f,
                "GPU {index} memory back to {} of {} ({:.1}%)",
                format_bytes(*used),
                format_bytes(*total),
                pct(*used, *total)
            ),
            Self::TemperatureWarning { index, celsius } => {
                write!(f, "GPU {index} is hot: {celsius} °C")
            }
            Self::TemperatureLimit { index, celsius } => write!(
                f,
                "GPU {index} reached its temperature limit: {celsius} °C; background work pauses"
            ),
            Self::TemperatureWarningCleared { index, celsius }
            | Self::TemperatureLimitCleared { index, celsius } => {
                write!(f, "GPU {index} cooled to {celsius} °C")
            }
            Self::PowerOverLimit {
                index,
                power_mw,
                limit_mw,
            } => write!(
                f,
                "GPU {index} draws {:.1} W, above its {:.1} W limit",
                f64::from(*power_mw) / 1000.0,
                f64::from(*limit_mw) / 1000.0
            ),
            Self::PowerCleared {
                index,
                power_mw,
                limit_mw,
            } => write!(
                f,
                "GPU {index} power back to {:.1} W of {:.1} W",
                f64::from(*power_mw) / 1000.0,
                f64::from(*limit_mw) / 1000.0
            ),
            Self::TelemetryFailed { index, message } => {
                write!(f, "GPU {index} readings failed: {message}")
            }
            Self::TelemetryRestored { index } => write!(f, "GPU {index} readings restored"),
            Self::DeviceLost { index, reason } => {
                write!(f, "GPU {index} lost ({reason}); running on the CPU")
            }
            Self::ModelUnloaded {
                model,
                bytes,
                reason,
            } => {
                let why = match reason {
                    UnloadReason::Idle => "idle",
                    UnloadReason::Switch => "replaced by another language model",
                    UnloadReason::MakeRoom => "to make room",
                };
                write!(f, "unloaded {model} ({}; {why})", format_bytes(*bytes))
            }
            Self::ModelSwitched { from, to, millis } => {
                write!(f, "switched from {from} to {to} in {millis} ms")
            }
            Self::CpuFallback { model, reason } => write!(f, "{model} runs on the CPU: {reason}"),
            Self::Recovery { step } => write!(f, "out of GPU memory: {step}"),
            Self::BackgroundPaused { reason } => write!(f, "background work paused: {reason}"),
            Self::BackgroundResumed { waited_ms } => {
                write!(f, "background work resumed after {waited_ms} ms")
            }
        }
    }
}

type Callback = Arc<dyn Fn(&GpuEvent) + Send + Sync>;

#[derive(Default)]
struct Subscribers {
    channels: Vec<Sender<GpuEvent>>,
    callbacks: Vec<Callback>,
}

/// Delivers [`GpuEvent`]s to every subscriber: channels from
/// [`EventBus::subscribe`] and callbacks from [`EventBus::on_event`].
///
/// Clones share subscribers, so one bus can be handed to the sampler, the
/// memory manager and the recovery policy. A channel whose receiver was
/// dropped is forgotten at the next event.
#[derive(Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Subscribers>>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subs = self.lock();
        f.debug_struct("EventBus")
            .field("channels", &subs.channels.len())
            .field("callbacks", &subs.callbacks.len())
            .finish()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A channel that receives every event published from now on.
    pub fn subscribe(&self) -> Receiver<GpuEvent> {
        let (tx, rx) = channel();
        self.lock().channels.push(tx);
        rx
    }

    /// Calls `callback` with every event published from now on, on the
    /// publishing thread; it should return quickly.
    pub fn on_event(&self, callback: impl Fn(&GpuEvent) + Send + Sync + 'static) {
        self.lock().callbacks.push(Arc::new(callback));
    }

    /// Sends `event` to every subscriber and logs it.
    pub fn publish(&self, event: GpuEvent) {
        tracing::info!(event = %event, "GPU event");
        let callbacks = {
            let mut subs = self.lock();
            subs.channels.retain(|tx| tx.send(event.clone()).is_ok());
            subs.callbacks.clone()
        };
        // Callbacks run outside the lock so one may subscribe or publish.
        for callback in callbacks {
            callback(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn bus_delivers_to_channels_and_callbacks_and_forgets_dropped_receivers() {
        let bus = EventBus::new();
        let rx = bus.subscribe();
        let dropped = bus.subscribe();
        drop(dropped);
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        bus.on_event(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let event = GpuEvent::TelemetryRestored { index: 0 };
        bus.clone().publish(event.clone());
        assert_eq!(rx.try_recv(), Ok(event));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(bus.lock().channels.len(), 1);
    }

    #[test]
    fn events_serialise_with_a_type_tag() {
        let event = GpuEvent::VramWarning {
            index: 0,
            used: 14,
            total: 16,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"vram_warning","index":0,"used":14,"total":16}"#
        );
        let step = GpuEvent::Recovery {
            step: RecoveryStep::HalvedBatch { from: 8, to: 4 },
        };
        let json = serde_json::to_string(&step).unwrap();
        assert_eq!(
            json,
            r#"{"type":"recovery","step":{"action":"halved_batch","from":8,"to":4}}"#
        );
        let back: GpuEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, step);
    }

    #[test]
    fn events_read_well() {
        let event = GpuEvent::VramCritical {
            index: 1,
            used: 15 << 30,
            total: 16 << 30,
        };
        assert_eq!(
            event.to_string(),
            "GPU 1 memory critical: 15.00 GiB of 16.00 GiB (93.8%)"
        );
    }
}
