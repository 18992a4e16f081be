//! A background thread that reads the GPUs at intervals, keeps recent
//! readings for charts and publishes threshold events.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::{system_clock, Clock};
use crate::{EventBus, GpuEvent, GpuSnapshot, TelemetryBackend, ThresholdMonitor, Thresholds};

/// How often to sample and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Interval while work is running (default 1 s).
    pub active_interval: Duration,
    /// Interval when idle (default 5 s).
    pub idle_interval: Duration,
    /// How many samples to keep (default 100).
    pub history: usize,
    /// The threshold lines.
    pub thresholds: Thresholds,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            active_interval: Duration::from_secs(1),
            idle_interval: Duration::from_secs(5),
            history: 100,
            thresholds: Thresholds::default(),
        }
    }
}

/// The readings of every GPU at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the sampler's clock origin.
    pub at_ms: u64,
    /// Each GPU that answered, in index order.
    pub gpus: Vec<GpuSnapshot>,
}

struct State {
    history: VecDeque<Sample>,
    monitor: ThresholdMonitor,
    stop: bool,
}

struct Shared {
    backend: Arc<dyn TelemetryBackend>,
    clock: Arc<dyn Clock>,
    config: SamplerConfig,
    events: EventBus,
    active: AtomicUsize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sample(&self) -> Sample {
        let at_ms = u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX);
        let mut gpus = Vec::new();
        let mut events = Vec::new();
        // Readings are taken outside the lock; only the bookkeeping is
        // serialised, so a slow driver never blocks readers of the history.
        let readings: Vec<_> = (0..self.backend.device_count())
            .map(|index| (index, self.backend.snapshot(index)))
            .collect();
        {
            let mut state = self.lock();
            for (index, reading) in readings {
                match reading {
                    Ok(snapshot) => {
                        events.extend(state.monitor.observe(&snapshot));
                        gpus.push(snapshot);
                    }
                    Err(error) => {
                        tracing::debug!(index, %error, "GPU reading failed");
                        events.extend(state.monitor.observe_error(index, &error));
                    }
                }
            }
            let sample = Sample { at_ms, gpus };
            if state.history.len() == self.config.history.max(1) {
                state.history.pop_front();
            }
            state.history.push_back(sample.clone());
            gpus = sample.gpus;
        }
        for event in events {
            self.events.publish(event);
        }
        Sample { at_ms, gpus }
    }

    fn interval(&self) -> Duration {
        if self.active.load(Ordering::SeqCst) > 0 {
            self.config.active_interval
        } else {
            self.config.idle_interval
        }
    }
}

/// Samples GPU telemetry on a background thread.
///
/// It reads every GPU once when started, then every
/// [`SamplerConfig::active_interval`] while an [`ActiveGuard`] exists and
/// every [`SamplerConfig::idle_interval`] otherwise. It keeps the last
/// [`SamplerConfig::history`] samples and publishes threshold crossings
/// and device loss on its [`EventBus`]. Dropping it stops and joins the
/// thread.
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("backend", &self.shared.backend.name())
            .field("config", &self.shared.config)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

/// Marks work as running while it exists, so the sampler reads at its
/// active interval. Obtained from [`Sampler::active`].
#[derive(Debug)]
pub struct ActiveGuard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sampler {
    /// Starts the sampling thread on the system clock.
    pub fn start(
        backend: Arc<dyn TelemetryBackend>,
        config: SamplerConfig,
        events: EventBus,
    ) -> Result<Self, std::io::Error> {
        let mut sampler = Self::manual(backend, config, events, system_clock());
        let shared = sampler.shared.clone();
        let thread = std::thread::Builder::new()
            .name("lectern-gpu-sampler".to_owned())
            .spawn(move || run(&shared))?;
        sampler.thread = Some(thread);
        Ok(sampler)
    }

    /// A sampler without a thread: readings are taken only by
    /// [`Sampler::sample_now`]. Timestamps come from `clock`.
    pub fn manual(
        backend: Arc<dyn TelemetryBackend>,
        config: SamplerConfig,
        events: EventBus,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = Arc::new(Shared {
            backend,
            clock,
            config,
            events,
            active: AtomicUsize::new(0),
            state: Mutex::new(State {
                history: VecDeque::with_capacity(config.history.max(1)),
                monitor: ThresholdMonitor::new(config.thresholds),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        Self {
            shared,
            thread: None,
        }
    }

    /// Reads every GPU now, records the sample and publishes its events.
    pub fn sample_now(&self) -> Sample {
        self.shared.sample()
    }

    /// The most recent sample, if any.
    pub fn latest(&self) -> Option<Sample> {
        self.shared.lock().history.back().cloned()
    }

    /// The kept samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.shared.lock().history.iter().cloned().collect()
    }

    /// The bus the sampler publishes on.
    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    /// A channel of every event published from now on.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<GpuEvent> {
        self.shared.events.subscribe()
    }

    /// Marks work as running until the guard is dropped; sampling switches
    /// to the active interval at once.
    pub fn active(&self) -> ActiveGuard {
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        self.shared.wake.notify_all();
        ActiveGuard {
            shared: self.shared.clone(),
        }
    }

    /// Whether any [`ActiveGuard`] exists.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::SeqCst) > 0
    }

    /// The interval the sampler uses now.
    pub fn interval(&self) -> Duration {
        self.shared.interval()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("GPU sampler thread panicked");
            }
        }
    }
}

fn run(shared: &Shared) {
    tracing::debug!(backend = shared.backend.name(), "GPU sampler started");
    let mut last = Instant::now();
    take_sample(shared);
    let mut state = shared.lock();
    while !state.stop {
        let due = last + shared.interval();
        let now = Instant::now();
        if now >= due {
            drop(state);
            last = now;
            take_sample(shared);
            state = shared.lock();
            continue;
        }
        // Woken early by a new active guard or by stop; the loop then
        // recomputes the due time with the current interval.
        state = shared
            .wake
            .wait_timeout(state, due - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    tracing::debug!("GPU sampler stopped");
}

/// One sample; a panic in a telemetry backend is logged and the thread
/// carries on.
fn take_sample(shared: &Shared) {
    if catch_unwind(AssertUnwindSafe(|| shared.sample())).is_err() {
        tracing::error!("GPU telemetry panicked while sampling");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, SimulatedGpu};

    #[test]
    fn history_keeps_only_the_newest_samples() {
        let clock = ManualClock::new();
        let config = SamplerConfig {
            history: 3,
            ..SamplerConfig::default()
        };
        let gpu = Arc::new(SimulatedGpu::with_clock(
            "".parse().unwrap(),
            Arc::new(clock.clone()),
        ));
        let sampler = Sampler::manual(gpu, config, EventBus::new(), Arc::new(clock.clone()));
        assert_eq!(sampler.latest(), None);
        for _ in 0..5 {
            clock.advance(Duration::from_secs(1));
            sampler.sample_now();
        }
        let times: Vec<u64> = sampler.history().iter().map(|s| s.at_ms).collect();
        assert_eq!(times, vec![3000, 4000, 5000]);
        assert_eq!(sampler.latest().unwrap().gpus.len(), 1);
    }

    #[test]
    fn active_guards_select_the_interval() {
        let gpu: Arc<dyn TelemetryBackend> = Arc::new(crate::NoGpu::new("none"));
        let sampler = Sampler::manual(
            gpu,
            SamplerConfig::default(),
            EventBus::new(),
            Arc::new(ManualClock::new()),
        );
        assert_eq!(sampler.interval(), Duration::from_secs(5));
        let a = sampler.active();
        let b = sampler.active();
        assert_eq!(sampler.interval(), Duration::from_secs(1));
        drop(a);
        assert!(sampler.is_active());
        drop(b);
        assert!(!sampler.is_active());
        assert_eq!(sampler.interval(), Duration::from_secs(5));
    }
}
