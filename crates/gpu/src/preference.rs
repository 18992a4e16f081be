//! What the user asked for ([`DevicePreference`]) and what was chosen
//! ([`DeviceKind`]), with their text forms.

use std::env::VarError;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::GpuError;

/// Environment variable that overrides the configured device preference.
pub const DEVICE_ENV_VAR: &str = "LECTERN_DEVICE";

/// The compute device the user asked for.
///
/// Text form (used by [`FromStr`], [`fmt::Display`] and serde): `auto`,
/// `cuda` (the same as `cuda:0`), `cuda:N`, `metal` or `cpu`. Parsing
/// ignores surrounding whitespace and letter case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DevicePreference {
    /// Pick the best available device: CUDA, then Metal, then the CPU.
    #[default]
    Auto,
    /// The NVIDIA GPU with this index.
    Cuda(usize),
    /// The Apple GPU through Metal.
    Metal,
    /// The CPU.
    Cpu,
}

impl DevicePreference {
    /// Reads the preference from the `LECTERN_DEVICE` environment variable.
    ///
    /// An unset or blank variable means [`DevicePreference::Auto`]; a value
    /// that does not parse is an error, so a typo is reported instead of
    /// being ignored.
    pub fn from_env() -> Result<Self, GpuError> {
        Self::from_env_value(std::env::var(DEVICE_ENV_VAR))
    }

    fn from_env_value(value: Result<String, VarError>) -> Result<Self, GpuError> {
        match value {
            Err(VarError::NotPresent) => Ok(Self::Auto),
            Err(VarError::NotUnicode(raw)) => Err(GpuError::InvalidPreference {
                input: raw.to_string_lossy().into_owned(),
            }),
            Ok(text) if text.trim().is_empty() => Ok(Self::Auto),
            Ok(text) => {
                let pref = text.parse()?;
                tracing::debug!(preference = %pref, "device preference from {DEVICE_ENV_VAR}");
                Ok(pref)
            }
        }
    }
}

impl FromStr for DevicePreference {
    type Err = GpuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || GpuError::InvalidPreference {
            input: s.to_owned(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "metal" => Ok(Self::Metal),
            "cpu" => Ok(Self::Cpu),
            other => parse_cuda(other).map(Self::Cuda).ok_or_else(invalid),
        }
    }
}

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
            Self::Metal => f.write_str("metal"),
            Self::Cpu => f.write_str("cpu"),
        }
    }
}

impl From<DevicePreference> for String {
    fn from(pref: DevicePreference) -> Self {
        pref.to_string()
    }
}

impl TryFrom<String> for DevicePreference {
    type Error = GpuError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// The device Lectern actually runs on.
///
/// Text form: `cuda:N`, `metal` or `cpu`; parsing also accepts `cuda` for
/// `cuda:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceKind {
    /// The NVIDIA GPU with this index.
    Cuda(usize),
    /// The Apple GPU through Metal.
    Metal,
    /// The CPU.
    Cpu,
}

impl DeviceKind {
    /// Whether this is a GPU rather than the CPU.
    pub fn is_gpu(self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

impl FromStr for DeviceKind {
    type Err = GpuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<DevicePreference>()? {
            DevicePreference::Cuda(index) => Ok(Self::Cuda(index)),
            DevicePreference::Metal => Ok(Self::Metal),
            DevicePreference::Cpu => Ok(Self::Cpu),
            DevicePreference::Auto => Err(GpuError::InvalidPreference {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cuda(index) => write!(f, "cuda:{index}"),
            Self::Metal => f.write_str("metal"),
            Self::Cpu => f.write_str("cpu"),
        }
    }
}

impl From<DeviceKind> for String {
    fn from(kind: DeviceKind) -> Self {
        kind.to_string()
    }
}

impl TryFrom<String> for DeviceKind {
    type Error = GpuError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DeviceKind> for DevicePreference {
    fn from(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Cuda(index) => Self::Cuda(index),
            DeviceKind::Metal => Self::Metal,
            DeviceKind::Cpu => Self::Cpu,
        }
    }
}

/// Parses `cuda` or `cuda:N` (already lower-cased) into a GPU index.
fn parse_cuda(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("cuda")?;
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn preference_parses_every_valid_form() {
        let cases = [
            ("auto", DevicePreference::Auto),
            ("cuda", DevicePreference::Cuda(0)),
            ("cuda:0", DevicePreference::Cuda(0)),
            ("cuda:3", DevicePreference::Cuda(3)),
            ("cuda:12", DevicePreference::Cuda(12)),
            ("metal", DevicePreference::Metal),
            ("cpu", DevicePreference::Cpu),
            ("  CUDA:1 ", DevicePreference::Cuda(1)),
            ("Metal", DevicePreference::Metal),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<DevicePreference>(), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn preference_display_round_trips() {
        for pref in [
            DevicePreference::Auto,
            DevicePreference::Cuda(0),
            DevicePreference::Cuda(7),
            DevicePreference::Metal,
            DevicePreference::Cpu,
        ] {
            let text = pref.to_string();
            assert_eq!(text.parse::<DevicePreference>(), Ok(pref), "{text}");
        }
        assert_eq!(DevicePreference::Cuda(0).to_string(), "cuda:0");
        assert_eq!(DevicePreference::Auto.to_string(), "auto");
    }

    #[test]
    fn preference_rejects_invalid_strings_with_helpful_message() {
        for bad in [
            "", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "cuda1", "cuda:1:2", "cpu0",
            "vulkan",
        ] {
            let err = bad.parse::<DevicePreference>().unwrap_err();
            assert_eq!(
                err,
                GpuError::InvalidPreference {
                    input: bad.to_owned()
                }
            );
            let message = err.to_string();
            for form in ["auto", "cuda:N", "metal", "cpu"] {
                assert!(message.contains(form), "{message}");
            }
        }
    }

    #[test]
    fn preference_and_kind_serialise_as_their_text_form() {
        assert_eq!(
            serde_json::to_string(&DevicePreference::Cuda(2)).unwrap(),
            "\"cuda:2\""
        );
        assert_eq!(
            serde_json::to_string(&DevicePreference::Auto).unwrap(),
            "\"auto\""
        );
        assert_eq!(
            serde_json::to_string(&DeviceKind::Metal).unwrap(),
            "\"metal\""
        );
        let pref: DevicePreference = serde_json::from_str("\"cuda\"").unwrap();
        assert_eq!(pref, DevicePreference::Cuda(0));
        let kind: DeviceKind = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(kind, DeviceKind::Cuda(1));
        let err = serde_json::from_str::<DevicePreference>("\"gpu\"").unwrap_err();
        assert!(err.to_string().contains("cuda:N"), "{err}");
        assert!(serde_json::from_str::<DeviceKind>("\"auto\"").is_err());
    }

    #[test]
    fn device_kind_display_and_parse() {
        assert_eq!(DeviceKind::Cuda(0).to_string(), "cuda:0");
        assert_eq!(DeviceKind::Metal.to_string(), "metal");
        assert_eq!(DeviceKind::Cpu.to_string(), "cpu");
        for kind in [
            DeviceKind::Cuda(0),
            DeviceKind::Cuda(4),
            DeviceKind::Metal,
            DeviceKind::Cpu,
        ] {
            assert_eq!(kind.to_string().parse::<DeviceKind>(), Ok(kind));
        }
        assert_eq!("cuda".parse::<DeviceKind>(), Ok(DeviceKind::Cuda(0)));
        assert!("auto".parse::<DeviceKind>().is_err());
        assert!(!DeviceKind::Cpu.is_gpu());
        assert!(DeviceKind::Metal.is_gpu());
    }

    #[test]
    fn env_value_unset_or_blank_means_auto() {
        assert_eq!(
            DevicePreference::from_env_value(Err(VarError::NotPresent)),
            Ok(DevicePreference::Auto)
        );
        assert_eq!(
            DevicePreference::from_env_value(Ok("  ".to_owned())),
            Ok(DevicePreference::Auto)
        );
    }

    #[test]
    fn env_value_parses_or_errors() {
        assert_eq!(
            DevicePreference::from_env_value(Ok("cuda:1".to_owned())),
            Ok(DevicePreference::Cuda(1))
        );
        assert!(matches!(
            DevicePreference::from_env_value(Ok("gpu".to_owned())),
            Err(GpuError::InvalidPreference { .. })
        ));
        assert!(matches!(
            DevicePreference::from_env_value(Err(VarError::NotUnicode(OsString::from("x")))),
            Err(GpuError::InvalidPreference { .. })
        ));
    }
}
