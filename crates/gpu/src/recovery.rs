//! Out-of-memory recovery for batched work, batch sizing from free memory,
//! and thermal back-off.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{EventBus, GpuEvent, GpuSnapshot, RecoveryStep, Thresholds};

/// Where an attempt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The GPU.
    Gpu,
    /// The CPU.
    Cpu,
}

/// One try of the work: where to run it and how many items at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Where to run.
    pub target: Target,
    /// Items per batch.
    pub batch: usize,
    /// 1 for the first try, then 2, 3, …
    pub number: usize,
}

/// How a try failed, as the work classifies its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkError<E> {
    /// The device ran out of memory; recovery applies.
    OutOfMemory(E),
    /// The device was lost; the work moves to the CPU.
    DeviceLost(E),
    /// Any other failure; returned at once.
    Failed(E),
}

/// Whether an error message reads like a GPU out-of-memory error from
/// CUDA, cuBLAS, Metal or a simulated device.
pub fn is_out_of_memory_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("out of memory")
        || lower.contains("out_of_memory")
        || lower.contains("cublas_status_alloc_failed")
        || lower.contains("insufficient memory")
}

/// A successful run and what it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered<T> {
    /// The work's result.
    pub value: T,
    /// Where the successful try ran.
    pub target: Target,
    /// The batch size of the successful try.
    pub batch: usize,
    /// Recovery steps taken, in order (empty when the first try worked).
    pub steps: Vec<RecoveryStep>,
}

/// Why recovery gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError<E> {
    /// The work failed for a reason recovery does not handle.
    Failed {
        /// The error.
        error: E,
        /// Steps taken before it.
        steps: Vec<RecoveryStep>,
    },
    /// Every recovery step was used and the work still ran out of memory.
    Exhausted {
        /// The last error.
        error: E,
        /// Steps taken.
        steps: Vec<RecoveryStep>,
    },
}

impl<E: fmt::Display> fmt::Display for RecoveryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { error, .. } => write!(f, "{error}"),
            Self::Exhausted { error, steps } => write!(
                f,
                "still out of memory after {} recovery step(s): {error}",
                steps.len()
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RecoveryError<E> {}

/// The out-of-memory recovery policy: on an out-of-memory error, (1) free
/// caches and retry, (2) halve the batch and retry, (3) move to the CPU;
/// at most `max_steps` steps. A lost device moves to the CPU at once.
#[derive(Debug, Clone, Default)]
pub struct RecoveryPolicy {
    /// At most this many steps (default 3).
    pub max_steps: usize,
    /// Where steps are published as [`GpuEvent::Recovery`], if anywhere.
    pub events: Option<EventBus>,
}

impl RecoveryPolicy {
    /// Three steps, no events.
    pub fn new() -> Self {
        Self {
            max_steps: 3,
            events: None,
        }
    }

    /// Publishes each step on `events`.
    pub fn with_events(mut self, events: EventBus) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs `work` starting on `target` with `batch` items, recovering from
    /// out-of-memory errors and device loss. `free_caches` is called for
    /// the first step.
    pub fn run<T, E: fmt::Display>(
        &self,
        target: Target,
        batch: usize,
        mut free_caches: impl FnMut(),
        mut work: impl FnMut(Attempt) -> Result<T, WorkError<E>>,
    ) -> Result<Recovered<T>, RecoveryError<E>> {
        let mut attempt = Attempt {
            target,
            batch: batch.max(1),
            number: 1,
        };
        let mut steps = Vec::new();
        let (mut freed, mut halved) = (false, false);
        loop {
            let error = match work(attempt) {
                Ok(value) => {
                    return Ok(Recovered {
                        value,
                        target: attempt.target,
                        batch: attempt.batch,
                        steps,
                    })
                }
                Err(WorkError::Failed(error)) => {
                    return Err(RecoveryError::Failed { error, steps })
                }
                Err(error) => error,
            };
            let (lost, error) = match error {
                WorkError::DeviceLost(e) => (true, e),
                WorkError::OutOfMemory(e) | WorkError::Failed(e) => (false, e),
            };
            if attempt.target == Target::Cpu || steps.len() >= self.max_steps {
                tracing::warn!(%error, steps = steps.len(), "out-of-memory recovery exhausted");
                return Err(RecoveryError::Exhausted { error, steps });
            }
            let step = if lost {
                RecoveryStep::MovedToCpu {
                    reason: format!("the GPU was lost: {error}"),
                }
            } else if !freed {
                freed = true;
                free_caches();
                RecoveryStep::FreedCaches {
                    batch: attempt.batch,
                }
            } else if !halved && attempt.batch > 1 {
                halved = true;
                RecoveryStep::HalvedBatch {
                    from: attempt.batch,
                    to: attempt.batch / 2,
                }
            } else {
                RecoveryStep::MovedToCpu {
                    reason: format!("still out of GPU memory: {error}"),
                }
            };
            match &step {
                RecoveryStep::HalvedBatch { to, .. } => attempt.batch = *to,
                RecoveryStep::MovedToCpu { .. } => attempt.target = Target::Cpu,
                RecoveryStep::FreedCaches { .. } => {}
            }
            tracing::warn!(step = %step, %error, "recovering from GPU failure");
            if let Some(events) = &self.events {
                events.publish(GpuEvent::Recovery { step: step.clone() });
            }
            steps.push(step);
            attempt.number += 1;
        }
    }

    /// Processes `items` in batches through `work`, recovering each batch.
    ///
    /// `work` gets a slice and where to run it and returns one output per
    /// item. After a recovery the smaller batch size and the CPU stay in
    /// effect for the remaining items, so nothing is lost or processed
    /// twice: a failed batch is retried from its first item. The result
    /// lists every step taken.
    pub fn map_batches<I, O, E: fmt::Display>(
        &self,
        items: &[I],
        batch: usize,
        mut free_caches: impl FnMut(),
        mut work: impl FnMut(&[I], Target) -> Result<Vec<O>, WorkError<E>>,
    ) -> Result<Recovered<Vec<O>>, RecoveryError<E>> {
        let mut out = Vec::with_capacity(items.len());
        let mut target = Target::Gpu;
        let mut size = batch.max(1);
        let mut steps = Vec::new();
        let mut at = 0;
        while at < items.len() {
            let result = self.run(target, size, &mut free_caches, |attempt| {
                let end = (at + attempt.batch).min(items.len());
                work(&items[at..end], attempt.target).map(|outputs| (outputs, end))
            });
            match result {
                Ok(done) => {
                    let (outputs, end) = done.value;
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
        Ok(Recovered {
            value: out,
            target,
            batch: size,
            steps,
        })
    }
}

/// Runs `work` on the GPU with `batch` items and the default three-step
/// recovery; see [`RecoveryPolicy::run`].
pub fn run_with_recovery<T, E: fmt::Display>(
    batch: usize,
    free_caches: impl FnMut(),
    work: impl FnMut(Attempt) -> Result<T, WorkError<E>>,
) -> Result<Recovered<T>, RecoveryError<E>> {
    RecoveryPolicy::new().run(Target::Gpu, batch, free_caches, work)
}

/// Chooses batch sizes from free GPU memory and a measured per-item cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchSizer {
    /// Smallest batch (default 1).
    pub min: usize,
    /// Largest batch (default 256).
    pub max: usize,
    /// Keep memory use below this fraction of the total (default 0.85,
    /// the warning line).
    pub line: f64,
    /// Bytes each item costs, from a probe batch.
    pub bytes_per_item: u64,
}

impl BatchSizer {
    /// A sizer with default bounds and `bytes_per_item` as the first
    /// estimate.
    pub fn new(bytes_per_item: u64) -> Self {
        Self {
            min: 1,
            max: 256,
            line: 0.85,
            bytes_per_item: bytes_per_item.max(1),
        }
    }

    /// Updates the per-item cost from a measured batch: `bytes` of memory
    /// growth for `items` items. The estimate only grows quickly and
    /// shrinks slowly, so one lucky batch does not cause an out-of-memory
    /// error on the next.
    pub fn record(&mut self, items: usize, bytes: u64) {
        if items == 0 {
            return;
        }
        let measured = (bytes / items as u64).max(1);
        self.bytes_per_item = if measured > self.bytes_per_item {
            measured
        } else {
            (self.bytes_per_item * 3 + measured) / 4
        };
    }

    /// The batch size that keeps memory below the line, clamped to
    /// `min..=max`; `min` when the reading lacks memory figures.
    pub fn batch_size(&self, snapshot: &GpuSnapshot) -> usize {
        let (Some(total), Some(used)) = (snapshot.memory_total, snapshot.memory_used) else {
            return self.min.max(1);
        };
        let ceiling = (total as f64 * self.line) as u64;
        let room = ceiling.saturating_sub(used);
        let items = usize::try_from(room / self.bytes_per_item.max(1)).unwrap_or(usize::MAX);
        items.clamp(self.min.max(1), self.max.max(self.min.max(1)))
    }
}

/// Who is waiting for the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A person is waiting (an answer): never slowed down.
    Interactive,
    /// Background work (ingestion): yields to heat and power limits.
    Background,
}

/// What background work should do given the GPU's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Backoff {
    /// Carry on.
    Proceed,
    /// Shrink the batch to this size.
    Shrink {
        /// The new batch size.
        batch: usize,
        /// Why.
        reason: String,
    },
    /// Pause this long, then ask again.
    Pause {
        /// How long.
        pause: Duration,
        /// Why.
        reason: String,
    },
}

/// Slows background work when the GPU is hot or over its power limit.
///
/// At the temperature limit background work pauses until the GPU cools
/// below the limit's clear line; from the warning temperature, or with
/// power above the enforced limit, batches are halved. Interactive work
/// always proceeds.
#[derive(Debug, Clone)]
pub struct ThermalBackoff {
    thresholds: Thresholds,
    pause: Duration,
    paused: bool,
}

impl ThermalBackoff {
    /// Back-off on `thresholds`, pausing `pause` at a time.
    pub fn new(thresholds: Thresholds, pause: Duration) -> Self {
        Self {
            thresholds,
            pause,
            paused: false,
        }
    }

    /// Whether the last advice was to pause.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Advice for the next batch of `batch` items.
    pub fn advise(&mut self, snapshot: &GpuSnapshot, priority: Priority, batch: usize) -> Backoff {
        if priority == Priority::Interactive {
            return Backoff::Proceed;
        }
        let t = &self.thresholds;
        if let Some(celsius) = snapshot.temperature_c {
            let hot = if self.paused {
                celsius >= t.temp_limit_clear_c
            } else {
                celsius >= t.temp_limit_c
            };
            self.paused = hot;
            if hot {
                return Backoff::Pause {
                    pause: self.pause,
                    reason: format!(
                        "GPU {} at {celsius} °C; background work waits until it is below {} °C",
                        snapshot.index, t.temp_limit_clear_c
                    ),
                };
            }
            if celsius >= t.temp_warning_c && batch > 1 {
                return Backoff::Shrink {
                    batch: batch / 2,
                    reason: format!("GPU {} at {celsius} °C", snapshot.index),
                };
            }
        }
        if let (Some(power), Some(limit)) = (snapshot.power_mw, snapshot.power_limit_mw) {
            if power > limit && batch > 1 {
                return Backoff::Shrink {
                    batch: batch / 2,
                    reason: format!(
                        "GPU {} draws {:.1} W, above its {:.1} W limit",
                        snapshot.index,
                        f64::from(power) / 1000.0,
                        f64::from(limit) / 1000.0
                    ),
                };
            }
        }
        Backoff::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_messages_are_recognised() {
        assert!(is_out_of_memory_message(
            "CUDA_ERROR_OUT_OF_MEMORY: out of memory"
        ));
        assert!(is_out_of_memory_message(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY"
        ));
        assert!(is_out_of_memory_message(
            "cublas CUBLAS_STATUS_ALLOC_FAILED"
        ));
        assert!(!is_out_of_memory_message("shape mismatch in matmul"));
    }

    #[test]
    fn first_try_success_takes_no_steps() {
        let done = run_with_recovery(
            8,
            || panic!("no caches to free"),
            |a| Ok::<_, WorkError<String>>(a.batch * 2),
        )
        .unwrap();
        assert_eq!(done.value, 16);
        assert_eq!(done.target, Target::Gpu);
        assert!(done.steps.is_empty());
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        let mut tries = 0;
        let err = run_with_recovery(
            8,
            || {},
            |_| {
                tries += 1;
                Err::<(), _>(WorkError::Failed("bad input".to_owned()))
            },
        )
        .unwrap_err();
        assert_eq!(tries, 1);
        assert_eq!(
            err,
            RecoveryError::Failed {
                error: "bad input".to_owned(),
                steps: vec![]
            }
        );
    }

    #[test]
    fn a_batch_of_one_skips_halving() {
        let mut seen = Vec::new();
        let done = run_with_recovery(
            1,
            || {},
            |a| {
                seen.push((a.target, a.batch));
                if a.target == Target::Gpu {
                    Err(WorkError::OutOfMemory("oom"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![(Target::Gpu, 1), (Target::Gpu, 1), (Target::Cpu, 1)]
        );
        assert_eq!(done.steps.len(), 2);
    }

    #[test]
    fn a_smaller_budget_gives_up_sooner() {
        let policy = RecoveryPolicy {
            max_steps: 1,
            events: None,
        };
        let err = policy
            .run(
                Target::Gpu,
                4,
                || {},
                |_| Err::<(), _>(WorkError::OutOfMemory("oom")),
            )
            .unwrap_err();
        match err {
            RecoveryError::Exhausted { steps, .. } => {
                assert_eq!(steps, vec![RecoveryStep::FreedCaches { batch: 4 }])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batch_size_keeps_memory_below_the_line() {
        let mut snapshot = GpuSnapshot::new(0, "t");
        snapshot.memory_total = Some(1000);
        snapshot.memory_used = Some(500);
        let sizer = BatchSizer {
            bytes_per_item: 10,
            ..BatchSizer::new(10)
        };
        // 85 % of 1000 is 850; 350 bytes of room at 10 per item.
        assert_eq!(sizer.batch_size(&snapshot), 35);
        snapshot.memory_used = Some(900);
        assert_eq!(sizer.batch_size(&snapshot), 1);
        snapshot.memory_used = Some(0);
        let capped = BatchSizer { max: 32, ..sizer };
        assert_eq!(capped.batch_size(&snapshot), 32);
        assert_eq!(sizer.batch_size(&GpuSnapshot::new(0, "t")), 1);
    }

    #[test]
    fn per_item_cost_rises_fast_and_falls_slowly() {
        let mut sizer = BatchSizer::new(100);
        sizer.record(10, 2000);
        assert_eq!(sizer.bytes_per_item, 200);
        sizer.record(10, 1000);
        assert_eq!(sizer.bytes_per_item, 175);
        sizer.record(0, 1);
        assert_eq!(sizer.bytes_per_item, 175);
    }

    #[test]
    fn backoff_shrinks_when_warm_or_over_power_and_never_slows_answers() {
        let mut backoff = ThermalBackoff::new(Thresholds::default(), Duration::from_secs(2));
        let mut snapshot = GpuSnapshot::new(0, "t");
        snapshot.temperature_c = Some(82);
        assert!(matches!(
            backoff.advise(&snapshot, Priority::Background, 16),
            Backoff::Shrink { batch: 8, .. }
        ));
        assert_eq!(
            backoff.advise(&snapshot, Priority::Interactive, 16),
            Backoff::Proceed
        );
        snapshot.temperature_c = Some(60);
        snapshot.power_mw = Some(310_000);
        snapshot.power_limit_mw = Some(300_000);
        assert!(matches!(
            backoff.advise(&snapshot, Priority::Background, 16),
            Backoff::Shrink { batch: 8, .. }
        ));
        snapshot.power_mw = Some(200_000);
        assert_eq!(
            backoff.advise(&snapshot, Priority::Background, 16),
            Backoff::Proceed
        );
    }
}
