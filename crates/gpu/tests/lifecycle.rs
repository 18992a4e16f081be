//! Paced batches and the model lifecycle against the simulated GPU, on a
//! manual clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lectern_gpu::{
    BatchPacer, DeviceKind, EventBus, GpuError, GpuEvent, GpuManager, ManagerConfig, ManualClock,
    ModelKind, ModelRequest, PacedHooks, Priority, RecoveryPolicy, RecoveryStep, SimulatedGpu,
    Target, TelemetryBackend, WorkError,
};

const GIB: u64 = 1 << 30;

fn sim(options: &str) -> (Arc<SimulatedGpu>, ManualClock) {
    let clock = ManualClock::new();
    let gpu = SimulatedGpu::with_clock(options.parse().unwrap(), Arc::new(clock.clone()));
    (Arc::new(gpu), clock)
}

fn kinds(rx: &Receiver<GpuEvent>) -> Vec<String> {
    rx.try_iter()
        .map(|e| {
            serde_json::to_value(&e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// What a paced run returns.
type PacedResult = Result<
    (lectern_gpu::Recovered<Vec<u64>>, lectern_gpu::PaceReport),
    lectern_gpu::RecoveryError<GpuError>,
>;

/// Each try: when it started (ms), its items, where it ran.
type Logged = (u64, Vec<u64>, Target);

/// Squares `items` in paced batches on `gpu`: each GPU batch allocates
/// `per_item` bytes per item while it runs and takes one simulated
/// second.
fn run_paced(
    gpu: &Arc<SimulatedGpu>,
    clock: &ManualClock,
    pacer: &mut BatchPacer,
    events: &EventBus,
    items: &[u64],
    per_item: u64,
) -> (PacedResult, Vec<Logged>) {
    let mut log = Vec::new();
    let mut snapshot = || gpu.snapshot(0).ok();
    let mut sleep = |d: Duration| clock.advance(d);
    let mut free = || {};
    let result = RecoveryPolicy::new()
        .with_events(events.clone())
        .map_batches_paced(
            items,
            Target::Gpu,
            pacer,
            PacedHooks {
                snapshot: &mut snapshot,
                sleep: &mut sleep,
                free_caches: &mut free,
                events: Some(events),
            },
            |batch, target| {
                let at = clock.now_ms();
                log.push((at, batch.to_vec(), target));
                if target == Target::Gpu {
                    let bytes = per_item * batch.len() as u64;
                    gpu.allocate(bytes).map_err(|e| match e {
                        GpuError::DeviceLost { .. } => WorkError::DeviceLost(e),
                        _ => WorkError::OutOfMemory(e),
                    })?;
                    clock.advance(Duration::from_secs(1));
                    gpu.free(bytes);
                    Ok((batch.iter().map(|x| x * x).collect(), Some(bytes)))
                } else {
                    Ok((batch.iter().map(|x| x * x).collect(), None))
                }
            },
        );
    (result, log)
}

trait Millis {
    fn now_ms(&self) -> u64;
}

impl Millis for ManualClock {
    fn now_ms(&self) -> u64 {
        use lectern_gpu::Clock;
        u64::try_from(self.now().as_millis()).unwrap()
    }
}

#[test]
fn a_hot_spell_pauses_paced_ingestion_which_then_resumes_with_every_item() {
    // Hot from 5 s to 15 s; it cools fast enough afterwards.
    let (gpu, clock) = sim("temp=45,tau=5s,hot_at=5s,hot_for=10s,hot_temp=92");
    let events = EventBus::new();
    let rx = events.subscribe();
    let items: Vec<u64> = (0..40).collect();
    let mut pacer = BatchPacer::new(Priority::Background, 4, 1 << 20, Duration::from_millis(500));
    let (result, log) = run_paced(&gpu, &clock, &mut pacer, &events, &items, 1 << 20);
    let (done, report) = result.unwrap();
    assert_eq!(
        done.value,
        items.iter().map(|x| x * x).collect::<Vec<_>>(),
        "every item once, in order"
    );
    assert!(done.steps.is_empty());
    assert!(report.pauses > 0, "{report:?}");
    // No batch ran while the GPU was at its limit: between 5 s and the
    // end of the spell nothing started.
    let starts: Vec<u64> = log.iter().map(|(at, _, _)| *at).collect();
    assert!(
        !starts.iter().any(|&t| (5_000..15_000).contains(&t)),
        "{starts:?}"
    );
    assert!(
        starts.iter().any(|&t| t >= 15_000),
        "work resumed: {starts:?}"
    );
    // From 80 °C (the warning line) batches were halved.
    assert!(report.batches.contains(&2), "{:?}", report.batches);
    let seen = kinds(&rx);
    assert_eq!(
        seen,
        vec!["background_paused", "background_resumed"],
        "one pause, one resume"
    );

    // An answer on the same hot GPU is never held back.
    let (gpu, clock) = sim("temp=45,hot_at=0s,hot_for=60s,hot_temp=95");
    let events = EventBus::new();
    let rx = events.subscribe();
    let mut answers = BatchPacer::new(Priority::Interactive, 4, 1, Duration::from_secs(1));
    let (result, _) = run_paced(&gpu, &clock, &mut answers, &events, &items, 1);
    let (_, report) = result.unwrap();
    assert_eq!(report.pauses, 0);
    assert!(kinds(&rx).is_empty());
}

#[test]
fn paced_batches_fit_free_memory_and_halve_after_an_oom() {
    // 1 GiB card, 512 MiB used by others: 85 % line leaves ~358 MiB.
    let (gpu, clock) = sim("vram=1GiB,used=512MiB,oom_at=2..3");
    let events = EventBus::new();
    let items: Vec<u64> = (0..100).collect();
    let mut pacer = BatchPacer::new(Priority::Background, 64, 16 << 20, Duration::from_secs(1));
    let (result, log) = run_paced(&gpu, &clock, &mut pacer, &events, &items, 16 << 20);
    let (done, report) = result.unwrap();
    assert_eq!(done.value, items.iter().map(|x| x * x).collect::<Vec<_>>());
    // 358 MiB / 16 MiB = 22 items per batch, not the 64 allowed.
    assert_eq!(report.batches[0], 22, "{:?}", report.batches);
    // The second batch hit the scripted OOM: caches freed, then halved,
    // and the halved size stays in effect.
    assert_eq!(
        done.steps,
        vec![
            RecoveryStep::FreedCaches { batch: 22 },
            RecoveryStep::HalvedBatch { from: 22, to: 11 }
        ]
    );
    assert!(
        report.batches[1..].iter().all(|&b| b <= 11),
        "{:?}",
        report.batches
    );
    assert!(log.iter().all(|(_, _, t)| *t == Target::Gpu));
    assert_eq!(gpu.allocated(), 0);
}

#[test]
fn paced_work_moves_to_the_cpu_when_the_device_is_lost() {
    let (gpu, clock) = sim("lost_at=3");
    let events = EventBus::new();
    let items: Vec<u64> = (0..20).collect();
    let mut pacer = BatchPacer::new(Priority::Background, 4, 1, Duration::from_secs(1));
    let (result, log) = run_paced(&gpu, &clock, &mut pacer, &events, &items, 1);
    let (done, _) = result.unwrap();
    assert_eq!(done.value, items.iter().map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(done.target, Target::Cpu);
    assert!(
        matches!(done.steps.as_slice(), [RecoveryStep::MovedToCpu { reason }] if reason.contains("lost"))
    );
    let gpu_items: usize = log
        .iter()
        .filter(|(_, _, t)| *t == Target::Gpu)
        .map(|(_, b, _)| b.len())
        .sum();
    assert_eq!(
        gpu_items, 12,
        "two batches done on the GPU plus the one that failed"
    );
}

#[test]
fn the_idle_reaper_unloads_idle_models_on_its_own() {
    let (gpu, clock) = sim("vram=16GiB");
    let config = ManagerConfig {
        idle_timeout: Duration::from_secs(60),
        ..ManagerConfig::default()
    };
    let manager = GpuManager::with_clock(
        gpu.clone(),
        DeviceKind::Cuda(0),
        config,
        EventBus::new(),
        Arc::new(clock.clone()),
    );
    let unloads = Arc::new(AtomicUsize::new(0));
    let counter = unloads.clone();
    let embedder = manager
        .admit(
            ModelRequest::new("embedder", ModelKind::Small, GIB),
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
    let embedder = embedder.reservation().expect("on the GPU");
    embedder.loaded();
    let _reaper = manager.start_idle_reaper(Duration::from_millis(5)).unwrap();

    // Used recently: the reaper leaves it alone.
    clock.advance(Duration::from_secs(59));
    std::thread::sleep(Duration::from_millis(50));
    assert!(embedder.is_resident());

    // In use past the timeout: still left alone.
    let in_use = embedder.begin_use();
    clock.advance(Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(50));
    assert!(embedder.is_resident());
    drop(in_use);

    // Idle past the timeout: unloaded without anyone asking.
    clock.advance(Duration::from_secs(61));
    let deadline = Instant::now() + Duration::from_secs(10);
    while embedder.is_resident() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!embedder.is_resident());
    assert_eq!(unloads.load(Ordering::SeqCst), 1);
    assert!(manager.residents().is_empty());
}
