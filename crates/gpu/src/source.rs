//! Choosing the telemetry backend: the real driver, none, or the
//! simulator, from the `LECTERN_GPU` environment variable.

use std::env::VarError;
use std::fmt;
use std::str::FromStr;

use crate::nvml::probe_nvml;
use crate::{GpuError, NoGpu, SimConfig, SimulatedGpu, TelemetryBackend};

/// Environment variable that chooses the telemetry backend.
pub const GPU_ENV_VAR: &str = "LECTERN_GPU";

/// Where GPU readings come from.
///
/// Text form, as `LECTERN_GPU` takes it (case-insensitive keyword):
///
/// * unset, empty or `auto`: the NVIDIA driver through NVML when it
///   answers, otherwise no GPU;
/// * `none`: no GPU telemetry at all;
/// * `sim` or `sim:OPTIONS`: a [`SimulatedGpu`], where `OPTIONS` is the
///   comma-separated `key=value` list documented in [`SimConfig`]'s
///   module, e.g. `sim:vram=16GiB,temp=45,oom_at=3`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TelemetrySource {
    /// The NVIDIA driver if present, otherwise no GPU.
    #[default]
    Auto,
    /// No GPU telemetry.
    Disabled,
    /// A simulated GPU.
    Simulated(Box<SimConfig>),
}

impl TelemetrySource {
    /// Reads `LECTERN_GPU`; unset or blank means [`TelemetrySource::Auto`].
    pub fn from_env() -> Result<Self, GpuError> {
        Self::from_env_value(std::env::var(GPU_ENV_VAR))
    }

    fn from_env_value(value: Result<String, VarError>) -> Result<Self, GpuError> {
        match value {
            Err(VarError::NotPresent) => Ok(Self::Auto),
            Err(VarError::NotUnicode(_)) => Err(GpuError::InvalidConfig(format!(
                "{GPU_ENV_VAR} is not valid UTF-8"
            ))),
            Ok(text) => text.parse().map_err(|e: GpuError| {
                GpuError::InvalidConfig(format!("{GPU_ENV_VAR}: {}", bare(e)))
            }),
        }
    }

    /// Opens the backend. Never fails: [`TelemetrySource::Auto`] falls
    /// back to [`NoGpu`] when the driver is missing.
    pub fn open(&self) -> Box<dyn TelemetryBackend> {
        match self {
            Self::Auto => probe_nvml(),
            Self::Disabled => Box::new(NoGpu::new(format!(
                "GPU telemetry disabled by {GPU_ENV_VAR}=none"
            ))),
            Self::Simulated(config) => {
                tracing::info!(vram = config.vram, name = %config.name, "simulated GPU");
                Box::new(SimulatedGpu::new(SimConfig::clone(config)))
            }
        }
    }
}

/// The message of an [`GpuError::InvalidConfig`] without its prefix.
fn bare(error: GpuError) -> String {
    match error {
        GpuError::InvalidConfig(message) => message,
        other => other.to_string(),
    }
}

impl FromStr for TelemetrySource {
    type Err = GpuError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (head, options) = match trimmed.split_once(':') {
            Some((head, options)) => (head, Some(options)),
            None => (trimmed, None),
        };
        match (head.trim().to_ascii_lowercase().as_str(), options) {
            ("" | "auto", None) => Ok(Self::Auto),
            ("none", None) => Ok(Self::Disabled),
            ("sim", options) => Ok(Self::Simulated(Box::new(options.unwrap_or("").parse()?))),
            (head @ ("auto" | "none"), Some(_)) => Err(GpuError::InvalidConfig(format!(
                "{head} takes no options (only sim:OPTIONS does)"
            ))),
            _ => Err(GpuError::InvalidConfig(format!(
                "unknown telemetry source {trimmed:?}; expected auto, none, sim or sim:OPTIONS \
                 (e.g. sim:vram=16GiB,temp=45)"
            ))),
        }
    }
}

impl fmt::Display for TelemetrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Disabled => f.write_str("none"),
            Self::Simulated(config) => write!(f, "sim ({})", config.name),
        }
    }
}

/// The telemetry backend chosen by `LECTERN_GPU`, or an error that names
/// the bad option when the variable does not parse.
pub fn telemetry_from_env() -> Result<Box<dyn TelemetryBackend>, GpuError> {
    Ok(TelemetrySource::from_env()?.open())
}

/// Finds the telemetry backend to use. Never fails.
///
/// Honours `LECTERN_GPU` (see [`TelemetrySource`]): by default it returns
/// an [`NvmlBackend`](crate::NvmlBackend) when the NVIDIA driver answers,
/// otherwise a [`NoGpu`] whose reason says what is missing. When
/// `LECTERN_GPU` does not parse, the result is a [`NoGpu`] whose reason is
/// the parse error, so `lectern gpu status` shows it.
pub fn probe_telemetry() -> Box<dyn TelemetryBackend> {
    match TelemetrySource::from_env() {
        Ok(source) => source.open(),
        Err(error) => {
            tracing::warn!(%error, "ignoring GPU telemetry");
            Box::new(NoGpu::new(format!(
                "{error}; GPU telemetry is off until it is corrected"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn keywords_parse() {
        for (text, expected) in [
            ("", TelemetrySource::Auto),
            ("auto", TelemetrySource::Auto),
            (" AUTO ", TelemetrySource::Auto),
            ("none", TelemetrySource::Disabled),
            ("sim", TelemetrySource::Simulated(Box::default())),
            ("sim:", TelemetrySource::Simulated(Box::default())),
        ] {
            assert_eq!(text.parse::<TelemetrySource>(), Ok(expected), "{text:?}");
        }
        let TelemetrySource::Simulated(config) = "Sim:vram=8GiB,temp=45".parse().unwrap() else {
            panic!("expected a simulator");
        };
        assert_eq!(config.vram, 8 << 30);
        assert_eq!(config.idle_temp_c, 45.0);
    }

    #[test]
    fn bad_sources_are_specific() {
        let message = |text: &str| text.parse::<TelemetrySource>().unwrap_err().to_string();
        assert!(message("nvidia").contains("unknown telemetry source \"nvidia\""));
        assert!(message("none:x=1").contains("none takes no options"));
        assert!(message("sim:vram=huge").contains("vram: expected a number, found \"huge\""));
    }

    #[test]
    fn env_values() {
        assert_eq!(
            TelemetrySource::from_env_value(Err(VarError::NotPresent)),
            Ok(TelemetrySource::Auto)
        );
        let err = TelemetrySource::from_env_value(Ok("sim:oom_at=zero".to_owned())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid GPU configuration: LECTERN_GPU: oom_at=zero: \"zero\" is not a whole number \
             (expected N, N..M or N..)"
        );
        let err = TelemetrySource::from_env_value(Err(VarError::NotUnicode(OsString::from("x"))))
            .unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn opened_sources_report_their_backend() {
        let sim = TelemetrySource::Simulated(Box::new("vram=4GiB".parse().unwrap())).open();
        assert_eq!(sim.name(), "sim");
        assert_eq!(sim.device_count(), 1);
        assert_eq!(sim.snapshot(0).unwrap().memory_total, Some(4 << 30));
        assert!(sim.as_simulated().is_some());
        let none = TelemetrySource::Disabled.open();
        assert_eq!(none.device_count(), 0);
        assert!(none
            .unavailable_reason()
            .unwrap()
            .contains("LECTERN_GPU=none"));
        assert!(none.as_simulated().is_none());
    }
}
