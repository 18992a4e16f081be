//! Pacing batched work: how many items the next batch takes and whether
//! background work should wait, from free memory, measured throughput and
//! the GPU's temperature and power.

use std::fmt;
use std::time::{Duration, Instant};

use crate::recovery::{Recovered, RecoveryError, RecoveryPolicy, Target, WorkError};
use crate::{
    Backoff, BatchSizer, EventBus, GpuEvent, GpuSnapshot, Priority, ThermalBackoff, Thresholds,
};

/// What to do before the next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Run a batch of this many items.
    Run {
        /// Items in the batch.
        batch: usize,
    },
    /// Wait this long, then ask again (background work on a hot GPU).
    Wait {
        /// How long.
        pause: Duration,
        /// Why, phrased for a person.
        reason: String,
    },
}

/// Chooses CPU batch sizes by measured throughput.
///
/// Starting from the initial size it tries doubling, then halving, moving
/// on while items per second improve by more than 5 % and settling on the
/// best size seen. Sizes stay within `min..=max`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputSizer {
    min: usize,
    max: usize,
    current: usize,
    best: Option<(usize, f64)>,
    growing: bool,
    turned: bool,
    settled: bool,
}

impl ThroughputSizer {
    /// A sizer starting at `initial`, within `min..=max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            min,
            max,
            current: initial.clamp(min, max),
            best: None,
            growing: true,
            turned: false,
            settled: false,
        }
    }

    /// The size to use for the next batch.
    pub fn batch_size(&self) -> usize {
        self.current
    }

    /// Whether the search has ended.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Lowers the largest size allowed (after an out-of-memory error).
    pub fn cap(&mut self, max: usize) {
        self.max = max.max(self.min);
        self.current = self.current.min(self.max);
    }

    /// Records a batch of `items` that took `elapsed` and picks the next
    /// size. Batches smaller than the chosen size (the tail of the work)
    /// are ignored.
    pub fn record(&mut self, items: usize, elapsed: Duration) {
        if self.settled || items < self.current || elapsed.is_zero() {
            return;
        }
        let rate = items as f64 / elapsed.as_secs_f64();
        let improved = self.best.is_none_or(|(_, best)| rate > best * 1.05);
        if improved {
            self.best = Some((self.current, rate));
        }
        let (best_size, _) = self.best.unwrap_or((self.current, rate));
        let step = |size: usize, grow: bool| {
            if grow {
                size.saturating_mul(2)
            } else {
                size / 2
            }
        };
        if improved {
            let next = step(self.current, self.growing);
            if (self.min..=self.max).contains(&next) && next != self.current {
                self.current = next;
                return;
            }
        }
        if !self.turned {
            self.turned = true;
            self.growing = !self.growing;
            let next = step(best_size, self.growing);
            if (self.min..=self.max).contains(&next) && next != best_size {
                self.current = next;
                return;
            }
        }
        self.current = best_size;
        self.settled = true;
    }
}

/// Sizes and paces each batch of work.
///
/// On the GPU a [`BatchSizer`] picks the batch that keeps memory below the
/// warning line, learning the per-item cost from measured batches, and a
/// [`ThermalBackoff`] shrinks or pauses background work while the GPU is
/// hot or over its power limit. On the CPU a [`ThroughputSizer`] picks the
/// batch by items per second. An out-of-memory recovery that halved the
/// batch caps every later size. A pause never lasts longer than
/// `max_wait` in a row: after that the work goes on at the smallest size.
#[derive(Debug, Clone)]
pub struct BatchPacer {
    priority: Priority,
    sizer: BatchSizer,
    backoff: ThermalBackoff,
    cpu: ThroughputSizer,
    max_wait: Duration,
    waited: Duration,
}

impl BatchPacer {
    /// A pacer for work of `priority` whose batches hold at most `max`
    /// items, each estimated to cost `bytes_per_item` of GPU memory.
    /// Pauses last `pause` each, on the default thresholds.
    pub fn new(priority: Priority, max: usize, bytes_per_item: u64, pause: Duration) -> Self {
        let max = max.max(1);
        let sizer = BatchSizer {
            max,
            ..BatchSizer::new(bytes_per_item)
        };
        Self {
            priority,
            sizer,
            backoff: ThermalBackoff::new(Thresholds::default(), pause),
            cpu: ThroughputSizer::new(max, 1, max),
            max_wait: Duration::from_secs(300),
            waited: Duration::ZERO,
        }
    }

    /// Sets the longest pause in a row (default 5 minutes).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Uses `thresholds` for back-off.
    pub fn with_thresholds(mut self, thresholds: Thresholds, pause: Duration) -> Self {
        self.backoff = ThermalBackoff::new(thresholds, pause);
        self
    }

    /// The priority it paces for.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The current per-item memory estimate, in bytes.
    pub fn bytes_per_item(&self) -> u64 {
        self.sizer.bytes_per_item
    }

    /// Caps every later batch at `max` items.
    pub fn cap(&mut self, max: usize) {
        let max = max.max(1);
        self.sizer.max = self.sizer.max.min(max);
        self.cpu.cap(max);
    }

    /// What to do before the next batch on `target`, given the GPU's
    /// latest reading (`None` when it cannot be read).
    pub fn next(&mut self, target: Target, snapshot: Option<&GpuSnapshot>) -> Pace {
        if target == Target::Cpu {
            self.waited = Duration::ZERO;
            return Pace::Run {
                batch: self.cpu.batch_size(),
            };
        }
        let Some(snapshot) = snapshot else {
            self.waited = Duration::ZERO;
            return Pace::Run {
                batch: self.sizer.max.max(1),
            };
        };
        let batch = self.sizer.batch_size(snapshot);
        match self.backoff.advise(snapshot, self.priority, batch) {
            Backoff::Proceed => {
                self.waited = Duration::ZERO;
                Pace::Run { batch }
            }
            Backoff::Shrink { batch, reason } => {
                tracing::debug!(batch, %reason, "background batch shrunk");
                self.waited = Duration::ZERO;
                Pace::Run { batch }
            }
            Backoff::Pause { pause, reason } => {
                if self.waited >= self.max_wait {
                    tracing::warn!(%reason, "GPU still hot after the longest pause; going on with the smallest batch");
                    return Pace::Run {
                        batch: self.sizer.min.max(1),
                    };
                }
                self.waited += pause;
                Pace::Wait { pause, reason }
            }
        }
    }

    /// Records a finished batch: `items` on `target` in `elapsed`, and the
    /// GPU memory it was seen to use, when measured.
    pub fn record(&mut self, target: Target, items: usize, elapsed: Duration, memory: Option<u64>) {
        match target {
            Target::Cpu => self.cpu.record(items, elapsed),
            Target::Gpu => {
                if let Some(bytes) = memory.filter(|b| *b > 0) {
                    self.sizer.record(items, bytes);
                }
            }
        }
    }
}

/// How paced work went, beyond [`Recovered`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaceReport {
    /// Pauses taken for heat or power.
    pub pauses: usize,
    /// Total time paused.
    pub waited: Duration,
    /// The size of every batch run, in order (successful tries only).
    pub batches: Vec<usize>,
}

/// What [`RecoveryPolicy::map_batches_paced`] needs besides the work.
pub struct PacedHooks<'a> {
    /// The GPU's latest reading, or `None` when it cannot be read.
    pub snapshot: &'a mut dyn FnMut() -> Option<GpuSnapshot>,
    /// Waits out a pause (a real sleep, or a manual clock in tests).
    pub sleep: &'a mut dyn FnMut(Duration),
    /// Frees cached GPU memory before the first recovery step.
    pub free_caches: &'a mut dyn FnMut(),
    /// Where pause and resume events go, if anywhere.
    pub events: Option<&'a EventBus>,
}

impl fmt::Debug for PacedHooks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacedHooks").finish_non_exhaustive()
    }
}

impl RecoveryPolicy {
    /// Like [`RecoveryPolicy::map_batches`], starting on `start`, but the
    /// `pacer` chooses each batch's size and may pause background work
    /// while the GPU is hot.
    ///
    /// `work` returns one output per item and, optionally, the GPU memory
    /// the batch was seen to use. Pauses publish
    /// [`GpuEvent::BackgroundPaused`] once and
    /// [`GpuEvent::BackgroundResumed`] when work goes on. Nothing is lost
    /// or processed twice.
    pub fn map_batches_paced<I, O, E: fmt::Display>(
        &self,
        items: &[I],
        start: Target,
        pacer: &mut BatchPacer,
        hooks: PacedHooks<'_>,
        mut work: impl FnMut(&[I], Target) -> Result<(Vec<O>, Option<u64>), WorkError<E>>,
    ) -> Result<(Recovered<Vec<O>>, PaceReport), RecoveryError<E>> {
        let PacedHooks {
            snapshot,
            sleep,
            free_caches,
            events,
        } = hooks;
        let mut out = Vec::with_capacity(items.len());
        let mut target = start;
        let mut steps = Vec::new();
        let mut report = PaceReport::default();
        let mut pause_started: Option<Duration> = None;
        let mut at = 0;
        let mut size = 1;
        while at < items.len() {
            let reading = if target == Target::Gpu {
                snapshot()
            } else {
                None
            };
            match pacer.next(target, reading.as_ref()) {
                Pace::Wait { pause, reason } => {
                    if pause_started.is_none() {
                        tracing::info!(%reason, "background work paused");
                        if let Some(events) = events {
                            events.publish(GpuEvent::BackgroundPaused { reason });
                        }
                        pause_started = Some(report.waited);
                    }
                    report.pauses += 1;
                    report.waited += pause;
                    sleep(pause);
                    continue;
                }
                Pace::Run { batch } => size = batch.max(1),
            }
            if let Some(since) = pause_started.take() {
                let waited_ms =
                    u64::try_from((report.waited - since).as_millis()).unwrap_or(u64::MAX);
                tracing::info!(waited_ms, "background work resumed");
                if let Some(events) = events {
                    events.publish(GpuEvent::BackgroundResumed { waited_ms });
                }
            }
            let result = self.run(target, size, &mut *free_caches, |attempt| {
                let end = (at + attempt.batch).min(items.len());
                let started = Instant::now();
                work(&items[at..end], attempt.target)
                    .map(|(outputs, memory)| (outputs, end, started.elapsed(), memory))
            });
            match result {
                Ok(done) => {
                    let (outputs, end, elapsed, memory) = done.value;
                    let count = end - at;
                    if done.batch < size {
                        pacer.cap(done.batch);
                    }
                    pacer.record(done.target, count, elapsed, memory);
                    report.batches.push(count);
                    out.extend(outputs);
                    at = end;
                    target = done.target;
                    size = done.batch;
                    steps.extend(done.steps);
                }
                Err(RecoveryError::Failed { error, steps: more }) => {
                    steps.extend(more);
                    return Err(RecoveryError::Failed { error, steps });
                }
                Err(RecoveryError::Exhausted { error, steps: more }) => {
                    steps.extend(more);
                    return Err(RecoveryError::Exhausted { error, steps });
                }
            }
        }
        Ok((
            Recovered {
                value: out,
                target,
                batch: size,
                steps,
            },
            report,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(used: u64, celsius: u32) -> GpuSnapshot {
        let mut s = GpuSnapshot::new(0, "t");
        s.memory_total = Some(1000);
        s.memory_used = Some(used);
        s.temperature_c = Some(celsius);
        s
    }

    #[test]
    fn throughput_sizer_climbs_while_it_pays_and_settles_on_the_best() {
        // Throughput peaks at 8 items per batch.
        let rate = |size: usize| match size {
            1 => 10.0,
            2 => 18.0,
            4 => 30.0,
            8 => 40.0,
            16 => 39.0,
            _ => 20.0,
        };
        let mut sizer = ThroughputSizer::new(2, 1, 64);
        let mut tried = Vec::new();
        while !sizer.is_settled() && tried.len() < 20 {
            let size = sizer.batch_size();
            tried.push(size);
            sizer.record(size, Duration::from_secs_f64(size as f64 / rate(size)));
        }
        assert_eq!(tried, vec![2, 4, 8, 16, 4]);
        assert_eq!(sizer.batch_size(), 8);
        // A short tail batch does not disturb it.
        sizer.record(3, Duration::from_secs(10));
        assert_eq!(sizer.batch_size(), 8);
    }

    #[test]
    fn throughput_sizer_respects_a_cap() {
        let mut sizer = ThroughputSizer::new(32, 1, 32);
        sizer.cap(8);
        assert_eq!(sizer.batch_size(), 8);
        sizer.record(8, Duration::from_secs(1));
        assert!(sizer.batch_size() <= 8);
    }

    #[test]
    fn pacer_sizes_gpu_batches_from_free_memory_and_learns_the_cost() {
        let mut pacer = BatchPacer::new(Priority::Background, 64, 10, Duration::from_secs(1));
        // 850 − 500 = 350 bytes of room at 10 bytes per item.
        assert_eq!(
            pacer.next(Target::Gpu, Some(&snapshot(500, 50))),
            Pace::Run { batch: 35 }
        );
        assert_eq!(
            pacer.next(Target::Gpu, Some(&snapshot(0, 50))),
            Pace::Run { batch: 64 }
        );
        pacer.record(Target::Gpu, 10, Duration::from_millis(5), Some(500));
        assert_eq!(pacer.bytes_per_item(), 50);
        assert_eq!(
            pacer.next(Target::Gpu, Some(&snapshot(500, 50))),
            Pace::Run { batch: 7 }
        );
        pacer.cap(4);
        assert_eq!(
            pacer.next(Target::Gpu, Some(&snapshot(0, 50))),
            Pace::Run { batch: 4 }
        );
        assert_eq!(pacer.next(Target::Cpu, None), Pace::Run { batch: 4 });
    }

    #[test]
    fn pacer_pauses_background_work_only_and_gives_up_waiting_eventually() {
        let hot = snapshot(0, 90);
        let mut answers = BatchPacer::new(Priority::Interactive, 8, 1, Duration::from_secs(1));
        assert_eq!(
            answers.next(Target::Gpu, Some(&hot)),
            Pace::Run { batch: 8 }
        );

        let mut ingest = BatchPacer::new(Priority::Background, 8, 1, Duration::from_secs(1))
            .with_max_wait(Duration::from_secs(3));
        for _ in 0..3 {
            assert!(matches!(
                ingest.next(Target::Gpu, Some(&hot)),
                Pace::Wait { .. }
            ));
        }
        assert_eq!(ingest.next(Target::Gpu, Some(&hot)), Pace::Run { batch: 1 });
        // Work moved to the CPU is not paced by the GPU's heat.
        assert_eq!(ingest.next(Target::Cpu, Some(&hot)), Pace::Run { batch: 8 });
    }
}
