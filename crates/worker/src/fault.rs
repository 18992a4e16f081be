//! Faults injected through `LECTERN_WORKER_FAULT` (see the crate docs).
//!
//! Besides the embedding and start-up faults, three act on the language
//! model:
//!
//! * `crash-at-token:N` — abort (SIGABRT) when a generation has produced
//!   its Nth piece of text, before sending it;
//! * `hang-at-token:N` — stop answering at that point (the generation
//!   never sends its Nth piece, nor anything after it);
//! * `oom-at-llm-load` — answer every `load_llm` request with an
//!   `out_of_memory` error frame.
//!
//! Pieces are counted from 1 in each generation.

use std::collections::BTreeSet;

use lectern_worker_protocol::FAULT_ENV_VAR;

/// What to do wrong, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    /// Embedding requests (1-based) at which to abort.
    pub crash_at: BTreeSet<u64>,
    /// Embedding requests at which to stop answering.
    pub hang_at: BTreeSet<u64>,
    /// Embedding requests answered with an out-of-memory error.
    pub oom_at: BTreeSet<u64>,
    /// Announce a protocol version nobody speaks.
    pub bad_hello: bool,
    /// Never send the hello.
    pub hang_at_start: bool,
    /// Exit before the hello.
    pub exit_at_start: bool,
    /// Generated pieces (1-based, in each generation) at which to abort.
    pub crash_at_token: BTreeSet<u64>,
    /// Generated pieces at which to stop answering.
    pub hang_at_token: BTreeSet<u64>,
    /// Answer language model loads with an out-of-memory error.
    pub oom_at_llm_load: bool,
}

/// What a generated piece should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFault {
    Crash,
    Hang,
}

/// What an embedding request should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchFault {
    Crash,
    Hang,
    OutOfMemory,
}

impl Faults {
    /// The faults in [`FAULT_ENV_VAR`]; none when it is unset or empty.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(FAULT_ENV_VAR) {
            Ok(text) => text.parse(),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(raw)) => {
                Err(format!("not valid text: {}", raw.to_string_lossy()))
            }
        }
    }

    /// The fault for the `n`th embedding request, if any.
    pub fn at_batch(&self, n: u64) -> Option<BatchFault> {
        if self.crash_at.contains(&n) {
            Some(BatchFault::Crash)
        } else if self.hang_at.contains(&n) {
            Some(BatchFault::Hang)
        } else if self.oom_at.contains(&n) {
            Some(BatchFault::OutOfMemory)
        } else {
            None
        }
    }
}

impl Faults {
    /// The fault for a generation's `n`th piece, if any.
    pub fn at_token(&self, n: u64) -> Option<TokenFault> {
        if self.crash_at_token.contains(&n) {
            Some(TokenFault::Crash)
        } else if self.hang_at_token.contains(&n) {
            Some(TokenFault::Hang)
        } else {
            None
        }
    }
}

impl std::str::FromStr for Faults {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut faults = Self::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, arg) = match item.split_once(':') {
                Some((name, arg)) => (name.trim(), Some(arg.trim())),
                None => (item, None),
            };
            let batch = || -> Result<u64, String> {
                let arg = arg.ok_or_else(|| format!("{name} needs a number, e.g. {name}:3"))?;
                arg.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: numbers start at 1, not {arg:?}"))
            };
            let flag = |set: &mut bool| -> Result<(), String> {
                if arg.is_some() {
                    return Err(format!("{name} takes no argument"));
                }
                *set = true;
                Ok(())
            };
            match name {
                "crash-at-batch" => {
                    faults.crash_at.insert(batch()?);
                }
                "hang-at-batch" => {
                    faults.hang_at.insert(batch()?);
                }
                "oom-at-batch" => {
                    faults.oom_at.insert(batch()?);
                }
                "crash-at-token" => {
                    faults.crash_at_token.insert(batch()?);
                }
                "hang-at-token" => {
                    faults.hang_at_token.insert(batch()?);
                }
                "oom-at-llm-load" => flag(&mut faults.oom_at_llm_load)?,
                "bad-hello" => flag(&mut faults.bad_hello)?,
                "hang-at-start" => flag(&mut faults.hang_at_start)?,
                "exit-at-start" => flag(&mut faults.exit_at_start)?,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}: expected crash-at-batch:N, hang-at-batch:N, \
                         oom-at-batch:N, crash-at-token:N, hang-at-token:N, oom-at-llm-load, \
                         bad-hello, hang-at-start or exit-at-start"
                    ))
                }
            }
        }
        Ok(faults)
    }
}

/// Never returns, like a kernel that never finishes.
pub(crate) fn hang() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_bad_ones_say_why() {
        let faults: Faults = "crash-at-batch:3, oom-at-batch:1,oom-at-batch:2,bad-hello"
            .parse()
            .unwrap();
        assert_eq!(faults.at_batch(3), Some(BatchFault::Crash));
        assert_eq!(faults.at_batch(1), Some(BatchFault::OutOfMemory));
        assert_eq!(faults.at_batch(2), Some(BatchFault::OutOfMemory));
        assert_eq!(faults.at_batch(4), None);
        assert!(faults.bad_hello && !faults.hang_at_start);
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());

        let err = "hang-at-batch:0".parse::<Faults>().unwrap_err();
        assert!(err.contains("start at 1"), "{err}");
        let err = "crash-at-batch".parse::<Faults>().unwrap_err();
        assert!(err.contains("needs a number"), "{err}");
        let err = "explode".parse::<Faults>().unwrap_err();
        assert!(err.contains("unknown fault \"explode\""), "{err}");
        assert!("bad-hello:2".parse::<Faults>().is_err());
    }

    #[test]
    fn language_model_faults_parse() {
        let faults: Faults = "crash-at-token:5,hang-at-token:2,oom-at-llm-load"
            .parse()
            .unwrap();
        assert_eq!(faults.at_token(5), Some(TokenFault::Crash));
        assert_eq!(faults.at_token(2), Some(TokenFault::Hang));
        assert_eq!(faults.at_token(1), None);
        assert_eq!(faults.at_batch(5), None);
        assert!(faults.oom_at_llm_load);
        let err = "hang-at-token:x".parse::<Faults>().unwrap_err();
        assert!(err.contains("start at 1"), "{err}");
        assert!("oom-at-llm-load:1".parse::<Faults>().is_err());
    }
}
