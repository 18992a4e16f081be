//! Throughput measurements behind `lectern bench`.

use std::time::Instant;

use lectern_models::Embedder;
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
    let mut cfg = config.embedder_config()?;
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

/// One run of the sentence-transformers peer benchmark (`peer.sh embed`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerEmbed {
    /// Texts embedded.
    pub texts: usize,
    /// Tokens after truncation, special tokens included.
    pub tokens: usize,
    /// Wall time of the timed run.
    pub seconds: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
}

/// Lectern and the peer measured in one run on the same texts.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedComparison {
    /// Lectern's run.
    pub lectern: EmbedBench,
    /// The peer run just before Lectern's.
    pub peer_before: PeerEmbed,
    /// The peer run just after Lectern's.
    pub peer_after: PeerEmbed,
    /// Lectern's tokens/s over the mean of the two peer runs.
    pub ratio: f64,
}

/// Runs `script embed` (the peer benchmark, `peer.sh` in the shared bench
/// folder) with the same texts and settings, and reads the JSON object on the
/// last line of its output.
pub fn peer_embed(
    script: &std::path::Path,
    limit: usize,
    max_tokens: usize,
    batch_size: usize,
) -> Result<PeerEmbed, EngineError> {
    let args = [
        "embed".to_string(),
        "--limit".into(),
        limit.to_string(),
        "--max-tokens".into(),
        max_tokens.to_string(),
        "--batch".into(),
        batch_size.to_string(),
    ];
    let report = run_peer_script(script, &args)?;
    serde_json::from_value(report).map_err(|e| {
        EngineError::Internal(format!("unexpected report from {}: {e}", script.display()))
    })
}

/// Runs a peer benchmark script (`peer.sh` in the shared bench folder) with
/// `args` and returns the JSON object it prints on its last line. Its own
/// progress goes to our standard error.
pub(crate) fn run_peer_script(
    script: &std::path::Path,
    args: &[String],
) -> Result<serde_json::Value, EngineError> {
    if !script.is_file() {
        return Err(EngineError::NotConfigured(format!(
            "peer benchmark script not found at {} (set LECTERN_SHARED_DIR to the folder holding bench/peer.sh)",
            script.display()
        )));
    }
    let output = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| EngineError::Internal(format!("cannot run {}: {e}", script.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(EngineError::Internal(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            stdout.trim()
        )));
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).map_err(|e| {
        EngineError::Internal(format!(
            "unexpected output from {}: {e}: {last:?}",
            script.display()
        ))
    })
}

/// Peer, Lectern, peer again, on the same texts: the ratio compares Lectern
/// with the mean of the peer runs on either side of it, so a change in the
/// machine's load during the run shows up in the two peer numbers.
pub fn compare_embed(
    config: &EngineConfig,
    script: &std::path::Path,
    texts: &[String],
    max_tokens: usize,
    batch_size: usize,
) -> Result<EmbedComparison, EngineError> {
    let peer_before = peer_embed(script, texts.len(), max_tokens, batch_size)?;
    let lectern = bench_embed(config, texts, max_tokens, batch_size)?;
    let peer_after = peer_embed(script, texts.len(), max_tokens, batch_size)?;
    if peer_before.tokens != lectern.tokens {
        tracing::warn!(
            peer = peer_before.tokens,
            lectern = lectern.tokens,
            "peer and Lectern counted different token totals"
        );
    }
    let peer_mean = (peer_before.tokens_per_s + peer_after.tokens_per_s) / 2.0;
    Ok(EmbedComparison {
        ratio: lectern.tokens_per_s / peer_mean,
        lectern,
        peer_before,
        peer_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_script_is_reported_by_path() {
        let err = peer_embed(
            std::path::Path::new("/nonexistent/bench/peer.sh"),
            10,
            256,
            32,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/bench/peer.sh"), "{err}");
        assert!(err.contains("LECTERN_SHARED_DIR"), "{err}");
    }

    #[test]
    fn the_peer_result_is_read_from_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("peer.sh");
        std::fs::write(
            &script,
            "echo installing >&2\necho 'some chatter'\necho '{\"peer\": \"x\", \"texts\": 3, \"tokens\": 40, \"seconds\": 2.0, \"tokens_per_s\": 20.0}'\n",
        )
        .unwrap();
        let r = peer_embed(&script, 3, 256, 32).unwrap();
        assert_eq!((r.texts, r.tokens), (3, 40));
        assert!((r.tokens_per_s - 20.0).abs() < 1e-9);

        std::fs::write(&script, "echo broken; exit 3\n").unwrap();
        let err = peer_embed(&script, 3, 256, 32).unwrap_err().to_string();
        assert!(err.contains("failed"), "{err}");
    }
}

/// Result of an ingest run into a fresh library, with the time per stage.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBench {
    /// Files indexed.
    pub files: usize,
    /// Files that failed.
    pub failed: usize,
    /// Pages read.
    pub pages: u64,
    /// Chunks written.
    pub chunks: usize,
    /// Bytes of the files indexed.
    pub bytes: u64,
    /// Wall time of the whole run (discovery to the last write).
    pub seconds: f64,
    /// Seconds per stage, summed over files.
    pub stages: crate::StageTimes,
    /// Everything but embedding, as a share of the embedding time:
    /// `(seconds − embed) / embed`.
    pub overhead: f64,
    /// Chunks per second over the whole run.
    pub chunks_per_s: f64,
    /// Megabytes (10⁶ bytes) of files per second over the whole run.
    pub mb_per_s: f64,
}

impl crate::Engine {
    /// Ingests `paths` into this engine's library (which should be empty,
    /// or every file is "unchanged") and reports where the time went.
    pub async fn bench_ingest(
        &self,
        paths: Vec<std::path::PathBuf>,
    ) -> Result<IngestBench, EngineError> {
        let report = self
            .ingest(
                paths,
                std::sync::Arc::new(|_| {}),
                std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            )
            .await?;
        let embed = report.stages.embed;
        let seconds = report.seconds;
        Ok(IngestBench {
            files: report.indexed,
            failed: report.failed.len(),
            pages: report.pages,
            chunks: report.chunks,
            bytes: report.bytes,
            seconds,
            stages: report.stages,
            overhead: if embed > 0.0 {
                (seconds - embed) / embed
            } else {
                f64::NAN
            },
            chunks_per_s: report.chunks as f64 / seconds.max(1e-9),
            mb_per_s: report.bytes as f64 / 1e6 / seconds.max(1e-9),
        })
    }
}
