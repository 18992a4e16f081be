//! The model worker's supervisor: starts `lectern-worker`, speaks its
//! framed protocol over the child's stdin/stdout, and turns every way the
//! process can fail into a [`WorkerError`].
//!
//! * [`WorkerProcess`] is one running worker: spawned with piped stdin and
//!   stdout, its stderr forwarded line by line to this process's log (the
//!   last lines are kept for error messages), the [`Hello`] awaited within
//!   [`WorkerConfig::handshake_timeout`] and its protocol version checked.
//!   Each request waits at most its timeout for the answer. A worker that
//!   dies mid-request (end of its stdout, a broken pipe) or does not answer
//!   in time is killed and reaped before the error is returned, so no
//!   process or zombie is left behind; so is a worker that is dropped.
//! * [`WorkerSupervisor`] keeps at most one worker, starts it on first use,
//!   loads the embedder into it, and replaces it after a crash or hang for
//!   the next request. A worker that fails to start, or is lost twice in a
//!   row, is not started again for [`WorkerConfig::restart_backoff`].
//!
//! * Language model answers go through the same worker:
//!   [`WorkerSupervisor::generate`] loads the model when the worker does
//!   not hold it ([`LlmSpec`]), and [`WorkerProcess::generate`] relays
//!   each streamed piece as it arrives, turns the caller's cancel flag
//!   into a cancel request, and counts a worker silent for longer than the
//!   request timeout between two frames as hung.
//!
//! The calls block: they are made from the engine's blocking threads
//! (embedding runs in `spawn_blocking`), never on the async runtime. A
//! reader thread per worker turns its stdout into frames on a channel, so
//! a wait can time out.
//!
//! Whether the worker is used is decided by [`crate::worker_policy`]
//! ([`WORKER_ENV_VAR`], [`crate::EngineConfig::worker`]).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lectern_gpu::{DeviceKind, DevicePreference};
use lectern_worker_protocol::{
    decode_vectors, read_frame, write_frame, Frame, FrameError, Request, Response,
};
pub use lectern_worker_protocol::{
    EmbedKind, ErrorKind, FinishReason, Generation, Hello, PromptMessage, FAULT_ENV_VAR,
    PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

/// Environment variable that chooses the model worker: the path of the
/// `lectern-worker` binary (used for every run), `off`, or `auto` (the
/// default; `auto:<path>` names the binary): the worker only where it
/// helps, see [`crate::worker_policy`].
pub const WORKER_ENV_VAR: &str = "LECTERN_WORKER";

/// Environment variable that sets how long one embedding request may take
/// in the worker before it counts as hung, e.g. `30s` (default 120 s).
pub const WORKER_TIMEOUT_ENV_VAR: &str = "LECTERN_WORKER_TIMEOUT";

/// The worker binary's file name on this platform.
pub const WORKER_BINARY: &str = if cfg!(windows) {
    "lectern-worker.exe"
} else {
    "lectern-worker"
};

/// Workers lost in a row before restarting waits for the back-off.
const LOSSES_BEFORE_BACKOFF: u32 = 2;

/// Lines of the worker's stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// How often a generation in the worker checks the caller's cancel flag
/// while it waits for the next token.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// How the engine starts and watches the model worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The `lectern-worker` binary.
    pub program: PathBuf,
    /// How long the worker may take to announce itself after starting.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Duration,
    /// How long loading a model may take.
    #[serde(default = "default_load_timeout")]
    pub load_timeout: Duration,
    /// How long one embedding request may take.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// After a failed start, how long before starting it is tried again.
    #[serde(default = "default_restart_backoff")]
    pub restart_backoff: Duration,
    /// Extra environment for the worker process (for example
    /// `CUDA_VISIBLE_DEVICES` or `LECTERN_LOG`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_load_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_restart_backoff() -> Duration {
    Duration::from_secs(30)
}

impl WorkerConfig {
    /// The worker at `program`, with the default timeouts.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            handshake_timeout: default_handshake_timeout(),
            load_timeout: default_load_timeout(),
            request_timeout: default_request_timeout(),
            restart_backoff: default_restart_backoff(),
            env: BTreeMap::new(),
        }
    }

    /// The worker binary next to the running executable.
    pub fn beside_current_exe() -> Result<Self, WorkerError> {
        let exe = std::env::current_exe().map_err(|e| WorkerError::Spawn {
            program: PathBuf::from(WORKER_BINARY),
            message: format!("cannot locate the running executable: {e}"),
        })?;
        let dir = exe.parent().unwrap_or_else(|| Path::new("."));
        Ok(Self::new(dir.join(WORKER_BINARY)))
    }

    /// The configuration [`WORKER_ENV_VAR`] and [`WORKER_TIMEOUT_ENV_VAR`]
    /// ask for; `None` when the worker is not turned on.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_values(
            std::env::var(WORKER_ENV_VAR).ok().as_deref(),
            std::env::var(WORKER_TIMEOUT_ENV_VAR).ok().as_deref(),
        )
    }

    /// The configuration for a [`WORKER_ENV_VAR`] value of `program` and
    /// a [`WORKER_TIMEOUT_ENV_VAR`] value of `timeout`.
    pub(crate) fn from_values(
        program: Option<&str>,
        timeout: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let program = match program.map(str::trim) {
            Some(p) if !p.is_empty() => p,
            _ => return Ok(None),
        };
        let mut config = if program.eq_ignore_ascii_case("auto") {
            Self::beside_current_exe().map_err(|e| e.to_string())?
        } else {
            Self::new(program)
        };
        if let Some(text) = timeout.map(str::trim).filter(|t| !t.is_empty()) {
            config.request_timeout = lectern_gpu::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!(
                        "{WORKER_TIMEOUT_ENV_VAR} must be a duration such as 30s or 2m, not {text:?}"
                    )
                })?;
        }
        Ok(Some(config))
    }
}

/// Everything that can go wrong with the model worker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// The worker binary does not exist.
    #[error("model worker not found at {}", .program.display())]
    NotFound {
        /// Where it was looked for.
        program: PathBuf,
    },
    /// The worker could not be started.
    #[error("model worker {} could not be started: {message}", .program.display())]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// Why.
        message: String,
    },
    /// The worker did not announce itself in time.
    #[error("model worker did not announce itself within {} ms{}", .after.as_millis(), tail(.stderr))]
    HandshakeTimeout {
        /// How long it was given.
        after: Duration,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The worker speaks another protocol version.
    #[error("model worker {worker_version} speaks protocol version {found}, this build speaks {expected}")]
    VersionMismatch {
        /// Its protocol version.
        found: u32,
        /// Ours.
        expected: u32,
        /// Its package version.
        worker_version: String,
    },
    /// The worker sent something that is not a valid answer.
    #[error("model worker broke the protocol: {0}")]
    Protocol(String),
    /// The worker process ended (crashed, was killed or exited).
    #[error("model worker died during {during} ({status}){}", tail(.stderr))]
    Died {
        /// What it was doing.
        during: String,
        /// How it ended (exit status or signal).
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The worker did not answer in time and was killed.
    #[error("model worker did not finish {during} within {} ms and was killed", .after.as_millis())]
    Hung {
        /// What it was doing.
        during: String,
        /// How long it was given.
        after: Duration,
    },
    /// The worker answered with an error frame; it is still running.
    #[error("model worker: {message}")]
    Remote {
        /// What kind of failure.
        kind: ErrorKind,
        /// Its message.
        message: String,
    },
    /// The worker failed to start recently and is not tried again yet.
    #[error("model worker unavailable (next try in {} s): {reason}", .retry_in.as_secs())]
    Unavailable {
        /// Why the last start failed.
        reason: String,
        /// How long until the next try.
        retry_in: Duration,
    },
}

fn tail(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output: {}", stderr.trim())
    }
}

impl WorkerError {
    /// Whether the device behind the worker should be treated as lost:
    /// the worker is gone, never started, or cannot be trusted. Everything
    /// but an out-of-memory error frame (which recovery handles on the
    /// device) counts, so the work moves to the CPU.
    pub fn is_device_lost(&self) -> bool {
        !self.is_out_of_memory()
    }

    /// Whether the worker reported that the device ran out of memory.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                kind: ErrorKind::OutOfMemory,
                ..
            }
        )
    }

    /// Whether the worker process was lost with this error (it died, hung
    /// or broke the protocol, and has been killed and reaped).
    pub fn ended_process(&self) -> bool {
        matches!(
            self,
            Self::Died { .. } | Self::Hung { .. } | Self::Protocol(_)
        )
    }
}

/// What a loaded embedder is, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerModel {
    /// The model's folder.
    pub dir: PathBuf,
    /// Its name.
    pub model: String,
    /// Vector dimensions.
    pub dim: usize,
    /// The device it runs on in the worker.
    pub device: DeviceKind,
}

/// The language model a request needs in the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmSpec {
    /// A GGUF file or a safetensors folder.
    pub path: PathBuf,
    /// Tokens of context to allocate.
    pub context: usize,
    /// Key/value cache type (`f32`, `f16`, `bf16`, `q8`); `None`: the
    /// model's default (f16 for GGUF files, else the activation dtype).
    pub kv_dtype: Option<String>,
}

/// A language model loaded in the worker, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLlm {
    /// What was asked for.
    pub spec: LlmSpec,
    /// Its name.
    pub model: String,
    /// `safetensors` or `gguf`.
    pub format: String,
    /// The device it runs on in the worker.
    pub device: DeviceKind,
    /// Tokens of context granted.
    pub context: usize,
    /// Its key/value cache type.
    pub kv_dtype: String,
    /// How long the load took, in milliseconds.
    pub load_ms: u64,
    /// The model the worker unloaded to make room for it.
    pub unloaded: Option<String>,
}

/// A piece of text streamed from a generation in the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerPiece<'a> {
    /// Answer text.
    Answer(&'a str),
    /// The model's reasoning.
    Thinking(&'a str),
}

/// A frame or the reason there is none.
type FrameResult = Result<Frame, FrameError>;

/// One running worker process.
pub struct WorkerProcess {
    config: WorkerConfig,
    child: Option<Child>,
    stdin: Option<BufWriter<ChildStdin>>,
    frames: Receiver<FrameResult>,
    stderr: Arc<StderrTail>,
    pid: u32,
    hello: Hello,
    next_id: u64,
}

/// The last lines the worker wrote to stderr, and whether it closed.
#[derive(Default)]
struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for WorkerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProcess")
            .field("program", &self.config.program)
            .field("pid", &self.pid)
            .field("device", &self.hello.device)
            .finish_non_exhaustive()
    }
}

impl WorkerProcess {
    /// Starts the worker and waits for its hello. Fails when the binary is
    /// missing or cannot run, does not announce itself within the
    /// handshake timeout, exits first, or speaks another protocol version;
    /// in every case the process is killed and reaped.
    pub fn start(config: &WorkerConfig) -> Result<Self, WorkerError> {
        let program = &config.program;
        if !program.is_file() {
            return Err(WorkerError::NotFound {
                program: program.clone(),
            });
        }
        let mut child = Command::new(program)
            .envs(&config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| WorkerError::Spawn {
                program: program.clone(),
                message: e.to_string(),
            })?;
        let pid = child.id();
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(WorkerError::Spawn {
                        program: program.clone(),
                        message: "its standard streams could not be connected".into(),
                    });
                }
            };
        let tail = Arc::new(StderrTail::default());
        let sink = tail.clone();
        let stderr_thread = std::thread::Builder::new()
            .name(format!("worker-{pid}-stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(target: "lectern_engine::worker::stderr", pid, "{line}");
                    let mut lines = sink.lines.lock().unwrap_or_else(PoisonError::into_inner);
                    if lines.len() == STDERR_TAIL_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
                sink.closed
                    .store(true, std::sync::atomic::Ordering::Release);
            });
        let (send, frames) = mpsc::channel();
        let reader_thread = std::thread::Builder::new()
            .name(format!("worker-{pid}-stdout"))
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                loop {
                    match read_frame(&mut stdout) {
                        Ok(Some(frame)) => {
                            if send.send(Ok(frame)).is_err() {
                                break;
                            }
                        }
                        Ok(None) => {
                            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                            let _ = send.send(Err(FrameError::Io(eof)));
                            break;
                        }
                        Err(error) => {
                            let _ = send.send(Err(error));
                            break;
                        }
                    }
                }
            });
        if let Err(error) = stderr_thread.and(reader_thread) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Spawn {
                program: program.clone(),
                message: format!("cannot start a thread to read it: {error}"),
            });
        }
        let mut process = Self {
            config: config.clone(),
            child: Some(child),
            stdin: Some(BufWriter::new(stdin)),
            frames,
            stderr: tail,
            pid,
            hello: Hello {
                protocol: 0,
                worker_version: String::new(),
                device: DeviceKind::Cpu,
                device_reason: String::new(),
                capabilities: lectern_gpu::Capabilities::default(),
                pid,
            },
            next_id: 1,
        };
        let frame = match process.wait_frame(config.handshake_timeout, "the handshake") {
            Ok(frame) => frame,
            Err(WorkerError::Hung { after, .. }) => {
                return Err(WorkerError::HandshakeTimeout {
                    after,
                    stderr: process.stderr_tail(),
                })
            }
            Err(error) => return Err(error),
        };
        let hello = match frame.decode::<Response>() {
            Ok(Response::Hello(hello)) => hello,
            Ok(other) => {
                return Err(process.protocol_error(format!("expected a hello, got {other:?}")))
            }
            Err(e) => return Err(process.protocol_error(format!("unreadable hello: {e}"))),
        };
        if hello.protocol != PROTOCOL_VERSION {
            process.kill();
            return Err(WorkerError::VersionMismatch {
                found: hello.protocol,
                expected: PROTOCOL_VERSION,
                worker_version: hello.worker_version,
            });
        }
        tracing::info!(pid, device = %hello.device, reason = %hello.device_reason, version = %hello.worker_version, "model worker started");
        process.hello = hello;
        Ok(process)
    }

    /// What the worker said about itself.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Loads the embedder in `dir` on `device` with `config` (the model
    /// crate's `EmbedderConfig` as JSON; `None` reads it from the folder).
    pub fn load_embedder(
        &mut self,
        dir: &Path,
        device: DevicePreference,
        config: Option<serde_json::Value>,
    ) -> Result<WorkerModel, WorkerError> {
        let id = self.take_id();
        let request = Request::LoadEmbedder {
            id,
            dir: dir.to_path_buf(),
            device,
            config,
        };
        let frame = self.request(&request, self.config.load_timeout, "loading the embedder")?;
        match self.answer(id, frame)? {
            (
                Response::Loaded {
                    model, dim, device, ..
                },
                _,
            ) => Ok(WorkerModel {
                dir: dir.to_path_buf(),
                model,
                dim,
                device,
            }),
            (other, _) => Err(self.protocol_error(format!("expected loaded, got {other:?}"))),
        }
    }

    /// Embeds `texts` as batch `batch_id`; one vector per text, in order.
    pub fn embed(
        &mut self,
        batch_id: u64,
        texts: &[&str],
        kind: EmbedKind,
    ) -> Result<Vec<Vec<f32>>, WorkerError> {
        let id = self.take_id();
        let request = Request::Embed {
            id,
            batch_id,
            texts: texts.iter().map(|t| (*t).to_owned()).collect(),
            kind,
        };
        let during = format!("embedding batch {batch_id}");
        let frame = self.request(&request, self.config.request_timeout, &during)?;
        match self.answer(id, frame)? {
            (
                Response::Vectors {
                    batch_id: got,
                    count,
                    dim,
                    ..
                },
                payload,
            ) => {
                if got != batch_id || count != texts.len() {
                    return Err(self.protocol_error(format!(
                        "asked for batch {batch_id} of {}, got batch {got} of {count}",
                        texts.len()
                    )));
                }
                decode_vectors(&payload, count, dim).map_err(|e| self.protocol_error(e.to_string()))
            }
            (other, _) => Err(self.protocol_error(format!("expected vectors, got {other:?}"))),
        }
    }

    /// Loads the language model described by `spec` (replacing the one
    /// the worker holds, which it unloads first).
    pub fn load_llm(
        &mut self,
        spec: &LlmSpec,
        device: DevicePreference,
    ) -> Result<WorkerLlm, WorkerError> {
        let id = self.take_id();
        let request = Request::LoadLlm {
            id,
            path: spec.path.clone(),
            device,
            context: spec.context,
            kv_dtype: spec.kv_dtype.clone(),
        };
        let frame = self.request(
            &request,
            self.config.load_timeout,
            "loading the language model",
        )?;
        match self.answer(id, frame)? {
            (
                Response::LlmLoaded {
                    model,
                    format,
                    device,
                    context,
                    kv_dtype,
                    load_ms,
                    unloaded,
                    ..
                },
                _,
            ) => Ok(WorkerLlm {
                spec: spec.clone(),
                model,
                format,
                device,
                context,
                kv_dtype,
                load_ms: load_ms.round() as u64,
                unloaded,
            }),
            (other, _) => Err(self.protocol_error(format!("expected llm_loaded, got {other:?}"))),
        }
    }

    /// Renders `messages` with the loaded language model's chat template;
    /// returns the prompt and its token count.
    pub fn render_prompt(
        &mut self,
        messages: &[PromptMessage],
        enable_thinking: bool,
    ) -> Result<(String, usize), WorkerError> {
        let id = self.take_id();
        let request = Request::RenderPrompt {
            id,
            messages: messages.to_vec(),
            enable_thinking,
        };
        let frame = self.request(&request, self.config.request_timeout, "rendering a prompt")?;
        match self.answer(id, frame)? {
            (Response::Prompt { text, tokens, .. }, _) => Ok((text, tokens)),
            (other, _) => Err(self.protocol_error(format!("expected a prompt, got {other:?}"))),
        }
    }

    /// Generates the answer to `prompt` (rendered by
    /// [`WorkerProcess::render_prompt`]) with `params` (the model crate's
    /// `GenerationParams` as JSON). Each piece goes to `on_piece` as it
    /// arrives; when `on_piece` returns `false` or `cancel` is set, the
    /// worker is told to stop and the generation ends as cancelled. Each
    /// frame must come within the request timeout (the first one after
    /// the prompt has run), or the worker counts as hung and is killed.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: serde_json::Value,
        reuse_prefix: bool,
        cancel: &AtomicBool,
        on_piece: &mut dyn FnMut(WorkerPiece<'_>) -> bool,
    ) -> Result<Generation, WorkerError> {
        let id = self.take_id();
        let request = Request::Generate {
            id,
            prompt: prompt.to_owned(),
            params,
            reuse_prefix,
        };
        let during = "generating an answer";
        let written = match self.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, &request, &[]),
            None => Err(FrameError::Io(std::io::ErrorKind::BrokenPipe.into())),
        };
        if let Err(error) = written {
            tracing::warn!(%error, during, "writing to the model worker failed");
            return Err(self.died(during));
        }
        let timeout = self.config.request_timeout;
        let mut cancel_sent = false;
        let mut stop = false;
        let mut next_index = 1;
        loop {
            let deadline = Instant::now() + timeout;
            let frame = loop {
                if (stop || cancel.load(Ordering::Relaxed)) && !cancel_sent {
                    cancel_sent = true;
                    let written = match self.stdin.as_mut() {
                        Some(stdin) => write_frame(stdin, &Request::Cancel { id }, &[]),
                        None => Err(FrameError::Io(std::io::ErrorKind::BrokenPipe.into())),
                    };
                    if let Err(error) = written {
                        tracing::warn!(%error, "sending cancel to the model worker failed");
                        return Err(self.died(during));
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.frames.recv_timeout(left.min(CANCEL_POLL)) {
                    Ok(Ok(frame)) => break frame,
                    Ok(Err(FrameError::Io(_) | FrameError::Truncated))
                    | Err(RecvTimeoutError::Disconnected) => return Err(self.died(during)),
                    Ok(Err(error)) => return Err(self.protocol_error(error.to_string())),
                    Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
                    Err(RecvTimeoutError::Timeout) => {
                        tracing::error!(
                            pid = self.pid,
                            ms = timeout.as_millis(),
                            "model worker stopped generating; killing it"
                        );
                        self.kill();
                        return Err(WorkerError::Hung {
                            during: during.to_owned(),
                            after: timeout,
                        });
                    }
                }
            };
            match self.answer(id, frame)? {
                (
                    Response::Token {
                        index,
                        text,
                        thinking,
                        ..
                    },
                    _,
                ) => {
                    if index != next_index {
                        return Err(self.protocol_error(format!(
                            "expected token {next_index} of generation {id}, got token {index}"
                        )));
                    }
                    next_index += 1;
                    let piece = if thinking {
                        WorkerPiece::Thinking(&text)
                    } else {
                        WorkerPiece::Answer(&text)
                    };
                    if !on_piece(piece) {
                        stop = true;
                    }
                }
                (Response::Finished { generation, .. }, _) => return Ok(generation),
                (other, _) => {
                    return Err(self.protocol_error(format!("expected a token, got {other:?}")))
                }
            }
        }
    }

    /// Drops the loaded language model in the worker.
    pub fn unload_llm(&mut self) -> Result<(), WorkerError> {
        let id = self.take_id();
        let frame = self.request(
            &Request::UnloadLlm { id },
            self.config.load_timeout,
            "unloading the language model",
        )?;
        match self.answer(id, frame)? {
            (Response::Done { .. }, _) => Ok(()),
            (other, _) => Err(self.protocol_error(format!("expected done, got {other:?}"))),
        }
    }

    /// Drops the loaded model in the worker.
    pub fn unload(&mut self) -> Result<(), WorkerError> {
        let id = self.take_id();
        let frame = self.request(
            &Request::Unload { id },
            self.config.load_timeout,
            "unloading",
        )?;
        match self.answer(id, frame)? {
            (Response::Done { .. }, _) => Ok(()),
            (other, _) => Err(self.protocol_error(format!("expected done, got {other:?}"))),
        }
    }

    /// Asks the worker to exit and waits for it (killing it if it does not
    /// exit within the handshake timeout). Returns how it ended.
    pub fn shutdown(mut self) -> Result<ExitStatus, WorkerError> {
        let id = self.take_id();
        let timeout = self.config.handshake_timeout;
        let frame = self.request(&Request::Shutdown { id }, timeout, "shutting down")?;
        self.answer(id, frame)?;
        match self.reap(timeout) {
            (Some(status), _) => Ok(status),
            (None, how) => Err(WorkerError::Died {
                during: "shutting down".into(),
                status: how,
                stderr: self.stderr_tail(),
            }),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends `request` and waits up to `timeout` for the next frame.
    fn request(
        &mut self,
        request: &Request,
        timeout: Duration,
        during: &str,
    ) -> Result<Frame, WorkerError> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, request, &[]),
            None => Err(FrameError::Io(std::io::ErrorKind::BrokenPipe.into())),
        };
        if let Err(error) = written {
            tracing::warn!(%error, during, "writing to the model worker failed");
            return Err(self.died(during));
        }
        self.wait_frame(timeout, during)
    }

    /// The next frame within `timeout`; a dead or hung worker is killed
    /// and reaped.
    fn wait_frame(&mut self, timeout: Duration, during: &str) -> Result<Frame, WorkerError> {
        match self.frames.recv_timeout(timeout) {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(FrameError::Io(_) | FrameError::Truncated))
            | Err(RecvTimeoutError::Disconnected) => Err(self.died(during)),
            Ok(Err(error)) => Err(self.protocol_error(error.to_string())),
            Err(RecvTimeoutError::Timeout) => {
                let pid = self.pid;
                tracing::error!(
                    pid,
                    during,
                    ms = timeout.as_millis(),
                    "model worker hung; killing it"
                );
                self.kill();
                Err(WorkerError::Hung {
                    during: during.to_owned(),
                    after: timeout,
                })
            }
        }
    }

    /// Checks that `frame` answers request `id`: its response and payload,
    /// or the error frame as [`WorkerError::Remote`].
    fn answer(&mut self, id: u64, frame: Frame) -> Result<(Response, Vec<u8>), WorkerError> {
        let response = frame
            .decode::<Response>()
            .map_err(|e| self.protocol_error(format!("unreadable answer: {e}")))?;
        let answered = match &response {
            Response::Hello(_) => None,
            Response::Loaded { id, .. }
            | Response::Vectors { id, .. }
            | Response::Done { id }
            | Response::Error { id, .. }
            | Response::LlmLoaded { id, .. }
            | Response::Prompt { id, .. }
            | Response::Token { id, .. }
            | Response::Finished { id, .. } => Some(*id),
        };
        if answered != Some(id) {
            return Err(self.protocol_error(format!(
                "expected the answer to request {id}, got {response:?}"
            )));
        }
        if let Response::Error { kind, message, .. } = response {
            return Err(WorkerError::Remote { kind, message });
        }
        Ok((response, frame.payload))
    }

    /// The worker ended: reaps it and says how.
    fn died(&mut self, during: &str) -> WorkerError {
        let (_, status) = self.reap(Duration::from_secs(5));
        let error = WorkerError::Died {
            during: during.to_owned(),
            status,
            stderr: self.stderr_tail(),
        };
        tracing::error!(pid = self.pid, %error, "model worker lost");
        error
    }

    fn protocol_error(&mut self, message: String) -> WorkerError {
        tracing::error!(pid = self.pid, %message, "model worker broke the protocol; killing it");
        self.kill();
        WorkerError::Protocol(message)
    }

    /// Kills the worker and reaps it.
    fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `grace` for the worker to exit, then kills it; reaps
    /// it either way. Returns its exit status, if it could be read, and a
    /// description of how it ended.
    fn reap(&mut self, grace: Duration) -> (Option<ExitStatus>, String) {
        self.stdin = None;
        let Some(mut child) = self.child.take() else {
            return (None, "already reaped".to_owned());
        };
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return (Some(status), status.to_string()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    return match child.wait() {
                        Ok(status) => (
                            Some(status),
                            format!("killed after {} ms: {status}", grace.as_millis()),
                        ),
                        Err(e) => (None, format!("could not be reaped: {e}")),
                    };
                }
            }
        }
    }

    /// The last lines of the worker's stderr, once the reader has seen
    /// the stream close (waiting at most half a second for it).
    fn stderr_tail(&self) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.child.is_none()
            && !self
                .stderr
                .closed
                .load(std::sync::atomic::Ordering::Acquire)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self
            .stderr
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for WorkerProcess {
    /// Closes the worker's stdin, which makes it exit, and reaps it
    /// (killing it after a short grace period).
    fn drop(&mut self) {
        if self.child.is_some() {
            let (_, status) = self.reap(Duration::from_secs(2));
            tracing::debug!(pid = self.pid, %status, "model worker stopped");
        }
    }
}

/// What the supervisor knows about its worker, for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The running worker's process id, if one runs.
    pub pid: Option<u32>,
    /// The process id of the last worker started (running or not).
    pub last_pid: Option<u32>,
    /// The device the running worker uses.
    pub device: Option<DeviceKind>,
    /// The embedder loaded in it.
    pub model: Option<WorkerModel>,
    /// How many workers have been started.
    pub starts: u32,
    /// How many were lost (crashed, hung, broke the protocol).
    pub lost: u32,
    /// The last failure, phrased for a person.
    pub last_error: Option<String>,
    /// The language model loaded in it.
    #[serde(default)]
    pub llm: Option<WorkerLlm>,
    /// What the last worker started said about itself (its build's
    /// backends, device and why).
    #[serde(default)]
    pub hello: Option<Hello>,
}

#[derive(Default)]
struct SupervisorState {
    process: Option<WorkerProcess>,
    model: Option<WorkerModel>,
    failed_start: Option<(Instant, WorkerError)>,
    /// Workers lost in a row, with no batch done in between.
    lost_in_a_row: u32,
    next_batch: u64,
    status: WorkerStatus,
    /// The language model loaded in the worker, with that worker's
    /// process id (a replaced worker holds none).
    llm: Option<(u32, WorkerLlm)>,
}

/// Keeps one model worker: starts it on first use, restarts it after it
/// is lost, and remembers a failed start, or a second loss in a row, for
/// [`WorkerConfig::restart_backoff`].
pub struct WorkerSupervisor {
    config: WorkerConfig,
    device: DevicePreference,
    state: Mutex<SupervisorState>,
    /// A copy of the status taken after each call, so reading it never
    /// waits for a request in flight.
    published: Mutex<WorkerStatus>,
}

impl std::fmt::Debug for WorkerSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSupervisor")
            .field("program", &self.config.program)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The embedder a request needs in the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedderSpec {
    /// Its folder.
    pub dir: PathBuf,
    /// Its settings (the model crate's `EmbedderConfig` as JSON).
    pub config: Option<serde_json::Value>,
}

impl WorkerSupervisor {
    /// A supervisor that starts `config.program` and loads models on
    /// `device` (`auto`: the best device the worker has).
    pub fn new(config: WorkerConfig, device: DevicePreference) -> Self {
        Self {
            config,
            device,
            state: Mutex::new(SupervisorState::default()),
            published: Mutex::new(WorkerStatus::default()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// What it knows about its worker, as of the end of the last call
    /// (it does not wait for a request in flight).
    pub fn status(&self) -> WorkerStatus {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes `state` for [`WorkerSupervisor::status`].
    fn publish(&self, state: &SupervisorState) {
        let mut status = state.status.clone();
        status.pid = state.process.as_ref().map(WorkerProcess::pid);
        status.device = state.process.as_ref().map(|p| p.hello().device);
        status.model = state.model.clone();
        status.llm = state
            .llm
            .as_ref()
            .filter(|(pid, _)| status.pid == Some(*pid))
            .map(|(_, llm)| llm.clone());
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        status.hello =
            (state.process.as_ref().map(|p| p.hello().clone())).or(published.hello.take());
        *published = status;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SupervisorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Embeds `texts` with `embedder` in the worker, starting it and
    /// loading the model first when needed. Blocks; call it from a
    /// blocking thread. A worker lost on the way is killed and reaped and
    /// the next call starts a new one.
    pub fn embed(
        &self,
        embedder: &EmbedderSpec,
        texts: &[&str],
        kind: EmbedKind,
    ) -> Result<Vec<Vec<f32>>, WorkerError> {
        let mut state = self.lock();
        let state = &mut *state;
        let result = self.embed_locked(state, embedder, texts, kind);
        self.settle(state, &result);
        result
    }

    fn embed_locked(
        &self,
        state: &mut SupervisorState,
        embedder: &EmbedderSpec,
        texts: &[&str],
        kind: EmbedKind,
    ) -> Result<Vec<Vec<f32>>, WorkerError> {
        self.ensure_process(state)?;
        let Some(process) = state.process.as_mut() else {
            return Err(WorkerError::Protocol("no worker process".into()));
        };
        if state.model.as_ref().map(|m| &m.dir) != Some(&embedder.dir) {
            state.model = None;
            let model =
                process.load_embedder(&embedder.dir, self.device, embedder.config.clone())?;
            tracing::info!(model = %model.model, dim = model.dim, device = %model.device, "embedder loaded in the model worker");
            state.model = Some(model);
        }
        state.next_batch += 1;
        process.embed(state.next_batch, texts, kind)
    }

    /// Loads `spec` in the worker, starting it when needed; a worker that
    /// already holds it keeps it. Blocks; call it from a blocking thread.
    pub fn load_llm(&self, spec: &LlmSpec) -> Result<WorkerLlm, WorkerError> {
        self.with_llm(spec, |_, llm| Ok(llm.clone()))
    }

    /// Renders `messages` with the chat template of `spec` (loaded first
    /// when needed) and counts the prompt's tokens.
    pub fn render_prompt(
        &self,
        spec: &LlmSpec,
        messages: &[PromptMessage],
        enable_thinking: bool,
    ) -> Result<(String, usize), WorkerError> {
        self.with_llm(spec, |process, _| {
            process.render_prompt(messages, enable_thinking)
        })
    }

    /// Generates the answer to `prompt` with `spec` (loaded first when
    /// needed), streaming pieces to `on_piece`; see
    /// [`WorkerProcess::generate`]. The worker keeps the prompt's keys and
    /// values, so a follow-up sharing its prefix runs only what is new.
    pub fn generate(
        &self,
        spec: &LlmSpec,
        prompt: &str,
        params: serde_json::Value,
        cancel: &AtomicBool,
        on_piece: &mut dyn FnMut(WorkerPiece<'_>) -> bool,
    ) -> Result<Generation, WorkerError> {
        self.with_llm(spec, |process, _| {
            process.generate(prompt, params, true, cancel, on_piece)
        })
    }

    /// Drops the worker's embedder, if it holds one; the next batch loads
    /// it again.
    pub fn unload_embedder(&self) -> Result<(), WorkerError> {
        let mut state = self.lock();
        let state = &mut *state;
        if state.model.take().is_none() {
            return Ok(());
        }
        let result = match state.process.as_mut() {
            Some(process) => process.unload(),
            None => Ok(()),
        };
        self.settle(state, &result);
        result
    }

    /// Drops the worker's language model, if it holds one.
    pub fn unload_llm(&self) -> Result<(), WorkerError> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some((pid, _)) = state.llm.take() else {
            return Ok(());
        };
        let result = match state.process.as_mut() {
            Some(process) if process.pid() == pid => process.unload_llm(),
            _ => Ok(()),
        };
        self.settle(state, &result);
        result
    }

    /// Runs `op` on the worker with `spec` loaded: starts the worker and
    /// loads the model when needed, and records a lost worker.
    fn with_llm<T>(
        &self,
        spec: &LlmSpec,
        op: impl FnOnce(&mut WorkerProcess, &WorkerLlm) -> Result<T, WorkerError>,
    ) -> Result<T, WorkerError> {
        let mut state = self.lock();
        let state = &mut *state;
        let result = self.ensure_llm(state, spec).and_then(|()| {
            match (state.process.as_mut(), state.llm.as_ref()) {
                (Some(process), Some((_, llm))) => op(process, llm),
                _ => Err(WorkerError::Protocol("no worker process".into())),
            }
        });
        self.settle(state, &result);
        result
    }

    /// Starts the worker if none runs, unless a failed start is still
    /// within its back-off. A new process holds no model.
    fn ensure_process(&self, state: &mut SupervisorState) -> Result<(), WorkerError> {
        if state.process.is_none() {
            if let Some((at, error)) = &state.failed_start {
                let waited = at.elapsed();
                if waited < self.config.restart_backoff {
                    return Err(WorkerError::Unavailable {
                        reason: error.to_string(),
                        retry_in: self.config.restart_backoff - waited,
                    });
                }
            }
            match WorkerProcess::start(&self.config) {
                Ok(process) => {
                    state.status.starts += 1;
                    state.status.last_pid = Some(process.pid());
                    state.failed_start = None;
                    state.model = None;
                    state.llm = None;
                    state.process = Some(process);
                }
                Err(error) => {
                    tracing::warn!(%error, "model worker did not start");
                    state.failed_start = Some((Instant::now(), error.clone()));
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Starts the worker if none runs (honouring the back-off after a
    /// failed start) and loads `spec` into it unless it holds it already.
    fn ensure_llm(&self, state: &mut SupervisorState, spec: &LlmSpec) -> Result<(), WorkerError> {
        self.ensure_process(state)?;
        let Some(process) = state.process.as_mut() else {
            return Err(WorkerError::Protocol("no worker process".into()));
        };
        let pid = process.pid();
        let held = state
            .llm
            .as_ref()
            .is_some_and(|(at, llm)| *at == pid && llm.spec == *spec);
        if !held {
            state.llm = None;
            let llm = process.load_llm(spec, self.device)?;
            if let Some(old) = &llm.unloaded {
                tracing::info!(model = %old, "the model worker unloaded its language model for another");
            }
            tracing::info!(model = %llm.model, device = %llm.device, context = llm.context, ms = llm.load_ms, "language model loaded in the model worker");
            state.llm = Some((pid, llm));
        }
        Ok(())
    }

    /// Records the outcome of a call: a lost worker is forgotten (and,
    /// lost twice in a row, left alone for the back-off), then the status
    /// is published.
    fn settle<T>(&self, state: &mut SupervisorState, result: &Result<T, WorkerError>) {
        match result {
            Ok(_) => state.lost_in_a_row = 0,
            Err(error) => {
                state.status.last_error = Some(error.to_string());
                if error.ended_process() {
                    state.process = None;
                    state.model = None;
                    state.llm = None;
                    state.status.lost += 1;
                    state.lost_in_a_row += 1;
                    if state.lost_in_a_row >= LOSSES_BEFORE_BACKOFF {
                        state.failed_start = Some((Instant::now(), error.clone()));
                    }
                }
            }
        }
        self.publish(state);
    }

    /// Stops the worker, if one runs: asks it to exit and reaps it.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.model = None;
        if let Some(process) = state.process.take() {
            match process.shutdown() {
                Ok(status) => tracing::info!(%status, "model worker stopped"),
                Err(error) => tracing::warn!(%error, "model worker did not stop cleanly"),
            }
        }
        self.publish(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_is_opt_in_and_its_settings_are_checked() {
        assert_eq!(WorkerConfig::from_values(None, None), Ok(None));
        assert_eq!(WorkerConfig::from_values(Some("  "), Some("5s")), Ok(None));
        let config = WorkerConfig::from_values(Some("/opt/lectern/lectern-worker"), Some("45s"))
            .unwrap()
            .unwrap();
        assert_eq!(config.program, PathBuf::from("/opt/lectern/lectern-worker"));
        assert_eq!(config.request_timeout, Duration::from_secs(45));
        assert_eq!(config.handshake_timeout, default_handshake_timeout());

        let beside = WorkerConfig::from_values(Some("AUTO"), None)
            .unwrap()
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(beside.program, exe.parent().unwrap().join(WORKER_BINARY));
        assert_eq!(beside.request_timeout, default_request_timeout());

        for bad in ["soon", "0s"] {
            let error = WorkerConfig::from_values(Some("w"), Some(bad)).unwrap_err();
            assert!(
                error.contains(WORKER_TIMEOUT_ENV_VAR) && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn a_saved_configuration_fills_in_default_timeouts() {
        let config: WorkerConfig =
            serde_json::from_str(r#"{"program": "/w", "env": {"LECTERN_LOG": "debug"}}"#).unwrap();
        assert_eq!(config.load_timeout, default_load_timeout());
        assert_eq!(config.restart_backoff, default_restart_backoff());
        assert_eq!(config.env["LECTERN_LOG"], "debug");
        let back: WorkerConfig =
            serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn only_out_of_memory_frames_stay_on_the_device() {
        let oom = WorkerError::Remote {
            kind: ErrorKind::OutOfMemory,
            message: "out of memory".into(),
        };
        assert!(oom.is_out_of_memory() && !oom.is_device_lost() && !oom.ended_process());
        let load = WorkerError::Remote {
            kind: ErrorKind::LoadFailed,
            message: "no weights".into(),
        };
        assert!(load.is_device_lost() && !load.ended_process());
        let hung = WorkerError::Hung {
            during: "embedding batch 4".into(),
            after: Duration::from_millis(1500),
        };
        assert!(hung.is_device_lost() && hung.ended_process());
        assert_eq!(
            hung.to_string(),
            "model worker did not finish embedding batch 4 within 1500 ms and was killed"
        );
        let missing = WorkerError::NotFound {
            program: PathBuf::from("/x/lectern-worker"),
        };
        assert!(missing.is_device_lost() && !missing.ended_process());
        let info = crate::EngineError::from(missing).info();
        assert_eq!(info.code, "worker");
        assert!(info.message.contains("/x/lectern-worker"));
    }
}
