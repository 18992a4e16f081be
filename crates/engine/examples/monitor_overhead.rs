//! What GPU monitoring costs embedding throughput.
//!
//! Embeds the first N SciFact documents in batches, alternating runs
//! (ABBA order) without monitoring and with it: the sampler thread reading the GPU at
//! its work interval (1 s, held active as during ingestion) and one
//! telemetry reading before every batch, as the batch pacer takes. A second
//! pair of runs samples every 10 ms to show the cost per reading.
//!
//! ```text
//! LECTERN_GPU=sim cargo run -p lectern-engine --example monitor_overhead -- [N] [ROUNDS]
//! ```
//!
//! `LECTERN_GPU` selects the telemetry as everywhere else (unset: the
//! NVIDIA driver when present). Compare numbers from one run only: the
//! machine's load changes between runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lectern_gpu::{EventBus, Sampler, SamplerConfig, TelemetryBackend};
use lectern_models::{Embedder, EmbedderConfig};

fn models_dir() -> PathBuf {
    std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/lectern/models")
        })
}

fn corpus() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("shared"))
        .join("eval/scifact/corpus.jsonl.gz")
}

/// Embeds `texts` in batches of the embedder's size; with `telemetry`,
/// reads GPU 0 before each batch. Returns texts per second.
fn run(
    embedder: &Embedder,
    texts: &[&str],
    telemetry: Option<&dyn TelemetryBackend>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut embedded = 0;
    for batch in texts.chunks(embedder.batch_size()) {
        if let Some(t) = telemetry {
            std::hint::black_box(t.snapshot(0).ok());
        }
        embedded += embedder.embed_passages(batch)?.len();
    }
    Ok(embedded as f64 / started.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let docs = lectern_engine::eval::load_corpus(&corpus())?;
    let texts: Vec<String> = docs
        .iter()
        .take(n)
        .map(|d| format!("{} {}", d.title, d.text))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let cpu = lectern_models::candle_device(&lectern_gpu::DeviceKind::Cpu)?;
    let embedder = Embedder::load(
        EmbedderConfig::new(models_dir().join("all-MiniLM-L6-v2")),
        &cpu,
    )?;
    let telemetry: Arc<dyn TelemetryBackend> = Arc::from(lectern_gpu::telemetry_from_env()?);
    println!(
        "{} texts, batch {}, telemetry {} ({} GPU(s)), {rounds} rounds",
        refs.len(),
        embedder.batch_size(),
        telemetry.name(),
        telemetry.device_count()
    );
    // Warm up caches and the allocator.
    run(&embedder, &refs[..refs.len().min(64)], None)?;

    for interval in [Duration::from_secs(1), Duration::from_millis(10)] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so a drift in the machine's load
            // does not favour either.
            for monitored in [round % 2 == 1, round % 2 == 0] {
                if !monitored {
                    off.push(run(&embedder, &refs, None)?);
                    continue;
                }
                let config = SamplerConfig {
                    active_interval: interval,
                    ..SamplerConfig::default()
                };
                let sampler = Sampler::start(telemetry.clone(), config, EventBus::new())?;
                let active = sampler.active();
                on.push(run(&embedder, &refs, Some(telemetry.as_ref()))?);
                drop(active);
            }
        }
        let (off, on) = (median(&mut off), median(&mut on));
        println!(
            "sampler every {:>4} ms: without monitoring {off:.2} texts/s, with {on:.2} texts/s; overhead {:+.2} %",
            interval.as_millis(),
            (off - on) / off * 100.0
        );
    }
    let started = Instant::now();
    let reads = 1000;
    for _ in 0..reads {
        std::hint::black_box(telemetry.snapshot(0).ok());
    }
    println!(
        "one telemetry reading: {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(reads)
    );
    Ok(())
}
