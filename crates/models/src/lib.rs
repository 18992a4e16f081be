//! Everything that runs a neural network in Lectern.
//!
//! This crate is the only one that knows candle. It offers two things:
//!
//! * [`Embedder`]: a sentence embedder (all-MiniLM-L6-v2 by default) that
//!   turns passages and queries into L2-normalised vectors: BERT family
//!   with mean, CLS or last-token pooling, or a Qwen3 decoder pooled at its
//!   appended end-of-text token (Qwen3-Embedding), configured from a model
//!   catalog entry ([`EmbedderConfig::from_catalog_params`]) or a folder.
//!   On the CPU it runs Lectern's own encoder (`bert/`): texts sorted by
//!   length and packed without padding, fused QKV, fused bias/GELU and
//!   bias/residual/LayerNorm kernels, batches in parallel.
//! * [`Llm`]: a Qwen3 causal language model loaded from a Hugging Face style
//!   folder (config.json + safetensors + tokenizer.json) or from a single
//!   GGUF file, with the chat template from the model's own
//!   `tokenizer_config.json` rendered by minijinja, and token streaming with
//!   incremental detokenisation. The network itself is [`Qwen3`], written
//!   here with candle ops: one definition for dense and quantized weights,
//!   f32 rotary angles with YaRN when configured, a key/value cache
//!   allocated once for the granted context (f32, f16, bf16 or 8-bit,
//!   [`KvDtype`]), and prefix reuse across turns.
//!
//! Device choice is made by `lectern-gpu`; [`candle_device`] maps its answer
//! to a candle device, and [`capabilities`] tells it which backends this
//! build was compiled with.

mod bert;
mod chat;
mod device;
mod embed;
mod embed_qwen3;
mod error;
mod llm;
mod qwen3;
mod rerank;
mod stream;

pub use chat::{ChatMessage, ChatTemplate, Role};
pub use device::{candle_device, capabilities};
pub use embed::{instruction_prefix, Embedder, EmbedderArchitecture, EmbedderConfig, Pooling};
pub use error::ModelError;
pub use llm::{GenerationParams, GenerationStats, Llm, LlmFormat, Piece, StopReason};
pub use qwen3::{KvDtype, Logits, ParseKvDtypeError, Qwen3, Qwen3Config, Qwen3Options, Yarn};
pub use rerank::{sigmoid, Reranker, RerankerConfig, RerankerFamily, TOKENS_PER_PASS};
pub use stream::{Segment, ThinkSplitter, TokenStream, THINK_CLOSE, THINK_OPEN};
