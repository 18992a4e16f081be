//! Language-model speed behind `lectern bench llm`: prefill and decode
//! tokens per second and time to first token, measured the way the
//! llama.cpp peer benchmark (`peer.sh llm`) measures them, so the two can be
//! compared on the same file in the same run.
//!
//! The prompt is `prompt_tokens` ids drawn with a fixed seed from the
//! vocabulary (ids below 1000 and end-of-turn ids left out), prefilled in
//! one batch (chunks of 512 beyond that); then `gen_tokens` tokens are
//! decoded one at a time, greedily, without stopping at end-of-turn.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lectern_models::{Llm, Logits, Qwen3};
use serde::Serialize;

use crate::{EngineConfig, EngineError};

/// What to measure.
#[derive(Debug, Clone)]
pub struct LlmBenchOptions {
    /// The model: a `.gguf` file or a Hugging Face style folder.
    pub model: PathBuf,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Tokens to decode after the prompt.
    pub gen_tokens: usize,
    /// Seed of the random prompt.
    pub seed: u64,
}

/// Result of a language-model speed run.
#[derive(Debug, Clone, Serialize)]
pub struct LlmBench {
    /// Always "lectern".
    pub engine: &'static str,
    /// The model file or folder.
    pub model: String,
    /// Device used.
    pub device: String,
    /// CPU threads available to the tensor kernels.
    pub threads: usize,
    /// Storage type of the key/value cache.
    pub kv_dtype: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens decoded.
    pub gen_tokens: usize,
    /// Loading the model.
    pub load_s: f64,
    /// Prefilling the prompt.
    pub prefill_s: f64,
    /// Prompt tokens per second.
    pub prefill_tok_s: f64,
    /// From the start of prefill to the first token chosen.
    pub ttft_s: f64,
    /// Decoding `gen_tokens` tokens.
    pub decode_s: f64,
    /// Decoded tokens per second.
    pub decode_tok_s: f64,
}

/// The llama.cpp numbers from `peer.sh llm` and Lectern's ratio to them.
#[derive(Debug, Clone, Serialize)]
pub struct PeerComparison {
    /// The peer's own JSON report.
    pub peer: serde_json::Value,
    /// Lectern prefill tok/s ÷ peer prefill tok/s.
    pub prefill_ratio: Option<f64>,
    /// Lectern decode tok/s ÷ peer decode tok/s.
    pub decode_ratio: Option<f64>,
    /// Peer time to first token ÷ Lectern's (above 1: Lectern is quicker).
    pub ttft_ratio: Option<f64>,
}

/// SplitMix64: a small, well-mixed generator for the benchmark prompt.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` token ids from `1000..vocab`, none of them in `avoid`.
pub fn random_prompt(count: usize, vocab: usize, avoid: &[u32], seed: u64) -> Vec<u32> {
    let mut state = seed;
    let span = vocab.saturating_sub(1000).max(1) as u64;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let id = (1000 + splitmix(&mut state) % span) as u32;
        if !avoid.contains(&id) && (id as usize) < vocab {
            out.push(id);
        }
    }
    out
}

/// Loads the model and times prefill and decode. Blocks: call it from a
/// blocking thread.
pub fn bench_llm(config: &EngineConfig, opts: &LlmBenchOptions) -> Result<LlmBench, EngineError> {
    if opts.prompt_tokens == 0 || opts.gen_tokens == 0 {
        return Err(EngineError::InvalidInput(
            "--prompt-tokens and --gen-tokens must both be at least 1".into(),
        ));
    }
    // Before any CPU kernel runs: quantized products on Lectern's threads.
    lectern_models::Qwen3::prefer_own_cpu_threads();
    let status = crate::gpu_status(config.device)?;
    let device = lectern_models::candle_device(&status.selected)?;
    let context = opts.prompt_tokens + opts.gen_tokens + 8;
    let load_started = Instant::now();
    let load_opts = lectern_models::Qwen3Options {
        kv_dtype: config.kv_dtype,
        ..lectern_models::Qwen3Options::new(context)
    };
    let mut llm = Llm::load_with(&opts.model, &device, load_opts)?;
    let load_s = load_started.elapsed().as_secs_f64();
    if llm.context_length() < context {
        return Err(EngineError::InvalidInput(format!(
            "the model takes at most {} tokens; {} prompt + {} generated do not fit",
            llm.context_length(),
            opts.prompt_tokens,
            opts.gen_tokens
        )));
    }
    let eos = llm.eos_ids().to_vec();
    let kv_dtype = llm.kv_dtype().to_string();
    let model = llm.model_mut();
    let vocab = model.config().vocab_size;
    let prompt = random_prompt(opts.prompt_tokens, vocab, &eos, opts.seed);
    model.reset();

    let t0 = Instant::now();
    let mut logits = None;
    for chunk in prompt.chunks(512) {
        logits = Some(model.forward(chunk, Logits::Last)?);
    }
    let logits = logits.ok_or_else(|| EngineError::Internal("empty prompt".into()))?;
    device
        .synchronize()
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let mut next = Qwen3::greedy(&logits)?;
    let ttft_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 0..opts.gen_tokens {
        let logits = model.forward(&[next], Logits::Last)?;
        next = Qwen3::greedy(&logits)?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    Ok(LlmBench {
        engine: "lectern",
        model: opts.model.display().to_string(),
        device: status.selected.to_string(),
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kv_dtype,
        prompt_tokens: opts.prompt_tokens,
        gen_tokens: opts.gen_tokens,
        load_s,
        prefill_s,
        prefill_tok_s: opts.prompt_tokens as f64 / prefill_s,
        ttft_s,
        decode_s,
        decode_tok_s: opts.gen_tokens as f64 / decode_s,
    })
}

/// Runs the llama.cpp peer (`peer.sh llm`) on the same file and compares.
/// The peer prints its JSON report on the last line of its output.
pub fn run_peer(
    script: &Path,
    ours: &LlmBench,
    model: &Path,
    threads: usize,
) -> Result<PeerComparison, EngineError> {
    let args = [
        "llm".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--prompt-tokens".into(),
        ours.prompt_tokens.to_string(),
        "--gen-tokens".into(),
        ours.gen_tokens.to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    let peer = crate::bench::run_peer_script(script, &args)?;
    let num = |k: &str| peer.get(k).and_then(serde_json::Value::as_f64);
    let ratio = |a: f64, b: Option<f64>| b.filter(|b| *b > 0.0).map(|b| a / b);
    Ok(PeerComparison {
        prefill_ratio: ratio(ours.prefill_tok_s, num("prefill_tok_s")),
        decode_ratio: ratio(ours.decode_tok_s, num("decode_tok_s")),
        ttft_ratio: num("ttft_s")
            .filter(|_| ours.ttft_s > 0.0)
            .map(|p| p / ours.ttft_s),
        peer,
    })
}

#[cfg(test)]
mod tests {
    use super::random_prompt;

    #[test]
    fn random_prompt_is_seeded_in_range_and_avoids_end_ids() {
        let a = random_prompt(2000, 1500, &[1200, 1300], 7);
        assert_eq!(a.len(), 2000);
        assert!(a
            .iter()
            .all(|&t| (1000..1500).contains(&t) && t != 1200 && t != 1300));
        assert_eq!(a, random_prompt(2000, 1500, &[1200, 1300], 7));
        assert_ne!(a, random_prompt(2000, 1500, &[1200, 1300], 8));
    }
}
