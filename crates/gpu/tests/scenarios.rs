//! End-to-end scenarios on the simulated GPU: memory thresholds, model
//! placement, out-of-memory recovery, device loss and heat.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lectern_gpu::{
    Admission, Backoff, DeviceKind, EventBus, GpuError, GpuEvent, GpuManager, ManagerConfig,
    ManualClock, ModelKind, ModelRequest, NoGpu, Priority, RecoveryError, RecoveryPolicy,
    RecoveryStep, Reservation, Sampler, SamplerConfig, SimulatedGpu, Target, TelemetryBackend,
    TelemetrySource, ThermalBackoff, Thresholds, UnloadReason, WorkError,
};

const GIB: u64 = 1 << 30;

fn sim(options: &str) -> (Arc<SimulatedGpu>, ManualClock) {
    let clock = ManualClock::new();
    let gpu = SimulatedGpu::with_clock(options.parse().unwrap(), Arc::new(clock.clone()));
    (Arc::new(gpu), clock)
}

fn drain(rx: &Receiver<GpuEvent>) -> Vec<GpuEvent> {
    rx.try_iter().collect()
}

fn kind(event: &GpuEvent) -> String {
    serde_json::to_value(event).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn kinds(events: &[GpuEvent]) -> Vec<String> {
    events.iter().map(kind).collect()
}

fn manual_sampler(gpu: Arc<SimulatedGpu>, clock: &ManualClock) -> (Sampler, Receiver<GpuEvent>) {
    let sampler = Sampler::manual(
        gpu,
        SamplerConfig::default(),
        EventBus::new(),
        Arc::new(clock.clone()),
    );
    let rx = sampler.subscribe();
    (sampler, rx)
}

#[test]
fn filling_vram_warns_once_goes_critical_once_and_clears() {
    let (gpu, clock) = sim("vram=16GiB");
    let (sampler, rx) = manual_sampler(gpu.clone(), &clock);
    let mut seen = Vec::new();
    // Fill in 1 GiB steps up to 15.5 GiB (97 %), sampling after each.
    for _ in 0..15 {
        gpu.allocate(GIB).unwrap();
        clock.advance(Duration::from_secs(1));
        sampler.sample_now();
        seen.extend(drain(&rx));
    }
    gpu.allocate(GIB / 2).unwrap();
    for _ in 0..3 {
        sampler.sample_now();
    }
    seen.extend(drain(&rx));
    assert_eq!(kinds(&seen), vec!["vram_warning", "vram_critical"]);
    match &seen[0] {
        GpuEvent::VramWarning { used, total, .. } => {
            assert_eq!(*total, 16 * GIB);
            // The first sample at or above 85 % is 14 GiB (87.5 %).
            assert_eq!(*used, 14 * GIB);
        }
        other => panic!("{other:?}"),
    }

    // Down to 14 GiB (87.5 %): critical clears, the warning stays.
    gpu.free(GIB + GIB / 2);
    sampler.sample_now();
    assert_eq!(kinds(&drain(&rx)), vec!["vram_critical_cleared"]);
    // 13 GiB (81 %) is inside the warning's hysteresis band: nothing.
    gpu.free(GIB);
    sampler.sample_now();
    assert!(drain(&rx).is_empty());
    // Down to 8 GiB: the warning clears.
    gpu.free(5 * GIB);
    sampler.sample_now();
    sampler.sample_now();
    assert_eq!(kinds(&drain(&rx)), vec!["vram_warning_cleared"]);
    assert_eq!(sampler.history().len(), 22);
}

#[test]
fn power_above_the_enforced_limit_is_reported_once() {
    let (gpu, clock) = sim("power=50,tdp=320,power_limit=300");
    let (sampler, rx) = manual_sampler(gpu.clone(), &clock);
    sampler.sample_now();
    gpu.set_utilization(100);
    sampler.sample_now();
    sampler.sample_now();
    gpu.set_utilization(50);
    sampler.sample_now();
    assert_eq!(
        drain(&rx),
        vec![
            GpuEvent::PowerOverLimit {
                index: 0,
                power_mw: 320_000,
                limit_mw: 300_000
            },
            GpuEvent::PowerCleared {
                index: 0,
                power_mw: 185_000,
                limit_mw: 300_000
            }
        ]
    );
}

#[test]
fn the_sampler_thread_publishes_keeps_100_and_stops_on_drop() {
    let (gpu, _clock) = sim("");
    gpu.allocate(15 * GIB + GIB / 2).unwrap();
    let events = EventBus::new();
    let rx = events.subscribe();
    let config = SamplerConfig {
        active_interval: Duration::from_millis(2),
        idle_interval: Duration::from_secs(3600),
        ..SamplerConfig::default()
    };
    let sampler = Sampler::start(gpu.clone(), config, events).unwrap();
    // The first sample is taken at start, whatever the interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sampler.latest().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sampler.latest().is_some(), "no sample at start");
    let guard = sampler.active();
    while sampler.history().len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(guard);
    assert_eq!(sampler.history().len(), 100);
    drop(sampler);
    // 15.5 of 16 GiB crosses both memory lines, each reported once.
    assert_eq!(kinds(&drain(&rx)), vec!["vram_warning", "vram_critical"]);
}

#[test]
fn oom_at_the_second_allocation_is_recovered_by_halving() {
    // A 2 GiB cache is allocation 1; the batch of 16 × 0.75 GiB does not
    // fit even after the cache is freed, and fits when halved.
    let (gpu, _) = sim("vram=10GiB");
    gpu.allocate(2 * GIB).unwrap();
    let events = EventBus::new();
    let rx = events.subscribe();
    let policy = RecoveryPolicy::new().with_events(events);
    let per_item = 3 * GIB / 4;
    let mut cache = Some(2 * GIB);
    let done = policy
        .run(
            Target::Gpu,
            16,
            || {
                if let Some(bytes) = cache.take() {
                    gpu.free(bytes);
                }
            },
            |attempt| {
                let bytes = per_item * attempt.batch as u64;
                gpu.allocate(bytes).map_err(|e| match e {
                    GpuError::OutOfMemory { .. } => WorkError::OutOfMemory(e),
                    other => WorkError::Failed(other),
                })?;
                gpu.free(bytes);
                Ok(attempt.batch)
            },
        )
        .unwrap();
    assert_eq!(done.value, 8);
    assert_eq!(done.target, Target::Gpu);
    assert_eq!(
        done.steps,
        vec![
            RecoveryStep::FreedCaches { batch: 16 },
            RecoveryStep::HalvedBatch { from: 16, to: 8 }
        ]
    );
    assert_eq!(gpu.allocation_count(), 4);
    assert_eq!(gpu.allocated(), 0);
    assert_eq!(kinds(&drain(&rx)), vec!["recovery", "recovery"]);
}

/// Squares each item on the "device" it is told to use, allocating its
/// working memory on the simulator for GPU batches.
fn square_on(
    gpu: &SimulatedGpu,
    processed: &Mutex<Vec<u64>>,
    items: &[u64],
    target: Target,
) -> Result<Vec<u64>, WorkError<GpuError>> {
    if target == Target::Gpu {
        let bytes = items.len() as u64 * (GIB / 8);
        gpu.allocate(bytes).map_err(|e| match e {
            GpuError::OutOfMemory { .. } => WorkError::OutOfMemory(e),
            GpuError::DeviceLost { .. } => WorkError::DeviceLost(e),
            other => WorkError::Failed(other),
        })?;
        gpu.free(bytes);
    }
    processed.lock().unwrap().extend_from_slice(items);
    Ok(items.iter().map(|x| x * x).collect())
}

#[test]
fn three_ooms_fall_back_to_cpu_with_the_same_results() {
    let (gpu, _) = sim("oom_at=2..");
    let items: Vec<u64> = (0..40).collect();
    let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
    let processed = Mutex::new(Vec::new());
    let mut freed = 0;
    let done = RecoveryPolicy::new()
        .map_batches(
            &items,
            8,
            || freed += 1,
            |batch, target| square_on(&gpu, &processed, batch, target),
        )
        .unwrap();
    assert_eq!(done.value, expected);
    assert_eq!(done.target, Target::Cpu);
    assert_eq!(done.batch, 4);
    assert_eq!(freed, 1);
    assert_eq!(done.steps.len(), 3);
    assert!(matches!(
        done.steps[0],
        RecoveryStep::FreedCaches { batch: 8 }
    ));
    assert!(matches!(
        done.steps[1],
        RecoveryStep::HalvedBatch { from: 8, to: 4 }
    ));
    match &done.steps[2] {
        RecoveryStep::MovedToCpu { reason } => {
            assert!(reason.contains("still out of GPU memory"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Every item processed exactly once, in order.
    assert_eq!(*processed.lock().unwrap(), items);
}

#[test]
fn device_lost_mid_run_moves_to_cpu_without_losing_items() {
    let (gpu, clock) = sim("lost_at=3");
    let items: Vec<u64> = (0..40).collect();
    let processed = Mutex::new(Vec::new());
    let done = RecoveryPolicy::new()
        .map_batches(
            &items,
            8,
            || {},
            |batch, target| square_on(&gpu, &processed, batch, target),
        )
        .unwrap();
    assert_eq!(done.value, items.iter().map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(done.target, Target::Cpu);
    assert_eq!(done.batch, 8);
    assert!(matches!(
        &done.steps[..],
        [RecoveryStep::MovedToCpu { reason }] if reason.contains("GPU was lost")
    ));
    assert_eq!(*processed.lock().unwrap(), items);

    // The sampler reports the loss once, and the manager then places
    // models on the CPU instead of failing.
    let (sampler, rx) = manual_sampler(gpu.clone(), &clock);
    sampler.sample_now();
    sampler.sample_now();
    assert_eq!(kinds(&drain(&rx)), vec!["device_lost"]);
    assert!(sampler.latest().unwrap().gpus.is_empty());
    let manager = GpuManager::new(
        gpu.clone(),
        DeviceKind::Cuda(0),
        ManagerConfig::default(),
        EventBus::new(),
    );
    match manager
        .admit(ModelRequest::new("minilm", ModelKind::Small, GIB), || {})
        .unwrap()
    {
        Admission::Cpu { reason } => assert!(reason.contains("was lost"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A model whose weights live in simulated GPU memory; the manager's
/// unloader frees them, taking `unload_time` on the clock.
struct SimModel {
    slot: Arc<Mutex<Option<Reservation>>>,
}

impl SimModel {
    fn load(
        manager: &GpuManager,
        gpu: &Arc<SimulatedGpu>,
        clock: &ManualClock,
        request: ModelRequest,
    ) -> Result<(Self, Admission), GpuError> {
        let slot: Arc<Mutex<Option<Reservation>>> = Arc::default();
        let unload = {
            let (slot, gpu, clock) = (slot.clone(), gpu.clone(), clock.clone());
            move || {
                if let Some(reservation) = slot.lock().unwrap().take() {
                    clock.advance(Duration::from_millis(300));
                    gpu.free(reservation.bytes());
                }
            }
        };
        let bytes = request.bytes;
        let admission = manager.admit(request, unload)?;
        if admission.reservation().is_some() {
            gpu.allocate(bytes)?;
            clock.advance(Duration::from_secs(2));
        }
        Ok((Self { slot }, admission))
    }

    fn finish(&self, admission: Admission) -> Option<lectern_gpu::SwitchReport> {
        match admission {
            Admission::Gpu(reservation) => {
                let report = reservation.loaded();
                *self.slot.lock().unwrap() = Some(reservation);
                report
            }
            Admission::Cpu { .. } => None,
        }
    }

    fn resident(&self) -> bool {
        self.slot.lock().unwrap().is_some()
    }
}

fn manager_on(gpu: &Arc<SimulatedGpu>, clock: &ManualClock, config: ManagerConfig) -> GpuManager {
    GpuManager::with_clock(
        gpu.clone(),
        DeviceKind::Cuda(0),
        config,
        EventBus::new(),
        Arc::new(clock.clone()),
    )
}

#[test]
fn loading_a_second_llm_unloads_the_first_and_reports_the_switch() {
    let (gpu, clock) = sim("vram=16GiB");
    let manager = manager_on(&gpu, &clock, ManagerConfig::default());
    let rx = manager.events().subscribe();
    let (embedder, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("minilm", ModelKind::Small, GIB / 2),
    )
    .unwrap();
    assert_eq!(embedder.finish(admission), None);
    let (first, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("qwen3-4b", ModelKind::Llm, 8 * GIB),
    )
    .unwrap();
    assert_eq!(first.finish(admission), None);
    assert_eq!(gpu.allocated(), 8 * GIB + GIB / 2);

    let (second, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("qwen3-1.7b", ModelKind::Llm, 4 * GIB),
    )
    .unwrap();
    let reservation = admission.reservation().unwrap();
    assert_eq!(reservation.evicted(), ["qwen3-4b"]);
    assert_eq!(
        reservation.switch().unwrap().unload,
        Duration::from_millis(300)
    );
    let report = second.finish(admission).unwrap();
    assert_eq!(report.from, "qwen3-4b");
    assert_eq!(report.to, "qwen3-1.7b");
    assert_eq!(report.total, Duration::from_millis(2300));

    assert!(!first.resident());
    assert!(second.resident());
    assert!(embedder.resident());
    assert_eq!(gpu.allocated(), 4 * GIB + GIB / 2);
    let names: Vec<String> = manager.residents().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["minilm", "qwen3-1.7b"]);
    assert_eq!(
        drain(&rx),
        vec![
            GpuEvent::ModelUnloaded {
                model: "qwen3-4b".into(),
                bytes: 8 * GIB,
                reason: UnloadReason::Switch
            },
            GpuEvent::ModelSwitched {
                from: "qwen3-4b".into(),
                to: "qwen3-1.7b".into(),
                millis: 2300
            }
        ]
    );
}

#[test]
fn an_llm_in_use_is_not_switched_out() {
    let (gpu, clock) = sim("vram=16GiB");
    let manager = manager_on(&gpu, &clock, ManagerConfig::default());
    let (first, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("qwen3-4b", ModelKind::Llm, 8 * GIB),
    )
    .unwrap();
    first.finish(admission);
    let answering = first.slot.lock().unwrap().as_ref().unwrap().begin_use();
    let err = manager
        .admit(
            ModelRequest::new("qwen3-8b", ModelKind::Llm, 4 * GIB),
            || {},
        )
        .unwrap_err();
    assert_eq!(
        err,
        GpuError::ModelBusy {
            model: "qwen3-4b".into()
        }
    );
    drop(answering);
    assert!(first.resident());
}

#[test]
fn small_models_are_unloaded_least_recently_used_first_to_make_room() {
    let (gpu, clock) = sim("vram=10GiB");
    let manager = manager_on(&gpu, &clock, ManagerConfig::default());
    let mut models = Vec::new();
    for name in ["embedder", "reranker", "ocr"] {
        let (model, admission) = SimModel::load(
            &manager,
            &gpu,
            &clock,
            ModelRequest::new(name, ModelKind::Small, 2 * GIB),
        )
        .unwrap();
        model.finish(admission);
        models.push(model);
    }
    // Use the embedder so the reranker is least recently used.
    models[0].slot.lock().unwrap().as_ref().unwrap().touch();
    // 9 GiB of 10 may be planned; 6 are taken, 4 GiB needs one unload.
    let (_llm, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("qwen3-1.7b", ModelKind::Llm, 4 * GIB),
    )
    .unwrap();
    assert_eq!(admission.reservation().unwrap().evicted(), ["reranker"]);
    let resident: Vec<bool> = models.iter().map(SimModel::resident).collect();
    assert_eq!(resident, [true, false, true]);
}

#[test]
fn idle_models_unload_after_the_timeout_but_not_while_in_use() {
    let (gpu, clock) = sim("vram=16GiB");
    let config = ManagerConfig {
        idle_timeout: Duration::from_secs(60),
        ..ManagerConfig::default()
    };
    let manager = manager_on(&gpu, &clock, config);
    let rx = manager.events().subscribe();
    let (embedder, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("minilm", ModelKind::Small, GIB),
    )
    .unwrap();
    embedder.finish(admission);
    clock.advance(Duration::from_secs(59));
    assert!(manager.unload_idle().is_empty());
    let busy = embedder.slot.lock().unwrap().as_ref().unwrap().begin_use();
    clock.advance(Duration::from_secs(600));
    assert!(manager.unload_idle().is_empty());
    drop(busy);
    clock.advance(Duration::from_secs(59));
    assert!(manager.unload_idle().is_empty());
    clock.advance(Duration::from_secs(1));
    assert_eq!(manager.unload_idle(), ["minilm"]);
    assert!(!embedder.resident());
    assert_eq!(gpu.allocated(), 0);
    assert!(manager.residents().is_empty());
    assert_eq!(
        drain(&rx),
        vec![GpuEvent::ModelUnloaded {
            model: "minilm".into(),
            bytes: GIB,
            reason: UnloadReason::Idle
        }]
    );
}

#[test]
fn a_model_that_cannot_fit_is_refused_with_how_much_would() {
    let (gpu, clock) = sim("vram=8GiB,used=1GiB");
    let config = ManagerConfig {
        cpu_fallback: false,
        ..ManagerConfig::default()
    };
    let manager = manager_on(&gpu, &clock, config);
    let (embedder, admission) = SimModel::load(
        &manager,
        &gpu,
        &clock,
        ModelRequest::new("minilm", ModelKind::Small, GIB / 2),
    )
    .unwrap();
    embedder.finish(admission);
    let err = manager
        .admit(
            ModelRequest::new("qwen3-8b", ModelKind::Llm, 9 * GIB),
            || {},
        )
        .unwrap_err();
    // 90 % of 8 GiB is 7.2 GiB; 1.5 GiB is in use, and unloading the idle
    // embedder would give back 0.5 GiB: at most 6.2 GiB would fit.
    let available = (8.0 * GIB as f64 * 0.9) as u64 - GIB;
    assert_eq!(
        err,
        GpuError::InsufficientMemory {
            model: "qwen3-8b".into(),
            requested: 9 * GIB,
            available,
            index: 0
        }
    );
    assert_eq!(
        err.to_string(),
        "qwen3-8b needs 9.00 GiB of GPU memory but at most 6.20 GiB would fit on GPU 0"
    );
    // Nothing was unloaded for a load that could not succeed.
    assert!(embedder.resident());
    assert_eq!(manager.available_bytes().unwrap(), available - GIB / 2);
}

#[test]
fn a_model_that_cannot_fit_falls_back_to_cpu_with_a_reason() {
    let (gpu, clock) = sim("vram=8GiB");
    let manager = manager_on(&gpu, &clock, ManagerConfig::default());
    let rx = manager.events().subscribe();
    let admission = manager
        .admit(
            ModelRequest::new("qwen3-8b", ModelKind::Llm, 9 * GIB),
            || {},
        )
        .unwrap();
    let Admission::Cpu { reason } = admission else {
        panic!("expected the CPU");
    };
    assert_eq!(
        reason,
        "needs 9.00 GiB of GPU memory but at most 7.20 GiB would fit on GPU 0; running on the CPU"
    );
    assert_eq!(
        drain(&rx),
        vec![GpuEvent::CpuFallback {
            model: "qwen3-8b".into(),
            reason
        }]
    );
}

#[test]
fn without_nvml_models_go_to_the_cpu_without_error() {
    let telemetry: Arc<dyn TelemetryBackend> = Arc::new(NoGpu::new(
        "NVIDIA driver library libnvidia-ml.so.1 not found",
    ));
    for device in [DeviceKind::Cpu, DeviceKind::Cuda(0)] {
        let manager = GpuManager::new(
            telemetry.clone(),
            device,
            ManagerConfig::default(),
            EventBus::new(),
        );
        let admission = manager
            .admit(ModelRequest::new("minilm", ModelKind::Small, GIB), || {})
            .unwrap();
        assert!(matches!(admission, Admission::Cpu { .. }), "{admission:?}");
    }
}

#[test]
fn a_hot_spell_pauses_background_work_until_it_cools() {
    let (gpu, clock) = sim("temp=45,tau=5s,hot_at=10s,hot_for=20s,hot_temp=92");
    let (sampler, rx) = manual_sampler(gpu.clone(), &clock);
    let mut backoff = ThermalBackoff::new(Thresholds::default(), Duration::from_secs(1));
    let mut paused_at = Vec::new();
    let mut processed = 0;
    for second in 0..60 {
        let snapshot = sampler.sample_now().gpus.remove(0);
        // An answer is never held back.
        assert_eq!(
            backoff.advise(&snapshot, Priority::Interactive, 8),
            Backoff::Proceed
        );
        match backoff.advise(&snapshot, Priority::Background, 8) {
            Backoff::Pause { .. } => paused_at.push(second),
            _ => processed += 1,
        }
        clock.advance(Duration::from_secs(1));
    }
    // Paused from the spell's start until it fell below 82 °C after it.
    assert_eq!(paused_at.first(), Some(&10));
    let last = *paused_at.last().unwrap();
    assert!((30..35).contains(&last), "{paused_at:?}");
    assert_eq!(paused_at.len(), last - 10 + 1);
    assert_eq!(processed, 60 - paused_at.len());
    let events = kinds(&drain(&rx));
    assert_eq!(
        events,
        vec![
            "temperature_warning",
            "temperature_limit",
            "temperature_limit_cleared",
            "temperature_warning_cleared"
        ]
    );
}

#[test]
fn lectern_gpu_configuration_errors_name_the_option() {
    let err = "sim:vram=16GiB,oom_at=3,hot_temp=95"
        .parse::<TelemetrySource>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid GPU configuration: hot_temp needs hot_at"
    );
    let source: TelemetrySource = "sim:vram=12GiB,name=Demo GPU".parse().unwrap();
    let backend = source.open();
    let snapshot = backend.snapshot(0).unwrap();
    assert_eq!(snapshot.name, "Demo GPU");
    assert_eq!(snapshot.memory_total, Some(12 * GIB));
}

#[test]
fn recovery_gives_up_when_the_cpu_fails_too() {
    let err = RecoveryPolicy::new()
        .run(
            Target::Gpu,
            4,
            || {},
            |_| Err::<(), _>(WorkError::OutOfMemory("out of memory")),
        )
        .unwrap_err();
    match err {
        RecoveryError::Exhausted { steps, .. } => assert_eq!(steps.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nvml_read_errors_are_reported_once_and_their_end_too() {
    let (gpu, clock) = sim("read_errors=2..4");
    let (sampler, rx) = manual_sampler(gpu, &clock);
    for _ in 0..6 {
        sampler.sample_now();
    }
    let events = drain(&rx);
    assert_eq!(
        kinds(&events),
        vec!["telemetry_failed", "telemetry_restored"]
    );
    assert!(events[0]
        .to_string()
        .contains("simulated read error (reading 2)"));
    let answered: Vec<usize> = sampler.history().iter().map(|s| s.gpus.len()).collect();
    assert_eq!(answered, [1, 0, 0, 0, 1, 1]);
}

#[test]
fn status_shows_the_simulator() {
    let (gpu, _) = sim("vram=16GiB,name=Demo GPU");
    gpu.allocate(4 * GIB).unwrap();
    let caps = lectern_gpu::Capabilities {
        cuda: false,
        metal: false,
    };
    let status =
        lectern_gpu::status(lectern_gpu::DevicePreference::Auto, caps, gpu.as_ref()).unwrap();
    let text = status.render_text();
    assert!(text.contains("Telemetry: sim (driver simulated)"), "{text}");
    assert!(text.contains("GPU 0: Demo GPU"), "{text}");
    assert!(
        text.contains("VRAM:         4.00 / 16.00 GiB (25.0%)"),
        "{text}"
    );
}
