//! The memory manager: every model load asks it for a reservation, and it
//! admits, makes room, falls back to the CPU or refuses.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{system_clock, Clock};
use crate::units::format_bytes;
use crate::{DeviceKind, EventBus, GpuError, GpuEvent, TelemetryBackend, UnloadReason};

/// Whether a model is the one large language model or a small helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A large language model: only one is resident at a time.
    Llm,
    /// A small model (embedder, reranker) that may share the GPU.
    Small,
}

/// Unloads a resident model when the manager needs its memory.
///
/// The owner implements it, typically by dropping the model and its
/// [`Reservation`]. It runs on the thread that asked for the admission and
/// must not call [`GpuManager::admit`] itself. Any `Fn()` closure works.
pub trait Evictable: Send + Sync {
    /// Frees the model's GPU memory.
    fn unload(&self);
}

impl<F: Fn() + Send + Sync> Evictable for F {
    fn unload(&self) {
        self()
    }
}

/// What a model load asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The model's name, shown in messages.
    pub name: String,
    /// Large language model or small helper.
    pub kind: ModelKind,
    /// Bytes to reserve, usually [`MemoryEstimate::total`](crate::MemoryEstimate::total).
    pub bytes: u64,
}

impl ModelRequest {
    /// A request for `bytes` of GPU memory.
    pub fn new(name: impl Into<String>, kind: ModelKind, bytes: u64) -> Self {
        Self {
            name: name.into(),
            kind,
            bytes,
        }
    }
}

/// How the manager plans memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ManagerConfig {
    /// Reservations never plan past this fraction of installed memory
    /// (default 0.90), leaving the rest for batches and other programs.
    pub max_fill: f64,
    /// A model unused for this long is unloaded by
    /// [`GpuManager::unload_idle`] (default 10 minutes).
    pub idle_timeout: Duration,
    /// Place a model that cannot fit on the CPU instead of refusing it
    /// (default true).
    pub cpu_fallback: bool,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            max_fill: 0.90,
            idle_timeout: Duration::from_secs(600),
            cpu_fallback: true,
        }
    }
}

/// The time one large language model took to replace another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchReport {
    /// The model unloaded.
    pub from: String,
    /// The model loaded.
    pub to: String,
    /// Time spent unloading the old model.
    pub unload: Duration,
    /// Time from the admission request until [`Reservation::loaded`], or
    /// until the old model was unloaded if the load is not finished.
    pub total: Duration,
}

/// Where the manager placed a model.
#[derive(Debug)]
pub enum Admission {
    /// On the GPU, holding this reservation.
    Gpu(Reservation),
    /// On the CPU, for a reason the UI can show.
    Cpu {
        /// Why the GPU was not used.
        reason: String,
    },
}

impl Admission {
    /// The reservation, when the model goes on the GPU.
    pub fn reservation(&self) -> Option<&Reservation> {
        match self {
            Self::Gpu(reservation) => Some(reservation),
            Self::Cpu { .. } => None,
        }
    }
}

/// A resident model, as the UI lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentModel {
    /// The model's name.
    pub name: String,
    /// Its kind.
    pub kind: ModelKind,
    /// Bytes reserved.
    pub bytes: u64,
    /// Whether [`Reservation::loaded`] has been called.
    pub loaded: bool,
    /// Whether it is in use right now.
    pub in_use: bool,
    /// Milliseconds since it was last used.
    pub idle_ms: u64,
}

struct Resident {
    id: u64,
    name: String,
    kind: ModelKind,
    bytes: u64,
    loaded: bool,
    in_use: usize,
    last_used: Duration,
    unloader: Arc<dyn Evictable>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    residents: Vec<Resident>,
}

struct Inner {
    telemetry: Arc<dyn TelemetryBackend>,
    device: DeviceKind,
    clock: Arc<dyn Clock>,
    config: ManagerConfig,
    events: EventBus,
    admitting: Mutex<()>,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_resident(&self, id: u64, f: impl FnOnce(&mut Resident)) {
        if let Some(resident) = self.lock().residents.iter_mut().find(|r| r.id == id) {
            f(resident);
        }
    }
}

/// Owns the GPU's memory on behalf of every model.
///
/// Each model load calls [`GpuManager::admit`] with its estimated size and
/// an [`Evictable`] that unloads it. The manager keeps one large language
/// model resident at a time (admitting another unloads the first), lets
/// small models share the GPU while they fit, unloads models that are not
/// in use when a new one needs their memory, and otherwise places the model
/// on the CPU with a reason or refuses it with how much would fit. Cheap to
/// clone; clones share state.
#[derive(Clone)]
pub struct GpuManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuManager")
            .field("device", &self.inner.device)
            .field("config", &self.inner.config)
            .field("residents", &self.residents())
            .finish()
    }
}

enum Plan {
    Fits { victims: Vec<(u64, UnloadReason)> },
    TooBig { available: u64 },
}

impl GpuManager {
    /// A manager for `device`, reading memory from `telemetry` and
    /// publishing on `events`. With [`DeviceKind::Cpu`] or
    /// [`DeviceKind::Metal`] every model is placed on the CPU path
    /// (Metal's unified memory is not budgeted here).
    pub fn new(
        telemetry: Arc<dyn TelemetryBackend>,
        device: DeviceKind,
        config: ManagerConfig,
        events: EventBus,
    ) -> Self {
        Self::with_clock(telemetry, device, config, events, system_clock())
    }

    /// Like [`GpuManager::new`], timing idleness and switches on `clock`.
    pub fn with_clock(
        telemetry: Arc<dyn TelemetryBackend>,
        device: DeviceKind,
        config: ManagerConfig,
        events: EventBus,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                telemetry,
                device,
                clock,
                config,
                events,
                admitting: Mutex::new(()),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The bus the manager publishes on.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// How the manager plans memory.
    pub fn config(&self) -> ManagerConfig {
        self.inner.config
    }

    /// The device the manager places models on.
    pub fn device(&self) -> DeviceKind {
        self.inner.device
    }

    /// Starts a background thread that calls [`GpuManager::unload_idle`]
    /// every `every`, so models idle past the timeout are unloaded without
    /// anyone asking. Dropping the returned [`IdleReaper`] stops it.
    pub fn start_idle_reaper(&self, every: Duration) -> Result<IdleReaper, std::io::Error> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let manager = Arc::downgrade(&self.inner);
        let signal = stop.clone();
        let every = every.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("lectern-gpu-idle".to_owned())
            .spawn(move || loop {
                let (lock, wake) = &*signal;
                let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (stopped, _) = wake
                    .wait_timeout_while(stopped, every, |stopped| !*stopped)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stopped {
                    break;
                }
                drop(stopped);
                let Some(inner) = manager.upgrade() else {
                    break;
                };
                let unloaded = GpuManager { inner }.unload_idle();
                if !unloaded.is_empty() {
                    tracing::info!(?unloaded, "unloaded idle models");
                }
            })?;
        Ok(IdleReaper {
            stop,
            thread: Some(thread),
        })
    }

    /// The resident models, in admission order.
    pub fn residents(&self) -> Vec<ResidentModel> {
        let now = self.inner.clock.now();
        self.inner
            .lock()
            .residents
            .iter()
            .map(|r| ResidentModel {
                name: r.name.clone(),
                kind: r.kind,
                bytes: r.bytes,
                loaded: r.loaded,
                in_use: r.in_use > 0,
                idle_ms: u64::try_from(now.saturating_sub(r.last_used).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// Bytes held by all reservations.
    pub fn reserved_bytes(&self) -> u64 {
        self.inner.lock().residents.iter().map(|r| r.bytes).sum()
    }

    /// The largest reservation that would be admitted now without unloading
    /// anything.
    pub fn available_bytes(&self) -> Result<u64, GpuError> {
        let index = self.gpu_index().ok_or_else(|| {
            GpuError::Unavailable(format!("{} has no managed GPU memory", self.inner.device))
        })?;
        self.available(index)
    }

    fn gpu_index(&self) -> Option<u32> {
        match self.inner.device {
            DeviceKind::Cuda(index) => u32::try_from(index).ok(),
            DeviceKind::Metal | DeviceKind::Cpu => None,
        }
    }

    /// Planning capacity minus memory in use and reservations whose model
    /// has not finished loading (loaded models already show in `used`).
    fn available(&self, index: u32) -> Result<u64, GpuError> {
        let snapshot = self.inner.telemetry.snapshot(index)?;
        let (Some(total), Some(used)) = (snapshot.memory_total, snapshot.memory_used) else {
            return Err(GpuError::Unavailable(format!(
                "GPU {index} does not report its memory"
            )));
        };
        let pending: u64 = self
            .inner
            .lock()
            .residents
            .iter()
            .filter(|r| !r.loaded)
            .map(|r| r.bytes)
            .sum();
        let capacity = (total as f64 * self.inner.config.max_fill) as u64;
        Ok(capacity.saturating_sub(used.saturating_add(pending)))
    }

    /// Places a model: on the GPU with a [`Reservation`], possibly after
    /// unloading other models, or on the CPU with a reason.
    ///
    /// Loading a [`ModelKind::Llm`] unloads the resident one first. When
    /// the model does not fit, models not in use are unloaded, least
    /// recently used first, but only if that makes it fit. Otherwise the
    /// model goes to the CPU, or, with `cpu_fallback` off, the call fails
    /// with [`GpuError::InsufficientMemory`] saying how much would fit. A
    /// large language model in use is never unloaded: that is
    /// [`GpuError::ModelBusy`]. A GPU that cannot be read means the CPU
    /// (or its error, with `cpu_fallback` off).
    pub fn admit(
        &self,
        request: ModelRequest,
        unloader: impl Evictable + 'static,
    ) -> Result<Admission, GpuError> {
        let _admitting = self
            .inner
            .admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let started = self.inner.clock.now();
        let Some(index) = self.gpu_index() else {
            return Ok(Admission::Cpu {
                reason: format!("running on {}", self.inner.device),
            });
        };
        let available = match self.available(index) {
            Ok(available) => available,
            Err(error) => return self.fall_back(&request, format!("{error}"), error),
        };

        let victims = match self.plan(&request, available)? {
            Plan::Fits { victims } => victims,
            Plan::TooBig { available } => {
                return self.refuse(&request, index, available);
            }
        };

        let unloaded = self.evict(&victims);
        let unload_time = self.inner.clock.now().saturating_sub(started);
        let available = match self.available(index) {
            Ok(available) => available,
            Err(error) => return self.fall_back(&request, format!("{error}"), error),
        };
        if request.bytes > available {
            return self.refuse(&request, index, available);
        }

        let switch = unloaded
            .iter()
            .find(|(_, kind, reason)| *kind == ModelKind::Llm && *reason == UnloadReason::Switch)
            .map(|(name, _, _)| SwitchReport {
                from: name.clone(),
                to: request.name.clone(),
                unload: unload_time,
                total: unload_time,
            });
        let now = self.inner.clock.now();
        let id = {
            let mut state = self.inner.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.residents.push(Resident {
                id,
                name: request.name.clone(),
                kind: request.kind,
                bytes: request.bytes,
                loaded: false,
                in_use: 0,
                last_used: now,
                unloader: Arc::new(unloader),
            });
            id
        };
        tracing::info!(
            model = %request.name,
            bytes = request.bytes,
            device = %self.inner.device,
            evicted = unloaded.len(),
            "GPU reservation admitted"
        );
        Ok(Admission::Gpu(Reservation {
            manager: Arc::downgrade(&self.inner),
            id,
            name: request.name,
            kind: request.kind,
            bytes: request.bytes,
            device: self.inner.device,
            evicted: unloaded.into_iter().map(|(name, _, _)| name).collect(),
            switch: Mutex::new(switch),
            started,
        }))
    }

    fn plan(&self, request: &ModelRequest, available: u64) -> Result<Plan, GpuError> {
        let state = self.inner.lock();
        let mut victims = Vec::new();
        let mut room = available;
        if request.kind == ModelKind::Llm {
            for resident in state.residents.iter().filter(|r| r.kind == ModelKind::Llm) {
                if resident.in_use > 0 {
                    return Err(GpuError::ModelBusy {
                        model: resident.name.clone(),
                    });
                }
                victims.push((resident.id, UnloadReason::Switch));
                room = room.saturating_add(resident.bytes);
            }
        }
        let mut idle: Vec<&Resident> = state
            .residents
            .iter()
            .filter(|r| r.in_use == 0 && !victims.iter().any(|(id, _)| *id == r.id))
            .collect();
        idle.sort_by_key(|r| r.last_used);
        for resident in idle {
            if request.bytes <= room {
                break;
            }
            victims.push((resident.id, UnloadReason::MakeRoom));
            room = room.saturating_add(resident.bytes);
        }
        if request.bytes <= room {
            Ok(Plan::Fits { victims })
        } else {
            Ok(Plan::TooBig { available: room })
        }
    }

    /// Removes `victims` from the table, then calls their unloaders with no
    /// lock held, so an unloader may drop its [`Reservation`].
    fn evict(&self, victims: &[(u64, UnloadReason)]) -> Vec<(String, ModelKind, UnloadReason)> {
        let removed: Vec<(Resident, UnloadReason)> = {
            let mut state = self.inner.lock();
            victims
                .iter()
                .filter_map(|(id, reason)| {
                    let at = state.residents.iter().position(|r| r.id == *id)?;
                    Some((state.residents.remove(at), *reason))
                })
                .collect()
        };
        removed
            .into_iter()
            .map(|(resident, reason)| {
                self.unload(&resident, reason);
                (resident.name, resident.kind, reason)
            })
            .collect()
    }

    fn unload(&self, resident: &Resident, reason: UnloadReason) {
        tracing::info!(model = %resident.name, ?reason, "unloading model from GPU");
        if catch_unwind(AssertUnwindSafe(|| resident.unloader.unload())).is_err() {
            tracing::error!(model = %resident.name, "model unloader panicked");
        }
        self.inner.events.publish(GpuEvent::ModelUnloaded {
            model: resident.name.clone(),
            bytes: resident.bytes,
            reason,
        });
    }

    fn refuse(
        &self,
        request: &ModelRequest,
        index: u32,
        available: u64,
    ) -> Result<Admission, GpuError> {
        let error = GpuError::InsufficientMemory {
            model: request.name.clone(),
            requested: request.bytes,
            available,
            index,
        };
        let reason = format!(
            "needs {} of GPU memory but at most {} would fit on GPU {index}",
            format_bytes(request.bytes),
            format_bytes(available)
        );
        self.fall_back(request, reason, error)
    }

    fn fall_back(
        &self,
        request: &ModelRequest,
        reason: String,
        error: GpuError,
    ) -> Result<Admission, GpuError> {
        if !self.inner.config.cpu_fallback {
            tracing::warn!(model = %request.name, %error, "GPU reservation refused");
            return Err(error);
        }
        let reason = format!("{reason}; running on the CPU");
        self.inner.events.publish(GpuEvent::CpuFallback {
            model: request.name.clone(),
            reason: reason.clone(),
        });
        Ok(Admission::Cpu { reason })
    }

    /// Unloads every model that is not in use and has been idle for the
    /// configured timeout; returns their names. Call it periodically, for
    /// example after each telemetry sample.
    pub fn unload_idle(&self) -> Vec<String> {
        let now = self.inner.clock.now();
        let timeout = self.inner.config.idle_timeout;
        let victims: Vec<(u64, UnloadReason)> = self
            .inner
            .lock()
            .residents
            .iter()
            .filter(|r| r.in_use == 0 && now.saturating_sub(r.last_used) >= timeout)
            .map(|r| (r.id, UnloadReason::Idle))
            .collect();
        self.evict(&victims)
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// Unloads idle models in the background; see
/// [`GpuManager::start_idle_reaper`]. Dropping it stops and joins the
/// thread.
#[derive(Debug)]
pub struct IdleReaper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for IdleReaper {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("idle model reaper panicked");
            }
        }
    }
}

/// GPU memory held for one model. Dropping it returns the memory to the
/// manager's budget without calling the model's unloader.
#[derive(Debug)]
pub struct Reservation {
    manager: Weak<Inner>,
    id: u64,
    name: String,
    kind: ModelKind,
    bytes: u64,
    device: DeviceKind,
    evicted: Vec<String>,
    switch: Mutex<Option<SwitchReport>>,
    started: Duration,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuManager").finish_non_exhaustive()
    }
}

impl Reservation {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's kind.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The device to load the model on.
    pub fn device(&self) -> DeviceKind {
        self.device
    }

    /// Models unloaded to admit this one.
    pub fn evicted(&self) -> &[String] {
        &self.evicted
    }

    /// The language model switch this admission made, if any.
    pub fn switch(&self) -> Option<SwitchReport> {
        self.switch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that the model finished loading: its memory now shows in the
    /// GPU's readings. When the admission replaced a language model, the
    /// switch's total time is completed, published as
    /// [`GpuEvent::ModelSwitched`] and returned.
    pub fn loaded(&self) -> Option<SwitchReport> {
        let manager = self.manager.upgrade()?;
        let now = manager.clock.now();
        manager.with_resident(self.id, |r| {
            r.loaded = true;
            r.last_used = now;
        });
        let mut switch = self.switch.lock().unwrap_or_else(PoisonError::into_inner);
        let report = switch.as_mut()?;
        report.total = now.saturating_sub(self.started);
        manager.events.publish(GpuEvent::ModelSwitched {
            from: report.from.clone(),
            to: report.to.clone(),
            millis: u64::try_from(report.total.as_millis()).unwrap_or(u64::MAX),
        });
        Some(report.clone())
    }

    /// Marks the model as in use until the guard drops: it will not be
    /// unloaded meanwhile, and its idle time restarts when the guard drops.
    pub fn begin_use(&self) -> InUse {
        if let Some(manager) = self.manager.upgrade() {
            let now = manager.clock.now();
            manager.with_resident(self.id, |r| {
                r.in_use += 1;
                r.last_used = now;
            });
        }
        InUse {
            manager: self.manager.clone(),
            id: self.id,
        }
    }

    /// Restarts the model's idle time.
    pub fn touch(&self) {
        if let Some(manager) = self.manager.upgrade() {
            let now = manager.clock.now();
            manager.with_resident(self.id, |r| r.last_used = now);
        }
    }

    /// Whether the manager still holds this reservation (it was not
    /// unloaded).
    pub fn is_resident(&self) -> bool {
        self.manager
            .upgrade()
            .is_some_and(|m| m.lock().residents.iter().any(|r| r.id == self.id))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.upgrade() {
            manager.lock().residents.retain(|r| r.id != self.id);
        }
    }
}

/// Keeps a model marked as in use; see [`Reservation::begin_use`].
#[derive(Debug)]
pub struct InUse {
    manager: Weak<Inner>,
    id: u64,
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.upgrade() {
            let now = manager.clock.now();
            manager.with_resident(self.id, |r| {
                r.in_use = r.in_use.saturating_sub(1);
                r.last_used = now;
            });
        }
    }
}
