//! `lectern`: the command-line front end. Glue over `lectern-engine`.

mod progress;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lectern_engine::eval::{load_corpus, load_qrels, load_queries};
use lectern_engine::hub::{Catalog, DownloadEvent, DownloadOptions, InstallState};
use lectern_engine::{
    AskEvent, AskRequest, DevicePreference, Engine, EngineConfig, Fusion, KvDtype, RerankMode,
    SearchHit, SearchMode, SearchRequest, WatchEvent,
};

/// Tensor work allocates and frees large buffers at a high rate; mimalloc
/// reuses them where the system allocator maps and zeroes fresh pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lectern",
    version,
    about = "Ask questions of your own documents, locally."
)]
struct Cli {
    /// Library folder (default: the platform data dir, or LECTERN_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda, cuda:N or metal (default: LECTERN_DEVICE or auto).
    #[arg(long, global = true)]
    device: Option<String>,
    /// Embedding model: a catalog id (all-MiniLM-L6-v2, bge-small-en-v1.5,
    /// qwen3-embedding-0.6b) or a model folder (default: LECTERN_EMBEDDER
    /// or all-MiniLM-L6-v2).
    #[arg(long, global = true)]
    embedder: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index files and folders (plain text, Markdown, PDF).
    Ingest {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Read files again even when unchanged; a file that now fails
        /// keeps its indexed version.
        #[arg(long)]
        again: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search the library.
    Search {
        /// What to look for.
        query: String,
        #[command(flatten)]
        opts: SearchOpts,
        /// Print hits as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a question; the answer streams and ends with its sources.
    Ask {
        /// The question.
        question: String,
        /// Qwen3 model: a folder with config.json + safetensors + tokenizer.json, or a .gguf file.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        /// Sampling seed.
        #[arg(long, default_value_t = 299_792_458)]
        seed: u64,
        /// Passages to retrieve.
        #[arg(long, default_value_t = 8)]
        top_k: usize,
        /// Print the answer as JSON at the end instead of streaming: text,
        /// citations, quote-check results, retrieval trace and timings.
        #[arg(long)]
        json: bool,
        /// Let hybrid-thinking models reason in a <think> block first.
        #[arg(long)]
        think: bool,
        /// Rerank retrieved passages with the cross-encoder: auto (when one
        /// is installed), on or off.
        #[arg(long, default_value = "auto", value_parser = parse_rerank)]
        rerank: RerankMode,
        /// Print the model's reasoning (to stderr while streaming).
        #[arg(long)]
        show_thinking: bool,
        /// Answer only from the documents of this collection.
        #[arg(long, value_name = "NAME")]
        collection: Option<String>,
        /// Key/value cache type: f32, f16, bf16 or q8 (8-bit with a scale
        /// per head vector, about half the memory of f16). Default: f16
        /// for GGUF models, else the model's activation dtype, or
        /// LECTERN_KV_DTYPE.
        #[arg(long, value_name = "TYPE", value_parser = parse_kv_dtype)]
        kv_dtype: Option<KvDtype>,
    },
    /// Evaluate retrieval quality.
    Eval {
        #[command(subcommand)]
        kind: EvalKind,
    },
    /// Show the compute device and GPU telemetry.
    Gpu {
        #[command(subcommand)]
        cmd: GpuCmd,
    },
    /// Report the environment a bug report needs: OS, CPU, GPU and driver,
    /// models, data folder and library health.
    Doctor {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
    /// List indexed documents.
    Docs {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a document (by id or path) and compact the library so its
    /// text leaves the disk.
    Delete {
        /// Document id (from `lectern docs`) or the file's path.
        target: String,
    },
    /// Index a folder, then keep the library in step with it: new, changed,
    /// renamed and deleted files. Runs until interrupted.
    Watch {
        /// The folder.
        folder: PathBuf,
    },
    /// Switch the library to the embedding model named by --embedder (a
    /// catalog id or a folder). Every passage is embedded again into a
    /// shadow table while search keeps using the current model; the library
    /// changes model at once when all are done. Interrupting is safe: the
    /// current model stays in use and running the command again resumes.
    Reembed {
        /// Give up a switch in progress instead (the current model stays).
        #[arg(long)]
        cancel: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that the manifest, the vector store and the text index agree.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the stores without deleted data and drop old versions.
    Compact,
    /// List, inspect and download models.
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Group documents into named collections; `search` and `ask` can be
    /// scoped to one with `--collection NAME`.
    Collections {
        #[command(subcommand)]
        cmd: CollectionsCmd,
    },
}

#[derive(Subcommand)]
enum CollectionsCmd {
    /// List the collections and how many documents each holds.
    List {
        /// Print as JSON (name, document ids, creation time).
        #[arg(long)]
        json: bool,
    },
    /// Make an empty collection (names are unique without regard to case,
    /// at most 64 characters).
    Create {
        /// The collection's name.
        name: String,
    },
    /// Give a collection a new name.
    Rename {
        /// The collection's name.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Add documents (by id or path) to a collection.
    Add {
        /// The collection's name.
        name: String,
        /// Document ids (from `lectern docs`) or the files' paths.
        #[arg(required = true)]
        docs: Vec<String>,
    },
    /// Take documents (by id or path) out of a collection; they stay in
    /// the library.
    Remove {
        /// The collection's name.
        name: String,
        /// Document ids or the files' paths.
        #[arg(required = true)]
        docs: Vec<String>,
    },
    /// Delete a collection; its documents stay in the library.
    Delete {
        /// The collection's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Show the catalog and what is installed.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a model from the Hugging Face hub (or `HF_ENDPOINT`),
    /// verifying every file.
    Pull {
        /// Catalog id, for example `qwen3-0.6b`.
        id: String,
    },
}

#[derive(Args)]
struct SearchOpts {
    /// Retrieval mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    mode: ModeArg,
    /// Number of hits.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Hybrid fusion: rrf, norm (score-normalised, dense weight 0.5) or
    /// norm:<dense weight>.
    #[arg(long, default_value = "norm", value_parser = parse_fusion)]
    fusion: Fusion,
    /// Rerank the top candidates with the cross-encoder: auto (when one is
    /// installed), on or off.
    #[arg(long, default_value = "auto", value_parser = parse_rerank)]
    rerank: RerankMode,
    /// Search only the documents of this collection.
    #[arg(long, value_name = "NAME")]
    collection: Option<String>,
}

fn parse_fusion(s: &str) -> std::result::Result<Fusion, String> {
    s.parse()
}

fn parse_kv_dtype(s: &str) -> std::result::Result<KvDtype, String> {
    s.parse()
        .map_err(|e: lectern_engine::ParseKvDtypeError| e.to_string())
}

fn parse_rerank(s: &str) -> std::result::Result<RerankMode, String> {
    s.parse()
        .map_err(|e: lectern_engine::EngineError| e.to_string())
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    Hybrid,
    Dense,
    Bm25,
}

impl From<ModeArg> for SearchMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Hybrid => SearchMode::Hybrid,
            ModeArg::Dense => SearchMode::Dense,
            ModeArg::Bm25 => SearchMode::Bm25,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum EvalMode {
    Hybrid,
    Dense,
    Bm25,
    All,
}

#[derive(Subcommand)]
enum EvalKind {
    /// BEIR-format evaluation: nDCG@10, Recall@100, MRR@10.
    Beir {
        /// corpus.jsonl or corpus.jsonl.gz.
        #[arg(long)]
        corpus: PathBuf,
        /// queries.jsonl.
        #[arg(long)]
        queries: PathBuf,
        /// qrels TSV.
        #[arg(long)]
        qrels: PathBuf,
        /// Mode to evaluate, or all three.
        #[arg(long, value_enum, default_value_t = EvalMode::All)]
        mode: EvalMode,
        /// Hybrid fusion: rrf, norm or norm:<dense weight>.
        #[arg(long, default_value = "norm", value_parser = parse_fusion)]
        fusion: Fusion,
        /// Rerank the top candidates with the cross-encoder: auto (when one
        /// is installed), on or off.
        #[arg(long, default_value = "auto", value_parser = parse_rerank)]
        rerank: RerankMode,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Search latency (p50/p95 of BM25, dense and hybrid top-10) and the
    /// dense leg's recall@10 against exact search, on a synthetic library
    /// of N chunks (384-d vectors) written through the real write path.
    /// A library built by an earlier run with the same size is reused.
    Search {
        /// Chunks in the synthetic library.
        #[arg(long)]
        chunks: usize,
        /// Timed queries per mode.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Queries whose dense results are compared with exact search.
        #[arg(long, default_value_t = 100)]
        recall_queries: usize,
        /// Library folder (default: <cache>/lectern/bench/search-<N>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Hybrid fusion: rrf, norm or norm:<dense weight>.
        #[arg(long, default_value = "norm", value_parser = parse_fusion)]
        fusion: Fusion,
        /// IVF partitions probed per query (default: the library's policy).
        #[arg(long)]
        nprobes: Option<usize>,
        /// Refine factor of the ANN search (default: the library's policy).
        #[arg(long)]
        refine: Option<u32>,
        /// Rows from which the ANN index is built (default: the library's policy).
        #[arg(long)]
        ann_min_rows: Option<usize>,
        /// Keep exact dense search (no ANN index), for comparison.
        #[arg(long)]
        exact: bool,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON only.
        #[arg(long)]
        json: bool,
    },
    /// Ingest throughput into a fresh library, with the time spent in each
    /// stage (parse, chunk, embed, index) and what the stages other than
    /// embedding add on top of it.
    Ingest {
        /// Files and folders to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON only.
        #[arg(long)]
        json: bool,
    },
    /// Embedding throughput on the first N SciFact documents (title + " " + text),
    /// the same texts and unit (tokens after truncation, special tokens
    /// included) as the sentence-transformers peer benchmark.
    Embed {
        /// BEIR corpus (.jsonl or .jsonl.gz).
        #[arg(long)]
        corpus: PathBuf,
        /// Number of documents.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Truncation length in tokens.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Texts per forward pass.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Also run the sentence-transformers peer (`bench/peer.sh` in the
        /// shared folder: `LECTERN_SHARED_DIR` or `<repo>/../shared`) before
        /// and after, and print the ratio.
        #[arg(long)]
        peer: bool,
    },
    /// Language-model prefill and decode speed and time to first token on
    /// a random prompt (greedy, end-of-turn ignored).
    Llm {
        /// The model: a .gguf file or a Qwen3 folder.
        #[arg(long)]
        model: PathBuf,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        /// Tokens to decode.
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        /// Seed of the random prompt.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also run llama.cpp on the same file (`peer.sh llm`) and print the ratios.
        #[arg(long)]
        peer: bool,
        /// The peer benchmark script (default: bench/peer.sh in
        /// LECTERN_SHARED_DIR, else ../shared/bench/peer.sh).
        #[arg(long)]
        peer_script: Option<PathBuf>,
        /// Threads for the peer.
        #[arg(long, default_value_t = 2)]
        peer_threads: usize,
        /// Key/value cache type: f32, f16, bf16 or q8. Default: f16 for
        /// GGUF models, else the model's activation dtype, or
        /// LECTERN_KV_DTYPE.
        #[arg(long, value_name = "TYPE", value_parser = parse_kv_dtype)]
        kv_dtype: Option<KvDtype>,
        /// Print JSON only.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GpuCmd {
    /// The device that would be used, live readings of every GPU, and the
    /// models holding GPU memory.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stream GPU readings and threshold events until interrupted (Ctrl-C).
    Watch {
        /// Print one JSON object per line: `{"type":"sample",…}` or
        /// `{"type":"event",…}`.
        #[arg(long)]
        json: bool,
        /// Time between readings, e.g. 500ms, 1s, 2m.
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Stop after this many readings.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The language model variant that fits this machine, and the context
    /// it can afford.
    Recommend {
        /// Tokens of context the model must hold.
        #[arg(long, default_value_t = 8192)]
        context: u32,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Warnings by default; parser chatter about recoverable oddities in PDFs and
/// a LanceDB deprecation notice stay out of the user's terminal.
const DEFAULT_LOG: &str = "warn,pdf_oxide=error,lance::dataset::scanner=error";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LECTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The shared folder of benchmarks and evaluation data: `LECTERN_SHARED_DIR`,
/// else `shared` next to the repository this binary was built from.
fn shared_dir() -> PathBuf {
    std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")))
}

fn config(cli: &Cli) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::from_env(cli.data_dir.clone())?;
    if let Some(d) = &cli.device {
        cfg.device = d.parse::<DevicePreference>()?;
    }
    if let Some(e) = &cli.embedder {
        cfg.set_embedder(e);
    }
    if let Command::Ask {
        kv_dtype: Some(kv), ..
    }
    | Command::Bench {
        kind: BenchKind::Llm {
            kv_dtype: Some(kv), ..
        },
    } = &cli.command
    {
        cfg.kv_dtype = Some(*kv);
    }
    Ok(cfg)
}

async fn open(cli: &Cli) -> Result<Engine> {
    let cfg = config(cli)?;
    let dir = cfg.embedder_dir.clone();
    let engine = Engine::open(cfg).await.with_context(|| {
        format!(
            "could not open the library (embedding model folder: {}; run models/provision.sh or set LECTERN_EMBEDDER)",
            dir.display()
        )
    })?;
    let pending = engine.pending_reindex().await;
    // Ingest re-indexes the waiting documents itself, and an evaluation
    // re-indexes its own corpus.
    if !pending.is_empty() && !matches!(cli.command, Command::Ingest { .. } | Command::Eval { .. })
    {
        eprintln!(
            "note: the library was rebuilt in a newer format; {} document(s) are waiting to be indexed again (run `lectern ingest` with any path to do it)",
            pending.len()
        );
    }
    Ok(engine)
}

fn print_hits(hits: &[SearchHit]) {
    if hits.is_empty() {
        println!("No matches.");
        return;
    }
    for (i, h) in hits.iter().enumerate() {
        let c = &h.chunk;
        let page = if c.location.is_empty() {
            c.page.map(|p| format!(", page {p}")).unwrap_or_default()
        } else {
            format!(", {}", c.location)
        };
        let legs = [
            h.bm25_rank.map(|r| format!("bm25 #{r}")),
            h.dense_rank.map(|r| format!("dense #{r}")),
            h.rerank_score.map(|s| format!("rerank {s:.4}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        println!(
            "{:>2}. {}{}  score {:.4}  ({})",
            i + 1,
            c.title,
            page,
            h.score,
            legs
        );
        println!("    {}", c.path);
        if !c.heading_path.is_empty() {
            println!("    § {}", c.heading_path.join(" › "));
        }
        let snippet: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let snippet: String = snippet.chars().take(200).collect();
        println!("    {snippet}…");
    }
}

/// The model worker as this command sees it: whether an engine opened
/// with `cfg` would use it and why (starting it briefly when that is
/// needed to decide), and what it said about itself.
async fn worker_report(
    cfg: &EngineConfig,
    gpu: &lectern_engine::GpuStatus,
) -> Result<lectern_engine::WorkerReport> {
    let (cfg, gpu) = (cfg.clone(), gpu.clone());
    Ok(
        tokio::task::spawn_blocking(move || lectern_engine::worker_policy::report_for(&cfg, &gpu))
            .await?,
    )
}

/// Prints GPU readings every `interval` and events as they happen, until
/// interrupted or `count` readings have been printed.
async fn gpu_watch(
    pref: DevicePreference,
    interval: std::time::Duration,
    count: Option<u64>,
    json: bool,
) -> Result<()> {
    use lectern_engine::gpu::{Sampler, SamplerConfig, TelemetryBackend};
    let status = lectern_engine::gpu_status(pref)?;
    let telemetry: Arc<dyn TelemetryBackend> =
        Arc::from(lectern_engine::gpu::telemetry_from_env()?);
    let config = SamplerConfig {
        active_interval: interval,
        idle_interval: interval,
        ..SamplerConfig::default()
    };
    let events = lectern_engine::gpu::EventBus::new();
    let rx = events.subscribe();
    let sampler = Sampler::manual(
        telemetry,
        config,
        events,
        Arc::new(lectern_engine::gpu::SystemClock::new()),
    );
    if !json {
        println!(
            "Watching {} GPU(s) through {} every {} ms (device {}); Ctrl-C to stop.",
            status.gpus.len(),
            status.telemetry_backend,
            interval.as_millis(),
            status.selected
        );
        if let Some(reason) = &status.no_gpu_reason {
            println!("No GPU readings: {reason}");
        }
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut taken = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        ticker.tick().await;
        let sample = sampler.sample_now();
        if json {
            let mut value = serde_json::to_value(&sample)?;
            value["type"] = "sample".into();
            writeln!(out, "{value}")?;
        } else {
            for g in &sample.gpus {
                writeln!(out, "{}", watch_line(sample.at_ms, g))?;
            }
            if sample.gpus.is_empty() {
                writeln!(out, "{:>8.1}s  no readings", sample.at_ms as f64 / 1000.0)?;
            }
        }
        for event in rx.try_iter() {
            if json {
                let line = serde_json::json!({
                    "type": "event",
                    "at_ms": sample.at_ms,
                    "event": event,
                    "message": event.to_string(),
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{:>8.1}s  ! {event}", sample.at_ms as f64 / 1000.0)?;
            }
        }
        out.flush()?;
        taken += 1;
        if count.is_some_and(|n| taken >= n) {
            return Ok(());
        }
    }
}

/// One reading of one GPU on one line.
fn watch_line(at_ms: u64, g: &lectern_engine::GpuSnapshot) -> String {
    let na = || "n/a".to_owned();
    let gib = |b: u64| format!("{:.2}", b as f64 / (1u64 << 30) as f64);
    let vram = match (g.memory_used, g.memory_total) {
        (Some(u), Some(t)) => format!(
            "{}/{} GiB ({:.1}%)",
            gib(u),
            gib(t),
            g.memory_used_fraction().unwrap_or(0.0) * 100.0
        ),
        _ => na(),
    };
    let temp = g.temperature_c.map_or_else(na, |t| format!("{t} °C"));
    let power = match (g.power_mw, g.power_limit_mw) {
        (Some(p), Some(l)) => format!("{:.1}/{:.1} W", p as f64 / 1000.0, l as f64 / 1000.0),
        (Some(p), None) => format!("{:.1} W", p as f64 / 1000.0),
        _ => na(),
    };
    let util = g.utilization_gpu_pct.map_or_else(na, |u| format!("{u}%"));
    format!(
        "{:>8.1}s  GPU {}  VRAM {vram}  {temp}  {power}  util {util}",
        at_ms as f64 / 1000.0,
        g.index
    )
}

fn print_recommendation(advice: &lectern_engine::gpu::Recommendation) {
    println!("{}.", advice.reason);
    println!();
    println!(
        "{:<26} {:<7} {:>7} {:>10} {:>5} {:>9}  note",
        "model", "format", "params", "needs", "fits", "max ctx"
    );
    for v in &advice.variants {
        let note = match (&v.excluded, v.installed) {
            (Some(why), _) => why.clone(),
            (None, true) => "installed".to_owned(),
            (None, false) => String::new(),
        };
        println!(
            "{:<26} {:<7} {:>6.2}B {:>10} {:>5} {:>9}  {note}",
            v.model,
            v.format.to_string(),
            v.parameters as f64 / 1e9,
            lectern_engine::gpu::format_bytes(v.estimate.total),
            if v.fits { "yes" } else { "no" },
            v.max_context
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        );
    }
}

fn main() -> Result<()> {
    // Before the runtime's threads exist: it sets an environment variable.
    lectern_engine::prefer_own_cpu_threads();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match &cli.command {
        Command::Gpu {
            cmd: GpuCmd::Status { json },
        } => {
            let cfg = config(&cli)?;
            let report = lectern_engine::gpu_report(cfg.device)?;
            let worker = worker_report(&cfg, &report.status).await?;
            if *json {
                let mut value = serde_json::to_value(&report)?;
                value["worker"] = serde_json::to_value(&worker)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", report.render_text());
                print!("{}", worker.render_text());
            }
        }
        Command::Gpu {
            cmd:
                GpuCmd::Watch {
                    json,
                    interval,
                    count,
                },
        } => {
            let cfg = config(&cli)?;
            let interval = lectern_engine::gpu::parse_duration(interval)
                .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
            anyhow::ensure!(!interval.is_zero(), "--interval must be above zero");
            gpu_watch(cfg.device, interval, *count, *json).await?;
        }
        Command::Gpu {
            cmd: GpuCmd::Recommend { context, json },
        } => {
            let cfg = config(&cli)?;
            let advice = lectern_engine::recommend_llm_with_kv(
                &cfg.models_dir,
                cfg.device,
                *context,
                cfg.kv_dtype,
            )?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&advice)?);
            } else {
                print_recommendation(&advice);
            }
        }
        Command::Doctor { json } => {
            let cfg = config(&cli)?;
            let report = lectern_engine::doctor(&cfg).await;
            let worker = worker_report(&cfg, &report.gpu).await?;
            if *json {
                let mut value = serde_json::to_value(&report)?;
                value["worker"] = serde_json::to_value(&worker)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", report.render_text());
                print!("{}", worker.render_text());
            }
        }
        Command::Ingest { paths, again, json } => {
            let engine = open(&cli).await?;
            let bar = progress::IngestProgress::new(std::io::stderr().is_terminal() && !json);
            let sink = bar.sink();
            let mut paths = paths.clone();
            let pending = engine.pending_reindex().await;
            if !pending.is_empty() {
                eprintln!(
                    "re-indexing {} document(s) from an older library format",
                    pending.len()
                );
                paths.extend(pending);
            }
            let cancel = Arc::new(AtomicBool::new(false));
            let report = if *again {
                engine.reindex(paths, sink, cancel).await?
            } else {
                engine.ingest(paths, sink, cancel).await?
            };
            bar.finish();
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "Indexed {} file(s), {} chunk(s) in {:.1}s ({} embedded, {} reused); {} unchanged, {} failed, {} skipped.",
                    report.indexed,
                    report.chunks,
                    report.seconds,
                    report.embedded,
                    report.reused,
                    report.unchanged,
                    report.failed.len(),
                    report.skipped.len()
                );
                for (p, e) in &report.failed {
                    println!("  failed: {}: {e}", p.display());
                }
            }
            if !report.failed.is_empty() && report.indexed + report.unchanged == 0 {
                std::process::exit(1);
            }
        }
        Command::Search { query, opts, json } => {
            let engine = open(&cli).await?;
            engine.set_rerank_mode(opts.rerank);
            let hits = engine
                .search_with(
                    &SearchRequest {
                        query: query.clone(),
                        mode: opts.mode.into(),
                        top_k: opts.top_k,
                        collection: opts.collection.clone(),
                    },
                    opts.fusion,
                )
                .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                print_hits(&hits);
            }
        }
        Command::Ask {
            question,
            model,
            max_tokens,
            temperature,
            seed,
            top_k,
            json,
            think,
            show_thinking,
            rerank,
            collection,
            kv_dtype: _,
        } => {
            let engine = open(&cli).await?;
            engine.set_rerank_mode(*rerank);
            let mut req = AskRequest::new(question.clone());
            req.model = model.clone();
            req.top_k = *top_k;
            req.generation.max_tokens = *max_tokens;
            req.generation.temperature = *temperature;
            req.generation.seed = *seed;
            req.generation.enable_thinking = *think;
            req.collection = collection.clone();
            let stream = !*json;
            let show_thinking = *show_thinking;
            let on_event = Arc::new(move |ev: AskEvent| match ev {
                AskEvent::Token { text } if stream => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
                AskEvent::Thinking { text } if stream && show_thinking => {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(text.as_bytes());
                    let _ = err.flush();
                }
                AskEvent::Restarted { reason } if stream => {
                    // What was printed cannot be taken back: mark where the
                    // whole answer starts again.
                    let _ = std::io::stdout().lock().flush();
                    eprintln!("\n[{reason}; the answer starts again]");
                }
                _ => {}
            });
            let answer = engine
                .ask(req, on_event, Arc::new(AtomicBool::new(false)))
                .await?;
            if *json {
                let mut value = serde_json::to_value(&answer)?;
                if !show_thinking {
                    if let Some(obj) = value.as_object_mut() {
                        obj.remove("thinking");
                        if let Some(stats) = obj.get_mut("stats").and_then(|v| v.as_object_mut()) {
                            stats.remove("thinking");
                        }
                    }
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let flagged: Vec<_> = answer.checks.iter().filter(|c| c.flagged).collect();
                if !flagged.is_empty() {
                    println!("\n\nUnsupported citations:");
                    for c in flagged {
                        println!("  [{}] \"{}\": {}", c.n, c.sentence, c.reason);
                    }
                }
                println!("\n\nSources:");
                if answer.sources.is_empty() {
                    println!("  (no passages were found in your documents)");
                }
                for s in &answer.sources {
                    let page = s.page.map(|p| format!(", page {p}")).unwrap_or_default();
                    let mark = if s.cited { "" } else { "  (not cited)" };
                    println!("  [{}] {}{} — {}{}", s.n, s.title, page, s.path, mark);
                }
                eprintln!(
                    "{} prompt tokens, {} generated; first token after {:.0} ms, {:.1} tokens/s",
                    answer.stats.prompt_tokens,
                    answer.stats.generated_tokens,
                    answer.stats.prefill_ms,
                    answer.stats.generated_tokens as f64 * 1e3
                        / (answer.stats.decode_ms + answer.stats.prefill_ms).max(1e-9)
                );
                eprintln!(
                    "retrieval {:.0} ms, prefill {:.0} ms ({:.1} tok/s), first token at {:.0} ms, decode {:.1} tok/s",
                    answer.timings.retrieve_ms,
                    answer.timings.prefill_ms,
                    answer.timings.prefill_tok_s,
                    answer.timings.first_token_ms,
                    answer.timings.decode_tok_s
                );
            }
        }
        Command::Eval {
            kind:
                EvalKind::Beir {
                    corpus,
                    queries,
                    qrels,
                    mode,
                    fusion,
                    rerank,
                    json,
                },
        } => {
            let engine = open(&cli).await?;
            engine.set_fusion(*fusion);
            engine.set_rerank_mode(*rerank);
            let docs = load_corpus(corpus)?;
            let queries = load_queries(queries)?;
            let qrels = load_qrels(qrels)?;
            let bar = progress::IngestProgress::new(std::io::stderr().is_terminal() && !json);
            let added = engine.ingest_beir(docs, bar.sink()).await?;
            bar.finish();
            if added > 0 {
                eprintln!("indexed {added} corpus documents");
            }
            let modes = match mode {
                EvalMode::All => vec![SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid],
                EvalMode::Hybrid => vec![SearchMode::Hybrid],
                EvalMode::Dense => vec![SearchMode::Dense],
                EvalMode::Bm25 => vec![SearchMode::Bm25],
            };
            let mut reports = Vec::new();
            for m in modes {
                reports.push(engine.eval_beir(&queries, &qrels, m).await?);
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!("hybrid fusion: {fusion}");
                match reports.first().and_then(|r| r.reranker.as_deref()) {
                    Some(name) => println!(
                        "reranker: {name} (top {} candidates re-scored)",
                        engine.rerank_depth()
                    ),
                    None => println!("reranker: none"),
                }
                println!(
                    "{:<8} {:>8} {:>10} {:>11} {:>8} {:>9}",
                    "mode", "queries", "nDCG@10", "Recall@100", "MRR@10", "search s"
                );
                for r in &reports {
                    println!(
                        "{:<8} {:>8} {:>10.4} {:>11.4} {:>8.4} {:>9.1}",
                        r.mode.to_string(),
                        r.queries,
                        r.ndcg_at_10,
                        r.recall_at_100,
                        r.mrr_at_10,
                        r.search_seconds
                    );
                }
            }
        }
        Command::Bench {
            kind:
                BenchKind::Search {
                    chunks,
                    queries,
                    recall_queries,
                    dir,
                    fusion,
                    nprobes,
                    refine,
                    ann_min_rows,
                    exact,
                    seed,
                    json,
                },
        } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir)
                    .join(".cache/lectern/bench")
                    .join(format!("search-{chunks}")),
            };
            let mut ann = lectern_engine::AnnPolicy::default();
            if let Some(n) = nprobes {
                ann.nprobes = *n;
            }
            if let Some(r) = refine {
                ann.refine_factor = *r;
            }
            if let Some(m) = ann_min_rows {
                ann.min_rows = *m;
            }
            let opts = lectern_engine::bench_search::SearchBenchOptions {
                dir,
                chunks: *chunks,
                queries: *queries,
                recall_queries: *recall_queries,
                fusion: *fusion,
                ann: Some(ann),
                exact_only: *exact,
                seed: *seed,
            };
            let quiet = *json;
            let report = lectern_engine::bench_search::bench_search(&opts, &move |line| {
                if !quiet {
                    eprintln!("{line}");
                }
            })
            .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                if let Some(s) = report.build_seconds {
                    println!("built {} chunks in {s:.1} s", report.chunks);
                }
                println!(
                    "vector index: {} ({} of {} rows indexed; maintenance {:.1} s; nprobes {}, refine {})",
                    if report.index.has_index { "IVF-PQ" } else { "none (exact)" },
                    report.index.indexed_rows,
                    report.index.rows,
                    report.index_seconds,
                    report.nprobes,
                    report.refine_factor
                );
                println!(
                    "{:<12} {:>9} {:>9} {:>9}",
                    "top-10", "p50 ms", "p95 ms", "mean ms"
                );
                for (name, l) in [
                    ("bm25", report.bm25),
                    ("dense", report.dense),
                    ("hybrid", report.hybrid),
                    ("exact dense", report.exact_dense),
                    ("bm25 @100", report.bm25_leg),
                    ("dense @100", report.dense_leg),
                ] {
                    println!(
                        "{name:<12} {:>9.1} {:>9.1} {:>9.1}",
                        l.p50_ms, l.p95_ms, l.mean_ms
                    );
                }
                println!(
                    "dense recall@10 vs exact: {:.3} ({} queries); hybrid fusion {}; {} timed queries per mode",
                    report.dense_recall_at_10, report.recall_queries, report.fusion, report.queries
                );
            }
        }
        Command::Bench {
            kind: BenchKind::Ingest { paths, json },
        } => {
            let scratch = tempfile::tempdir()?;
            let mut cfg = config(&cli)?;
            cfg.data_dir = scratch.path().join("library");
            let engine = Engine::open(cfg).await?;
            let b = engine.bench_ingest(paths.clone()).await?;
            if *json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                let share = |s: f64| 100.0 * s / b.seconds.max(1e-9);
                println!(
                    "{} files ({} failed), {} pages, {} chunks, {:.2} MB in {:.2} s: {:.1} chunks/s, {:.3} MB/s",
                    b.files, b.failed, b.pages, b.chunks, b.bytes as f64 / 1e6, b.seconds, b.chunks_per_s, b.mb_per_s
                );
                for (name, s) in [
                    ("parse", b.stages.parse),
                    ("chunk", b.stages.chunk),
                    ("embed", b.stages.embed),
                    ("index", b.stages.index),
                ] {
                    println!("  {name:<6} {s:>8.2} s  {:>5.1} %", share(s));
                }
                println!(
                    "  other  {:>8.2} s  {:>5.1} %",
                    b.seconds - b.stages.parse - b.stages.chunk - b.stages.embed - b.stages.index,
                    share(
                        b.seconds
                            - b.stages.parse
                            - b.stages.chunk
                            - b.stages.embed
                            - b.stages.index
                    )
                );
                println!(
                    "everything but embedding adds {:.1} % to the embedding time",
                    100.0 * b.overhead
                );
            }
        }
        Command::Bench {
            kind:
                BenchKind::Embed {
                    corpus,
                    limit,
                    max_tokens,
                    batch,
                    peer,
                },
        } => {
            let cfg = config(&cli)?;
            let texts: Vec<String> = load_corpus(corpus)?
                .into_iter()
                .take(*limit)
                .map(|d| format!("{} {}", d.title, d.text))
                .collect();
            let (max_tokens, batch) = (*max_tokens, *batch);
            if *peer {
                let script = shared_dir().join("bench").join("peer.sh");
                let report = tokio::task::spawn_blocking(move || {
                    lectern_engine::bench::compare_embed(&cfg, &script, &texts, max_tokens, batch)
                })
                .await??;
                eprintln!(
                    "lectern {:.1} tokens/s, peer {:.1} before and {:.1} after: ratio {:.2}",
                    report.lectern.tokens_per_s,
                    report.peer_before.tokens_per_s,
                    report.peer_after.tokens_per_s,
                    report.ratio
                );
                println!("{}", serde_json::to_string(&report)?);
            } else {
                let report = tokio::task::spawn_blocking(move || {
                    lectern_engine::bench::bench_embed(&cfg, &texts, max_tokens, batch)
                })
                .await??;
                println!("{}", serde_json::to_string(&report)?);
            }
        }
        Command::Bench {
            kind:
                BenchKind::Llm {
                    model,
                    prompt_tokens,
                    gen_tokens,
                    seed,
                    peer,
                    peer_script,
                    peer_threads,
                    json,
                    kv_dtype: _,
                },
        } => {
            let cfg = config(&cli)?;
            let peer_script = peer_script.clone().unwrap_or_else(|| {
                std::env::var_os("LECTERN_SHARED_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("../shared"))
                    .join("bench")
                    .join("peer.sh")
            });
            if *peer && !peer_script.is_file() {
                anyhow::bail!(
                    "peer benchmark script not found at {} (pass --peer-script or set LECTERN_SHARED_DIR)",
                    peer_script.display()
                );
            }
            let opts = lectern_engine::bench_llm::LlmBenchOptions {
                model: model.clone(),
                prompt_tokens: *prompt_tokens,
                gen_tokens: *gen_tokens,
                seed: *seed,
            };
            let ours = tokio::task::spawn_blocking(move || {
                lectern_engine::bench_llm::bench_llm(&cfg, &opts)
            })
            .await??;
            let comparison = if *peer {
                let (script, model, threads, ours) =
                    (peer_script, model.clone(), *peer_threads, ours.clone());
                Some(
                    tokio::task::spawn_blocking(move || {
                        lectern_engine::bench_llm::run_peer(&script, &ours, &model, threads)
                    })
                    .await??,
                )
            } else {
                None
            };
            if *json {
                let value = serde_json::json!({ "lectern": ours, "peer": comparison });
                println!("{}", serde_json::to_string(&value)?);
            } else {
                println!(
                    "lectern    prefill {:>8.1} tok/s   decode {:>7.2} tok/s   first token {:>7.3} s   ({} prompt, {} generated, {}, {} KV cache, load {:.1} s)",
                    ours.prefill_tok_s,
                    ours.decode_tok_s,
                    ours.ttft_s,
                    ours.prompt_tokens,
                    ours.gen_tokens,
                    ours.device,
                    ours.kv_dtype,
                    ours.load_s
                );
                if let Some(c) = &comparison {
                    let f = |k: &str| c.peer.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                    println!(
                        "llama.cpp  prefill {:>8.1} tok/s   decode {:>7.2} tok/s   first token {:>7.3} s   ({} threads)",
                        f("prefill_tok_s"),
                        f("decode_tok_s"),
                        f("ttft_s"),
                        *peer_threads
                    );
                    let r = |v: Option<f64>| v.map(|v| format!("{v:.2}x")).unwrap_or("n/a".into());
                    println!(
                        "ratio      prefill {}   decode {}   first token {} (lectern / llama.cpp; first token: llama.cpp time / lectern time)",
                        r(c.prefill_ratio),
                        r(c.decode_ratio),
                        r(c.ttft_ratio)
                    );
                }
                println!(
                    "{}",
                    serde_json::json!({ "lectern": ours, "peer": comparison })
                );
            }
        }
        Command::Delete { target } => {
            let engine = open(&cli).await?;
            let by_id = engine.delete_document(target).await?;
            let removed = by_id || engine.delete_path(std::path::Path::new(target)).await?;
            if removed {
                println!("Removed {target}.");
            } else {
                anyhow::bail!("no indexed document has the id or path {target}");
            }
        }
        Command::Watch { folder } => {
            let engine = open(&cli).await?;
            let bar = progress::IngestProgress::new(std::io::stderr().is_terminal());
            let on_event = Arc::new(|ev: WatchEvent| match ev {
                WatchEvent::Synced {
                    indexed,
                    unchanged,
                    removed,
                    failed,
                } => {
                    eprintln!(
                        "in step: {indexed} indexed, {unchanged} unchanged, {removed} removed, {} failed",
                        failed.len()
                    );
                    for (p, e) in failed {
                        eprintln!("  failed: {}: {e}", p.display());
                    }
                }
                WatchEvent::Watching { folder } => {
                    eprintln!("watching {} (Ctrl-C to stop)", folder.display())
                }
                WatchEvent::Error { message } => eprintln!("watch error: {message}"),
            });
            engine
                .watch(
                    folder,
                    bar.sink(),
                    on_event,
                    Arc::new(AtomicBool::new(false)),
                )
                .await?;
        }
        Command::Reembed { cancel, json } => {
            // The engine opens with the library's own model; --embedder
            // names the model to switch to.
            let mut cfg = EngineConfig::from_env(cli.data_dir.clone())?;
            if let Some(d) = &cli.device {
                cfg.device = d.parse::<DevicePreference>()?;
            }
            cfg.embedder_explicit = false;
            let engine = Engine::open(cfg)
                .await
                .context("could not open the library")?;
            if *cancel {
                if engine.cancel_embedder_switch().await? {
                    println!("Gave up the embedding model switch; the library keeps its model.");
                } else {
                    println!("No embedding model switch is in progress.");
                }
                return Ok(());
            }
            let Some(target) = cli.embedder.clone() else {
                anyhow::bail!(
                    "name the embedding model to switch to with --embedder (a catalog id such as bge-small-en-v1.5, or a folder)"
                );
            };
            let quiet = *json;
            let report = engine
                .switch_embedder(
                    &target,
                    Arc::new(move |e| {
                        if quiet {
                            return;
                        }
                        match e {
                            lectern_engine::ReembedEvent::Started {
                                embedder,
                                dim,
                                documents,
                                pending,
                            } => eprintln!(
                                "switching to {embedder} ({dim} dimensions): {pending} of {documents} document(s) to embed"
                            ),
                            lectern_engine::ReembedEvent::Progress {
                                documents_done,
                                documents,
                                chunks_embedded,
                            } => eprintln!(
                                "  {documents_done}/{documents} documents, {chunks_embedded} passages embedded"
                            ),
                            lectern_engine::ReembedEvent::Finished { .. } => {}
                        }
                    }),
                    Arc::new(AtomicBool::new(false)),
                )
                .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "The library now uses {} ({} dimensions): {} document(s), {} passages embedded in {:.1}s.",
                    report.embedder,
                    report.dim,
                    report.documents,
                    report.chunks_embedded,
                    report.seconds
                );
            }
        }
        Command::Check { json } => {
            let engine = open(&cli).await?;
            let c = engine.verify().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!(
                    "{} documents, {} chunks; LanceDB rows {}, tantivy chunks {}; {} unfinished document(s) hidden from search",
                    c.documents,
                    c.chunks,
                    c.vector_rows,
                    c.text_rows,
                    c.unfinished.len()
                );
                for p in &c.problems {
                    println!("  problem: {p}");
                }
                if c.is_consistent() {
                    println!("consistent");
                }
            }
            if !c.is_consistent() {
                std::process::exit(2);
            }
        }
        Command::Compact => {
            let engine = open(&cli).await?;
            engine.compact().await?;
            println!("Compacted.");
        }
        Command::Models {
            cmd: ModelsCmd::List { json },
        } => {
            let cfg = config(&cli)?;
            let catalog = Catalog::builtin();
            let rows: Vec<serde_json::Value> = catalog
                .models
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m.id,
                        "kind": m.kind,
                        "repo": m.repo,
                        "size": m.total_size(),
                        "state": m.install_state(&cfg.models_dir),
                    })
                })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("models folder: {}", cfg.models_dir.display());
                for m in &catalog.models {
                    let state = match m.install_state(&cfg.models_dir) {
                        InstallState::Installed { .. } => "installed".to_string(),
                        InstallState::Partial { missing } => {
                            format!("incomplete ({} file(s) missing)", missing.len())
                        }
                        InstallState::Absent => "not installed".to_string(),
                    };
                    let size = m
                        .total_size()
                        .map(|s| format!("{:.1} MB", s as f64 / 1e6))
                        .unwrap_or_else(|| "size unknown".into());
                    println!(
                        "{:<24} {:<9} {:>12}  {}",
                        m.id,
                        format!("{:?}", m.kind).to_lowercase(),
                        size,
                        state
                    );
                }
            }
        }
        Command::Models {
            cmd: ModelsCmd::Pull { id },
        } => {
            let cfg = config(&cli)?;
            let catalog = Catalog::builtin();
            let entry = catalog.get(id)?;
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(0),
                if std::io::stderr().is_terminal() {
                    indicatif::ProgressDrawTarget::stderr()
                } else {
                    indicatif::ProgressDrawTarget::hidden()
                },
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            let b = bar.clone();
            let sink = Arc::new(move |ev: DownloadEvent| match ev {
                DownloadEvent::FileStarted { file, size } => {
                    b.set_message(file);
                    b.set_length(size);
                    b.set_position(0);
                }
                DownloadEvent::Progress { done, .. } => b.set_position(done),
                DownloadEvent::FileVerified {
                    file,
                    digest_checked,
                } => b.println(format!(
                    "{file}: {}",
                    if digest_checked {
                        "sha256 verified"
                    } else {
                        "downloaded (no digest in the catalog)"
                    }
                )),
                DownloadEvent::FileSkipped { file } => {
                    b.println(format!("{file}: already installed"))
                }
                DownloadEvent::Finished { .. } => {}
            });
            let path = lectern_engine::hub::download(
                entry,
                &DownloadOptions::new(&cfg.models_dir),
                sink,
                Arc::new(AtomicBool::new(false)),
            )
            .await?;
            bar.finish_and_clear();
            println!("{} is installed at {}", entry.id, path.display());
        }
        Command::Collections { cmd } => {
            let engine = open(&cli).await?;
            collections(&engine, cmd).await?;
        }
        Command::Docs { json } => {
            let engine = open(&cli).await?;
            let docs = engine.documents().await;
            if *json {
                println!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                for d in &docs {
                    println!(
                        "{}  {:<8} {:>4} pages {:>5} chunks  {}",
                        d.doc_id, d.format, d.pages, d.chunks, d.path
                    );
                    for w in &d.warnings {
                        println!("      warning: {w}");
                    }
                }
                println!("{} document(s)", docs.len());
            }
        }
    }
    Ok(())
}

/// Resolves each of `targets` (a document id or a file's path) to an id.
async fn doc_ids(engine: &Engine, targets: &[String]) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(targets.len());
    for t in targets {
        let doc = engine
            .find_document(t)
            .await
            .with_context(|| format!("no indexed document has the id or path {t}"))?;
        ids.push(doc.doc_id);
    }
    Ok(ids)
}

async fn collections(engine: &Engine, cmd: &CollectionsCmd) -> Result<()> {
    match cmd {
        CollectionsCmd::List { json } => {
            let list = engine.collections().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in &list {
                    println!("{:<32} {:>5} document(s)", c.name, c.doc_ids.len());
                }
                println!("{} collection(s)", list.len());
            }
        }
        CollectionsCmd::Create { name } => {
            let c = engine.create_collection(name).await?;
            println!("Created the collection {}.", c.name);
        }
        CollectionsCmd::Rename { name, new_name } => {
            let c = engine.rename_collection(name, new_name).await?;
            println!("Renamed {name} to {}.", c.name);
        }
        CollectionsCmd::Add { name, docs } => {
            let ids = doc_ids(engine, docs).await?;
            let c = engine.add_to_collection(name, &ids).await?;
            println!("{} now holds {} document(s).", c.name, c.doc_ids.len());
        }
        CollectionsCmd::Remove { name, docs } => {
            let ids = doc_ids(engine, docs).await?;
            let c = engine.remove_from_collection(name, &ids).await?;
            println!("{} now holds {} document(s).", c.name, c.doc_ids.len());
        }
        CollectionsCmd::Delete { name } => {
            let c = engine.delete_collection(name).await?;
            println!(
                "Deleted the collection {} (its documents stay in the library).",
                c.name
            );
        }
    }
    Ok(())
}
