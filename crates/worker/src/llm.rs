//! The language model the worker holds: at most one at a time, loaded,
//! asked to render prompts, and run with its answer streamed frame by
//! frame while the request stream is still watched for a cancel.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use lectern_gpu::{DevicePreference, TelemetryBackend};
use lectern_models::{
    ChatMessage, GenerationParams, KvDtype, Llm, LlmFormat, Piece, Qwen3Options, StopReason,
};
use lectern_worker_protocol::{
    write_frame, ErrorKind, FinishReason, FrameError, Generation, PromptMessage, Response,
};

use crate::fault::{self, Faults, TokenFault};
use crate::serve::{model_error_kind, panic_message, Failure, Inbox};

/// A loaded language model and what the engine is told about it.
pub(crate) struct LoadedLlm {
    llm: Llm,
    /// Its file or folder name.
    name: String,
}

impl LoadedLlm {
    /// The model's name (its file or folder name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Loads the language model at `path` on `device` with a cache for
/// `context` tokens of `kv_dtype`. The caller drops the previous model
/// first, so two are never held at once.
pub(crate) fn load(
    id: u64,
    path: &Path,
    device: DevicePreference,
    context: usize,
    kv_dtype: Option<&str>,
    telemetry: &dyn TelemetryBackend,
    faults: &Faults,
) -> Result<(LoadedLlm, Response), Failure> {
    if context == 0 {
        return Err((
            ErrorKind::InvalidRequest,
            "a language model needs a context of at least one token".to_owned(),
        ));
    }
    let kv_dtype = kv_dtype
        .map(|text| {
            text.parse::<KvDtype>()
                .map_err(|e| (ErrorKind::InvalidRequest, e.to_string()))
        })
        .transpose()?;
    let kind = lectern_gpu::status(device, lectern_models::capabilities(), telemetry)
        .map_err(|e| (ErrorKind::DeviceUnavailable, e.to_string()))?
        .selected;
    let candle = lectern_models::candle_device(&kind)
        .map_err(|e| (ErrorKind::DeviceUnavailable, e.to_string()))?;
    if faults.oom_at_llm_load {
        return Err((
            ErrorKind::OutOfMemory,
            format!(
                "CUDA_ERROR_OUT_OF_MEMORY: out of memory loading {} (injected fault)",
                path.display()
            ),
        ));
    }
    let started = Instant::now();
    let opts = Qwen3Options {
        kv_dtype,
        ..Qwen3Options::new(context)
    };
    let llm = catch_unwind(AssertUnwindSafe(|| Llm::load_with(path, &candle, opts)))
        .map_err(|panic| (ErrorKind::LoadFailed, panic_message(&panic)))?
        .map_err(|e| (model_error_kind(&e, ErrorKind::LoadFailed), e.to_string()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    tracing::info!(model = %name, device = %kind, context = llm.context_length(), kv = llm.kv_dtype().as_str(), ms = load_ms as u64, "language model loaded");
    let response = Response::LlmLoaded {
        id,
        model: name.clone(),
        format: match llm.format() {
            LlmFormat::Safetensors => "safetensors",
            LlmFormat::Gguf => "gguf",
        }
        .to_owned(),
        device: kind,
        context: llm.context_length(),
        kv_dtype: llm.kv_dtype().as_str().to_owned(),
        load_ms,
        unloaded: None,
    };
    Ok((LoadedLlm { llm, name }, response))
}

/// Renders `messages` with the model's chat template and counts the
/// prompt's tokens.
pub(crate) fn render(
    id: u64,
    loaded: &LoadedLlm,
    messages: &[PromptMessage],
    enable_thinking: bool,
) -> Result<Response, Failure> {
    let messages = messages
        .iter()
        .map(|m| {
            serde_json::from_value::<ChatMessage>(serde_json::json!({
                "role": m.role,
                "content": m.content,
            }))
            .map_err(|_| {
                (
                    ErrorKind::InvalidRequest,
                    format!(
                        "unknown role {:?}: expected system, user or assistant",
                        m.role
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = loaded
        .llm
        .render_chat_with(&messages, enable_thinking)
        .map_err(|e| (ErrorKind::Compute, e.to_string()))?;
    let tokens = loaded
        .llm
        .count_tokens(&text)
        .map_err(|e| (ErrorKind::Compute, e.to_string()))?;
    Ok(Response::Prompt { id, text, tokens })
}

/// Generates the answer to `prompt`, writing a token frame for each
/// piece as it comes and stopping after the piece during which a cancel
/// for `id` arrived. `Err` only when `output` cannot be written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate(
    id: u64,
    loaded: &mut LoadedLlm,
    prompt: &str,
    params: serde_json::Value,
    reuse_prefix: bool,
    faults: &Faults,
    output: &mut impl Write,
    inbox: &mut Inbox,
) -> Result<Result<Response, Failure>, FrameError> {
    let started = Instant::now();
    let params: GenerationParams = match serde_json::from_value(params) {
        Ok(params) => params,
        Err(e) => {
            return Ok(Err((
                ErrorKind::InvalidRequest,
                format!("generation settings not understood: {e}"),
            )))
        }
    };
    if !reuse_prefix {
        // Forgets the cached prefix: the whole prompt is run again.
        let _ = loaded.llm.model_mut();
    }
    let mut index = 0u64;
    let mut first_token_ms = None;
    let mut write_error = None;
    let mut on_piece = |piece: Piece<'_>| -> bool {
        index += 1;
        match faults.at_token(index) {
            Some(TokenFault::Crash) => {
                tracing::error!(token = index, "aborting (injected fault)");
                std::process::abort();
            }
            Some(TokenFault::Hang) => {
                tracing::warn!(token = index, "hanging (injected fault)");
                fault::hang();
            }
            None => {}
        }
        let (text, thinking) = match piece {
            Piece::Answer(text) => (text, false),
            Piece::Thinking(text) => (text, true),
        };
        let frame = Response::Token {
            id,
            index,
            text: text.to_owned(),
            thinking,
        };
        if let Err(error) = write_frame(output, &frame, &[]) {
            write_error = Some(error);
            return false;
        }
        first_token_ms.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        !inbox.cancelled(id)
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        loaded.llm.generate_pieces(prompt, &params, &mut on_piece)
    }));
    if let Some(error) = write_error {
        return Err(error);
    }
    let stats = match result {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => {
            return Ok(Err((
                model_error_kind(&e, ErrorKind::Compute),
                e.to_string(),
            )))
        }
        Err(panic) => return Ok(Err((ErrorKind::Compute, panic_message(&panic)))),
    };
    let reason = match stats.stop_reason {
        StopReason::EndOfTurn => FinishReason::EndOfTurn,
        StopReason::MaxTokens => FinishReason::MaxTokens,
        StopReason::StopString => FinishReason::StopString,
        StopReason::Cancelled => FinishReason::Cancelled,
    };
    tracing::debug!(
        id,
        ?reason,
        tokens = stats.generated_tokens,
        reused = stats.reused_prompt_tokens,
        "generation finished"
    );
    Ok(Ok(Response::Finished {
        id,
        generation: Generation {
            reason,
            decode_tok_s: stats.decode_tokens_per_s(),
            first_token_ms: first_token_ms.unwrap_or(stats.prefill_ms),
            text: stats.text,
            thinking: stats.thinking,
            prompt_tokens: stats.prompt_tokens,
            reused_prompt_tokens: stats.reused_prompt_tokens,
            generated_tokens: stats.generated_tokens,
            prefill_ms: stats.prefill_ms,
            decode_ms: stats.decode_ms,
        },
    }))
}
