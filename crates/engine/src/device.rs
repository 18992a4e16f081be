//! The engine's GPU side: telemetry, the sampler, the event bus and the
//! memory manager, and the managed paths models take through them.
//!
//! * One telemetry backend from [`lectern_gpu::probe_telemetry`] (so
//!   `LECTERN_GPU=sim:…` selects the simulator) feeds a [`Sampler`] started
//!   when the engine opens and a [`GpuManager`] for the selected device.
//!   Both publish on one [`EventBus`] that front ends subscribe to.
//! * Passage embedding runs batch by batch through
//!   [`RecoveryPolicy::map_batches`]: an out-of-memory error frees caches,
//!   then halves the batch, then moves the rest of the work to a CPU copy
//!   of the embedder. With the simulator as telemetry, each batch first
//!   allocates its estimated working memory on the simulated GPU, so the
//!   simulator's fault script drives the same recovery a real CUDA
//!   out-of-memory error would.
//! * Each batch is sized and paced by a [`BatchPacer`]: on the GPU from
//!   free memory and the measured per-item cost, on the CPU by throughput.
//!   Ingestion is background work: while the GPU is at its temperature
//!   limit it pauses ([`GpuEvent::BackgroundPaused`]) and from the warning
//!   temperature or above the power limit its batches shrink. Answers never
//!   wait for it.
//! * With a model worker configured ([`crate::worker`]), each passage
//!   batch goes to the worker process first. A worker that crashes, hangs
//!   or never starts is a lost device to the recovery policy: the batch
//!   and the rest of the run move to the in-process CPU embedder, and the
//!   worker is replaced on the next run. Its out-of-memory error frames
//!   take the out-of-memory steps.
//! * Language model loads ask the manager for a reservation sized from the
//!   checkpoint (weights + KV cache for the context + activations + margin)
//!   and load on the CPU when the manager says so. A timer unloads models
//!   left idle past [`IDLE_UNLOAD_ENV_VAR`] (default 10 minutes).

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lectern_gpu::{
    ActiveGuard, Admission, BatchPacer, DeviceKind, DevicePreference, EventBus, GpuError, GpuEvent,
    GpuManager, GpuReport, GpuStatus, IdleReaper, InUse, LlmCandidate, LlmShape, ManagerConfig,
    MemoryBudget, ModelFootprint, ModelKind, ModelRequest, PacedHooks, Priority, Recommendation,
    RecoveryError, RecoveryPolicy, Reservation, Sample, Sampler, SamplerConfig, Target,
    TelemetryBackend, WeightFormat, WorkError,
};
use lectern_models::{
    Embedder, KvDtype, Llm, LlmFormat, ModelError, Qwen3, Qwen3Config, Qwen3Options,
};

use crate::worker::{EmbedKind, EmbedderSpec, WorkerError, WorkerStatus, WorkerSupervisor};
use crate::{Engine, EngineError};

/// Tokens per passage the working-memory estimate provisions for (the
/// embedder truncates longer inputs well below this).
const EMBED_TOKENS: u64 = 512;
/// Live f32 tensors per token and hidden unit during one BERT forward pass
/// (hidden states, attention projections, the 4× feed-forward layer).
const EMBED_ACTIVATION_FACTOR: u64 = 8;

/// Environment variable that sets how long a model may sit unused before
/// it is unloaded, e.g. `90s`, `10m` (default 10 minutes); `0` or `off`
/// keeps models loaded.
pub const IDLE_UNLOAD_ENV_VAR: &str = "LECTERN_IDLE_UNLOAD";

/// How long background work waits at a time while the GPU is too hot.
const THERMAL_PAUSE: Duration = Duration::from_millis(500);

/// The cached language model, shared with the manager's unloader.
pub(crate) type LlmSlot = Arc<Mutex<Option<Llm>>>;

/// A batch's vectors and the GPU memory it was seen to use.
type MeasuredBatch = (Vec<Vec<f32>>, Option<u64>);

/// Waits out a thermal pause.
type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// The idle timeout from [`IDLE_UNLOAD_ENV_VAR`]: `None` when models stay
/// loaded.
fn idle_timeout_from_env() -> Result<Option<Duration>, EngineError> {
    let default = ManagerConfig::default().idle_timeout;
    match std::env::var(IDLE_UNLOAD_ENV_VAR) {
        Err(_) => Ok(Some(default)),
        Ok(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Ok(Some(default));
            }
            if text.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let timeout = lectern_gpu::parse_duration(text).map_err(|message| {
                EngineError::Gpu(GpuError::InvalidConfig(format!(
                    "{IDLE_UNLOAD_ENV_VAR}: {message}"
                )))
            })?;
            Ok((!timeout.is_zero()).then_some(timeout))
        }
    }
}

/// Telemetry, sampler, event bus and memory manager for one engine.
pub(crate) struct GpuSide {
    telemetry: Arc<dyn TelemetryBackend>,
    events: EventBus,
    sampler: Option<Sampler>,
    manager: GpuManager,
    status: GpuStatus,
    cpu_embedder: Mutex<Option<Arc<Embedder>>>,
    llm_reservation: Arc<Mutex<Option<Reservation>>>,
    _reaper: Option<IdleReaper>,
    sleep: Sleeper,
    /// The model worker passage batches go to first, when configured.
    worker: Option<Arc<WorkerSupervisor>>,
    /// Where the worker's models run (its hello's device); the manager
    /// plans that device's memory when it is a GPU.
    worker_device: DeviceKind,
    /// The reservation of the embedder the worker holds on a GPU, by its
    /// folder.
    worker_embedder: Arc<Mutex<Option<(PathBuf, Reservation)>>>,
    /// How long an unused model stays loaded (`None`: until replaced).
    idle: Option<Duration>,
}

impl std::fmt::Debug for GpuSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSide")
            .field("telemetry", &self.telemetry.name())
            .field("device", &self.status.selected)
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl GpuSide {
    /// Probes telemetry (honouring `LECTERN_GPU`), selects the device for
    /// `pref` and starts the sampler. Fails only when an explicitly
    /// requested device is unavailable.
    pub(crate) fn open(pref: DevicePreference) -> Result<Self, EngineError> {
        let idle = idle_timeout_from_env()?;
        let telemetry: Arc<dyn TelemetryBackend> = Arc::from(lectern_gpu::probe_telemetry());
        let status = lectern_gpu::status(pref, lectern_models::capabilities(), telemetry.as_ref())?;
        Ok(Self::from_parts(telemetry, status, idle))
    }

    /// The GPU side for a device already selected in `status`, observed
    /// through `telemetry`, unloading models idle for `idle` (never with
    /// `None`).
    fn from_parts(
        telemetry: Arc<dyn TelemetryBackend>,
        status: GpuStatus,
        idle: Option<Duration>,
    ) -> Self {
        let events = EventBus::new();
        let sampler =
            match Sampler::start(telemetry.clone(), SamplerConfig::default(), events.clone()) {
                Ok(sampler) => Some(sampler),
                Err(error) => {
                    tracing::warn!(%error, "GPU sampler thread did not start; no live telemetry");
                    None
                }
            };
        let (manager, reaper) = manager_for(&telemetry, status.selected, idle, &events);
        Self {
            telemetry,
            events,
            sampler,
            manager,
            worker_device: status.selected,
            cpu_embedder: Mutex::new(None),
            llm_reservation: Arc::new(Mutex::new(None)),
            _reaper: reaper,
            sleep: Arc::new(std::thread::sleep),
            worker: None,
            worker_embedder: Arc::new(Mutex::new(None)),
            idle,
            status,
        }
    }

    /// Sends passage batches (and answers) to `worker` first, with the
    /// in-process CPU models as the fallback. `device` is where the
    /// worker's models run: when that is a GPU the engine itself cannot
    /// use, the manager plans that GPU's memory from now on, so the
    /// worker's models are admitted, reserved and evicted like any other.
    pub(crate) fn use_worker(&mut self, worker: WorkerSupervisor, device: DeviceKind) {
        tracing::info!(program = %worker.config().program.display(), %device, "models go to the model worker");
        if matches!(device, DeviceKind::Cuda(_)) && device != self.manager.device() {
            let (manager, reaper) = manager_for(&self.telemetry, device, self.idle, &self.events);
            self.manager = manager;
            self._reaper = reaper;
        }
        self.worker = Some(Arc::new(worker));
        self.worker_device = device;
    }

    /// Where the model worker's models run.
    pub(crate) fn worker_device(&self) -> DeviceKind {
        self.worker_device
    }

    /// The model worker, when one is configured.
    pub(crate) fn worker(&self) -> Option<&WorkerSupervisor> {
        self.worker.as_deref()
    }

    /// Publishes `event` to the engine's subscribers.
    pub(crate) fn publish(&self, event: GpuEvent) {
        self.events.publish(event);
    }

    /// The device status with fresh readings, and what the manager holds.
    pub(crate) fn report(&self) -> GpuReport {
        let mut status = self.status.clone();
        status.gpus = self.telemetry.snapshots();
        GpuReport::new(status, &self.manager)
    }

    /// The device selection and GPU readings taken at open.
    pub(crate) fn status(&self) -> &GpuStatus {
        &self.status
    }

    /// Marks work as running so the sampler reads at its active interval.
    pub(crate) fn active(&self) -> Option<ActiveGuard> {
        self.sampler.as_ref().map(Sampler::active)
    }

    fn device(&self) -> DeviceKind {
        self.status.selected
    }

    /// The embedder to use for work moved to the CPU: the engine's own when
    /// it already runs there, otherwise a CPU copy loaded on first use.
    fn cpu_embedder(&self, primary: &Arc<Embedder>) -> Result<Arc<Embedder>, EngineError> {
        if self.device() == DeviceKind::Cpu {
            return Ok(primary.clone());
        }
        let mut slot = self
            .cpu_embedder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A copy of another model (from before an embedding model switch)
        // is replaced.
        if let Some(embedder) = slot.as_ref().filter(|e| e.dir() == primary.dir()) {
            return Ok(embedder.clone());
        }
        tracing::info!(dir = %primary.dir().display(), "loading a CPU copy of the embedder");
        let config = primary.config().clone();
        let cpu = lectern_models::candle_device(&DeviceKind::Cpu)?;
        let embedder = Arc::new(Embedder::load(config, &cpu)?);
        *slot = Some(embedder.clone());
        Ok(embedder)
    }

    /// Embeds `texts` as passages for work of `priority`, in batches a
    /// [`BatchPacer`] sizes, recovering from out-of-memory errors and
    /// device loss, and pausing background work while the GPU is too hot.
    pub(crate) fn embed_passages(
        &self,
        embedder: &Arc<Embedder>,
        texts: &[String],
        priority: Priority,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let _active = self.active();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let per_item = (embedder.dim() as u64)
            .saturating_mul(4 * EMBED_TOKENS * EMBED_ACTIVATION_FACTOR)
            .max(1);
        let mut pacer = BatchPacer::new(priority, embedder.batch_size(), per_item, THERMAL_PAUSE);
        // The worker's embedder holds GPU memory only once admitted.
        let worker_admitted = match &self.worker {
            Some(_) => self.admit_worker_embedder(embedder, per_item)?,
            None => false,
        };
        let _in_use = self.worker_embedder_in_use();
        // Work on the CPU is sized by throughput from the start; a
        // simulated GPU is exercised even when the build cannot use it.
        let start = if worker_admitted {
            // The worker stands for the device; the CPU is the fallback.
            Target::Gpu
        } else if self.worker.is_some()
            || (self.device() == DeviceKind::Cpu && self.telemetry.as_simulated().is_none())
        {
            Target::Cpu
        } else {
            Target::Gpu
        };
        let device = if self.worker.is_some() {
            self.worker_device
        } else {
            self.device()
        };
        let index = match device {
            DeviceKind::Cuda(index) => u32::try_from(index).unwrap_or(0),
            DeviceKind::Metal | DeviceKind::Cpu => 0,
        };
        let mut snapshot = || self.telemetry.snapshot(index).ok();
        let sleep = self.sleep.clone();
        let mut sleep = move |pause: Duration| sleep(pause);
        let mut free_caches = || {
            let unloaded = self.manager.unload_idle();
            tracing::info!(?unloaded, "freed idle models before retrying a batch");
        };
        let policy = RecoveryPolicy::new().with_events(self.events.clone());
        let result = policy.map_batches_paced(
            &refs,
            start,
            &mut pacer,
            PacedHooks {
                snapshot: &mut snapshot,
                sleep: &mut sleep,
                free_caches: &mut free_caches,
                events: Some(&self.events),
            },
            |batch, target| match target {
                Target::Gpu => match &self.worker {
                    Some(worker) => embed_batch_in_worker(worker, embedder, batch),
                    None => self.embed_batch_on_device(embedder, batch, per_item, index),
                },
                Target::Cpu => {
                    let cpu = self.cpu_embedder(embedder).map_err(WorkError::Failed)?;
                    let vectors = cpu.embed_passages(batch).map_err(classify_model_error)?;
                    Ok((vectors, None))
                }
            },
        );
        match result {
            Ok((done, pace)) => {
                if !done.steps.is_empty() {
                    tracing::warn!(
                        steps = done.steps.len(),
                        batch = done.batch,
                        target = ?done.target,
                        "embedding recovered from GPU memory pressure"
                    );
                }
                if pace.pauses > 0 {
                    tracing::info!(
                        pauses = pace.pauses,
                        waited_ms = pace.waited.as_millis(),
                        "embedding waited for the GPU to cool"
                    );
                }
                Ok(done.value)
            }
            Err(RecoveryError::Failed { error, .. }) => Err(error),
            Err(RecoveryError::Exhausted { error, steps }) => {
                tracing::error!(steps = steps.len(), %error, "embedding ran out of memory");
                Err(error)
            }
        }
    }

    /// One batch on the selected device, with the GPU memory it was seen
    /// to use. With simulated telemetry the batch's working memory is
    /// allocated on the simulated GPU for the duration of the batch, so its
    /// faults apply; on a real GPU the growth of used memory is measured.
    fn embed_batch_on_device(
        &self,
        embedder: &Embedder,
        batch: &[&str],
        per_item: u64,
        index: u32,
    ) -> Result<MeasuredBatch, WorkError<EngineError>> {
        let sim = self.telemetry.as_simulated();
        let bytes = per_item.saturating_mul(batch.len() as u64);
        if let Some(sim) = sim {
            sim.allocate(bytes).map_err(classify_gpu_error)?;
            let result = embedder.embed_passages(batch).map_err(classify_model_error);
            sim.free(bytes);
            return result.map(|vectors| (vectors, Some(bytes)));
        }
        let used =
            |snapshot: Option<lectern_gpu::GpuSnapshot>| snapshot.and_then(|s| s.memory_used);
        let before = used(self.telemetry.snapshot(index).ok());
        let vectors = embedder
            .embed_passages(batch)
            .map_err(classify_model_error)?;
        let after = used(self.telemetry.snapshot(index).ok());
        let grown = match (before, after) {
            (Some(before), Some(after)) if after > before => Some(after - before),
            _ => None,
        };
        Ok((vectors, grown))
    }

    /// Drops the reservation of the cached language model.
    pub(crate) fn release_llm(&self) {
        self.llm_reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Asks the manager where the language model at `path` goes, sizing
    /// the reservation for `context` tokens with a KV cache of type `kv`
    /// (`None`: the model's activation dtype). Returns the device to load on.
    /// Unloading `slot` is how the manager evicts the model later.
    pub(crate) fn admit_llm(
        &self,
        path: &Path,
        context: usize,
        kv: Option<KvDtype>,
        slot: &LlmSlot,
    ) -> Result<DeviceKind, EngineError> {
        let unload_slot = Arc::downgrade(slot);
        self.admit_llm_with(self.device(), path, context, kv, move || {
            if let Some(slot) = unload_slot.upgrade() {
                slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
        })
    }

    /// [`GpuSide::admit_llm`] for a language model the model worker will
    /// hold: the same reservation, and evicting it unloads the model in
    /// the worker.
    pub(crate) fn admit_llm_in_worker(
        &self,
        path: &Path,
        context: usize,
        kv: Option<KvDtype>,
    ) -> Result<DeviceKind, EngineError> {
        let worker = self.worker.as_ref().map(Arc::downgrade);
        self.admit_llm_with(self.worker_device, path, context, kv, move || {
            if let Some(worker) = worker.as_ref().and_then(std::sync::Weak::upgrade) {
                if let Err(error) = worker.unload_llm() {
                    tracing::warn!(%error, "the model worker did not unload its language model");
                }
            }
        })
    }

    /// Admits a language model whose eviction runs `unload` (and drops
    /// the reservation).
    fn admit_llm_with(
        &self,
        device: DeviceKind,
        path: &Path,
        context: usize,
        kv: Option<KvDtype>,
        unload: impl Fn() + Send + Sync + 'static,
    ) -> Result<DeviceKind, EngineError> {
        self.release_llm();
        if !matches!(device, DeviceKind::Cuda(_)) {
            return Ok(device);
        }
        let estimate = llm_footprint(path, context, kv)?.estimate();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let unload_reservation = Arc::downgrade(&self.llm_reservation);
        let unloader = move || {
            unload();
            if let Some(reservation) = unload_reservation.upgrade() {
                reservation
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
            }
        };
        let request = ModelRequest::new(name, ModelKind::Llm, estimate.total);
        match self.manager.admit(request, unloader)? {
            Admission::Gpu(reservation) => {
                let device = reservation.device();
                *self
                    .llm_reservation
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reservation);
                Ok(device)
            }
            Admission::Cpu { reason } => {
                tracing::warn!(model = %path.display(), %reason, "language model runs on the CPU");
                Ok(DeviceKind::Cpu)
            }
        }
    }

    /// Records that the admitted language model finished loading.
    pub(crate) fn llm_loaded(&self) {
        if let Some(reservation) = self
            .llm_reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if let Some(switch) = reservation.loaded() {
                tracing::info!(from = %switch.from, to = %switch.to, ms = switch.total.as_millis(), "language model switched");
            }
        }
    }

    /// Marks the resident language model as in use until the guard drops.
    pub(crate) fn llm_in_use(&self) -> Option<InUse> {
        self.llm_reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Reservation::begin_use)
    }
}

impl GpuSide {
    /// Admits the embedder the model worker is to hold, before its first
    /// batch: on a GPU the manager reserves its weights and one batch of
    /// `per_item`-byte activations (evicting it unloads it in the worker);
    /// a worker on the CPU needs no reservation. Returns whether batches
    /// go to the worker; `false` when the manager sent the model to the
    /// CPU (the reason is published as an event), so they run in process.
    fn admit_worker_embedder(
        &self,
        embedder: &Embedder,
        per_item: u64,
    ) -> Result<bool, EngineError> {
        if !matches!(self.worker_device, DeviceKind::Cuda(_)) {
            return Ok(true);
        }
        let mut held = self
            .worker_embedder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held.as_ref().is_some_and(|(dir, _)| dir == embedder.dir()) {
            return Ok(true);
        }
        // A reservation for another model (before a model switch) goes.
        *held = None;
        drop(held);
        let weights: u64 = std::fs::read_dir(embedder.dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let batch = per_item.saturating_mul(embedder.batch_size() as u64);
        let name = crate::config::embedder_name(embedder.dir())
            .unwrap_or_else(|| embedder.dir().display().to_string());
        let worker = self.worker.as_ref().map(Arc::downgrade);
        let slot = Arc::downgrade(&self.worker_embedder);
        let unloader = move || {
            if let Some(worker) = worker.as_ref().and_then(std::sync::Weak::upgrade) {
                if let Err(error) = worker.unload_embedder() {
                    tracing::warn!(%error, "the model worker did not unload its embedder");
                }
            }
            if let Some(slot) = slot.upgrade() {
                slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
        };
        let request = ModelRequest::new(name, ModelKind::Small, weights.saturating_add(batch));
        match self.manager.admit(request, unloader)? {
            Admission::Gpu(reservation) => {
                reservation.loaded();
                *self
                    .worker_embedder
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((embedder.dir().to_path_buf(), reservation));
                Ok(true)
            }
            Admission::Cpu { reason } => {
                tracing::warn!(%reason, "the embedder runs in process on the CPU");
                Ok(false)
            }
        }
    }

    /// Marks the worker's embedder as in use until the guard drops, so
    /// that it is not unloaded as idle in the middle of a run.
    fn worker_embedder_in_use(&self) -> Option<InUse> {
        self.worker_embedder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, reservation)| reservation.begin_use())
    }

    /// Asks the manager to place a small model (embedder, reranker) of
    /// `bytes`. Returns the device to load it on, with the reservation
    /// when that is the GPU; off CUDA the engine's device is used as is,
    /// and a model the manager sends to the CPU is logged.
    pub(crate) fn admit_small(
        &self,
        name: &str,
        bytes: u64,
        unloader: impl Fn() + Send + Sync + 'static,
    ) -> Result<(DeviceKind, Option<Reservation>), EngineError> {
        if !matches!(self.device(), DeviceKind::Cuda(_)) {
            return Ok((self.device(), None));
        }
        match self
            .manager
            .admit(ModelRequest::new(name, ModelKind::Small, bytes), unloader)?
        {
            Admission::Gpu(reservation) => Ok((reservation.device(), Some(reservation))),
            Admission::Cpu { reason } => {
                tracing::warn!(model = name, %reason, "model runs on the CPU");
                Ok((DeviceKind::Cpu, None))
            }
        }
    }
}

/// A manager planning `device`'s memory, and its idle-model timer when
/// models unload after `idle`.
fn manager_for(
    telemetry: &Arc<dyn TelemetryBackend>,
    device: DeviceKind,
    idle: Option<Duration>,
    events: &EventBus,
) -> (GpuManager, Option<IdleReaper>) {
    let config = ManagerConfig {
        idle_timeout: idle.unwrap_or(Duration::MAX),
        ..ManagerConfig::default()
    };
    let manager = GpuManager::new(telemetry.clone(), device, config, events.clone());
    let reaper = idle.and_then(|timeout| {
        let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        manager
            .start_idle_reaper(every)
            .map_err(|error| tracing::warn!(%error, "idle model timer did not start"))
            .ok()
    });
    (manager, reaper)
}

/// One batch in the model worker. Its out-of-memory errors take the
/// out-of-memory steps; any other failure (it crashed, hung, never
/// started, or answered wrongly) is a lost device.
fn embed_batch_in_worker(
    worker: &WorkerSupervisor,
    embedder: &Embedder,
    batch: &[&str],
) -> Result<MeasuredBatch, WorkError<EngineError>> {
    let spec = EmbedderSpec {
        dir: embedder.dir().to_path_buf(),
        config: serde_json::to_value(embedder.config()).ok(),
    };
    match worker.embed(&spec, batch, EmbedKind::Passage) {
        Ok(vectors) => {
            if let Some(bad) = vectors.iter().find(|v| v.len() != embedder.dim()) {
                let error = WorkerError::Protocol(format!(
                    "vectors of {} dimensions from the worker, the embedder has {}",
                    bad.len(),
                    embedder.dim()
                ));
                return Err(WorkError::DeviceLost(error.into()));
            }
            Ok((vectors, None))
        }
        Err(error) if error.is_out_of_memory() => Err(WorkError::OutOfMemory(error.into())),
        Err(error) => Err(WorkError::DeviceLost(error.into())),
    }
}

fn classify_gpu_error(error: GpuError) -> WorkError<EngineError> {
    match error {
        GpuError::OutOfMemory { .. } => WorkError::OutOfMemory(error.into()),
        GpuError::DeviceLost { .. } => WorkError::DeviceLost(error.into()),
        other => WorkError::Failed(other.into()),
    }
}

fn classify_model_error(error: ModelError) -> WorkError<EngineError> {
    let out_of_memory = match &error {
        ModelError::Compute(message) | ModelError::Device(message) => {
            lectern_gpu::is_out_of_memory_message(message)
        }
        _ => false,
    };
    if out_of_memory {
        WorkError::OutOfMemory(error.into())
    } else {
        WorkError::Failed(error.into())
    }
}

fn invalid(path: &Path, message: impl ToString) -> EngineError {
    EngineError::Model(ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    })
}

/// The memory a Qwen3 checkpoint needs on the GPU for `context` tokens:
/// the checkpoint's bytes as weights, a KV cache of type `kv` from the
/// layer and head counts in `config.json` or the GGUF metadata (`None`:
/// the type a GPU load stores by default, bf16 for a folder and f32 for a
/// GGUF file), and prefill activations for the whole context.
pub(crate) fn llm_footprint(
    path: &Path,
    context: usize,
    kv: Option<KvDtype>,
) -> Result<ModelFootprint, EngineError> {
    let format = if path.is_dir() {
        LlmFormat::Safetensors
    } else {
        LlmFormat::Gguf
    };
    let kv = Qwen3Options {
        kv_dtype: kv,
        ..Qwen3Options::new(context)
    }
    .cache_type(format, false)?;
    let (weights_bytes, config) = if path.is_dir() {
        let mut weights = 0u64;
        for entry in std::fs::read_dir(path).map_err(|e| invalid(path, e))? {
            let entry = entry.map_err(|e| invalid(path, e))?;
            let file = entry.path();
            if file.extension().is_some_and(|x| x == "safetensors") {
                weights += entry.metadata().map_err(|e| invalid(&file, e))?.len();
            }
        }
        let config_path = path.join("config.json");
        let bytes = std::fs::read(&config_path).map_err(|e| invalid(&config_path, e))?;
        let config = Qwen3Config::from_hf_json(&bytes).map_err(|e| invalid(&config_path, e))?;
        // A block-scaled FP8 checkpoint's weights are dequantized to 16 bits
        // when loaded: twice their size on disk (an upper bound, since its
        // embeddings and norms are 16-bit already).
        let fp8 = serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v["quantization_config"]["quant_method"] == "fp8");
        (
            if fp8 {
                weights.saturating_mul(2)
            } else {
                weights
            },
            config,
        )
    } else {
        let size = std::fs::metadata(path).map_err(|e| invalid(path, e))?.len();
        let config = Qwen3::read_gguf_config(path).map_err(EngineError::Model)?;
        (size, config)
    };
    let context = context.min(config.position_limit());
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let activation_bytes = (context as u64)
        .saturating_mul((config.hidden_size + config.intermediate_size) as u64)
        .saturating_mul(2)
        .saturating_add((config.vocab_size as u64).saturating_mul(4));
    Ok(ModelFootprint {
        weights_bytes,
        layers: to_u32(config.num_hidden_layers),
        kv_heads: to_u32(config.num_key_value_heads),
        head_dim: to_u32(config.head_dim),
        context: to_u32(context),
        kv: kv.kv_bytes(),
        activation_bytes,
    })
}

/// The device `pref` selects, fresh readings of every GPU, and the models
/// this process holds in GPU memory (none until an engine loads some),
/// with the idle timeout from [`IDLE_UNLOAD_ENV_VAR`].
pub fn gpu_report(pref: DevicePreference) -> Result<GpuReport, EngineError> {
    Ok(GpuSide::open(pref)?.report())
}

/// The language model candidates in the built-in catalog (test models
/// with random weights left out), with whether each is installed under
/// `models_dir`.
pub fn llm_candidates(models_dir: &Path) -> Vec<LlmCandidate> {
    let catalog = lectern_hub::Catalog::builtin();
    catalog
        .models
        .iter()
        .filter(|m| m.kind == lectern_hub::ModelKind::Llm)
        .filter(|m| m.params.get("weights").and_then(|w| w.as_str()) != Some("random"))
        .filter_map(|m| {
            let p = &m.params;
            let n = |key: &str| {
                p.get(key)
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
            };
            let shape = LlmShape {
                hidden_size: n("hidden_size")?,
                intermediate_size: n("intermediate_size")?,
                layers: n("num_hidden_layers")?,
                heads: n("num_attention_heads")?,
                kv_heads: n("num_key_value_heads")?,
                head_dim: n("head_dim")?,
                vocab_size: n("vocab_size")?,
                tied_embeddings: p
                    .get("tie_word_embeddings")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                max_context: n("context_length")?,
            };
            let formats = match p.get("quantization").and_then(|q| q.as_str()) {
                Some("Q8_0") => vec![WeightFormat::Q8_0],
                Some("Q4_K_M") => vec![WeightFormat::Q4KM],
                Some(_) => return None,
                None => vec![WeightFormat::Bf16, WeightFormat::Q8_0, WeightFormat::Q4KM],
            };
            Some(LlmCandidate {
                model: m.id.clone(),
                shape,
                formats,
                installed: matches!(
                    m.install_state(models_dir),
                    lectern_hub::InstallState::Installed { .. }
                ),
            })
        })
        .collect()
}

/// The memory a language model may plan with on the device `pref`
/// selects: what the GPU manager would admit now on a CUDA GPU, otherwise
/// half of the system memory available.
pub fn llm_budget(pref: DevicePreference) -> Result<MemoryBudget, EngineError> {
    let telemetry: Arc<dyn TelemetryBackend> = Arc::from(lectern_gpu::probe_telemetry());
    let status = lectern_gpu::status(pref, lectern_models::capabilities(), telemetry.as_ref())?;
    if matches!(status.selected, DeviceKind::Cuda(_)) {
        let manager = GpuManager::new(
            telemetry,
            status.selected,
            ManagerConfig::default(),
            EventBus::new(),
        );
        match manager.available_bytes() {
            Ok(bytes) => return Ok(MemoryBudget::Gpu { bytes }),
            Err(error) => tracing::warn!(%error, "GPU memory unknown; planning for the CPU"),
        }
    }
    let host = lectern_gpu::HostInfo::detect();
    let available = host.memory_available.or(host.memory_total).unwrap_or(0);
    Ok(MemoryBudget::Cpu {
        bytes: available / 2,
    })
}

/// Recommends the language model for this machine: the largest catalog
/// variant that fits the memory of the device `pref` selects with
/// `context` tokens, and the context it can afford.
pub fn recommend_llm(
    models_dir: &Path,
    pref: DevicePreference,
    context: u32,
) -> Result<Recommendation, EngineError> {
    recommend_llm_with_kv(models_dir, pref, context, None)
}

/// [`recommend_llm`] with a KV cache of type `kv`, whose bytes the
/// estimates and afforded contexts count; `None` counts each variant's
/// default cache type.
pub fn recommend_llm_with_kv(
    models_dir: &Path,
    pref: DevicePreference,
    context: u32,
    kv: Option<KvDtype>,
) -> Result<Recommendation, EngineError> {
    let (candidates, budget) = (llm_candidates(models_dir), llm_budget(pref)?);
    Ok(match kv {
        Some(kv) => lectern_gpu::recommend_llm_with_kv(&candidates, budget, context, kv.kv_bytes()),
        None => lectern_gpu::recommend_llm(&candidates, budget, context),
    })
}

impl Engine {
    /// Recent GPU readings (up to the last 100), oldest first, for charts.
    /// Empty when no GPU is observed.
    pub fn gpu_history(&self) -> Vec<Sample> {
        self.gpu_side
            .sampler
            .as_ref()
            .map(Sampler::history)
            .unwrap_or_default()
    }

    /// A channel of every GPU event published from now on: threshold
    /// crossings, model loads and unloads, CPU fallbacks and recovery
    /// steps.
    pub fn subscribe_gpu_events(&self) -> Receiver<GpuEvent> {
        self.gpu_side.events.subscribe()
    }

    /// Calls `callback` for every GPU event published from now on.
    pub fn on_gpu_event(&self, callback: impl Fn(&GpuEvent) + Send + Sync + 'static) {
        self.gpu_side.events.on_event(callback);
    }

    /// Embeds passages through the GPU manager on a blocking thread, as
    /// background work (ingestion): in batches sized from free GPU memory
    /// (or by throughput on the CPU), recovering from out-of-memory errors
    /// (free caches, halve the batch, move to the CPU) and from a lost
    /// GPU, pausing while the GPU is at its temperature limit. Returns one
    /// vector per text, in order.
    pub async fn embed_passages_managed(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let side = self.gpu_side.clone();
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || {
            side.embed_passages(&embedder, &texts, Priority::Background)
        })
        .await
        .map_err(EngineError::join)?
    }

    /// The model worker's state (process, device, model, starts and
    /// losses, last error); `None` when no worker is configured.
    pub fn worker_status(&self) -> Option<WorkerStatus> {
        self.gpu_side.worker().map(WorkerSupervisor::status)
    }

    /// The device, fresh GPU readings, and the models holding GPU memory,
    /// for `lectern gpu status` and the app's GPU panel.
    pub fn gpu_report(&self) -> GpuReport {
        self.gpu_side.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_gpu::{Capabilities, ManualClock, SimulatedGpu};
    use lectern_models::EmbedderConfig;

    fn models_dir() -> std::path::PathBuf {
        std::env::var_os("LECTERN_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/lectern/models")
            })
    }

    /// A GPU side whose device is CUDA GPU 0 of a simulated GPU.
    fn simulated_cuda(options: &str) -> GpuSide {
        let sim = SimulatedGpu::new(options.parse().expect("simulator options"));
        side_on(Arc::new(sim), None)
    }

    /// A GPU side whose device is CUDA GPU 0 of `telemetry`.
    fn side_on(telemetry: Arc<dyn TelemetryBackend>, idle: Option<Duration>) -> GpuSide {
        let caps = Capabilities {
            cuda: true,
            metal: false,
        };
        let status = lectern_gpu::status(DevicePreference::Auto, caps, telemetry.as_ref())
            .expect("auto never fails");
        assert_eq!(status.selected, DeviceKind::Cuda(0));
        GpuSide::from_parts(telemetry, status, idle)
    }

    fn embedder() -> Arc<Embedder> {
        let cpu = lectern_models::candle_device(&DeviceKind::Cpu).unwrap();
        let config = EmbedderConfig::new(models_dir().join("all-MiniLM-L6-v2"));
        Arc::new(Embedder::load(config, &cpu).expect("the test embedder loads"))
    }

    fn passages(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("Passage {i} about {} things.", "many ".repeat(i % 5)))
            .collect()
    }

    /// A CPU-only engine whose model worker runs on simulated CUDA GPU 0:
    /// the worker binary named does not exist, so every batch it is sent
    /// is lost and finishes on the CPU.
    fn cpu_engine_with_gpu_worker(options: &str) -> GpuSide {
        cpu_engine_with_gpu_worker_idle(options, None)
    }

    /// [`cpu_engine_with_gpu_worker`] unloading models idle for `idle`.
    fn cpu_engine_with_gpu_worker_idle(options: &str, idle: Option<Duration>) -> GpuSide {
        let sim: Arc<dyn TelemetryBackend> = Arc::new(SimulatedGpu::new(
            options.parse().expect("simulator options"),
        ));
        let caps = Capabilities {
            cuda: false,
            metal: false,
        };
        let status = lectern_gpu::status(DevicePreference::Auto, caps, sim.as_ref())
            .expect("auto never fails");
        assert_eq!(status.selected, DeviceKind::Cpu);
        let mut side = GpuSide::from_parts(sim, status, idle);
        let config = crate::worker::WorkerConfig::new("/nonexistent/lectern-worker");
        side.use_worker(
            WorkerSupervisor::new(config, DevicePreference::Auto),
            DeviceKind::Cuda(0),
        );
        side
    }

    /// `side` embeds `texts` exactly as `embedder` does in this process.
    fn embeds_as_in_process(side: &GpuSide, embedder: &Arc<Embedder>, texts: &[String]) {
        let want = embedder
            .embed_passages(&texts.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap();
        let got = side
            .embed_passages(embedder, texts, Priority::Background)
            .unwrap();
        assert_close(&want, &got);
    }

    #[test]
    fn the_workers_gpu_embedder_is_reserved_and_unloaded_like_any_model() {
        let side = cpu_engine_with_gpu_worker("vram=16GiB");
        let embedder = embedder();
        let texts = passages(40);
        embeds_as_in_process(&side, &embedder, &texts);
        // The manager plans the worker's GPU: the embedder holds a
        // reservation of its weights and a batch, and the worker was tried.
        let residents = side.manager.residents();
        assert_eq!(residents.len(), 1, "{residents:?}");
        assert_eq!(residents[0].kind, ModelKind::Small);
        assert!(residents[0].bytes > 80_000_000, "{residents:?}");
        assert!(side.worker().unwrap().status().starts + side.worker().unwrap().status().lost <= 1);
        assert!(side.worker().unwrap().status().last_error.is_some());
        // A second run keeps the same reservation.
        side.embed_passages(&embedder, &texts[..4], Priority::Background)
            .unwrap();
        assert_eq!(side.manager.residents().len(), 1);
    }

    #[test]
    fn an_idle_worker_embedder_is_unloaded_and_its_reservation_dropped() {
        let side = cpu_engine_with_gpu_worker_idle("vram=16GiB", Some(Duration::from_millis(50)));
        let embedder = embedder();
        side.embed_passages(&embedder, &passages(4), Priority::Background)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !side.manager.residents().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(side.manager.residents().is_empty());
        assert!(side.worker_embedder.lock().unwrap().is_none());
    }

    #[test]
    fn a_worker_embedder_that_does_not_fit_runs_in_process_without_the_worker() {
        let side = cpu_engine_with_gpu_worker("vram=64MiB");
        let embedder = embedder();
        let texts = passages(10);
        embeds_as_in_process(&side, &embedder, &texts);
        assert!(side.manager.residents().is_empty());
        // The worker was never started for it.
        let status = side.worker().unwrap().status();
        assert_eq!((status.starts, status.last_error), (0, None));
    }

    fn assert_close(expected: &[Vec<f32>], got: &[Vec<f32>]) {
        assert_eq!(expected.len(), got.len());
        for (a, b) in expected.iter().zip(got) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "vectors differ by {worst}");
        }
    }

    fn kinds(events: &Receiver<GpuEvent>) -> Vec<String> {
        events
            .try_iter()
            .map(|e| {
                serde_json::to_value(&e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn ingestion_pauses_during_a_hot_spell_and_resumes_while_answers_never_wait() {
        let clock = ManualClock::new();
        let sim = SimulatedGpu::with_clock(
            "vram=16GiB,temp=45,tau=5s,hot_at=0s,hot_for=10s,hot_temp=93"
                .parse()
                .unwrap(),
            Arc::new(clock.clone()),
        );
        let mut side = side_on(Arc::new(sim), None);
        let slept = Arc::new(Mutex::new(Duration::ZERO));
        let (sleep_clock, total) = (clock.clone(), slept.clone());
        side.sleep = Arc::new(move |pause| {
            *total.lock().unwrap() += pause;
            sleep_clock.advance(pause);
        });
        let embedder = embedder();
        let texts = passages(10);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let expected = embedder.embed_passages(&refs).unwrap();

        // An answer's embedding on the hot GPU goes ahead at once.
        let events = side.events.subscribe();
        let got = side
            .embed_passages(&embedder, &texts, Priority::Interactive)
            .unwrap();
        assert_close(&expected, &got);
        assert_eq!(*slept.lock().unwrap(), Duration::ZERO);
        assert!(kinds(&events).is_empty());

        // Ingestion waits until the spell is over and the GPU has cooled
        // below 82 °C, then embeds everything.
        let got = side
            .embed_passages(&embedder, &texts, Priority::Background)
            .unwrap();
        assert_close(&expected, &got);
        let waited = *slept.lock().unwrap();
        assert!(
            (Duration::from_secs(10)..Duration::from_secs(15)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(kinds(&events), ["background_paused", "background_resumed"]);
    }

    #[test]
    fn catalog_candidates_have_their_shapes_and_leave_out_test_models() {
        let dir = tempfile::tempdir().unwrap();
        let candidates = llm_candidates(dir.path());
        let ids: Vec<&str> = candidates.iter().map(|c| c.model.as_str()).collect();
        assert!(ids.contains(&"qwen3-4b-instruct-2507"), "{ids:?}");
        assert!(ids.contains(&"qwen3-0.6b"), "{ids:?}");
        assert!(!ids.iter().any(|id| id.starts_with("tiny")), "{ids:?}");
        let four_b = &candidates[ids
            .iter()
            .position(|id| *id == "qwen3-4b-instruct-2507")
            .unwrap()];
        assert!((four_b.shape.parameters() as f64 / 1e9 - 4.02).abs() < 0.03);
        assert!(!four_b.installed);
        // 16 GB GPU, 8K context: the 4B model at full precision.
        let advice = lectern_gpu::recommend_llm(
            &candidates,
            MemoryBudget::Gpu {
                bytes: (16u64 << 30) * 9 / 10,
            },
            8192,
        );
        let choice = advice.choice.expect("something fits");
        assert_eq!(choice.model, "qwen3-4b-instruct-2507");
        assert_eq!(choice.format, WeightFormat::Bf16);
    }

    #[test]
    fn without_nvml_embedding_runs_on_the_cpu_without_error() {
        let telemetry: Arc<dyn TelemetryBackend> = Arc::new(lectern_gpu::NoGpu::new(
            "NVIDIA driver library libnvidia-ml.so.1 not found",
        ));
        let caps = Capabilities {
            cuda: true,
            metal: false,
        };
        let status = lectern_gpu::status(DevicePreference::Auto, caps, telemetry.as_ref()).unwrap();
        assert_eq!(status.selected, DeviceKind::Cpu);
        let side = GpuSide::from_parts(telemetry, status, None);
        let events = side.events.subscribe();
        let embedder = embedder();
        let texts = passages(40);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = side
            .embed_passages(&embedder, &texts, Priority::Background)
            .unwrap();
        assert_close(&embedder.embed_passages(&refs).unwrap(), &got);
        assert!(kinds(&events).is_empty(), "no recovery, no pause");
        assert!(side.report().residents.is_empty());
        assert!(side.report().status.gpus.is_empty());
    }

    #[test]
    fn an_idle_language_model_is_unloaded_by_the_timer() {
        let sim = SimulatedGpu::new("vram=16GiB".parse().unwrap());
        let side = side_on(Arc::new(sim), Some(Duration::from_millis(200)));
        let events = side.events.subscribe();
        let (path, llm) = tiny_llm();
        let slot: LlmSlot = Arc::new(Mutex::new(None));
        side.admit_llm(&path, 256, None, &slot).unwrap();
        *slot.lock().unwrap() = Some(llm);
        side.llm_loaded();
        let report = side.report();
        assert_eq!(report.residents.len(), 1, "{report:?}");
        assert_eq!(report.idle_timeout_ms, 200);
        assert!(report.render_text().contains("tiny-qwen3: language model"));

        // While it answers it stays, however long that takes.
        let in_use = side.llm_in_use().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert!(slot.lock().unwrap().is_some());
        drop(in_use);

        // The timer unloads it on its own: the event arrives once the
        // model is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut idle_unload = None;
        while idle_unload.is_none() && std::time::Instant::now() < deadline {
            idle_unload = events
                .recv_timeout(Duration::from_millis(50))
                .ok()
                .filter(|e| {
                    matches!(
                        e,
                        GpuEvent::ModelUnloaded {
                            reason: lectern_gpu::UnloadReason::Idle,
                            ..
                        }
                    )
                });
        }
        assert!(idle_unload.is_some());
        assert!(slot.lock().unwrap().is_none(), "the idle model was dropped");
        assert!(side.report().residents.is_empty());
    }

    fn tiny_llm() -> (std::path::PathBuf, Llm) {
        let path = models_dir().join("tiny-qwen3");
        let cpu = lectern_models::candle_device(&DeviceKind::Cpu).unwrap();
        let llm = Llm::load(&path, &cpu, 256).expect("tiny model loads");
        (path, llm)
    }

    #[test]
    fn an_fp8_checkpoint_is_counted_at_its_loaded_size() {
        let dir = models_dir().join("tiny-qwen3-fp8");
        let on_disk = std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len();
        let fp8 = llm_footprint(&dir, 256, None).unwrap();
        assert_eq!(fp8.weights_bytes, 2 * on_disk);
    }

    #[test]
    fn footprint_reads_checkpoint_sizes_and_kv_shape() {
        let dir = models_dir().join("tiny-qwen3");
        let weights = std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len();
        let folder = llm_footprint(&dir, 1024, None).unwrap();
        assert_eq!(folder.weights_bytes, weights);
        assert_eq!(
            (
                folder.layers,
                folder.kv_heads,
                folder.head_dim,
                folder.context
            ),
            (2, 2, 16, 1024)
        );
        // 2 (K and V) × 2 layers × 2 heads × 16 × 2 bytes per token: the
        // bf16 cache a folder gets on a GPU.
        assert_eq!(folder.kv_cache_bytes(), 256 * 1024);
        assert!(folder.estimate().total > weights + folder.kv_cache_bytes());

        let gguf_path = models_dir().join("tiny-qwen3.gguf");
        let gguf = llm_footprint(&gguf_path, 1024, None).unwrap();
        assert_eq!(
            gguf.weights_bytes,
            std::fs::metadata(&gguf_path).unwrap().len()
        );
        // A GGUF file computes in f32 on a GPU but keeps a 16-bit cache.
        assert_eq!(gguf.kv_bytes_per_token(), folder.kv_bytes_per_token());
        // A chosen type counts its own bytes: 16 + 4 per 8-bit vector.
        for (kind, per_token) in [
            (KvDtype::F32, 512),
            (KvDtype::F16, 256),
            (KvDtype::Bf16, 256),
            (KvDtype::Q8, 160),
        ] {
            let f = llm_footprint(&gguf_path, 1024, Some(kind)).unwrap();
            assert_eq!(f.kv_bytes_per_token(), per_token, "{kind}");
            assert_eq!(
                llm_footprint(&dir, 1024, Some(kind))
                    .unwrap()
                    .kv_cache_bytes(),
                per_token * 1024
            );
        }

        let missing = llm_footprint(&dir.join("nope"), 1024, None).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn the_llm_reservation_counts_the_chosen_kv_cache_type() {
        let side = simulated_cuda("vram=16GiB");
        let path = models_dir().join("tiny-qwen3");
        let slot: LlmSlot = Arc::new(Mutex::new(None));
        let mut reserved = Vec::new();
        for kv in [None, Some(KvDtype::F32), Some(KvDtype::Q8)] {
            side.admit_llm(&path, 65_536, kv, &slot).unwrap();
            let residents = side.manager.residents();
            assert_eq!(residents.len(), 1);
            let want = llm_footprint(&path, 65_536, kv).unwrap().estimate().total;
            assert_eq!(residents[0].bytes, want, "{kv:?}");
            reserved.push(residents[0].bytes);
        }
        // The tiny model's cache per token: 256 bytes in bf16 (the default
        // on a GPU), 512 in f32, 160 in 8 bits, 10 % margin on top (rounded
        // up, hence a byte either way).
        let kv_part = |per_token: u64| per_token * 65_536 * 11 / 10;
        let f32_more = reserved[1] - reserved[0];
        let q8_less = reserved[0] - reserved[2];
        assert!(
            f32_more.abs_diff(kv_part(512) - kv_part(256)) <= 1,
            "{f32_more}"
        );
        assert!(
            q8_less.abs_diff(kv_part(256) - kv_part(160)) <= 1,
            "{q8_less}"
        );
    }

    #[test]
    fn admitted_llm_is_unloaded_when_another_takes_the_gpu() {
        let side = simulated_cuda("vram=16GiB");
        let events = side.events.subscribe();
        let (path, llm) = tiny_llm();
        let slot: LlmSlot = Arc::new(Mutex::new(None));
        assert_eq!(
            side.admit_llm(&path, 256, None, &slot).unwrap(),
            DeviceKind::Cuda(0)
        );
        *slot.lock().unwrap() = Some(llm);
        side.llm_loaded();
        let residents = side.manager.residents();
        assert_eq!(residents.len(), 1);
        assert!(residents[0].loaded);
        assert_eq!(residents[0].kind, ModelKind::Llm);

        // While an answer is generated the model cannot be switched out.
        let in_use = side.llm_in_use().expect("a reservation is held");
        let busy = side
            .manager
            .admit(ModelRequest::new("other", ModelKind::Llm, 1 << 20), || {});
        assert!(matches!(busy, Err(GpuError::ModelBusy { .. })), "{busy:?}");
        drop(in_use);

        let other = side
            .manager
            .admit(ModelRequest::new("other", ModelKind::Llm, 1 << 20), || {})
            .unwrap();
        assert!(other.reservation().is_some());
        assert!(
            slot.lock().unwrap().is_none(),
            "the cached model was dropped"
        );
        assert!(side.llm_in_use().is_none(), "its reservation was released");
        assert!(events
            .try_iter()
            .any(|e| matches!(e, GpuEvent::ModelUnloaded { model, .. } if model == "tiny-qwen3")));
    }

    #[test]
    fn llm_that_does_not_fit_loads_on_the_cpu_with_a_reason() {
        let side = simulated_cuda("vram=32MiB");
        let events = side.events.subscribe();
        let path = models_dir().join("tiny-qwen3");
        let slot: LlmSlot = Arc::new(Mutex::new(None));
        assert_eq!(
            side.admit_llm(&path, 256, None, &slot).unwrap(),
            DeviceKind::Cpu
        );
        assert!(side.manager.residents().is_empty());
        let reason = events
            .try_iter()
            .find_map(|e| match e {
                GpuEvent::CpuFallback { reason, .. } => Some(reason),
                _ => None,
            })
            .expect("the fallback is published");
        assert!(reason.contains("would fit"), "{reason}");
    }
}
