use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{DType, Device};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::qwen3::{KvDtype, Logits, Qwen3, Qwen3Options};
use crate::stream::{Segment, ThinkSplitter};
use crate::{error::tok_err, ChatMessage, ChatTemplate, ModelError, TokenStream};

/// Where the weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmFormat {
    /// A Hugging Face style folder with safetensors weights.
    Safetensors,
    /// A single GGUF file.
    Gguf,
}

/// How to sample an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling temperature; 0 means greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold.
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Penalty for repeating recent tokens (1.0 = none).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed for sampling; a fixed seed gives the same answer.
    pub seed: u64,
    /// Generation stops when the answer text contains one of these.
    pub stop: Vec<String>,
    /// Lets hybrid-thinking models (Qwen3) reason in a `<think>` block before
    /// answering; passed to the chat template as `enable_thinking`.
    pub enable_thinking: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            temperature: 0.7,
            top_p: Some(0.8),
            top_k: Some(20),
            repeat_penalty: 1.05,
            repeat_last_n: 64,
            seed: 299_792_458,
            stop: Vec::new(),
            enable_thinking: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-turn token.
    EndOfTurn,
    /// `max_tokens` was reached.
    MaxTokens,
    /// A stop string appeared.
    StopString,
    /// The caller asked to stop.
    Cancelled,
}

/// What a generation cost and produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationStats {
    /// The answer text: everything generated except a `<think>` block.
    pub text: String,
    /// The model's reasoning (the inside of its `<think>` block); empty
    /// when it did not think.
    #[serde(default)]
    pub thinking: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Leading prompt tokens whose keys and values were still cached from
    /// the previous generation, so they were not computed again.
    #[serde(default)]
    pub reused_prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time to process the prompt (to the first token).
    pub prefill_ms: f64,
    /// Time spent generating after the first token.
    pub decode_ms: f64,
    /// Why it stopped.
    pub stop_reason: StopReason,
}

impl GenerationStats {
    /// Tokens per second after the first token (0 when only one was made).
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.generated_tokens > 1 && self.decode_ms > 0.0 {
            (self.generated_tokens - 1) as f64 * 1e3 / self.decode_ms
        } else {
            0.0
        }
    }

    /// Prompt tokens actually run per second of prefill (cached prefix excluded).
    pub fn prefill_tokens_per_s(&self) -> f64 {
        let run = self.prompt_tokens - self.reused_prompt_tokens;
        if self.prefill_ms > 0.0 {
            run as f64 * 1e3 / self.prefill_ms
        } else {
            0.0
        }
    }
}

/// A piece of streamed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Answer text.
    Answer(&'a str),
    /// Reasoning inside the model's `<think>` block.
    Thinking(&'a str),
}

/// Prompt tokens run through the model in one batch; longer prompts go in
/// several, which bounds the attention scores' memory.
const PREFILL_CHUNK: usize = 512;

/// A loaded Qwen3 model with its tokenizer and chat template.
pub struct Llm {
    model: Qwen3,
    /// The tokens whose keys and values the model's cache holds, in order.
    cached: Vec<u32>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos_ids: Vec<u32>,
    format: LlmFormat,
    path: PathBuf,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("context_length", &self.model.context())
            .finish()
    }
}

/// Used when a model ships no template of its own: plain ChatML, which is
/// what Qwen3's own template produces for text-only conversations.
const CHATML_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

fn invalid(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn read_template_from_config(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("tokenizer_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("chat_template")?.as_str().map(str::to_string)
}

fn load_tokenizer_file(path: &Path) -> Result<Tokenizer, ModelError> {
    Tokenizer::from_file(path).map_err(|e| invalid(path, e))
}

impl Llm {
    /// Loads a Qwen3 model from a folder (config.json, safetensors,
    /// tokenizer.json) or a `.gguf` file. `max_context` caps the context
    /// length the model may use (the model's own limit applies too); the
    /// key/value cache is allocated for that many tokens.
    pub fn load(path: &Path, device: &Device, max_context: usize) -> Result<Self, ModelError> {
        Self::load_with(path, device, Qwen3Options::new(max_context))
    }

    /// [`Llm::load`] with every option: context budget, activation dtype
    /// and key/value cache dtype.
    pub fn load_with(path: &Path, device: &Device, opts: Qwen3Options) -> Result<Self, ModelError> {
        if device.is_cpu() {
            // Quantized CPU products share work on Lectern's own threads
            // (effective when this runs before candle's first CPU kernel).
            Qwen3::prefer_own_cpu_threads();
        }
        if path.is_dir() {
            Self::load_dir(path, device, opts)
        } else if path.is_file() {
            Self::load_gguf(path, device, opts)
        } else {
            Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "language model (a folder with config.json or a .gguf file)",
            })
        }
    }

    fn load_dir(dir: &Path, device: &Device, opts: Qwen3Options) -> Result<Self, ModelError> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(ModelError::MissingFile {
                path: tok_path,
                what: "tokenizer.json",
            });
        }
        let tokenizer = load_tokenizer_file(&tok_path)?;
        let model = Qwen3::load_safetensors(dir, device, opts)?;
        let template =
            read_template_from_config(dir).unwrap_or_else(|| CHATML_TEMPLATE.to_string());
        Self::finish(model, tokenizer, template, LlmFormat::Safetensors, dir)
    }

    fn load_gguf(path: &Path, device: &Device, opts: Qwen3Options) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| invalid(path, e))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| invalid(path, e))?;
        let sibling = path.with_file_name("tokenizer.json");
        let tokenizer = if sibling.is_file() {
            load_tokenizer_file(&sibling)?
        } else {
            Tokenizer::from_gguf(&content).map_err(|e| invalid(path, e))?
        };
        let template = match content.metadata.get("tokenizer.chat_template") {
            Some(gguf_file::Value::String(s)) => s.clone(),
            _ => CHATML_TEMPLATE.to_string(),
        };
        let model = Qwen3::from_gguf_content(path, content, reader, device, opts)?;
        Self::finish(model, tokenizer, template, LlmFormat::Gguf, path)
    }

    fn finish(
        model: Qwen3,
        tokenizer: Tokenizer,
        template: String,
        format: LlmFormat,
        path: &Path,
    ) -> Result<Self, ModelError> {
        let eos_ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if eos_ids.is_empty() {
            return Err(invalid(
                path,
                "tokenizer has neither <|im_end|> nor <|endoftext|>; not a Qwen3 tokenizer",
            ));
        }
        Ok(Self {
            model,
            cached: Vec::new(),
            tokenizer,
            template: ChatTemplate::new(template, "", "<|im_end|>"),
            eos_ids,
            format,
            path: path.to_path_buf(),
        })
    }

    /// The context length this model was granted, in tokens.
    pub fn context_length(&self) -> usize {
        self.model.context()
    }

    /// Storage type of the model's key/value cache.
    pub fn kv_dtype(&self) -> KvDtype {
        self.model.kv_dtype()
    }

    /// The Qwen3 model itself (for running tokens directly).
    pub fn model_mut(&mut self) -> &mut Qwen3 {
        self.cached.clear();
        &mut self.model
    }

    /// Safetensors or GGUF.
    pub fn format(&self) -> LlmFormat {
        self.format
    }

    /// The file or folder the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids that end a turn.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Renders a conversation with the model's chat template, ready for the
    /// answer, with thinking off.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        self.template.render(messages, true, false)
    }

    /// [`Llm::render_chat`] with thinking on or off (`enable_thinking` in
    /// the template; templates without it ignore the flag).
    pub fn render_chat_with(
        &self,
        messages: &[ChatMessage],
        enable_thinking: bool,
    ) -> Result<String, ModelError> {
        self.template.render(messages, true, enable_thinking)
    }

    /// The model's chat template.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Tokens in `text` as the model counts them.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tokenizer.encode(text, false).map_err(tok_err)?.len())
    }

    /// Runs `tokens` after the cached ones, in chunks, and returns the last
    /// position's logits as a flat f32 vector tensor.
    fn feed(
        model: &mut Qwen3,
        cached: &mut Vec<u32>,
        tokens: &[u32],
    ) -> Result<candle_core::Tensor, ModelError> {
        let mut last = None;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            last = Some(model.forward(chunk, Logits::Last)?);
            cached.extend_from_slice(chunk);
        }
        let logits = last.ok_or_else(|| ModelError::Compute("no tokens to run".into()))?;
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?)
    }

    /// Generates a continuation of `prompt` (already rendered with the chat
    /// template). Each new piece of answer text goes to `on_piece` (a
    /// `<think>` block is kept out of it and of the returned text; see
    /// [`Llm::generate_pieces`]); returning `false` from it stops generation
    /// after that token.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats, ModelError> {
        self.generate_pieces(prompt, params, &mut |piece| match piece {
            Piece::Answer(text) => on_piece(text),
            Piece::Thinking(_) => true,
        })
    }

    /// [`Llm::generate`] that also streams the model's reasoning: each piece
    /// of output goes to `on_piece` as [`Piece::Thinking`] (inside the
    /// `<think>` block, which may be cut across tokens anywhere) or
    /// [`Piece::Answer`]. Stop strings apply to the answer text only.
    pub fn generate_pieces(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
        on_piece: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<GenerationStats, ModelError> {
        let prompt_ids = self
            .tokenizer
            .encode(prompt, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec();
        if prompt_ids.is_empty() {
            return Err(ModelError::Tokenizer("empty prompt".into()));
        }
        let context = self.model.context();
        let reserved = params.max_tokens.min(context / 2);
        if prompt_ids.len() + reserved > context {
            return Err(ModelError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                context,
                reserved,
                fits: context.saturating_sub(reserved),
            });
        }
        let max_new = params.max_tokens.min(context - prompt_ids.len());
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling_of(params));
        // Keys and values of a shared prefix (system prompt, earlier turns)
        // are still in the cache: keep them, run only what follows. At least
        // one prompt token is run, for the logits of the first answer token.
        let common = self
            .cached
            .iter()
            .zip(&prompt_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let reused = common.min(prompt_ids.len() - 1);
        if reused == 0 {
            self.model.reset();
        } else {
            self.model.truncate(reused);
        }
        self.cached.truncate(reused);
        tracing::debug!(
            prompt_tokens = prompt_ids.len(),
            reused,
            "generation starts"
        );

        let started = Instant::now();
        let mut stream = TokenStream::new(&self.tokenizer);
        let mut out = Output {
            splitter: ThinkSplitter::for_prompt(prompt),
            text: String::new(),
            thinking: String::new(),
            stop: &params.stop,
        };
        let mut all_ids = prompt_ids.clone();
        let mut pending: Vec<u32> = prompt_ids[reused..].to_vec();
        let mut prefill_ms = 0.0;
        let mut generated = 0usize;
        let mut stop_reason = StopReason::MaxTokens;
        while generated < max_new {
            let logits = Self::feed(&mut self.model, &mut self.cached, &pending)?;
            let logits = if params.repeat_penalty != 1.0 {
                let start = all_ids.len().saturating_sub(params.repeat_last_n);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    params.repeat_penalty,
                    &all_ids[start..],
                )?
            } else {
                logits
            };
            let next = sampler.sample(&logits)?;
            if generated == 0 {
                prefill_ms = started.elapsed().as_secs_f64() * 1e3;
            }
            generated += 1;
            all_ids.push(next);
            if self.eos_ids.contains(&next) {
                stop_reason = StopReason::EndOfTurn;
                break;
            }
            if let Some(piece) = stream.push(next)? {
                if let Some(reason) = out.push(&piece, on_piece) {
                    stop_reason = reason;
                    break;
                }
            }
            pending = vec![next];
        }
        if stop_reason != StopReason::StopString {
            let rest = stream.flush()?.unwrap_or_default();
            let mut segments = out.splitter.push(&rest);
            segments.extend(out.splitter.finish());
            for seg in segments {
                if out.deliver(seg, on_piece) == Some(StopReason::StopString) {
                    stop_reason = StopReason::StopString;
                    break;
                }
            }
        }
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(GenerationStats {
            text: out.text,
            thinking: out.thinking,
            prompt_tokens: prompt_ids.len(),
            reused_prompt_tokens: reused,
            generated_tokens: generated,
            prefill_ms,
            decode_ms: total_ms - prefill_ms,
            stop_reason,
        })
    }
}

fn sampling_of(params: &GenerationParams) -> Sampling {
    if params.temperature <= 0.0 {
        return Sampling::ArgMax;
    }
    let temperature = params.temperature;
    match (params.top_k, params.top_p) {
        (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP { p, temperature },
        (None, None) => Sampling::All { temperature },
    }
}

/// Generated text on its way out: split into thinking and answer, checked
/// for stop strings, and handed to the caller.
struct Output<'p> {
    splitter: ThinkSplitter,
    text: String,
    thinking: String,
    stop: &'p [String],
}

impl Output<'_> {
    /// Takes one detokenised piece; returns why to stop, if generation must.
    fn push(
        &mut self,
        piece: &str,
        on_piece: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Option<StopReason> {
        let mut keep_going = true;
        for seg in self.splitter.push(piece) {
            match self.deliver(seg, on_piece) {
                Some(StopReason::StopString) => return Some(StopReason::StopString),
                Some(_) => keep_going = false,
                None => {}
            }
        }
        (!keep_going).then_some(StopReason::Cancelled)
    }

    /// Records and emits one segment. `Some(StopString)` when a stop string
    /// ended the answer, `Some(Cancelled)` when the caller asked to stop.
    fn deliver(
        &mut self,
        seg: Segment,
        on_piece: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Option<StopReason> {
        match seg {
            Segment::Thinking(t) => {
                self.thinking.push_str(&t);
                (!on_piece(Piece::Thinking(&t))).then_some(StopReason::Cancelled)
            }
            Segment::Answer(a) => {
                let emitted = self.text.len();
                self.text.push_str(&a);
                // A stop string may straddle earlier text: search from just
                // before the new piece.
                let cut = self
                    .stop
                    .iter()
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| {
                        let mut from = emitted.saturating_sub(s.len() - 1);
                        while !self.text.is_char_boundary(from) {
                            from -= 1;
                        }
                        self.text[from..].find(s.as_str()).map(|i| from + i)
                    })
                    .min();
                if let Some(cut) = cut {
                    if cut > emitted {
                        on_piece(Piece::Answer(&self.text[emitted..cut]));
                    }
                    self.text.truncate(cut);
                    return Some(StopReason::StopString);
                }
                (!on_piece(Piece::Answer(&a))).then_some(StopReason::Cancelled)
            }
        }
    }
}
