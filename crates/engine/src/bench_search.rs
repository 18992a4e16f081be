//! Search latency and dense recall on a synthetic library, behind
//! `lectern bench search`.
//!
//! The library is written through the real [`Library`] write path (LanceDB
//! and tantivy on disk). Vectors are 384-d unit vectors from a Gaussian
//! mixture (one centre per topic), so nearest neighbours are meaningful;
//! texts are words drawn from a Zipf distribution over a pseudo-word
//! vocabulary, mixed with words of the chunk's topic, so BM25 sees realistic
//! term statistics. Queries lie near corpus points and use words of the same
//! topic and chunk. Everything derives from a seed, so a second run reuses
//! the library it finds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lectern_index::{
    AnnPolicy, ChunkRecord, DocumentEntry, Fusion, Library, SearchMode, VectorIndexState,
    FUSION_DEPTH,
};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// Embedding size of the synthetic library (that of MiniLM and bge-small).
pub const BENCH_DIM: usize = 384;

/// Chunks per synthetic document.
const CHUNKS_PER_DOC: usize = 100;

/// Chunks per write (one LanceDB append and one tantivy commit each).
const WRITE_BATCH: usize = 20_000;

/// Size of the pseudo-word vocabulary.
const VOCABULARY: usize = 30_000;

/// Words per topic.
const TOPIC_WORDS: usize = 40;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SearchBenchOptions {
    /// Library folder; reused when it holds the same synthetic library.
    pub dir: PathBuf,
    /// Chunks in the library.
    pub chunks: usize,
    /// Timed queries per mode.
    pub queries: usize,
    /// Queries whose dense top-10 is compared with exact search.
    pub recall_queries: usize,
    /// Fusion for the hybrid mode.
    pub fusion: Fusion,
    /// ANN policy; `None` keeps the library's default.
    pub ann: Option<AnnPolicy>,
    /// Leave the table without an ANN index (exact dense search).
    pub exact_only: bool,
    /// Seed of the synthetic data.
    pub seed: u64,
}

/// Latency of one kind of query, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Latency {
                p50_ms: 0.0,
                p95_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// What `bench search` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SearchBench {
    /// Chunks in the library.
    pub chunks: usize,
    /// Seconds spent writing the library (`None` when an existing one was reused).
    pub build_seconds: Option<f64>,
    /// Seconds spent building or updating the ANN index (0 when nothing was to do).
    pub index_seconds: f64,
    /// The ANN index after maintenance.
    pub index: VectorIndexState,
    /// The ANN policy searched with.
    pub nprobes: usize,
    /// Refine factor searched with.
    pub refine_factor: u32,
    /// Fusion used by the hybrid queries.
    pub fusion: String,
    /// Timed queries per mode.
    pub queries: usize,
    /// BM25 top-10.
    pub bm25: Latency,
    /// Dense top-10 (through the index when there is one).
    pub dense: Latency,
    /// Hybrid top-10 (both legs concurrently, then fusion; query embedding
    /// excluded).
    pub hybrid: Latency,
    /// Exact dense top-10 (every vector compared).
    pub exact_dense: Latency,
    /// The BM25 leg alone at the depth hybrid search fuses.
    pub bm25_leg: Latency,
    /// The dense leg alone at the depth hybrid search fuses.
    pub dense_leg: Latency,
    /// Share of the exact dense top-10 found by the dense leg's top-10.
    pub dense_recall_at_10: f64,
    /// Queries the recall was measured on.
    pub recall_queries: usize,
}

/// Marker written next to a finished synthetic library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    chunks: usize,
    seed: u64,
    generator: u32,
}

/// Version of the data generator (a change invalidates stored libraries).
const GENERATOR: u32 = 1;

const MARKER: &str = "lectern-bench-search.json";

/// splitmix64: small, fast and deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// The deterministic synthetic corpus.
struct Corpus {
    seed: u64,
    topics: usize,
    centers: Vec<Vec<f32>>,
    words: Vec<String>,
    /// Cumulative Zipf weights over `words`.
    zipf_cdf: Vec<f64>,
    topic_words: Vec<Vec<usize>>,
}

/// Per-dimension spread of a chunk around its topic centre: a noise vector
/// of norm ≈ 1.2, so chunks of one topic have cosine ≈ 0.4 with each other
/// and ≈ 0.65 with their centre, and chunks of different topics ≈ 0.
const CHUNK_SPREAD: f32 = 0.06;

/// Spread of a query around the corpus point it is drawn near (norm ≈ 0.6).
const QUERY_SPREAD: f32 = 0.03;

impl Corpus {
    fn new(chunks: usize, seed: u64) -> Self {
        let topics = (chunks / 500).max(8);
        let mut rng = Rng::new(seed, 1);
        let centers = (0..topics)
            .map(|_| {
                let mut c: Vec<f32> = (0..BENCH_DIM).map(|_| rng.gaussian()).collect();
                normalize(&mut c);
                c
            })
            .collect();
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mer", "ti", "san", "vel", "or", "pri", "du", "nex", "ra", "sol", "fen",
            "gra", "hu", "is", "jo", "ber", "cy", "tam", "ul", "wes", "zo", "qua",
        ];
        let words: Vec<String> = (0..VOCABULARY)
            .map(|i| {
                let mut w = String::new();
                let mut n = i + 1;
                while n > 0 {
                    w.push_str(SYLLABLES[n % SYLLABLES.len()]);
                    n /= SYLLABLES.len();
                }
                w
            })
            .collect();
        // Zipf with exponent 1.07, as measured on English text.
        let mut acc = 0.0;
        let zipf_cdf = (0..VOCABULARY)
            .map(|r| {
                acc += 1.0 / ((r + 1) as f64).powf(1.07);
                acc
            })
            .collect();
        let topic_words = (0..topics)
            .map(|_| {
                (0..TOPIC_WORDS)
                    .map(|_| 300 + rng.below(VOCABULARY - 300))
                    .collect()
            })
            .collect();
        Corpus {
            seed,
            topics,
            centers,
            words,
            zipf_cdf,
            topic_words,
        }
    }

    fn zipf_word(&self, rng: &mut Rng) -> usize {
        let total = *self.zipf_cdf.last().unwrap_or(&1.0);
        let x = rng.uniform() * total;
        self.zipf_cdf
            .partition_point(|&c| c < x)
            .min(VOCABULARY - 1)
    }

    /// Topic, vector and text of chunk `i`.
    fn chunk(&self, i: usize) -> (usize, Vec<f32>, String) {
        let mut rng = Rng::new(self.seed, 1_000 + i as u64);
        let topic = rng.below(self.topics);
        let mut v: Vec<f32> = self.centers[topic]
            .iter()
            .map(|c| c + CHUNK_SPREAD * rng.gaussian())
            .collect();
        normalize(&mut v);
        let len = 60 + rng.below(80);
        let mut text = String::with_capacity(len * 8);
        for j in 0..len {
            if j > 0 {
                text.push(' ');
            }
            let w = if rng.uniform() < 0.25 {
                self.topic_words[topic][rng.below(TOPIC_WORDS)]
            } else {
                self.zipf_word(&mut rng)
            };
            text.push_str(&self.words[w]);
        }
        (topic, v, text)
    }

    /// Query `q`: near a corpus chunk, with two words of its topic and two
    /// of its text.
    fn query(&self, q: usize, chunks: usize) -> (String, Vec<f32>) {
        let mut rng = Rng::new(self.seed, u64::MAX - q as u64);
        let target = rng.below(chunks);
        let (topic, base, text) = self.chunk(target);
        let mut v: Vec<f32> = base
            .iter()
            .map(|x| x + QUERY_SPREAD * rng.gaussian())
            .collect();
        normalize(&mut v);
        let own: Vec<&str> = text.split(' ').collect();
        let mut words = Vec::new();
        for _ in 0..2 {
            words.push(self.words[self.topic_words[topic][rng.below(TOPIC_WORDS)]].clone());
            words.push(own[rng.below(own.len())].to_string());
        }
        (words.join(" "), v)
    }
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

fn read_marker(dir: &Path) -> Option<Marker> {
    let s = std::fs::read_to_string(marker_path(dir)).ok()?;
    serde_json::from_str(&s).ok()
}

/// Writes chunks `[0, n)` through the library's write path.
async fn build(
    lib: &Library,
    corpus: &Arc<Corpus>,
    n: usize,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), EngineError> {
    let mut start = 0;
    while start < n {
        let end = (start + WRITE_BATCH).min(n);
        let corpus_ref = corpus.clone();
        let batch = tokio::task::spawn_blocking(move || {
            let range = start..end;
            let corpus_ref = &*corpus_ref;
            range
                .step_by(CHUNKS_PER_DOC)
                .map(|first| {
                    let doc = first / CHUNKS_PER_DOC;
                    let doc_id = format!("bench{doc:07}");
                    let path = format!("/bench/doc{doc:07}.txt");
                    let last = (first + CHUNKS_PER_DOC).min(n);
                    let chunks: Vec<ChunkRecord> = (first..last)
                        .map(|i| {
                            let (_, vector, text) = corpus_ref.chunk(i);
                            let ordinal = (i - first) as u32;
                            ChunkRecord {
                                chunk_id: format!("{doc_id}:{ordinal}"),
                                doc_id: doc_id.clone(),
                                path: path.clone(),
                                title: format!("Synthetic document {doc}"),
                                page: None,
                                heading_path: Vec::new(),
                                ordinal,
                                char_start: 0,
                                char_end: text.chars().count() as u64,
                                chunk_hash: ChunkRecord::hash_text(&text),
                                text,
                                format: "text".into(),
                                location: format!("passage {}", ordinal + 1),
                                ocr: false,
                                vector,
                            }
                        })
                        .collect();
                    let entry = DocumentEntry {
                        doc_id: doc_id.clone(),
                        path: path.clone(),
                        title: format!("Synthetic document {doc}"),
                        format: "text".into(),
                        content_hash: format!("bench-{}-{doc}", corpus_ref.seed),
                        bytes: chunks.iter().map(|c| c.text.len() as u64).sum(),
                        pages: 1,
                        chunks: chunks.len() as u32,
                        indexed_at: 0,
                        warnings: Vec::new(),
                    };
                    (entry, chunks)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(EngineError::join)?;
        lib.put_documents(batch).await?;
        start = end;
        progress(format!("wrote {end} of {n} chunks"));
    }
    Ok(())
}

fn ids(hits: &[lectern_index::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk.chunk_id.as_str()).collect()
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Builds (or reuses) the synthetic library in `opts.dir` and measures
/// BM25, dense and hybrid top-10 latency and the dense leg's recall@10
/// against exact search. `progress` receives one line per step.
pub async fn bench_search(
    opts: &SearchBenchOptions,
    progress: &(dyn Fn(String) + Sync),
) -> Result<SearchBench, EngineError> {
    if opts.chunks == 0 {
        return Err(EngineError::InvalidInput(
            "the benchmark needs at least one chunk".into(),
        ));
    }
    let want = Marker {
        chunks: opts.chunks,
        seed: opts.seed,
        generator: GENERATOR,
    };
    let reuse = read_marker(&opts.dir).as_ref() == Some(&want);
    if !reuse && opts.dir.exists() {
        let empty = std::fs::read_dir(&opts.dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            if read_marker(&opts.dir).is_none() {
                return Err(EngineError::InvalidInput(format!(
                    "{} is not empty and holds no benchmark library; choose another folder",
                    opts.dir.display()
                )));
            }
            progress(format!(
                "removing the benchmark library in {} (other size or seed)",
                opts.dir.display()
            ));
            std::fs::remove_dir_all(&opts.dir).map_err(|e| {
                EngineError::InvalidInput(format!("cannot remove {}: {e}", opts.dir.display()))
            })?;
        }
    }
    let lib = Library::open(&opts.dir, BENCH_DIM).await?;
    let mut policy = opts.ann.unwrap_or_else(|| lib.ann_policy());
    // The benchmark maintains the index itself, after writing, and times it.
    policy.background = false;
    if opts.exact_only {
        policy.min_rows = usize::MAX;
    }
    lib.set_ann_policy(policy);
    let corpus = Arc::new(Corpus::new(opts.chunks, opts.seed));
    let build_seconds = if reuse {
        progress(format!("reusing the library in {}", opts.dir.display()));
        None
    } else {
        let t = Instant::now();
        build(&lib, &corpus, opts.chunks, progress).await?;
        std::fs::write(
            marker_path(&opts.dir),
            serde_json::to_string(&want).unwrap_or_default(),
        )
        .map_err(|e| EngineError::InvalidInput(format!("cannot write the marker: {e}")))?;
        Some(t.elapsed().as_secs_f64())
    };
    let t = Instant::now();
    let index = if opts.exact_only {
        lib.vector_index().await?
    } else {
        progress("building the vector index if needed".into());
        lib.build_vector_index().await?
    };
    let index_seconds = t.elapsed().as_secs_f64();

    let queries: Vec<(String, Vec<f32>)> = (0..opts.queries.max(opts.recall_queries) + 5)
        .map(|q| corpus.query(q, opts.chunks))
        .collect();
    // Warm caches (index partitions, tantivy segments) with five untimed queries.
    for (text, v) in queries.iter().take(5) {
        lib.search_fused(text, Some(v), SearchMode::Hybrid, 10, opts.fusion)
            .await?;
    }
    let timed = &queries[5..];
    progress(format!("timing {} queries per mode", opts.queries));
    let (mut bm25, mut dense, mut hybrid, mut exact) = (vec![], vec![], vec![], vec![]);
    let (mut bm25_leg, mut dense_leg) = (vec![], vec![]);
    let mut dense_top: Vec<Vec<String>> = Vec::new();
    for (text, v) in timed.iter().take(opts.queries) {
        let t = Instant::now();
        lib.search(text, None, SearchMode::Bm25, 10).await?;
        bm25.push(ms_since(t));
        let t = Instant::now();
        let hits = lib.search(text, Some(v), SearchMode::Dense, 10).await?;
        dense.push(ms_since(t));
        dense_top.push(ids(&hits).into_iter().map(str::to_string).collect());
        let t = Instant::now();
        lib.search_fused(text, Some(v), SearchMode::Hybrid, 10, opts.fusion)
            .await?;
        hybrid.push(ms_since(t));
        let t = Instant::now();
        lib.search_bm25(text, FUSION_DEPTH).await?;
        bm25_leg.push(ms_since(t));
        let t = Instant::now();
        lib.search_dense(v, FUSION_DEPTH).await?;
        dense_leg.push(ms_since(t));
    }
    progress(format!(
        "measuring recall against exact search on {} queries",
        opts.recall_queries
    ));
    let (mut found, mut total) = (0usize, 0usize);
    for (i, (_, v)) in timed.iter().take(opts.recall_queries).enumerate() {
        let t = Instant::now();
        let truth = lib.search_dense_exact(v, 10).await?;
        exact.push(ms_since(t));
        let approx: Vec<String> = match dense_top.get(i) {
            Some(top) => top.clone(),
            None => lib
                .search_dense(v, 10)
                .await?
                .into_iter()
                .map(|h| h.chunk.chunk_id)
                .collect(),
        };
        total += truth.len();
        found += truth
            .iter()
            .filter(|h| approx.contains(&h.chunk.chunk_id))
            .count();
    }
    Ok(SearchBench {
        chunks: opts.chunks,
        build_seconds,
        index_seconds,
        index,
        nprobes: policy.nprobes,
        refine_factor: policy.refine_factor,
        fusion: opts.fusion.to_string(),
        queries: bm25.len(),
        bm25: Latency::of(bm25),
        dense: Latency::of(dense),
        hybrid: Latency::of(hybrid),
        exact_dense: Latency::of(exact),
        bm25_leg: Latency::of(bm25_leg),
        dense_leg: Latency::of(dense_leg),
        dense_recall_at_10: if total == 0 {
            0.0
        } else {
            found as f64 / total as f64
        },
        recall_queries: opts.recall_queries.min(timed.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_nearest_rank_rule() {
        let l = Latency::of((1..=20).map(f64::from).collect());
        assert_eq!(l.p50_ms, 10.0);
        assert_eq!(l.p95_ms, 19.0);
        assert!((l.mean_ms - 10.5).abs() < 1e-12);
    }

    #[test]
    fn synthetic_data_is_deterministic_and_clustered() {
        let c = Corpus::new(10_000, 3);
        let (t1, v1, x1) = c.chunk(42);
        let (t2, v2, x2) = c.chunk(42);
        assert_eq!((t1, &v1, &x1), (t2, &v2, &x2));
        let norm: f32 = v1.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        // A chunk is far closer to its own topic centre than to another's.
        let other = (t1 + 1) % c.topics;
        assert!(cos(&v1, &c.centers[t1]) > 0.5);
        assert!(cos(&v1, &c.centers[other]).abs() < 0.25);
        // A query lies near its corpus point and shares words with it.
        let (text, q) = c.query(0, 10_000);
        assert_eq!(text.split(' ').count(), 4);
        assert!(q.iter().map(|x| x * x).sum::<f32>() > 0.99);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_benchmark_runs_and_reuses_its_library() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SearchBenchOptions {
            dir: dir.path().join("lib"),
            chunks: 1_500,
            queries: 5,
            recall_queries: 5,
            fusion: Fusion::Rrf,
            ann: Some(AnnPolicy {
                min_rows: 1_000,
                ..AnnPolicy::default()
            }),
            exact_only: false,
            seed: 1,
        };
        let first = bench_search(&opts, &|_| {}).await.unwrap();
        assert!(first.build_seconds.is_some());
        assert!(first.index.has_index);
        assert_eq!(first.index.rows, 1_500);
        assert!(first.dense_recall_at_10 >= 0.8, "{first:?}");
        assert!(first.hybrid.p50_ms > 0.0);
        let second = bench_search(&opts, &|_| {}).await.unwrap();
        assert!(second.build_seconds.is_none());
        assert_eq!(second.index.rows, 1_500);
    }
}
