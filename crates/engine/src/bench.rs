//! Throughput measurements behind `lectern bench`.

use std::time::Instant;

use lectern_models::{Embedder, EmbedderConfig};
use serde::Serialize;

use crate::{EngineConfig, EngineError};

/// Result of an embedding throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedBench {
    /// Texts embedded.
    pub texts: usize,
    /// Tokens after truncation, special tokens included.
    pub tokens: usize,
    /// Wall time of the timed run.
    pub seconds: f64,
    /// Texts per second.
    pub texts_per_s: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Device used.
    pub device: String,
    /// Rayon/gemm threads available.
    pub threads: usize,
}

/// Embeds `texts` once to warm up on a small batch, then times one pass over
/// all of them (tokenisation included), truncating at `max_tokens`.
pub fn bench_embed(
    config: &EngineConfig,
    texts: &[String],
    max_tokens: usize,
    batch_size: usize,
) -> Result<EmbedBench, EngineError> {
    let status = crate::gpu_status(config.device)?;
    let device = lectern_models::candle_device(&status.selected)?;
    let mut cfg = EmbedderConfig::new(&config.embedder_dir);
    cfg.max_tokens = max_tokens;
    cfg.batch_size = batch_size;
    let embedder = Embedder::load(cfg, &device)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let warm = refs.len().min(batch_size);
    embedder.embed(&refs[..warm])?;
    let t0 = Instant::now();
    let vectors = embedder.embed(&refs)?;
    let seconds = t0.elapsed().as_secs_f64();
    debug_assert_eq!(vectors.len(), texts.len());
    let mut tokens = 0usize;
    for t in &refs {
        tokens += embedder.count_tokens(t)?.min(max_tokens);
    }
    Ok(EmbedBench {
        texts: texts.len(),
        tokens,
        seconds,
        texts_per_s: texts.len() as f64 / seconds,
        tokens_per_s: tokens as f64 / seconds,
        device: status.selected.to_string(),
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    })
}
