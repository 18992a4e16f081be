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
//! * Language model loads ask the manager for a reservation sized from the
//!   checkpoint (weights + KV cache for the context + activations + margin)
//!   and load on the CPU when the manager says so.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};

use lectern_gpu::{
    ActiveGuard, Admission, DeviceKind, DevicePreference, EventBus, GpuError, GpuEvent, GpuManager,
    GpuStatus, InUse, ManagerConfig, ModelFootprint, ModelKind, ModelRequest, RecoveryError,
    RecoveryPolicy, Reservation, Sample, Sampler, SamplerConfig, Target, TelemetryBackend,
    WorkError,
};
use lectern_models::{Embedder, EmbedderConfig, Llm, ModelError, Qwen3Config};

use crate::{Engine, EngineError};

/// Tokens per passage the working-memory estimate provisions for (the
/// embedder truncates longer inputs well below this).
const EMBED_TOKENS: u64 = 512;
/// Live f32 tensors per token and hidden unit during one BERT forward pass
/// (hidden states, attention projections, the 4× feed-forward layer).
const EMBED_ACTIVATION_FACTOR: u64 = 8;

/// The cached language model, shared with the manager's unloader.
pub(crate) type LlmSlot = Arc<Mutex<Option<Llm>>>;

/// Telemetry, sampler, event bus and memory manager for one engine.
pub(crate) struct GpuSide {
    telemetry: Arc<dyn TelemetryBackend>,
    events: EventBus,
    sampler: Option<Sampler>,
    manager: GpuManager,
    status: GpuStatus,
    cpu_embedder: Mutex<Option<Arc<Embedder>>>,
    llm_reservation: Arc<Mutex<Option<Reservation>>>,
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
        let telemetry: Arc<dyn TelemetryBackend> = Arc::from(lectern_gpu::probe_telemetry());
        let status = lectern_gpu::status(pref, lectern_models::capabilities(), telemetry.as_ref())?;
        Ok(Self::from_parts(telemetry, status))
    }

    /// The GPU side for a device already selected in `status`, observed
    /// through `telemetry`.
    fn from_parts(telemetry: Arc<dyn TelemetryBackend>, status: GpuStatus) -> Self {
        let events = EventBus::new();
        let sampler =
            match Sampler::start(telemetry.clone(), SamplerConfig::default(), events.clone()) {
                Ok(sampler) => Some(sampler),
                Err(error) => {
                    tracing::warn!(%error, "GPU sampler thread did not start; no live telemetry");
                    None
                }
            };
        let manager = GpuManager::new(
            telemetry.clone(),
            status.selected,
            ManagerConfig::default(),
            events.clone(),
        );
        Self {
            telemetry,
            events,
            sampler,
            manager,
            status,
            cpu_embedder: Mutex::new(None),
            llm_reservation: Arc::new(Mutex::new(None)),
        }
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
        if let Some(embedder) = slot.as_ref() {
            return Ok(embedder.clone());
        }
        tracing::info!(dir = %primary.dir().display(), "loading a CPU copy of the embedder");
        let mut config = EmbedderConfig::new(primary.dir());
        config.pooling = Some(primary.pooling());
        config.batch_size = primary.batch_size();
        let cpu = lectern_models::candle_device(&DeviceKind::Cpu)?;
        let embedder = Arc::new(Embedder::load(config, &cpu)?);
        *slot = Some(embedder.clone());
        Ok(embedder)
    }

    /// Embeds `texts` as passages in batches of the embedder's batch size,
    /// recovering from out-of-memory errors and device loss.
    pub(crate) fn embed_passages(
        &self,
        embedder: &Arc<Embedder>,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let _active = self.active();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let per_item = (embedder.dim() as u64)
            .saturating_mul(4 * EMBED_TOKENS * EMBED_ACTIVATION_FACTOR)
            .max(1);
        let policy = RecoveryPolicy::new().with_events(self.events.clone());
        let result = policy.map_batches(
            &refs,
            embedder.batch_size(),
            || {
                let unloaded = self.manager.unload_idle();
                tracing::info!(?unloaded, "freed idle models before retrying a batch");
            },
            |batch, target| match target {
                Target::Gpu => self.embed_batch_on_device(embedder, batch, per_item),
                Target::Cpu => {
                    let cpu = self.cpu_embedder(embedder).map_err(WorkError::Failed)?;
                    cpu.embed_passages(batch).map_err(classify_model_error)
                }
            },
        );
        match result {
            Ok(done) => {
                if !done.steps.is_empty() {
                    tracing::warn!(
                        steps = done.steps.len(),
                        batch = done.batch,
                        target = ?done.target,
                        "embedding recovered from GPU memory pressure"
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

    /// One batch on the selected device. With simulated telemetry the
    /// batch's working memory is allocated on the simulated GPU for the
    /// duration of the batch, so its faults apply.
    fn embed_batch_on_device(
        &self,
        embedder: &Embedder,
        batch: &[&str],
        per_item: u64,
    ) -> Result<Vec<Vec<f32>>, WorkError<EngineError>> {
        let sim = self.telemetry.as_simulated();
        let bytes = per_item.saturating_mul(batch.len() as u64);
        if let Some(sim) = sim {
            sim.allocate(bytes).map_err(classify_gpu_error)?;
        }
        let result = embedder.embed_passages(batch).map_err(classify_model_error);
        if let Some(sim) = sim {
            sim.free(bytes);
        }
        result
    }

    /// Drops the reservation of the cached language model.
    pub(crate) fn release_llm(&self) {
        self.llm_reservation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Asks the manager where the language model at `path` goes, sizing
    /// the reservation for `context` tokens. Returns the device to load on.
    /// Unloading `slot` is how the manager evicts the model later.
    pub(crate) fn admit_llm(
        &self,
        path: &Path,
        context: usize,
        slot: &LlmSlot,
    ) -> Result<DeviceKind, EngineError> {
        self.release_llm();
        if !matches!(self.device(), DeviceKind::Cuda(_)) {
            return Ok(self.device());
        }
        let estimate = llm_footprint(path, context)?.estimate();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let unload_slot = Arc::downgrade(slot);
        let unload_reservation = Arc::downgrade(&self.llm_reservation);
        let unloader = move || {
            if let Some(slot) = unload_slot.upgrade() {
                slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
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
/// the checkpoint's bytes as weights, a 16-bit KV cache from the layer and
/// head counts in `config.json` or the GGUF metadata, and prefill
/// activations for the whole context.
pub(crate) fn llm_footprint(path: &Path, context: usize) -> Result<ModelFootprint, EngineError> {
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
        (weights, config)
    } else {
        let mut file = std::fs::File::open(path).map_err(|e| invalid(path, e))?;
        let size = file.metadata().map_err(|e| invalid(path, e))?.len();
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)
            .map_err(|e| invalid(path, e))?;
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .unwrap_or(1);
        let config =
            Qwen3Config::from_gguf(&content.metadata, vocab).map_err(|e| invalid(path, e))?;
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
        kv_dtype_bytes: 2,
        activation_bytes,
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

    /// Embeds passages through the GPU manager on a blocking thread: in
    /// batches of the embedder's batch size, recovering from out-of-memory
    /// errors (free caches, halve the batch, move to the CPU) and from a
    /// lost GPU. Returns one vector per text, in order.
    pub async fn embed_passages_managed(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let side = self.gpu_side.clone();
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || side.embed_passages(&embedder, &texts))
            .await
            .map_err(EngineError::join)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_gpu::{Capabilities, SimulatedGpu};

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
        let telemetry: Arc<dyn TelemetryBackend> = Arc::new(sim);
        let caps = Capabilities {
            cuda: true,
            metal: false,
        };
        let status = lectern_gpu::status(DevicePreference::Auto, caps, telemetry.as_ref())
            .expect("auto never fails");
        assert_eq!(status.selected, DeviceKind::Cuda(0));
        GpuSide::from_parts(telemetry, status)
    }

    fn tiny_llm() -> (std::path::PathBuf, Llm) {
        let path = models_dir().join("tiny-qwen3");
        let cpu = lectern_models::candle_device(&DeviceKind::Cpu).unwrap();
        let llm = Llm::load(&path, &cpu, 256).expect("tiny model loads");
        (path, llm)
    }

    #[test]
    fn footprint_reads_checkpoint_sizes_and_kv_shape() {
        let dir = models_dir().join("tiny-qwen3");
        let weights = std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len();
        let folder = llm_footprint(&dir, 1024).unwrap();
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
        // 2 (K and V) × 2 layers × 2 heads × 16 × 2 bytes per token.
        assert_eq!(folder.kv_cache_bytes(), 256 * 1024);
        assert!(folder.estimate().total > weights + folder.kv_cache_bytes());

        let gguf_path = models_dir().join("tiny-qwen3.gguf");
        let gguf = llm_footprint(&gguf_path, 1024).unwrap();
        assert_eq!(
            gguf.weights_bytes,
            std::fs::metadata(&gguf_path).unwrap().len()
        );
        assert_eq!(gguf.kv_bytes_per_token(), folder.kv_bytes_per_token());

        let missing = llm_footprint(&dir.join("nope"), 1024).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn admitted_llm_is_unloaded_when_another_takes_the_gpu() {
        let side = simulated_cuda("vram=16GiB");
        let events = side.events.subscribe();
        let (path, llm) = tiny_llm();
        let slot: LlmSlot = Arc::new(Mutex::new(None));
        assert_eq!(
            side.admit_llm(&path, 256, &slot).unwrap(),
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
        assert_eq!(side.admit_llm(&path, 256, &slot).unwrap(), DeviceKind::Cpu);
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
