//! The protocol between Lectern and `lectern-worker`, the process that
//! holds models on a GPU so that the app and the CLI stay CPU-only
//! binaries.
//!
//! The worker reads [`Request`]s on its stdin and writes [`Response`]s on
//! its stdout; its logs go to stderr. Both directions use the same frame:
//!
//! ```text
//! u32 LE  frame length (everything after these four bytes)
//! u32 LE  header length
//! header  JSON (a Request or a Response)
//! payload raw bytes (the rest of the frame)
//! ```
//!
//! Only [`Response::Vectors`] carries a payload: its vectors as
//! little-endian `f32`s, row after row, which is far cheaper to write and
//! read than JSON numbers. The worker announces itself with
//! [`Response::Hello`] as soon as it starts, before any request. Every
//! request carries an id its answer repeats; a request the worker cannot
//! serve gets [`Response::Error`] with an [`ErrorKind`], and the worker
//! goes on serving.
//!
//! A language model answers in a stream: [`Request::Generate`] is
//! answered by one [`Response::Token`] frame per piece of text, as it is
//! generated, then [`Response::Finished`] (or an error frame). While it
//! generates, the worker still reads its input: [`Request::Cancel`] with
//! the generation's id stops it after the current token, and the stream
//! ends with a `finished` frame whose reason is `cancelled`. The prompt
//! travels as rendered text, which [`Request::RenderPrompt`] produces and
//! counts with the loaded model's own chat template and tokenizer, so the
//! engine never needs the model's files to build a prompt.
//!
//! This crate holds the message types and the framing only (no model
//! code), so the engine can speak to the worker without linking what the
//! worker runs.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use lectern_gpu::{Capabilities, DeviceKind, DevicePreference};
use serde::{Deserialize, Serialize};

/// The protocol version both sides must agree on; the worker sends it in
/// [`Hello`] and the engine refuses a worker that speaks another.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest frame either side accepts (256 MiB): a longer length prefix
/// means a corrupted stream.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// Environment variable that injects faults into the worker for tests; see
/// the `lectern-worker` crate documentation for the syntax.
pub const FAULT_ENV_VAR: &str = "LECTERN_WORKER_FAULT";

/// Which prefix an embedding request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedKind {
    /// Search queries: the model's query prefix, one text at a time.
    Query,
    /// Passages (documents): the model's passage prefix, batched.
    Passage,
}

/// A message from the engine to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Load an embedding model, replacing any loaded one. Answered with
    /// [`Response::Loaded`].
    LoadEmbedder {
        /// Request id, repeated in the answer.
        id: u64,
        /// The model's folder.
        dir: PathBuf,
        /// Where to run it; `auto` picks the best device the worker's
        /// build and machine have.
        device: DevicePreference,
        /// The embedder settings (the model crate's `EmbedderConfig` as
        /// JSON); `None` reads them from the folder.
        #[serde(default)]
        config: Option<serde_json::Value>,
    },
    /// Embed texts with the loaded embedder. Answered with
    /// [`Response::Vectors`], one vector per text, in order.
    Embed {
        /// Request id, repeated in the answer.
        id: u64,
        /// The caller's number for this batch, repeated in the answer.
        batch_id: u64,
        /// The texts.
        texts: Vec<String>,
        /// Query or passage prefix.
        kind: EmbedKind,
    },
    /// Drop the loaded model. Answered with [`Response::Done`].
    Unload {
        /// Request id, repeated in the answer.
        id: u64,
    },
    /// Answer with [`Response::Done`] and exit with status 0.
    Shutdown {
        /// Request id, repeated in the answer.
        id: u64,
    },
    /// Load a Qwen3 language model, replacing (unloading first) any
    /// loaded one: the worker holds at most one. Answered with
    /// [`Response::LlmLoaded`].
    LoadLlm {
        /// Request id, repeated in the answer.
        id: u64,
        /// A GGUF file or a safetensors folder.
        path: PathBuf,
        /// Where to run it; `auto` picks the best device the worker has.
        device: DevicePreference,
        /// Tokens of context to allocate the key/value cache for (the
        /// model's own limit applies too).
        context: usize,
        /// Storage type of the key/value cache (`f32`, `f16`, `bf16`,
        /// `q8`); `None` uses the model's default (f16 for GGUF files,
        /// else the activation dtype).
        #[serde(default)]
        kv_dtype: Option<String>,
    },
    /// Render a conversation with the loaded model's chat template and
    /// count its tokens. Answered with [`Response::Prompt`].
    RenderPrompt {
        /// Request id, repeated in the answer.
        id: u64,
        /// The conversation, oldest turn first.
        messages: Vec<PromptMessage>,
        /// Whether a hybrid-thinking model may reason first.
        #[serde(default)]
        enable_thinking: bool,
    },
    /// Generate the answer to a rendered prompt with the loaded language
    /// model. Answered with [`Response::Token`] frames as the text comes,
    /// then [`Response::Finished`].
    Generate {
        /// Request id, repeated in every frame of the answer; [`Request::Cancel`]
        /// names it.
        id: u64,
        /// The prompt, rendered with the chat template
        /// ([`Request::RenderPrompt`]).
        prompt: String,
        /// Sampling settings: the model crate's `GenerationParams` as JSON
        /// (maximum tokens, temperature, top-p, top-k, repeat penalty,
        /// seed, stop strings, thinking).
        params: serde_json::Value,
        /// Keep the cached keys and values of the prompt's prefix shared
        /// with the previous generation (a follow-up question); `false`
        /// computes the whole prompt again.
        #[serde(default = "default_true")]
        reuse_prefix: bool,
    },
    /// Stop the generation with id `id` after its current token. Not
    /// answered itself: the generation's stream ends with a `finished`
    /// frame whose reason is `cancelled`. Ignored when that generation
    /// already ended.
    Cancel {
        /// The id of the [`Request::Generate`] to stop.
        id: u64,
    },
    /// Drop the loaded language model. Answered with [`Response::Done`].
    UnloadLlm {
        /// Request id, repeated in the answer.
        id: u64,
    },
}

fn default_true() -> bool {
    true
}

/// One turn of a conversation for [`Request::RenderPrompt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// What was said.
    pub content: String,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    EndOfTurn,
    /// The maximum number of tokens was reached.
    MaxTokens,
    /// A stop string appeared.
    StopString,
    /// [`Request::Cancel`] stopped it.
    Cancelled,
}

/// What a finished generation produced and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Why it ended.
    pub reason: FinishReason,
    /// The answer text (stop string and `<think>` block excluded): the
    /// `token` frames' answer pieces joined.
    pub text: String,
    /// The model's reasoning, if it thought.
    #[serde(default)]
    pub thinking: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Leading prompt tokens whose cached keys and values were reused.
    pub reused_prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time to run the prompt and pick the first token.
    pub prefill_ms: f64,
    /// From the request's arrival to the first token frame written.
    pub first_token_ms: f64,
    /// Time spent generating after the first token.
    pub decode_ms: f64,
    /// Tokens per second after the first token.
    pub decode_tok_s: f64,
}

impl Request {
    /// The request's id.
    pub fn id(&self) -> u64 {
        match self {
            Self::LoadEmbedder { id, .. }
            | Self::Embed { id, .. }
            | Self::Unload { id }
            | Self::Shutdown { id }
            | Self::LoadLlm { id, .. }
            | Self::RenderPrompt { id, .. }
            | Self::Generate { id, .. }
            | Self::Cancel { id }
            | Self::UnloadLlm { id } => *id,
        }
    }
}

/// What the worker says about itself when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version it speaks ([`PROTOCOL_VERSION`] of its build).
    pub protocol: u32,
    /// The worker's package version.
    pub worker_version: String,
    /// The device it runs models on when asked for `auto`.
    pub device: DeviceKind,
    /// Why that device, phrased for a person.
    pub device_reason: String,
    /// The backends compiled into the worker.
    pub capabilities: Capabilities,
    /// Its process id.
    pub pid: u32,
}

/// Why the worker could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The device ran out of memory; out-of-memory recovery applies.
    OutOfMemory,
    /// A request that needs a model came before one was loaded.
    NotLoaded,
    /// The model could not be loaded (missing or unreadable files).
    LoadFailed,
    /// The requested device cannot be used by the worker.
    DeviceUnavailable,
    /// The request could not be decoded or makes no sense.
    InvalidRequest,
    /// Running the model failed (or panicked) for another reason.
    Compute,
}

/// A message from the worker to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Sent once, first, when the worker starts.
    Hello(Hello),
    /// The embedder is loaded.
    Loaded {
        /// The request's id.
        id: u64,
        /// The model's name (its folder name).
        model: String,
        /// Vector dimensions.
        dim: usize,
        /// The device it runs on.
        device: DeviceKind,
    },
    /// Embeddings; the frame's payload holds `count × dim` little-endian
    /// `f32`s, one vector after another.
    Vectors {
        /// The request's id.
        id: u64,
        /// The batch number from the request.
        batch_id: u64,
        /// How many vectors.
        count: usize,
        /// Dimensions of each.
        dim: usize,
    },
    /// The request was carried out.
    Done {
        /// The request's id.
        id: u64,
    },
    /// The language model is loaded.
    LlmLoaded {
        /// The request's id.
        id: u64,
        /// The model's name (its file or folder name).
        model: String,
        /// `safetensors` or `gguf`.
        format: String,
        /// The device it runs on.
        device: DeviceKind,
        /// Tokens of context granted (the request capped by the model's
        /// own limit).
        context: usize,
        /// Storage type of its key/value cache.
        kv_dtype: String,
        /// How long loading took.
        load_ms: f64,
        /// The model this load replaced and unloaded, if one was loaded.
        #[serde(default)]
        unloaded: Option<String>,
    },
    /// A rendered prompt and its length in the model's tokens.
    Prompt {
        /// The request's id.
        id: u64,
        /// The prompt text.
        text: String,
        /// Its tokens.
        tokens: usize,
    },
    /// One piece of generated text, sent as soon as it is decoded (a
    /// piece never splits a UTF-8 character).
    Token {
        /// The generation's id.
        id: u64,
        /// 1 for the generation's first piece, then 2, 3, …
        index: u64,
        /// The text.
        text: String,
        /// Whether it is reasoning (inside the `<think>` block) rather
        /// than answer text.
        #[serde(default)]
        thinking: bool,
    },
    /// The generation ended; no more frames carry its id.
    Finished {
        /// The generation's id.
        id: u64,
        /// What it produced and cost.
        #[serde(flatten)]
        generation: Generation,
    },
    /// The request failed; the worker goes on serving.
    Error {
        /// The request's id (0 when the request could not be decoded).
        id: u64,
        /// What kind of failure.
        kind: ErrorKind,
        /// What happened, phrased for a person.
        message: String,
    },
}

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// A frame longer than [`MAX_FRAME_BYTES`] was announced.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// The frame's contents do not parse.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// One frame: a JSON header and a binary payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header's JSON bytes.
    pub header: Vec<u8>,
    /// The payload (empty for most messages).
    pub payload: Vec<u8>,
}

impl Frame {
    /// Parses the header as `T`.
    pub fn decode<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FrameError> {
        serde_json::from_slice(&self.header).map_err(|e| FrameError::Malformed(e.to_string()))
    }
}

/// Writes one frame with `header` as JSON and `payload` after it, and
/// flushes.
pub fn write_frame<W: Write, T: Serialize>(
    out: &mut W,
    header: &T,
    payload: &[u8],
) -> Result<(), FrameError> {
    let header = serde_json::to_vec(header).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let body = 4 + header.len() + payload.len();
    if body > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(body));
    }
    let mut frame = Vec::with_capacity(4 + body);
    frame.extend_from_slice(&u32::try_from(body).unwrap_or(u32::MAX).to_le_bytes());
    frame.extend_from_slice(
        &u32::try_from(header.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    out.write_all(&frame)?;
    out.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` when the stream ends cleanly between
/// frames.
pub fn read_frame<R: Read>(input: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let body = u32::from_le_bytes(len) as usize;
    if body > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(body));
    }
    if body < 4 {
        return Err(FrameError::Malformed(format!(
            "frame of {body} bytes has no header length"
        )));
    }
    let mut bytes = vec![0u8; body];
    input.read_exact(&mut bytes).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    let header_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if header_len > body - 4 {
        return Err(FrameError::Malformed(format!(
            "header of {header_len} bytes in a frame of {body}"
        )));
    }
    let payload = bytes.split_off(4 + header_len);
    bytes.drain(..4);
    Ok(Some(Frame {
        header: bytes,
        payload,
    }))
}

/// Vectors as a payload: each vector's `f32`s in little-endian order, one
/// vector after another. Every vector must have `dim` entries.
pub fn encode_vectors(vectors: &[Vec<f32>], dim: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(vectors.len() * dim * 4);
    for (i, vector) in vectors.iter().enumerate() {
        if vector.len() != dim {
            return Err(FrameError::Malformed(format!(
                "vector {i} has {} dimensions, not {dim}",
                vector.len()
            )));
        }
        for x in vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(out)
}

/// The vectors in a payload written by [`encode_vectors`].
pub fn decode_vectors(
    payload: &[u8],
    count: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, FrameError> {
    let expected = count.checked_mul(dim).and_then(|n| n.checked_mul(4));
    if expected != Some(payload.len()) {
        return Err(FrameError::Malformed(format!(
            "{count} vectors of {dim} dimensions need {} bytes, the payload has {}",
            count.saturating_mul(dim).saturating_mul(4),
            payload.len()
        )));
    }
    if dim == 0 {
        return Ok(vec![Vec::new(); count]);
    }
    Ok(payload
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_payloads_and_end_cleanly() {
        let vectors = vec![vec![0.5f32, -1.25, f32::MIN_POSITIVE], vec![3.0, 0.0, -0.0]];
        let payload = encode_vectors(&vectors, 3).unwrap();
        let header = Response::Vectors {
            id: 7,
            batch_id: 2,
            count: 2,
            dim: 3,
        };
        let mut stream = Vec::new();
        write_frame(&mut stream, &header, &payload).unwrap();
        write_frame(&mut stream, &Request::Shutdown { id: 8 }, &[]).unwrap();

        let mut reader = stream.as_slice();
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(frame.decode::<Response>().unwrap(), header);
        let back = decode_vectors(&frame.payload, 2, 3).unwrap();
        assert_eq!(back, vectors);
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(
            frame.decode::<Request>().unwrap(),
            Request::Shutdown { id: 8 }
        );
        assert!(frame.payload.is_empty());
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn broken_streams_are_reported_not_misread() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &Request::Unload { id: 1 }, &[]).unwrap();
        let cut = &stream[..stream.len() - 3];
        assert!(matches!(
            read_frame(&mut &cut[..]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &stream[..2]),
            Err(FrameError::Truncated)
        ));
        let huge = (u32::MAX).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut lying = Vec::new();
        lying.extend_from_slice(&8u32.to_le_bytes());
        lying.extend_from_slice(&100u32.to_le_bytes());
        lying.extend_from_slice(b"{}{}");
        assert!(matches!(
            read_frame(&mut lying.as_slice()),
            Err(FrameError::Malformed(_))
        ));
        assert!(decode_vectors(&[0u8; 8], 1, 3).is_err());
        assert!(encode_vectors(&[vec![1.0]], 2).is_err());
    }

    #[test]
    fn messages_have_stable_tags() {
        let json = serde_json::to_value(Request::Embed {
            id: 3,
            batch_id: 1,
            texts: vec!["a".into()],
            kind: EmbedKind::Passage,
        })
        .unwrap();
        assert_eq!(json["type"], "embed");
        assert_eq!(json["kind"], "passage");
        let error = serde_json::to_value(Response::Error {
            id: 3,
            kind: ErrorKind::OutOfMemory,
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(error["kind"], "out_of_memory");
        let load: Request =
            serde_json::from_str(r#"{"type":"load_embedder","id":1,"dir":"/m","device":"cuda:1"}"#)
                .unwrap();
        assert_eq!(
            load,
            Request::LoadEmbedder {
                id: 1,
                dir: PathBuf::from("/m"),
                device: DevicePreference::Cuda(1),
                config: None
            }
        );
    }

    #[test]
    fn language_model_messages_round_trip() {
        let generate: Request = serde_json::from_str(
            r#"{"type":"generate","id":4,"prompt":"<|im_start|>user\nhi","params":{"max_tokens":8}}"#,
        )
        .unwrap();
        assert!(matches!(
            &generate,
            Request::Generate { id: 4, reuse_prefix: true, params, .. } if params["max_tokens"] == 8
        ));
        assert_eq!(generate.id(), 4);
        assert_eq!(
            serde_json::to_value(Request::Cancel { id: 4 }).unwrap()["type"],
            "cancel"
        );
        let finished = Response::Finished {
            id: 4,
            generation: Generation {
                reason: FinishReason::Cancelled,
                text: "Hello".into(),
                thinking: String::new(),
                prompt_tokens: 12,
                reused_prompt_tokens: 3,
                generated_tokens: 2,
                prefill_ms: 1.5,
                first_token_ms: 1.75,
                decode_ms: 0.5,
                decode_tok_s: 2000.0,
            },
        };
        let mut stream = Vec::new();
        write_frame(&mut stream, &finished, &[]).unwrap();
        let frame = read_frame(&mut stream.as_slice()).unwrap().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&frame.header).unwrap();
        assert_eq!(json["type"], "finished");
        assert_eq!(json["reason"], "cancelled");
        assert_eq!(frame.decode::<Response>().unwrap(), finished);
        let token: Response =
            serde_json::from_str(r#"{"type":"token","id":4,"index":1,"text":"He"}"#).unwrap();
        assert_eq!(
            token,
            Response::Token {
                id: 4,
                index: 1,
                text: "He".into(),
                thinking: false
            }
        );
    }
}
