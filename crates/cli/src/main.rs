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
    AskEvent, AskRequest, DevicePreference, Engine, EngineConfig, SearchHit, SearchMode,
    SearchRequest, WatchEvent,
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
        /// Print the answer as JSON at the end instead of streaming.
        #[arg(long)]
        json: bool,
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
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchKind {
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
    },
}

#[derive(Subcommand)]
enum GpuCmd {
    /// The device that would be used and, where NVML works, live readings.
    Status {
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

fn config(cli: &Cli) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::from_env(cli.data_dir.clone())?;
    if let Some(d) = &cli.device {
        cfg.device = d.parse::<DevicePreference>()?;
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
    if !pending.is_empty() && !matches!(cli.command, Command::Ingest { .. }) {
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

#[tokio::main]
async fn main() -> Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match &cli.command {
        Command::Gpu {
            cmd: GpuCmd::Status { json },
        } => {
            let cfg = config(&cli)?;
            let status = lectern_engine::gpu_status(cfg.device)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render_text());
            }
        }
        Command::Ingest { paths, json } => {
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
            let report = engine
                .ingest(paths, sink, Arc::new(AtomicBool::new(false)))
                .await?;
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
            let hits = engine
                .search(&SearchRequest {
                    query: query.clone(),
                    mode: opts.mode.into(),
                    top_k: opts.top_k,
                })
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
        } => {
            let engine = open(&cli).await?;
            let mut req = AskRequest::new(question.clone());
            req.model = model.clone();
            req.top_k = *top_k;
            req.generation.max_tokens = *max_tokens;
            req.generation.temperature = *temperature;
            req.generation.seed = *seed;
            let stream = !*json;
            let on_event = Arc::new(move |ev: AskEvent| {
                if let (true, AskEvent::Token { text }) = (stream, ev) {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
            });
            let answer = engine
                .ask(req, on_event, Arc::new(AtomicBool::new(false)))
                .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
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
            }
        }
        Command::Eval {
            kind:
                EvalKind::Beir {
                    corpus,
                    queries,
                    qrels,
                    mode,
                    json,
                },
        } => {
            let engine = open(&cli).await?;
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
                BenchKind::Embed {
                    corpus,
                    limit,
                    max_tokens,
                    batch,
                },
        } => {
            let cfg = config(&cli)?;
            let texts: Vec<String> = load_corpus(corpus)?
                .into_iter()
                .take(*limit)
                .map(|d| format!("{} {}", d.title, d.text))
                .collect();
            let (max_tokens, batch) = (*max_tokens, *batch);
            let report = tokio::task::spawn_blocking(move || {
                lectern_engine::bench::bench_embed(&cfg, &texts, max_tokens, batch)
            })
            .await??;
            println!("{}", serde_json::to_string(&report)?);
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
