//! The `lectern` binary end to end, as a person would run it.

mod common;

use common::{lectern_command, models_dir, ok, shared_docs};

use std::path::Path;
use std::process::Output;

fn lectern(data: &Path, args: &[&str]) -> Output {
    lectern_command(data, args).output().expect("lectern runs")
}

#[test]
fn ingest_search_and_ask_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let pdf = shared_docs().join("pdf/dpr-paper-2col-tables.pdf");
    let out = ok(&lectern(data.path(), &["ingest", pdf.to_str().unwrap()]));
    assert!(out.contains("Indexed 1 file(s)"), "{out}");
    let out = ok(&lectern(data.path(), &["ingest", pdf.to_str().unwrap()]));
    assert!(out.contains("Indexed 0 file(s)"), "{out}");
    assert!(out.contains("1 unchanged"), "{out}");
    let out = ok(&lectern(
        data.path(),
        &["ingest", "--again", pdf.to_str().unwrap()],
    ));
    assert!(out.contains("Indexed 1 file(s)"), "{out}");
    assert!(out.contains("0 unchanged"), "{out}");

    let out = ok(&lectern(
        data.path(),
        &[
            "search",
            "BM25 Lucene processes 23.7 questions per second per CPU thread",
            "--json",
            "--top-k",
            "3",
        ],
    ));
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hits[0]["chunk"]["page"], 7, "{out}");
    assert!(hits[0]["bm25_rank"].is_number());

    let out = ok(&lectern(
        data.path(),
        &[
            "search",
            "question encoder dot product similarity",
            "--mode",
            "bm25",
        ],
    ));
    assert!(out.contains("page"), "{out}");
    assert!(out.contains("bm25 #1"), "{out}");

    let model = models_dir().join("tiny-qwen3");
    let out = ok(&lectern(
        data.path(),
        &[
            "ask",
            "How many questions per second does DPR process?",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--top-k",
            "3",
        ],
    ));
    assert!(out.contains("Sources:"), "{out}");
    assert!(out.contains("[1] "), "{out}");
    assert!(out.contains("page "), "{out}");
}

#[test]
fn ask_without_a_model_fails_with_advice() {
    let data = tempfile::tempdir().unwrap();
    let out = lectern(data.path(), &["ask", "anything"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--model"), "{err}");
}

#[test]
fn gpu_status_reports_the_device() {
    let data = tempfile::tempdir().unwrap();
    let out = ok(&lectern(data.path(), &["gpu", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["selected"], "cpu", "LECTERN_DEVICE=cpu is honoured");
    let bad = lectern(data.path(), &["--device", "tpu", "gpu", "status"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cuda:N"));
}

#[test]
fn eval_beir_scores_a_hand_made_collection() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let queries = dir.path().join("queries.jsonl");
    let qrels = dir.path().join("qrels.tsv");
    std::fs::write(
        &corpus,
        [
            r#"{"_id":"a","title":"Volcanoes","text":"Basalt lava flows from shield volcanoes in Hawaii."}"#,
            r#"{"_id":"b","title":"Glaciers","text":"Ice sheets carve valleys over millennia."}"#,
            r#"{"_id":"c","title":"Tides","text":"The moon's gravity raises ocean tides twice a day."}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        &queries,
        "{\"_id\":\"q1\",\"text\":\"basalt lava volcanoes\"}\n{\"_id\":\"q2\",\"text\":\"unjudged query\"}\n",
    )
    .unwrap();
    // q1: a is relevant (grade 1) and found first; b is more relevant
    // (grade 2) but shares no word with the query, so BM25 never finds it.
    // nDCG@10 = (1/log2 2) / (2/log2 2 + 1/log2 3) = 1 / 2.630930 = 0.380094
    std::fs::write(&qrels, "query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tb\t2\n").unwrap();
    let out = ok(&lectern(
        data.path(),
        &[
            "eval",
            "beir",
            "--corpus",
            corpus.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
            "--qrels",
            qrels.to_str().unwrap(),
            "--mode",
            "bm25",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v[0];
    assert_eq!(r["queries"], 1);
    let ndcg = r["ndcg_at_10"].as_f64().unwrap();
    assert!((ndcg - 0.380_094).abs() < 1e-5, "{ndcg}");
    assert_eq!(r["recall_at_100"].as_f64().unwrap(), 0.5);
    assert_eq!(r["mrr_at_10"].as_f64().unwrap(), 1.0);
}
