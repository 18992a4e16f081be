//! Threshold lines for memory, temperature and power, and the monitor that
//! turns readings into [`GpuEvent`]s once per crossing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{GpuError, GpuEvent, GpuSnapshot};

/// Where warnings start and where they clear again.
///
/// Each line has a lower clear line: a warning raised at 85 % memory clears
/// only below 80 %, so a reading that hovers around a line does not flap.
/// Memory lines are fractions of installed memory; temperatures are °C;
/// power is over the limit when the draw exceeds the enforced limit, and
/// clears below `power_clear_fraction` of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Memory warning line (default 0.85).
    pub vram_warning: f64,
    /// The memory warning clears below this (default 0.80).
    pub vram_warning_clear: f64,
    /// Memory critical line (default 0.95).
    pub vram_critical: f64,
    /// The memory critical state clears below this (default 0.90).
    pub vram_critical_clear: f64,
    /// Temperature warning, °C (default 80).
    pub temp_warning_c: u32,
    /// The temperature warning clears below this, °C (default 75).
    pub temp_warning_clear_c: u32,
    /// Temperature limit, °C (default 87); background work pauses here.
    pub temp_limit_c: u32,
    /// The temperature limit clears below this, °C (default 82).
    pub temp_limit_clear_c: u32,
    /// Power over the limit clears below this fraction of the limit
    /// (default 0.95).
    pub power_clear_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            vram_warning: 0.85,
            vram_warning_clear: 0.80,
            vram_critical: 0.95,
            vram_critical_clear: 0.90,
            temp_warning_c: 80,
            temp_warning_clear_c: 75,
            temp_limit_c: 87,
            temp_limit_clear_c: 82,
            power_clear_fraction: 0.95,
        }
    }
}

impl Thresholds {
    /// Checks that every clear line lies below its line, warnings below
    /// their critical counterparts, and fractions within (0, 1].
    pub fn validate(&self) -> Result<(), GpuError> {
        let fail = |m: &str| Err(GpuError::InvalidConfig(format!("thresholds: {m}")));
        let fraction = |v: f64| v > 0.0 && v <= 1.0;
        if ![
            self.vram_warning,
            self.vram_warning_clear,
            self.vram_critical,
            self.vram_critical_clear,
            self.power_clear_fraction,
        ]
        .into_iter()
        .all(fraction)
        {
            return fail("memory lines and power_clear_fraction must be fractions in (0, 1]");
        }
        if self.vram_warning_clear >= self.vram_warning {
            return fail("vram_warning_clear must be below vram_warning");
        }
        if self.vram_critical_clear >= self.vram_critical {
            return fail("vram_critical_clear must be below vram_critical");
        }
        if self.vram_warning > self.vram_critical {
            return fail("vram_warning must not be above vram_critical");
        }
        if self.temp_warning_clear_c >= self.temp_warning_c {
            return fail("temp_warning_clear_c must be below temp_warning_c");
        }
        if self.temp_limit_clear_c >= self.temp_limit_c {
            return fail("temp_limit_clear_c must be below temp_limit_c");
        }
        if self.temp_warning_c > self.temp_limit_c {
            return fail("temp_warning_c must not be above temp_limit_c");
        }
        Ok(())
    }
}

/// One line with hysteresis: on at or above `on`, off below `off`.
fn latch(state: &mut bool, value: f64, on: f64, off: f64) -> Option<bool> {
    if !*state && value >= on {
        *state = true;
        Some(true)
    } else if *state && value < off {
        *state = false;
        Some(false)
    } else {
        None
    }
}

/// What the monitor remembers about one GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// Memory above the warning line.
    pub vram_warning: bool,
    /// Memory above the critical line.
    pub vram_critical: bool,
    /// Temperature at or above the warning.
    pub temp_warning: bool,
    /// Temperature at or above the limit.
    pub temp_limit: bool,
    /// Power above the enforced limit.
    pub power_over: bool,
    /// Readings are failing.
    pub telemetry_failing: bool,
    /// The device was lost.
    pub lost: bool,
}

/// Turns a stream of readings into threshold events, each crossing once.
#[derive(Debug, Clone, Default)]
pub struct ThresholdMonitor {
    thresholds: Thresholds,
    devices: BTreeMap<u32, AlertState>,
}

impl ThresholdMonitor {
    /// A monitor with the given lines.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            devices: BTreeMap::new(),
        }
    }

    /// The lines in use.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The current alert state of GPU `index` (all clear when never seen).
    pub fn state(&self, index: u32) -> AlertState {
        self.devices.get(&index).copied().unwrap_or_default()
    }

    /// Takes one reading and returns the crossings it causes, rises in
    /// order warning then critical, falls critical then warning.
    pub fn observe(&mut self, snapshot: &GpuSnapshot) -> Vec<GpuEvent> {
        let t = self.thresholds;
        let index = snapshot.index;
        let state = self.devices.entry(index).or_default();
        let mut events = Vec::new();
        if state.telemetry_failing || state.lost {
            state.telemetry_failing = false;
            state.lost = false;
            events.push(GpuEvent::TelemetryRestored { index });
        }

        if let (Some(used), Some(total), Some(fraction)) = (
            snapshot.memory_used,
            snapshot.memory_total,
            snapshot.memory_used_fraction(),
        ) {
            let warning = latch(
                &mut state.vram_warning,
                fraction,
                t.vram_warning,
                t.vram_warning_clear,
            );
            let critical = latch(
                &mut state.vram_critical,
                fraction,
                t.vram_critical,
                t.vram_critical_clear,
            );
            if warning == Some(true) {
                events.push(GpuEvent::VramWarning { index, used, total });
            }
            match critical {
                Some(true) => events.push(GpuEvent::VramCritical { index, used, total }),
                Some(false) => events.push(GpuEvent::VramCriticalCleared { index, used, total }),
                None => {}
            }
            if warning == Some(false) {
                events.push(GpuEvent::VramWarningCleared { index, used, total });
            }
        }

        if let Some(celsius) = snapshot.temperature_c {
            let value = f64::from(celsius);
            let warning = latch(
                &mut state.temp_warning,
                value,
                f64::from(t.temp_warning_c),
                f64::from(t.temp_warning_clear_c),
            );
            let limit = latch(
                &mut state.temp_limit,
                value,
                f64::from(t.temp_limit_c),
                f64::from(t.temp_limit_clear_c),
            );
            if warning == Some(true) {
                events.push(GpuEvent::TemperatureWarning { index, celsius });
            }
            match limit {
                Some(true) => events.push(GpuEvent::TemperatureLimit { index, celsius }),
                Some(false) => events.push(GpuEvent::TemperatureLimitCleared { index, celsius }),
                None => {}
            }
            if warning == Some(false) {
                events.push(GpuEvent::TemperatureWarningCleared { index, celsius });
            }
        }

        if let (Some(power_mw), Some(limit_mw)) = (snapshot.power_mw, snapshot.power_limit_mw) {
            let limit = f64::from(limit_mw);
            // Strictly above the limit: add the smallest step so `>=` in
            // `latch` means `>`.
            match latch(
                &mut state.power_over,
                f64::from(power_mw),
                limit + 0.5,
                limit * t.power_clear_fraction,
            ) {
                Some(true) => events.push(GpuEvent::PowerOverLimit {
                    index,
                    power_mw,
                    limit_mw,
                }),
                Some(false) => events.push(GpuEvent::PowerCleared {
                    index,
                    power_mw,
                    limit_mw,
                }),
                None => {}
            }
        }
        events
    }

    /// Takes a failed reading of GPU `index`: the first failure of a run
    /// becomes [`GpuEvent::TelemetryFailed`], a lost device
    /// [`GpuEvent::DeviceLost`] once.
    pub fn observe_error(&mut self, index: u32, error: &GpuError) -> Vec<GpuEvent> {
        let state = self.devices.entry(index).or_default();
        match error {
            GpuError::DeviceLost { reason, .. } if !state.lost => {
                state.lost = true;
                vec![GpuEvent::DeviceLost {
                    index,
                    reason: reason.clone(),
                }]
            }
            GpuError::DeviceLost { .. } => Vec::new(),
            other if !state.telemetry_failing && !state.lost => {
                state.telemetry_failing = true;
                vec![GpuEvent::TelemetryFailed {
                    index,
                    message: other.to_string(),
                }]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(used_pct: u64, celsius: u32, power_w: u32) -> GpuSnapshot {
        GpuSnapshot {
            memory_total: Some(1000),
            memory_used: Some(used_pct * 10),
            temperature_c: Some(celsius),
            power_mw: Some(power_w * 1000),
            power_limit_mw: Some(200_000),
            ..GpuSnapshot::new(0, "t")
        }
    }

    fn kinds(events: &[GpuEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_bad_lines_are_rejected() {
        assert_eq!(Thresholds::default().validate(), Ok(()));
        let bad = Thresholds {
            vram_warning_clear: 0.9,
            ..Thresholds::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("vram_warning_clear must be below vram_warning"),
            "{err}"
        );
        let bad = Thresholds {
            temp_limit_c: 70,
            temp_limit_clear_c: 60,
            ..Thresholds::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn memory_crossings_fire_once_and_do_not_flap() {
        let mut monitor = ThresholdMonitor::default();
        let mut all = Vec::new();
        for pct in [50, 86, 84, 86, 82, 96, 92, 96, 89, 85, 79, 84, 50] {
            all.push(kinds(&monitor.observe(&reading(pct, 40, 100))));
        }
        let expected: Vec<Vec<&str>> = vec![
            vec![],
            vec!["vram_warning"],
            vec![],
            vec![],
            vec![],
            vec!["vram_critical"],
            vec![],
            vec![],
            vec!["vram_critical_cleared"],
            vec![],
            vec!["vram_warning_cleared"],
            vec![],
            vec![],
        ];
        assert_eq!(all, expected);
    }

    #[test]
    fn a_jump_past_both_lines_reports_both_in_order() {
        let mut monitor = ThresholdMonitor::default();
        assert_eq!(
            kinds(&monitor.observe(&reading(97, 90, 250))),
            vec![
                "vram_warning",
                "vram_critical",
                "temperature_warning",
                "temperature_limit",
                "power_over_limit"
            ]
        );
        assert_eq!(
            kinds(&monitor.observe(&reading(10, 30, 100))),
            vec![
                "vram_critical_cleared",
                "vram_warning_cleared",
                "temperature_limit_cleared",
                "temperature_warning_cleared",
                "power_cleared"
            ]
        );
    }

    #[test]
    fn power_exactly_at_the_limit_is_not_over_it() {
        let mut monitor = ThresholdMonitor::default();
        assert!(monitor.observe(&reading(0, 40, 200)).is_empty());
        assert_eq!(
            kinds(&monitor.observe(&reading(0, 40, 201))),
            vec!["power_over_limit"]
        );
        // 195 W is within the 5 % band below the 200 W limit.
        assert!(monitor.observe(&reading(0, 40, 195)).is_empty());
        assert_eq!(
            kinds(&monitor.observe(&reading(0, 40, 189))),
            vec!["power_cleared"]
        );
    }

    #[test]
    fn errors_are_reported_once_per_run_and_recovery_is_reported() {
        let mut monitor = ThresholdMonitor::default();
        let nvml = GpuError::Nvml("boom".into());
        assert_eq!(
            kinds(&monitor.observe_error(0, &nvml)),
            vec!["telemetry_failed"]
        );
        assert!(monitor.observe_error(0, &nvml).is_empty());
        assert_eq!(
            kinds(&monitor.observe(&reading(1, 40, 10))),
            vec!["telemetry_restored"]
        );
        let lost = GpuError::DeviceLost {
            index: 0,
            reason: "gone".into(),
        };
        assert_eq!(kinds(&monitor.observe_error(0, &lost)), vec!["device_lost"]);
        assert!(monitor.observe_error(0, &lost).is_empty());
        assert!(monitor.observe_error(0, &nvml).is_empty());
        assert!(monitor.state(0).lost);
    }
}
