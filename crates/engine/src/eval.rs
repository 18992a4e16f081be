//! BEIR-format retrieval evaluation: corpus, queries and qrels in, nDCG@10,
//! Recall@100 and MRR@10 out.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use lectern_index::{ChunkRecord, DocumentEntry, SearchMode};
use lectern_ingest::{Format, Page, ParsedDocument};
use serde::{Deserialize, Serialize};

use crate::ingest::{chunk_record, doc_id_for};
use crate::{Engine, EngineError, IngestEvent, ProgressFn};

/// One corpus document.
#[derive(Debug, Clone, Deserialize)]
pub struct BeirDoc {
    /// Corpus id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Title (may be empty).
    #[serde(default)]
    pub title: String,
    /// Body.
    #[serde(default)]
    pub text: String,
}

/// One query.
#[derive(Debug, Clone, Deserialize)]
pub struct BeirQuery {
    /// Query id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Query text.
    pub text: String,
}

/// Relevance judgements: query id → corpus id → grade.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>, EngineError> {
    let f = std::fs::File::open(path)
        .map_err(|e| EngineError::InvalidInput(format!("cannot open {}: {e}", path.display())))?;
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::new(r)))
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, EngineError> {
    let mut out = Vec::new();
    for (i, line) in open_maybe_gz(path)?.lines().enumerate() {
        let line =
            line.map_err(|e| EngineError::InvalidInput(format!("{}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            EngineError::InvalidInput(format!("{} line {}: {e}", path.display(), i + 1))
        })?);
    }
    Ok(out)
}

/// Reads a BEIR corpus (`.jsonl` or `.jsonl.gz`).
pub fn load_corpus(path: &Path) -> Result<Vec<BeirDoc>, EngineError> {
    read_jsonl(path)
}

/// Reads BEIR queries (`.jsonl` or `.jsonl.gz`).
pub fn load_queries(path: &Path) -> Result<Vec<BeirQuery>, EngineError> {
    read_jsonl(path)
}

/// Reads BEIR qrels (TSV `query-id corpus-id score`, with or without header).
pub fn load_qrels(path: &Path) -> Result<Qrels, EngineError> {
    let mut qrels: Qrels = HashMap::new();
    for (i, line) in open_maybe_gz(path)?.lines().enumerate() {
        let line =
            line.map_err(|e| EngineError::InvalidInput(format!("{}: {e}", path.display())))?;
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 || (i == 0 && cols[2].trim().parse::<i32>().is_err()) {
            continue;
        }
        let grade: i32 = cols[2].trim().parse().map_err(|_| {
            EngineError::InvalidInput(format!(
                "{} line {}: score `{}` is not an integer",
                path.display(),
                i + 1,
                cols[2]
            ))
        })?;
        qrels
            .entry(cols[0].to_string())
            .or_default()
            .insert(cols[1].to_string(), grade);
    }
    Ok(qrels)
}

/// nDCG@k with graded gains `rel` (BEIR/trec_eval convention: linear gain,
/// log2(rank + 1) discount).
pub fn ndcg_at_k(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| {
            let g = rels.get(d).copied().unwrap_or(0).max(0) as f64;
            g / ((i + 2) as f64).log2()
        })
        .sum();
    let mut ideal: Vec<i32> = rels.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Share of relevant documents found in the first k.
pub fn recall_at_k(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant: HashSet<&String> = rels
        .iter()
        .filter(|(_, &g)| g > 0)
        .map(|(d, _)| d)
        .collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| relevant.contains(d))
        .count();
    found as f64 / relevant.len() as f64
}

/// Reciprocal rank of the first relevant document within the first k.
pub fn mrr_at_k(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| rels.get(d).copied().unwrap_or(0) > 0)
        .map(|i| 1.0 / (i + 1) as f64)
        .unwrap_or(0.0)
}

/// Scores of one evaluation run.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Retrieval mode.
    pub mode: SearchMode,
    /// Queries evaluated (those with judgements).
    pub queries: usize,
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean Recall@100.
    pub recall_at_100: f64,
    /// Mean MRR@10.
    pub mrr_at_10: f64,
    /// Seconds spent searching.
    pub search_seconds: f64,
    /// The reranker that re-scored the candidates, if one ran.
    pub reranker: Option<String>,
}

const BEIR_SCHEME: &str = "beir:";

fn beir_path(id: &str) -> String {
    format!("{BEIR_SCHEME}{id}")
}

impl Engine {
    /// Indexes a BEIR corpus (title and text of each document, chunked and
    /// embedded like any other document). Documents already indexed with
    /// the same content are skipped, so a second run only evaluates.
    pub async fn ingest_beir(
        &self,
        corpus: Vec<BeirDoc>,
        progress: ProgressFn,
    ) -> Result<usize, EngineError> {
        let mut pending = Vec::new();
        for d in corpus {
            let path = beir_path(&d.id);
            let doc_id = doc_id_for(&path);
            let body = if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            };
            let hash = blake3::hash(body.as_bytes()).to_hex().to_string();
            if let Some(e) = self.library.document(&doc_id).await {
                if e.content_hash == hash {
                    continue;
                }
            }
            pending.push(ParsedDocument {
                path: PathBuf::from(&path),
                format: Format::Text,
                title: Some(if d.title.is_empty() {
                    d.id.clone()
                } else {
                    d.title
                }),
                content_hash: hash,
                byte_len: body.len() as u64,
                pages: vec![Page::new(None, body)],
                warnings: Vec::new(),
            });
        }
        let total = pending.len();
        progress(IngestEvent::Discovered {
            files: total,
            skipped: Vec::new(),
        });
        let mut done = 0usize;
        for group in pending.chunks(256) {
            let group: Vec<ParsedDocument> = group.to_vec();
            let chunker = self.chunker.clone();
            let chunked = tokio::task::spawn_blocking(move || {
                group
                    .into_iter()
                    .map(|d| {
                        let c = chunker.chunk(&d);
                        (d, c)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(EngineError::join)?;
            let texts: Vec<String> = chunked
                .iter()
                .flat_map(|(_, cs)| cs.iter().map(|c| c.text.clone()))
                .collect();
            let embedder = self.embedder.clone();
            let mut vectors = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embedder.embed_passages(&refs)
            })
            .await
            .map_err(EngineError::join)??
            .into_iter();
            let mut batch = Vec::with_capacity(chunked.len());
            for (doc, chunks) in chunked {
                let path = doc.path.to_string_lossy().into_owned();
                let doc_id = doc_id_for(&path);
                let title = doc.title.clone().unwrap_or_default();
                let records: Vec<ChunkRecord> = chunks
                    .into_iter()
                    .map(|c| {
                        chunk_record(
                            &doc_id,
                            &path,
                            &title,
                            "text",
                            c,
                            vectors.next().unwrap_or_default(),
                        )
                    })
                    .collect();
                let entry = DocumentEntry {
                    doc_id: doc_id.clone(),
                    path,
                    title,
                    format: doc.format.to_string(),
                    content_hash: doc.content_hash.clone(),
                    bytes: doc.byte_len,
                    pages: 1,
                    chunks: records.len() as u32,
                    indexed_at: 0,
                    warnings: Vec::new(),
                };
                batch.push((entry, records));
            }
            done += batch.len();
            self.library.put_documents(batch).await?;
            progress(IngestEvent::Embedded {
                path: PathBuf::from("corpus"),
                done,
                total,
            });
        }
        Ok(total)
    }

    /// Ranks corpus ids for `query`: chunk hits deduplicated to their
    /// document, best chunk first.
    async fn rank_documents(
        &self,
        query: &str,
        mode: SearchMode,
        depth: usize,
    ) -> Result<Vec<String>, EngineError> {
        let hits = self
            .search(&crate::SearchRequest {
                query: query.to_string(),
                mode,
                top_k: depth,
                collection: None,
            })
            .await?;
        let mut seen = HashSet::new();
        let mut ranked = Vec::new();
        for h in hits {
            if let Some(id) = h.chunk.path.strip_prefix(BEIR_SCHEME) {
                if seen.insert(id.to_string()) {
                    ranked.push(id.to_string());
                }
            }
        }
        Ok(ranked)
    }

    /// Evaluates retrieval on `queries` against `qrels` (queries without
    /// judgements are left out, as BEIR does).
    pub async fn eval_beir(
        &self,
        queries: &[BeirQuery],
        qrels: &Qrels,
        mode: SearchMode,
    ) -> Result<EvalReport, EngineError> {
        let reranker = self.active_reranker().await?;
        let started = Instant::now();
        let mut n = 0usize;
        let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
        for q in queries {
            let Some(rels) = qrels.get(&q.id) else {
                continue;
            };
            // Documents may have several chunks: over-fetch so 100 distinct
            // documents remain after deduplication.
            let ranked = self.rank_documents(&q.text, mode, 300).await?;
            ndcg += ndcg_at_k(&ranked, rels, 10);
            recall += recall_at_k(&ranked, rels, 100);
            mrr += mrr_at_k(&ranked, rels, 10);
            n += 1;
        }
        if n == 0 {
            return Err(EngineError::InvalidInput(
                "no query has relevance judgements in the qrels file".into(),
            ));
        }
        let n_f = n as f64;
        Ok(EvalReport {
            mode,
            queries: n,
            ndcg_at_10: ndcg / n_f,
            recall_at_100: recall / n_f,
            mrr_at_10: mrr / n_f,
            search_seconds: started.elapsed().as_secs_f64(),
            reranker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_matches_hand_computation() {
        // Relevant: a (grade 2), c (grade 1). Ranking: b, a, c.
        // DCG  = 0/log2(2) + 2/log2(3) + 1/log2(4) = 1.261860 + 0.5 = 1.761860
        // IDCG = 2/log2(2) + 1/log2(3)             = 2 + 0.630930 = 2.630930
        // nDCG = 0.669679
        let r = rels(&[("a", 2), ("c", 1)]);
        let v = ndcg_at_k(&ranked(&["b", "a", "c"]), &r, 10);
        assert!((v - 0.669_679).abs() < 1e-5, "{v}");
        // Perfect ranking → 1; nothing relevant retrieved → 0.
        assert!((ndcg_at_k(&ranked(&["a", "c", "b"]), &r, 10) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&ranked(&["x", "y"]), &r, 10), 0.0);
        // Cut-off: relevant doc at rank 3 with k = 2 does not count.
        let v2 = ndcg_at_k(&ranked(&["b", "a", "c"]), &r, 2);
        assert!((v2 - (2.0 / 3f64.log2()) / 2.630_930).abs() < 1e-5);
    }

    #[test]
    fn recall_and_mrr_match_hand_computation() {
        let r = rels(&[("a", 1), ("c", 1), ("z", 0)]);
        let list = ranked(&["b", "c", "d", "a"]);
        assert_eq!(recall_at_k(&list, &r, 2), 0.5);
        assert_eq!(recall_at_k(&list, &r, 4), 1.0);
        assert_eq!(mrr_at_k(&list, &r, 10), 0.5);
        assert_eq!(mrr_at_k(&list, &r, 1), 0.0);
    }

    #[test]
    fn qrels_parse_with_header_and_reject_bad_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.tsv");
        std::fs::write(
            &p,
            "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t2\n2\td3\t1\n",
        )
        .unwrap();
        let q = load_qrels(&p).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q["1"]["d2"], 2);
        std::fs::write(&p, "1\td1\tx\n2\td2\t1\n").unwrap();
        // The first line is taken as a header only when its score is not a number.
        assert_eq!(load_qrels(&p).unwrap().len(), 1);
        std::fs::write(&p, "1\td1\t1\n2\td2\tbad\n").unwrap();
        assert!(load_qrels(&p).is_err());
    }
}
