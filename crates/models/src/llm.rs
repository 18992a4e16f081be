use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_qwen3, qwen3};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

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
    /// Generation stops when the text ends with one of these.
    pub stop: Vec<String>,
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
    /// The full generated text.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time to process the prompt (to the first token).
    pub prefill_ms: f64,
    /// Time spent generating after the first token.
    pub decode_ms: f64,
    /// Why it stopped.
    pub stop_reason: StopReason,
}

/// `config.json` of a Qwen3 checkpoint; fields that older or smaller
/// checkpoints leave out get the values transformers would use.
#[derive(Debug, Clone, Deserialize)]
struct Qwen3Json {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    attention_bias: bool,
    num_key_value_heads: usize,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    torch_dtype: Option<String>,
}

fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_eps() -> f64 {
    1e-6
}

impl Qwen3Json {
    fn to_candle(&self) -> qwen3::Config {
        qwen3::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads),
            attention_bias: self.attention_bias,
            num_key_value_heads: self.num_key_value_heads,
            max_position_embeddings: self.max_position_embeddings,
            sliding_window: None,
            max_window_layers: self.num_hidden_layers,
            tie_word_embeddings: self.tie_word_embeddings,
            rope_theta: self.rope_theta,
            rms_norm_eps: self.rms_norm_eps,
            use_sliding_window: false,
            hidden_act: Activation::Silu,
        }
    }
}

enum Weights {
    Safetensors(qwen3::ModelForCausalLM),
    Gguf(quantized_qwen3::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Safetensors(m) => m.forward(input, offset),
            Weights::Gguf(m) => m.forward(input, offset),
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Weights::Safetensors(m) => m.clear_kv_cache(),
            Weights::Gguf(m) => m.clear_kv_cache(),
        }
    }
}

/// A loaded Qwen3 model with its tokenizer and chat template.
pub struct Llm {
    weights: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    device: Device,
    eos_ids: Vec<u32>,
    context_length: usize,
    format: LlmFormat,
    path: PathBuf,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("context_length", &self.context_length)
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

fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|e| invalid(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| invalid(&index, "no weight_map"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(ModelError::MissingFile {
        path: single,
        what: "model weights (model.safetensors or model.safetensors.index.json)",
    })
}

impl Llm {
    /// Loads a Qwen3 model from a folder (config.json, safetensors,
    /// tokenizer.json) or a `.gguf` file. `max_context` caps the context
    /// length the model may use (the model's own limit applies too).
    pub fn load(path: &Path, device: &Device, max_context: usize) -> Result<Self, ModelError> {
        if path.is_dir() {
            Self::load_dir(path, device, max_context)
        } else if path.is_file() {
            Self::load_gguf(path, device, max_context)
        } else {
            Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "language model (a folder with config.json or a .gguf file)",
            })
        }
    }

    fn load_dir(dir: &Path, device: &Device, max_context: usize) -> Result<Self, ModelError> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(ModelError::MissingFile {
                path: cfg_path,
                what: "model config.json",
            });
        }
        let bytes = std::fs::read(&cfg_path).map_err(|e| invalid(&cfg_path, e))?;
        let cfg: Qwen3Json = serde_json::from_slice(&bytes).map_err(|e| invalid(&cfg_path, e))?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(ModelError::MissingFile {
                path: tok_path,
                what: "tokenizer.json",
            });
        }
        let tokenizer = load_tokenizer_file(&tok_path)?;
        let dtype = match (device.is_cpu(), cfg.torch_dtype.as_deref()) {
            (true, _) => DType::F32,
            (false, Some("float32")) => DType::F32,
            (false, _) => DType::BF16,
        };
        let mut tensors = HashMap::new();
        for file in safetensor_files(dir)? {
            let part =
                candle_core::safetensors::load(&file, device).map_err(|e| invalid(&file, e))?;
            tensors.extend(part);
        }
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let model =
            qwen3::ModelForCausalLM::new(&cfg.to_candle(), vb).map_err(|e| invalid(dir, e))?;
        let template =
            read_template_from_config(dir).unwrap_or_else(|| CHATML_TEMPLATE.to_string());
        Self::finish(
            Weights::Safetensors(model),
            tokenizer,
            template,
            device,
            cfg.max_position_embeddings.min(max_context),
            LlmFormat::Safetensors,
            dir,
        )
    }

    fn load_gguf(path: &Path, device: &Device, max_context: usize) -> Result<Self, ModelError> {
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
        let ctx = match content.metadata.get("qwen3.context_length") {
            Some(v) => v.to_u64().map(|v| v as usize).unwrap_or(32_768),
            None => 32_768,
        };
        let model = quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, device)
            .map_err(|e| invalid(path, e))?;
        Self::finish(
            Weights::Gguf(model),
            tokenizer,
            template,
            device,
            ctx.min(max_context),
            LlmFormat::Gguf,
            path,
        )
    }

    fn finish(
        weights: Weights,
        tokenizer: Tokenizer,
        template: String,
        device: &Device,
        context_length: usize,
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
            weights,
            tokenizer,
            template: ChatTemplate::new(template, "", "<|im_end|>"),
            device: device.clone(),
            eos_ids,
            context_length,
            format,
            path: path.to_path_buf(),
        })
    }

    /// The context length this model was granted, in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
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

    /// Renders a conversation with the model's chat template, ready for the answer.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        self.template.render(messages, true, false)
    }

    /// Tokens in `text` as the model counts them.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tokenizer.encode(text, false).map_err(tok_err)?.len())
    }

    /// Generates a continuation of `prompt` (already rendered with the chat
    /// template). Each new piece of text goes to `on_piece`; returning
    /// `false` from it stops generation after that token.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
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
        let reserved = params.max_tokens.min(self.context_length / 2);
        if prompt_ids.len() + reserved > self.context_length {
            return Err(ModelError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                context: self.context_length,
                reserved,
                fits: self.context_length.saturating_sub(reserved),
            });
        }
        let max_new = params
            .max_tokens
            .min(self.context_length - prompt_ids.len());
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match (params.top_k, params.top_p) {
                (Some(k), Some(p)) => Sampling::TopKThenTopP {
                    k,
                    p,
                    temperature: params.temperature,
                },
                (Some(k), None) => Sampling::TopK {
                    k,
                    temperature: params.temperature,
                },
                (None, Some(p)) => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                (None, None) => Sampling::All {
                    temperature: params.temperature,
                },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        self.weights.clear_kv_cache();

        let started = Instant::now();
        let mut stream = TokenStream::new(&self.tokenizer);
        let mut text = String::new();
        let mut all_ids = prompt_ids.clone();
        let mut input = Tensor::new(prompt_ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut offset = 0usize;
        let mut prefill_ms = 0.0;
        let mut generated = 0usize;
        let mut stop_reason = StopReason::MaxTokens;
        while generated < max_new {
            let logits = self.weights.forward(&input, offset)?;
            let logits = logits.flatten_all()?.to_dtype(DType::F32)?;
            offset += input.dim(1)?;
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
            let mut keep_going = true;
            if let Some(piece) = stream.push(next)? {
                text.push_str(&piece);
                if let Some(cut) = params
                    .stop
                    .iter()
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    let emitted = text.len() - piece.len();
                    if cut > emitted {
                        on_piece(&text[emitted..cut]);
                    }
                    text.truncate(cut);
                    stop_reason = StopReason::StopString;
                    break;
                }
                keep_going = on_piece(&piece);
            }
            if !keep_going {
                stop_reason = StopReason::Cancelled;
                break;
            }
            input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
        }
        if stop_reason != StopReason::StopString {
            if let Some(rest) = stream.flush()? {
                text.push_str(&rest);
                on_piece(&rest);
            }
        }
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(GenerationStats {
            text,
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated,
            prefill_ms,
            decode_ms: total_ms - prefill_ms,
            stop_reason,
        })
    }
}
