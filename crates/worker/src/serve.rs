//! The request loop: one request at a time, in order, each answered with
//! a frame (a generation with a stream of them).
//!
//! A reader thread turns the input into frames on a channel, so that a
//! generation can notice a cancel (or the engine going away) between two
//! tokens; requests that arrive during a generation wait their turn.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};

use lectern_gpu::{DevicePreference, TelemetryBackend};
use lectern_models::{Embedder, EmbedderConfig, ModelError};
use lectern_worker_protocol::{
    encode_vectors, read_frame, write_frame, EmbedKind, ErrorKind, Frame, FrameError, Hello,
    Request, Response,
};

use crate::fault::{self, BatchFault, Faults};
use crate::llm::{self, LoadedLlm};

/// A failed request: what kind, and the message for the error frame.
pub(crate) type Failure = (ErrorKind, String);

/// What the reader thread saw: a frame, the end of the input (`None`),
/// or a broken stream.
type Incoming = Result<Option<Frame>, FrameError>;

/// Frames from the reader thread, with those put aside during a
/// generation.
pub(crate) struct Inbox {
    frames: Receiver<Incoming>,
    waiting: VecDeque<Incoming>,
}

impl Inbox {
    /// Reads `input` on a thread of its own.
    fn spawn(mut input: impl Read + Send + 'static) -> std::io::Result<Self> {
        let (send, frames) = mpsc::channel();
        std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || loop {
                let incoming = read_frame(&mut input);
                let last = !matches!(incoming, Ok(Some(_)));
                if send.send(incoming).is_err() || last {
                    break;
                }
            })?;
        Ok(Self {
            frames,
            waiting: VecDeque::new(),
        })
    }

    /// The next request frame, oldest first.
    fn next(&mut self) -> Incoming {
        match self.waiting.pop_front() {
            Some(incoming) => incoming,
            None => self.frames.recv().unwrap_or(Ok(None)),
        }
    }

    /// Whether generation `id` should stop: a cancel for it arrived, or
    /// the input ended (nobody is listening). Other requests are kept for
    /// after the generation.
    pub(crate) fn cancelled(&mut self, id: u64) -> bool {
        let mut stop = false;
        while let Ok(incoming) = self.frames.try_recv() {
            match &incoming {
                Ok(Some(frame)) => {
                    if let Ok(Request::Cancel { id: target }) = frame.decode::<Request>() {
                        if target == id {
                            tracing::info!(id, "generation cancelled");
                            stop = true;
                        }
                        continue;
                    }
                }
                Ok(None) | Err(_) => stop = true,
            }
            self.waiting.push_back(incoming);
        }
        stop
    }
}

/// The worker's state between requests.
pub(crate) struct Server {
    faults: Faults,
    telemetry: Box<dyn TelemetryBackend>,
    embedder: Option<Embedder>,
    /// The language model, at most one.
    llm: Option<LoadedLlm>,
    /// Embedding requests received so far.
    batches: u64,
}

impl Server {
    pub fn new(faults: Faults, telemetry: Box<dyn TelemetryBackend>) -> Self {
        Self {
            faults,
            telemetry,
            embedder: None,
            llm: None,
            batches: 0,
        }
    }

    /// Sends `hello`, then serves requests from `input` until it ends or a
    /// shutdown request. Fails when `output` cannot be written or `input`
    /// stops being a stream of frames.
    pub fn run(
        &mut self,
        input: impl Read + Send + 'static,
        output: &mut impl Write,
        hello: &Hello,
    ) -> Result<(), FrameError> {
        let mut inbox = Inbox::spawn(input)?;
        write_frame(output, &Response::Hello(hello.clone()), &[])?;
        loop {
            let frame = match inbox.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    tracing::info!("input closed; exiting");
                    return Ok(());
                }
                Err(error) => {
                    // The frame boundaries are lost: say so and stop.
                    let message = format!("unreadable request stream: {error}");
                    let _ = write_frame(
                        output,
                        &Response::Error {
                            id: 0,
                            kind: ErrorKind::InvalidRequest,
                            message,
                        },
                        &[],
                    );
                    return Err(error);
                }
            };
            let request = match frame.decode::<Request>() {
                Ok(request) => request,
                Err(error) => {
                    let id = serde_json::from_slice::<serde_json::Value>(&frame.header)
                        .ok()
                        .and_then(|v| v["id"].as_u64())
                        .unwrap_or(0);
                    tracing::warn!(id, %error, "request not understood");
                    write_frame(
                        output,
                        &Response::Error {
                            id,
                            kind: ErrorKind::InvalidRequest,
                            message: format!("request not understood: {error}"),
                        },
                        &[],
                    )?;
                    continue;
                }
            };
            let id = request.id();
            if let Request::Shutdown { .. } = request {
                tracing::info!("shutting down on request");
                self.embedder = None;
                self.llm = None;
                write_frame(output, &Response::Done { id }, &[])?;
                return Ok(());
            }
            let answer = match request {
                Request::Cancel { id } => {
                    // The generation it names has already finished.
                    tracing::debug!(id, "cancel for no running generation");
                    continue;
                }
                Request::Generate {
                    id,
                    prompt,
                    params,
                    reuse_prefix,
                } => match self.llm.as_mut() {
                    Some(loaded) => llm::generate(
                        id,
                        loaded,
                        &prompt,
                        params,
                        reuse_prefix,
                        &self.faults,
                        output,
                        &mut inbox,
                    )?
                    .map(|response| (response, Vec::new())),
                    None => Err(not_loaded()),
                },
                request => self.handle(request),
            };
            let (response, payload) = match answer {
                Ok(answer) => answer,
                Err((kind, message)) => {
                    tracing::warn!(id, ?kind, %message, "request failed");
                    (Response::Error { id, kind, message }, Vec::new())
                }
            };
            write_frame(output, &response, &payload)?;
        }
    }

    fn handle(&mut self, request: Request) -> Result<(Response, Vec<u8>), Failure> {
        match request {
            Request::LoadEmbedder {
                id,
                dir,
                device,
                config,
            } => self.load_embedder(id, &dir, device, config),
            Request::Embed {
                id,
                batch_id,
                texts,
                kind,
            } => self.embed(id, batch_id, &texts, kind),
            Request::Unload { id } => {
                self.embedder = None;
                tracing::info!("model unloaded");
                Ok((Response::Done { id }, Vec::new()))
            }
            Request::Shutdown { id } => Ok((Response::Done { id }, Vec::new())),
            Request::LoadLlm {
                id,
                path,
                device,
                context,
                kv_dtype,
            } => {
                // One large model at a time: the old one is freed first.
                let unloaded = self.llm.take().map(|old| old.name().to_owned());
                if let Some(name) = &unloaded {
                    tracing::info!(model = %name, "language model unloaded for another");
                }
                let (loaded, mut response) = llm::load(
                    id,
                    &path,
                    device,
                    context,
                    kv_dtype.as_deref(),
                    self.telemetry.as_ref(),
                    &self.faults,
                )?;
                if let Response::LlmLoaded { unloaded: slot, .. } = &mut response {
                    *slot = unloaded;
                }
                self.llm = Some(loaded);
                Ok((response, Vec::new()))
            }
            Request::RenderPrompt {
                id,
                messages,
                enable_thinking,
            } => {
                let loaded = self.llm.as_ref().ok_or_else(not_loaded)?;
                Ok((
                    llm::render(id, loaded, &messages, enable_thinking)?,
                    Vec::new(),
                ))
            }
            Request::UnloadLlm { id } => {
                if let Some(old) = self.llm.take() {
                    tracing::info!(model = %old.name(), "language model unloaded");
                }
                Ok((Response::Done { id }, Vec::new()))
            }
            Request::Generate { .. } | Request::Cancel { .. } => Err((
                ErrorKind::InvalidRequest,
                "generation requests are served by the request loop".to_owned(),
            )),
        }
    }

    fn load_embedder(
        &mut self,
        id: u64,
        dir: &Path,
        device: DevicePreference,
        config: Option<serde_json::Value>,
    ) -> Result<(Response, Vec<u8>), Failure> {
        let mut config = match config {
            Some(value) => serde_json::from_value::<EmbedderConfig>(value).map_err(|e| {
                (
                    ErrorKind::InvalidRequest,
                    format!("embedder settings not understood: {e}"),
                )
            })?,
            None => EmbedderConfig::from_folder(dir),
        };
        config.dir = dir.to_path_buf();
        let kind = lectern_gpu::status(
            device,
            lectern_models::capabilities(),
            self.telemetry.as_ref(),
        )
        .map_err(|e| (ErrorKind::DeviceUnavailable, e.to_string()))?
        .selected;
        let candle = lectern_models::candle_device(&kind)
            .map_err(|e| (ErrorKind::DeviceUnavailable, e.to_string()))?;
        // The old model's memory is freed before the new one is loaded.
        self.embedder = None;
        let started = std::time::Instant::now();
        let embedder = catch_unwind(AssertUnwindSafe(|| Embedder::load(config, &candle)))
            .map_err(|panic| (ErrorKind::LoadFailed, panic_message(&panic)))?
            .map_err(|e| (model_error_kind(&e, ErrorKind::LoadFailed), e.to_string()))?;
        let model = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dim = embedder.dim();
        tracing::info!(%model, dim, device = %kind, ms = started.elapsed().as_millis(), "embedder loaded");
        self.embedder = Some(embedder);
        Ok((
            Response::Loaded {
                id,
                model,
                dim,
                device: kind,
            },
            Vec::new(),
        ))
    }

    fn embed(
        &mut self,
        id: u64,
        batch_id: u64,
        texts: &[String],
        kind: EmbedKind,
    ) -> Result<(Response, Vec<u8>), Failure> {
        self.batches += 1;
        match self.faults.at_batch(self.batches) {
            Some(BatchFault::Crash) => {
                tracing::error!(batch = self.batches, "aborting (injected fault)");
                std::process::abort();
            }
            Some(BatchFault::Hang) => {
                tracing::warn!(batch = self.batches, "hanging (injected fault)");
                fault::hang();
            }
            Some(BatchFault::OutOfMemory) => {
                return Err((
                    ErrorKind::OutOfMemory,
                    format!(
                        "CUDA_ERROR_OUT_OF_MEMORY: out of memory (injected fault at batch {})",
                        self.batches
                    ),
                ));
            }
            None => {}
        }
        let embedder = self.embedder.as_ref().ok_or_else(|| {
            (
                ErrorKind::NotLoaded,
                "no embedder is loaded; send load_embedder first".to_owned(),
            )
        })?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let result = catch_unwind(AssertUnwindSafe(|| match kind {
            EmbedKind::Passage => embedder.embed_passages(&refs),
            EmbedKind::Query => refs.iter().map(|t| embedder.embed_query(t)).collect(),
        }))
        .map_err(|panic| (ErrorKind::Compute, panic_message(&panic)))?;
        let vectors =
            result.map_err(|e| (model_error_kind(&e, ErrorKind::Compute), e.to_string()))?;
        let dim = embedder.dim();
        let payload =
            encode_vectors(&vectors, dim).map_err(|e| (ErrorKind::Compute, e.to_string()))?;
        Ok((
            Response::Vectors {
                id,
                batch_id,
                count: vectors.len(),
                dim,
            },
            payload,
        ))
    }
}

fn not_loaded() -> Failure {
    (
        ErrorKind::NotLoaded,
        "no language model is loaded; send load_llm first".to_owned(),
    )
}

/// `otherwise`, or [`ErrorKind::OutOfMemory`] when the error reads like
/// a device out-of-memory error.
pub(crate) fn model_error_kind(error: &ModelError, otherwise: ErrorKind) -> ErrorKind {
    match error {
        ModelError::Compute(message) | ModelError::Device(message)
            if lectern_gpu::is_out_of_memory_message(message) =>
        {
            ErrorKind::OutOfMemory
        }
        _ => otherwise,
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("the model panicked: {text}")
}
