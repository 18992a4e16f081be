//! A simulated GPU for tests and demonstrations.
//!
//! [`SimulatedGpu`] behaves like one NVIDIA GPU seen through NVML: it has a
//! fixed amount of video memory that allocations succeed or fail against,
//! a temperature that follows its load with a first-order thermal lag, a
//! power draw proportional to its load, and a fault script that makes it
//! run out of memory, fail readings, overheat or disappear at chosen
//! moments. Time comes from a [`Clock`], so a [`ManualClock`](crate::ManualClock)
//! makes every reading reproducible.
//!
//! # Configuration grammar
//!
//! A [`SimConfig`] is written as comma-separated `key=value` options, e.g.
//! `vram=16GiB,temp=45,oom_at=3`; the `LECTERN_GPU` environment variable
//! takes the same list after `sim:` (see [`TelemetrySource`](crate::TelemetrySource)).
//! Keys are case-insensitive, each may appear once, and an empty list means
//! every default.
//!
//! | key | value | default | meaning |
//! |---|---|---|---|
//! | `name` | text without commas | `Lectern Simulated GPU` | marketing name |
//! | `vram` | size (`16GiB`, `8GB`, `512MiB`, bytes) | `16GiB` | installed memory |
//! | `used` | size | `0` | memory held by other processes |
//! | `temp` | °C (`45` or `45C`) | `40` | temperature when idle |
//! | `temp_load` | °C | `75` | steady temperature at 100 % load |
//! | `tau` | duration (`10s`, `500ms`, `2m`) | `10s` | thermal time constant |
//! | `power` | watts (`30` or `30W`) | `30` | draw when idle |
//! | `tdp` | watts | `250` | draw at 100 % load |
//! | `power_limit` | watts | `300` | enforced power limit |
//! | `cc` | `major.minor` | `9.0` | CUDA compute capability |
//! | `oom_at` | `N`, `N..M` or `N..` | none | allocations N to M (from 1) fail as out of memory |
//! | `read_errors` | `N`, `N..M` or `N..` | none | readings N to M (from 1) fail as NVML errors |
//! | `lost_at` | `N` | none | allocation N loses the device; everything after fails |
//! | `hot_at` | duration | none | a hot spell starts this long after the clock's origin |
//! | `hot_for` | duration | `60s` | how long the hot spell lasts (needs `hot_at`) |
//! | `hot_temp` | °C | `92` | temperature during the hot spell (needs `hot_at`) |

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{system_clock, Clock};
use crate::units::{format_bytes, parse_bytes, parse_duration, parse_with_unit};
use crate::{GpuError, GpuSnapshot, TelemetryBackend};

const GIB: u64 = 1 << 30;

/// Every option [`SimConfig`] understands, in the order the grammar lists
/// them.
pub const SIM_OPTIONS: &[&str] = &[
    "name",
    "vram",
    "used",
    "temp",
    "temp_load",
    "tau",
    "power",
    "tdp",
    "power_limit",
    "cc",
    "oom_at",
    "read_errors",
    "lost_at",
    "hot_at",
    "hot_for",
    "hot_temp",
];

/// An inclusive range of 1-based call numbers; `last: None` means "and
/// every call after `first`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRange {
    /// The first affected call, counting from 1.
    pub first: u64,
    /// The last affected call, or `None` for no end.
    pub last: Option<u64>,
}

impl CallRange {
    /// Just call `n`.
    pub fn single(n: u64) -> Self {
        Self {
            first: n,
            last: Some(n),
        }
    }

    /// Whether call number `n` is in the range.
    pub fn contains(&self, n: u64) -> bool {
        n >= self.first && self.last.is_none_or(|last| n <= last)
    }

    fn parse(key: &str, text: &str) -> Result<Self, String> {
        let number = |part: &str| -> Result<u64, String> {
            let part = part.trim();
            let n: u64 = part.parse().map_err(|_| {
                format!("{key}={text}: {part:?} is not a whole number (expected N, N..M or N..)")
            })?;
            if n == 0 {
                return Err(format!("{key}={text}: calls are numbered from 1"));
            }
            Ok(n)
        };
        match text.split_once("..") {
            None => number(text).map(Self::single),
            Some((first, "")) => Ok(Self {
                first: number(first)?,
                last: None,
            }),
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if last < first {
                    return Err(format!("{key}={text}: the range ends before it starts"));
                }
                Ok(Self {
                    first,
                    last: Some(last),
                })
            }
        }
    }
}

/// A period during which the simulated GPU runs hot regardless of load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HotSpell {
    /// When it starts, measured on the simulator's clock.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
    /// The temperature it holds the GPU at, in °C.
    pub celsius: f64,
}

impl HotSpell {
    fn contains(&self, at: Duration) -> bool {
        at >= self.start && at < self.start + self.length
    }
}

/// What goes wrong, and when, on a [`SimulatedGpu`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimFaults {
    /// Allocations (numbered from 1) that fail as out of memory.
    pub oom_at: Option<CallRange>,
    /// Telemetry readings (numbered from 1) that fail as NVML errors.
    pub read_errors: Option<CallRange>,
    /// The allocation (numbered from 1) at which the device is lost.
    pub lost_at: Option<u64>,
    /// A period of overheating.
    pub hot_spell: Option<HotSpell>,
}

/// The configuration of a [`SimulatedGpu`]; parse it from the grammar in
/// the [module documentation](self) with [`str::parse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Marketing name.
    pub name: String,
    /// Installed video memory, in bytes.
    pub vram: u64,
    /// Memory held by other processes, in bytes.
    pub used: u64,
    /// Temperature when idle, in °C.
    pub idle_temp_c: f64,
    /// Steady temperature at 100 % load, in °C.
    pub load_temp_c: f64,
    /// Thermal time constant: after this long at a new load the
    /// temperature has covered 63 % of the way to its new steady value.
    pub thermal_tau: Duration,
    /// Power draw when idle, in watts.
    pub idle_power_w: f64,
    /// Power draw at 100 % load, in watts.
    pub load_power_w: f64,
    /// Enforced power limit, in watts.
    pub power_limit_w: f64,
    /// CUDA compute capability, `(major, minor)`.
    pub compute_capability: (u32, u32),
    /// The fault script.
    pub faults: SimFaults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            name: "Lectern Simulated GPU".to_owned(),
            vram: 16 * GIB,
            used: 0,
            idle_temp_c: 40.0,
            load_temp_c: 75.0,
            thermal_tau: Duration::from_secs(10),
            idle_power_w: 30.0,
            load_power_w: 250.0,
            power_limit_w: 300.0,
            compute_capability: (9, 0),
            faults: SimFaults::default(),
        }
    }
}

impl SimConfig {
    /// Checks that the options agree with each other.
    pub fn validate(&self) -> Result<(), GpuError> {
        let fail = |message: String| Err(GpuError::InvalidConfig(message));
        if self.name.trim().is_empty() {
            return fail("name must not be empty".to_owned());
        }
        if self.vram == 0 {
            return fail("vram must be more than 0".to_owned());
        }
        if self.used >= self.vram {
            return fail(format!(
                "used ({}) must be less than vram ({})",
                format_bytes(self.used),
                format_bytes(self.vram)
            ));
        }
        for (key, value) in [("temp", self.idle_temp_c), ("temp_load", self.load_temp_c)] {
            if !(0.0..=150.0).contains(&value) {
                return fail(format!("{key}={value} is outside 0..150 °C"));
            }
        }
        if self.load_temp_c < self.idle_temp_c {
            return fail(format!(
                "temp_load ({} °C) must not be below temp ({} °C)",
                self.load_temp_c, self.idle_temp_c
            ));
        }
        if self.load_power_w < self.idle_power_w {
            return fail(format!(
                "tdp ({} W) must not be below power ({} W)",
                self.load_power_w, self.idle_power_w
            ));
        }
        if self.power_limit_w <= 0.0 {
            return fail("power_limit must be more than 0 W".to_owned());
        }
        if self.load_power_w * 1000.0 > f64::from(u32::MAX) {
            return fail(format!("tdp ({} W) is too large", self.load_power_w));
        }
        if let Some(spell) = &self.faults.hot_spell {
            if !(0.0..=150.0).contains(&spell.celsius) {
                return fail(format!("hot_temp={} is outside 0..150 °C", spell.celsius));
            }
        }
        Ok(())
    }
}

impl FromStr for SimConfig {
    type Err = GpuError;

    /// Parses `key=value,key=value,…`; see the [module documentation](self).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_options(text).map_err(GpuError::InvalidConfig)
    }
}

/// A compute capability written `major.minor`, e.g. `8.9`.
fn parse_compute_capability(value: &str) -> Result<(u32, u32), String> {
    let parsed = value
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    parsed.ok_or_else(|| format!("{value:?} is not a compute capability such as 9.0 or 8.9"))
}

fn parse_options(text: &str) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let mut seen = BTreeSet::new();
    let (mut hot_at, mut hot_for, mut hot_temp) = (None, None, None);
    if text.trim().is_empty() {
        return Ok(config);
    }
    for option in text.split(',') {
        let option = option.trim();
        if option.is_empty() {
            return Err(format!("empty option in {text:?} (two commas in a row?)"));
        }
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!("option {option:?} has no value; write key=value"));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if !SIM_OPTIONS.contains(&key.as_str()) {
            return Err(format!(
                "unknown option {key:?}; known options: {}",
                SIM_OPTIONS.join(", ")
            ));
        }
        if !seen.insert(key.clone()) {
            return Err(format!("option {key} is given more than once"));
        }
        if value.is_empty() {
            return Err(format!("option {key} has an empty value"));
        }
        let at = |e: String| format!("{key}: {e}");
        match key.as_str() {
            "name" => config.name = value.to_owned(),
            "vram" => config.vram = parse_bytes(value).map_err(at)?,
            "used" => config.used = parse_bytes(value).map_err(at)?,
            "temp" => config.idle_temp_c = parse_with_unit(value, "C").map_err(at)?,
            "temp_load" => config.load_temp_c = parse_with_unit(value, "C").map_err(at)?,
            "tau" => config.thermal_tau = parse_duration(value).map_err(at)?,
            "power" => config.idle_power_w = parse_with_unit(value, "W").map_err(at)?,
            "tdp" => config.load_power_w = parse_with_unit(value, "W").map_err(at)?,
            "power_limit" => config.power_limit_w = parse_with_unit(value, "W").map_err(at)?,
            "cc" => config.compute_capability = parse_compute_capability(value).map_err(at)?,
            "oom_at" => config.faults.oom_at = Some(CallRange::parse(&key, value)?),
            "read_errors" => config.faults.read_errors = Some(CallRange::parse(&key, value)?),
            "lost_at" => {
                let range = CallRange::parse(&key, value)?;
                if range.last != Some(range.first) {
                    return Err(format!(
                        "lost_at={value}: expected a single allocation number"
                    ));
                }
                config.faults.lost_at = Some(range.first);
            }
            "hot_at" => hot_at = Some(parse_duration(value).map_err(at)?),
            "hot_for" => hot_for = Some(parse_duration(value).map_err(at)?),
            "hot_temp" => hot_temp = Some(parse_with_unit(value, "C").map_err(at)?),
            _ => unreachable!("every key in SIM_OPTIONS is handled"),
        }
    }
    match hot_at {
        Some(start) => {
            config.faults.hot_spell = Some(HotSpell {
                start,
                length: hot_for.unwrap_or(Duration::from_secs(60)),
                celsius: hot_temp.unwrap_or(92.0),
            });
        }
        None if hot_for.is_some() => return Err("hot_for needs hot_at".to_owned()),
        None if hot_temp.is_some() => return Err("hot_temp needs hot_at".to_owned()),
        None => {}
    }
    config.validate().map_err(|e| match e {
        GpuError::InvalidConfig(message) => message,
        other => other.to_string(),
    })?;
    Ok(config)
}

#[derive(Debug)]
struct SimState {
    allocated: u64,
    allocations: u64,
    reads: u64,
    lost: Option<String>,
    utilization: f64,
    temp_c: f64,
    updated_at: Duration,
}

/// One simulated NVIDIA GPU, at index 0.
///
/// Use it as a [`TelemetryBackend`] (its name is `"sim"`), and drive it
/// with [`SimulatedGpu::allocate`], [`SimulatedGpu::free`] and
/// [`SimulatedGpu::set_utilization`] as a model runtime would.
#[derive(Debug)]
pub struct SimulatedGpu {
    config: SimConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<SimState>,
}

impl SimulatedGpu {
    /// A simulated GPU running on the system clock.
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, system_clock())
    }

    /// A simulated GPU whose thermal model and hot spell follow `clock`.
    pub fn with_clock(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let state = SimState {
            allocated: 0,
            allocations: 0,
            reads: 0,
            lost: None,
            utilization: 0.0,
            temp_c: config.idle_temp_c,
            updated_at: clock.now(),
        };
        Self {
            config,
            clock,
            state: Mutex::new(state),
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Allocates `bytes` of video memory.
    ///
    /// Fails with [`GpuError::OutOfMemory`] when the memory is not free or
    /// the fault script says so, and with [`GpuError::DeviceLost`] once the
    /// device is lost. Every call counts as one allocation for the fault
    /// script, including failed ones.
    pub fn allocate(&self, bytes: u64) -> Result<(), GpuError> {
        let mut state = self.lock();
        state.allocations += 1;
        let n = state.allocations;
        if self.config.faults.lost_at == Some(n) && state.lost.is_none() {
            state.lost = Some(format!("simulated device loss at allocation {n}"));
        }
        if let Some(reason) = &state.lost {
            return Err(GpuError::DeviceLost {
                index: 0,
                reason: reason.clone(),
            });
        }
        let free = self.free_bytes(&state);
        let scripted = self.config.faults.oom_at.is_some_and(|r| r.contains(n));
        if scripted || bytes > free {
            tracing::debug!(n, bytes, free, scripted, "simulated allocation failed");
            return Err(GpuError::OutOfMemory {
                index: 0,
                requested: bytes,
                free,
            });
        }
        state.allocated += bytes;
        Ok(())
    }

    /// Returns `bytes` of earlier allocations; more than is allocated frees
    /// everything.
    pub fn free(&self, bytes: u64) {
        let mut state = self.lock();
        state.allocated = state.allocated.saturating_sub(bytes);
    }

    /// Bytes currently allocated through [`SimulatedGpu::allocate`].
    pub fn allocated(&self) -> u64 {
        self.lock().allocated
    }

    /// How many allocations have been attempted.
    pub fn allocation_count(&self) -> u64 {
        self.lock().allocations
    }

    /// Sets how busy the GPU is, in percent (capped at 100); temperature
    /// and power follow from now on.
    pub fn set_utilization(&self, pct: u32) {
        let now = self.clock.now();
        let mut state = self.lock();
        self.advance(&mut state, now);
        state.utilization = f64::from(pct.min(100)) / 100.0;
    }

    /// Loses the device now, as if it fell off the bus.
    pub fn lose(&self, reason: impl Into<String>) {
        self.lock().lost = Some(reason.into());
    }

    /// Whether the device has been lost.
    pub fn is_lost(&self) -> bool {
        self.lock().lost.is_some()
    }

    /// The exact modelled temperature now, in °C.
    pub fn temperature(&self) -> f64 {
        let now = self.clock.now();
        let mut state = self.lock();
        self.advance(&mut state, now);
        state.temp_c
    }

    fn free_bytes(&self, state: &SimState) -> u64 {
        self.config
            .vram
            .saturating_sub(self.config.used)
            .saturating_sub(state.allocated)
    }

    /// Runs the thermal model from the last update to `now`, splitting the
    /// interval at the hot spell's edges.
    fn advance(&self, state: &mut SimState, now: Duration) {
        let spell = self.config.faults.hot_spell;
        let target = self.config.idle_temp_c
            + (self.config.load_temp_c - self.config.idle_temp_c) * state.utilization;
        let tau = self.config.thermal_tau.as_secs_f64();
        let mut t = state.updated_at;
        while t < now {
            let (hot, end) = match spell {
                Some(s) if t < s.start => (false, now.min(s.start)),
                Some(s) if t < s.start + s.length => (true, now.min(s.start + s.length)),
                _ => (false, now),
            };
            let dt = (end - t).as_secs_f64();
            let keep = if tau > 0.0 { (-dt / tau).exp() } else { 0.0 };
            state.temp_c = target + (state.temp_c - target) * keep;
            if hot {
                if let Some(s) = spell {
                    state.temp_c = state.temp_c.max(s.celsius);
                }
            }
            t = end;
        }
        if let Some(s) = spell.filter(|s| s.contains(now)) {
            state.temp_c = state.temp_c.max(s.celsius);
        }
        state.updated_at = state.updated_at.max(now);
    }
}

impl TelemetryBackend for SimulatedGpu {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn driver_version(&self) -> Option<String> {
        Some("simulated".to_owned())
    }

    fn device_count(&self) -> u32 {
        1
    }

    fn compute_capability(&self, index: u32) -> Option<(u32, u32)> {
        (index == 0).then_some(self.config.compute_capability)
    }

    fn snapshot(&self, index: u32) -> Result<GpuSnapshot, GpuError> {
        if index != 0 {
            return Err(GpuError::NoSuchDevice {
                index: index as usize,
                count: 1,
            });
        }
        let now = self.clock.now();
        let mut state = self.lock();
        state.reads += 1;
        if let Some(reason) = &state.lost {
            return Err(GpuError::DeviceLost {
                index,
                reason: reason.clone(),
            });
        }
        if let Some(range) = self.config.faults.read_errors {
            if range.contains(state.reads) {
                return Err(GpuError::Nvml(format!(
                    "GPU {index}: simulated read error (reading {})",
                    state.reads
                )));
            }
        }
        self.advance(&mut state, now);
        let used = self.config.used + state.allocated;
        let power_w = self.config.idle_power_w
            + (self.config.load_power_w - self.config.idle_power_w) * state.utilization;
        let pct = (state.utilization * 100.0).round() as u32;
        Ok(GpuSnapshot {
            index,
            name: self.config.name.clone(),
            uuid: Some("GPU-sim-0".to_owned()),
            memory_total: Some(self.config.vram),
            memory_used: Some(used),
            memory_free: Some(self.config.vram.saturating_sub(used)),
            temperature_c: Some(state.temp_c.round().max(0.0) as u32),
            power_mw: Some((power_w * 1000.0).round() as u32),
            power_limit_mw: Some((self.config.power_limit_w * 1000.0).round() as u32),
            utilization_gpu_pct: Some(pct),
            utilization_mem_pct: Some(pct),
            process_memory: Some(state.allocated),
        })
    }

    fn unavailable_reason(&self) -> Option<String> {
        None
    }

    fn as_simulated(&self) -> Option<&SimulatedGpu> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn sim(options: &str) -> (SimulatedGpu, ManualClock) {
        let clock = ManualClock::new();
        let config: SimConfig = options.parse().unwrap();
        (
            SimulatedGpu::with_clock(config, Arc::new(clock.clone())),
            clock,
        )
    }

    fn invalid(options: &str) -> String {
        match options.parse::<SimConfig>() {
            Err(GpuError::InvalidConfig(message)) => message,
            other => panic!("{options:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_options_mean_defaults() {
        assert_eq!("".parse::<SimConfig>().unwrap(), SimConfig::default());
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_option_parses() {
        let config: SimConfig = "name=Test GPU,vram=8GiB,used=512MiB,temp=45C,temp_load=80,\
            tau=5s,power=20W,tdp=200,power_limit=180W,cc=8.9,oom_at=2..4,read_errors=3..,\
            lost_at=9,hot_at=30s,hot_for=10s,hot_temp=95"
            .parse()
            .unwrap();
        assert_eq!(config.name, "Test GPU");
        assert_eq!(config.vram, 8 * GIB);
        assert_eq!(config.used, 512 << 20);
        assert_eq!(config.idle_temp_c, 45.0);
        assert_eq!(config.load_temp_c, 80.0);
        assert_eq!(config.thermal_tau, Duration::from_secs(5));
        assert_eq!(config.idle_power_w, 20.0);
        assert_eq!(config.load_power_w, 200.0);
        assert_eq!(config.power_limit_w, 180.0);
        assert_eq!(config.compute_capability, (8, 9));
        assert_eq!(
            config.faults.oom_at,
            Some(CallRange {
                first: 2,
                last: Some(4)
            })
        );
        assert_eq!(
            config.faults.read_errors,
            Some(CallRange {
                first: 3,
                last: None
            })
        );
        assert_eq!(config.faults.lost_at, Some(9));
        assert_eq!(
            config.faults.hot_spell,
            Some(HotSpell {
                start: Duration::from_secs(30),
                length: Duration::from_secs(10),
                celsius: 95.0
            })
        );
    }

    #[test]
    fn parse_errors_are_specific() {
        let cases = [
            ("vram=16XB", "vram: unknown size unit \"XB\""),
            (
                "vrm=16GiB",
                "unknown option \"vrm\"; known options: name, vram",
            ),
            ("vram", "option \"vram\" has no value; write key=value"),
            ("vram=", "option vram has an empty value"),
            ("vram=8GiB,vram=4GiB", "option vram is given more than once"),
            ("vram=8GiB,,temp=3", "empty option"),
            ("oom_at=0", "oom_at=0: calls are numbered from 1"),
            (
                "oom_at=5..2",
                "oom_at=5..2: the range ends before it starts",
            ),
            ("oom_at=x", "oom_at=x: \"x\" is not a whole number"),
            (
                "lost_at=2..",
                "lost_at=2..: expected a single allocation number",
            ),
            (
                "used=16GiB",
                "used (16.00 GiB) must be less than vram (16.00 GiB)",
            ),
            ("vram=0", "vram must be more than 0"),
            (
                "temp=90,temp_load=80",
                "temp_load (80 °C) must not be below temp (90 °C)",
            ),
            (
                "power=100,tdp=50",
                "tdp (50 W) must not be below power (100 W)",
            ),
            ("hot_for=10s", "hot_for needs hot_at"),
            ("hot_temp=99", "hot_temp needs hot_at"),
            ("tau=3 days", "tau: unknown duration unit \"days\""),
            ("temp=45F", "temp: unexpected unit \"F\""),
            ("temp=400", "temp=400 is outside 0..150 °C"),
            (
                "cc=9",
                "cc: \"9\" is not a compute capability such as 9.0 or 8.9",
            ),
        ];
        for (options, expected) in cases {
            let message = invalid(options);
            assert!(
                message.contains(expected),
                "{options:?}: {message:?} lacks {expected:?}"
            );
        }
        let err = "vram=1TB,temp=x".parse::<SimConfig>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid GPU configuration: temp: "),
            "{err}"
        );
    }

    #[test]
    fn allocations_succeed_until_memory_runs_out() {
        let (gpu, _) = sim("vram=10GiB,used=1GiB");
        gpu.allocate(4 * GIB).unwrap();
        gpu.allocate(4 * GIB).unwrap();
        assert_eq!(
            gpu.allocate(2 * GIB),
            Err(GpuError::OutOfMemory {
                index: 0,
                requested: 2 * GIB,
                free: GIB
            })
        );
        gpu.allocate(GIB).unwrap();
        let snapshot = gpu.snapshot(0).unwrap();
        assert_eq!(snapshot.memory_used, Some(10 * GIB));
        assert_eq!(snapshot.memory_free, Some(0));
        assert_eq!(snapshot.process_memory, Some(9 * GIB));
        gpu.free(5 * GIB);
        assert_eq!(gpu.allocated(), 4 * GIB);
        assert_eq!(gpu.snapshot(0).unwrap().memory_free, Some(5 * GIB));
        assert_eq!(gpu.allocation_count(), 4);
    }

    #[test]
    fn scripted_oom_hits_exactly_the_listed_allocations() {
        let (gpu, _) = sim("oom_at=2..3");
        let results: Vec<bool> = (0..5).map(|_| gpu.allocate(1).is_ok()).collect();
        assert_eq!(results, vec![true, false, false, true, true]);
        assert_eq!(gpu.allocated(), 3);
    }

    #[test]
    fn device_loss_fails_everything_after_it() {
        let (gpu, _) = sim("lost_at=2");
        gpu.allocate(1).unwrap();
        assert!(matches!(gpu.allocate(1), Err(GpuError::DeviceLost { .. })));
        assert!(gpu.is_lost());
        assert!(matches!(gpu.allocate(1), Err(GpuError::DeviceLost { .. })));
        assert!(matches!(gpu.snapshot(0), Err(GpuError::DeviceLost { .. })));
        assert_eq!(gpu.device_count(), 1);
        assert!(gpu.snapshots().is_empty());
    }

    #[test]
    fn read_errors_fail_only_the_listed_readings() {
        let (gpu, _) = sim("read_errors=2");
        assert!(gpu.snapshot(0).is_ok());
        assert!(matches!(gpu.snapshot(0), Err(GpuError::Nvml(m)) if m.contains("reading 2")));
        assert!(gpu.snapshot(0).is_ok());
        assert_eq!(
            gpu.snapshot(1),
            Err(GpuError::NoSuchDevice { index: 1, count: 1 })
        );
    }

    #[test]
    fn temperature_and_power_follow_load_with_a_thermal_lag() {
        let (gpu, clock) = sim("temp=40,temp_load=80,tau=10s,power=30,tdp=230");
        let reading = || gpu.snapshot(0).unwrap();
        assert_eq!(reading().temperature_c, Some(40));
        assert_eq!(reading().power_mw, Some(30_000));
        gpu.set_utilization(100);
        assert_eq!(reading().power_mw, Some(230_000));
        assert_eq!(reading().utilization_gpu_pct, Some(100));
        clock.advance(Duration::from_secs(10));
        // One time constant covers 63.2 % of the 40 °C rise.
        assert!(
            (gpu.temperature() - 65.28).abs() < 0.01,
            "{}",
            gpu.temperature()
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(reading().temperature_c, Some(80));
        gpu.set_utilization(0);
        clock.advance(Duration::from_secs(100));
        assert_eq!(reading().temperature_c, Some(40));
    }

    #[test]
    fn the_thermal_model_does_not_depend_on_how_often_it_is_read() {
        let (often, often_clock) = sim("tau=7s");
        let (once, once_clock) = sim("tau=7s");
        often.set_utilization(60);
        once.set_utilization(60);
        for _ in 0..20 {
            often_clock.advance(Duration::from_millis(500));
            let _ = often.temperature();
        }
        once_clock.advance(Duration::from_secs(10));
        assert!((often.temperature() - once.temperature()).abs() < 1e-9);
    }

    #[test]
    fn a_hot_spell_heats_then_cools() {
        let (gpu, clock) = sim("temp=45,tau=5s,hot_at=10s,hot_for=20s,hot_temp=92");
        let temp = || gpu.snapshot(0).unwrap().temperature_c.unwrap();
        clock.set(Duration::from_secs(9));
        assert_eq!(temp(), 45);
        clock.set(Duration::from_secs(10));
        assert_eq!(temp(), 92);
        clock.set(Duration::from_secs(29));
        assert_eq!(temp(), 92);
        clock.set(Duration::from_secs(35));
        let cooling = temp();
        assert!(cooling > 45 && cooling < 92, "{cooling}");
        clock.set(Duration::from_secs(120));
        assert_eq!(temp(), 45);
    }
}
