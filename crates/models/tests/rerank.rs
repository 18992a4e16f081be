//! The cross-encoder reranker on the tiny random-weight BERT and XLM-RoBERTa
//! checkpoints (`models/make_tiny_reranker.py`), against Hugging Face
//! transformers' logits for the same pairs (fixture from
//! `models/golden_reranker.py`).

mod common;

use std::path::PathBuf;

use candle_core::Device;
use lectern_models::{sigmoid, ModelError, Reranker, RerankerConfig, RerankerFamily};

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    model: String,
    max_length: usize,
    query: String,
    passage: String,
    input_ids: Vec<u32>,
    logit: f32,
}

fn models_dir() -> PathBuf {
    common::models_dir_with(&[])
}

fn tiny(name: &str) -> PathBuf {
    let dir = models_dir().join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} missing: run models/provision.sh",
        dir.display()
    );
    dir
}

fn load(name: &str, max_tokens: usize, batch_size: usize) -> Reranker {
    let mut cfg = RerankerConfig::new(tiny(name));
    cfg.max_tokens = max_tokens;
    cfg.batch_size = batch_size;
    Reranker::load(cfg, &Device::Cpu).expect("tiny reranker loads")
}

fn golden() -> Golden {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny_reranker_golden.json"
    );
    serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap()
}

/// Every pair's logit matches transformers within 1e-4 for both families,
/// scored together in one call (mixed lengths, several batches), with the
/// same token ids, at the full length and truncated to 24 tokens.
#[test]
fn scores_match_transformers() {
    let golden = golden();
    let mut checked = 0;
    for (name, family) in [
        ("tiny-reranker", RerankerFamily::Bert),
        ("tiny-reranker-xlmr", RerankerFamily::XlmRoberta),
    ] {
        for max_length in [512, 24] {
            let cases: Vec<&Case> = golden
                .cases
                .iter()
                .filter(|c| c.model == name && c.max_length == max_length)
                .collect();
            assert!(cases.len() >= 10, "{name}/{max_length}: fixture too small");
            let reranker = load(name, max_length, 3);
            assert_eq!(reranker.family(), family);
            for c in &cases {
                let enc = reranker
                    .tokenizer()
                    .encode((c.query.as_str(), c.passage.as_str()), true)
                    .unwrap();
                assert_eq!(enc.get_ids(), c.input_ids.as_slice(), "{name}: token ids");
            }
            let pairs: Vec<(&str, &str)> = cases
                .iter()
                .map(|c| (c.query.as_str(), c.passage.as_str()))
                .collect();
            let got = reranker.score_pairs(&pairs).unwrap();
            for (c, g) in cases.iter().zip(&got) {
                assert!(
                    (g - c.logit).abs() <= 1e-4,
                    "{name} max {max_length}: {g} vs transformers {} for {:?}",
                    c.logit,
                    &c.passage[..c.passage.len().min(40)]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 40);
}

/// Scoring in batches of any size, packed passes split by tokens among
/// them, gives the scores of scoring one pair at a time, in the caller's
/// order.
#[test]
fn batching_gives_the_same_scores_as_one_by_one() {
    let mut passages = [
        "Mitochondrial DNA mutations accumulate with age.",
        "A cat.",
        "Quarterly revenue grew by 8.5% to $1.2bn, driven by cloud services and a long tail of smaller items.",
        "",
        "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
        "Retrieval augmented generation grounds answers in documents.",
        "Short one.",
    ]
    .map(String::from)
    .to_vec();
    // Three pairs of about 450 tokens: more than one packed pass of 1,024 tokens.
    for i in 0..3 {
        passages.push(format!("{i} mitochondria and muscle fibres age. ").repeat(60));
    }
    let passages: Vec<&str> = passages.iter().map(String::as_str).collect();
    for name in ["tiny-reranker", "tiny-reranker-xlmr"] {
        let single = load(name, 512, 1);
        let one_by_one: Vec<f32> = passages
            .iter()
            .map(|p| single.score("how do muscles age?", &[p]).unwrap()[0])
            .collect();
        for batch_size in [2, 4, 16] {
            let batched = load(name, 512, batch_size)
                .score("how do muscles age?", &passages)
                .unwrap();
            assert_eq!(batched.len(), passages.len());
            for (i, (a, b)) in batched.iter().zip(&one_by_one).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "{name} batch {batch_size}, passage {i}: {a} vs {b}"
                );
            }
        }
        // The passages really score differently.
        let min = one_by_one.iter().cloned().fold(f32::INFINITY, f32::min);
        let max = one_by_one.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert!(max - min > 0.01, "{name}: {one_by_one:?}");
    }
}

/// A passage longer than the limit is cut to it: the pair encodes to
/// exactly `max_tokens`, keeps the query whole, and scores the same as the
/// passage already cut to what fits.
#[test]
fn long_passages_are_truncated_to_the_limit() {
    let reranker = load("tiny-reranker", 64, 8);
    let query = "which passage mentions mitochondria?";
    let long = "mitochondria produce energy in every cell of the body. ".repeat(100);
    let enc = reranker
        .tokenizer()
        .encode((query, long.as_str()), true)
        .unwrap();
    assert_eq!(enc.get_ids().len(), 64);
    let q_len = reranker
        .tokenizer()
        .encode(query, false)
        .unwrap()
        .get_ids()
        .len();
    // [CLS] query [SEP] passage [SEP]: the query is kept whole.
    assert_eq!(
        enc.get_type_ids().iter().filter(|&&t| t == 0).count(),
        q_len + 2
    );
    // The kept part of the passage, as text, scores the same.
    let kept: Vec<u32> = enc
        .get_ids()
        .iter()
        .zip(enc.get_type_ids())
        .filter(|(_, &t)| t == 1)
        .map(|(&id, _)| id)
        .collect();
    let kept_text = reranker
        .tokenizer()
        .decode(&kept[..kept.len() - 1], true)
        .unwrap();
    let scores = reranker
        .score(query, &[long.as_str(), kept_text.as_str()])
        .unwrap();
    assert!(
        (scores[0] - scores[1]).abs() <= 1e-5,
        "truncated {} vs pre-cut {}",
        scores[0],
        scores[1]
    );
    // A limit past the position table is capped by it.
    assert_eq!(load("tiny-reranker", 100_000, 8).max_tokens(), 512);
    let capped = load("tiny-reranker", 100_000, 8);
    let very_long = "word ".repeat(5_000);
    assert_eq!(capped.score(query, &[very_long.as_str()]).unwrap().len(), 1);
}

#[test]
fn sigmoid_maps_logits_to_probabilities() {
    assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    assert!(sigmoid(8.0) > 0.999);
    assert!(sigmoid(-8.0) < 0.001);
    let scores = load("tiny-reranker", 512, 4)
        .score("q", &["a", "b b b"])
        .unwrap();
    assert!(scores.iter().all(|s| s.is_finite()));
    assert!(scores
        .iter()
        .map(|&s| sigmoid(s))
        .all(|p| p > 0.0 && p < 1.0));
}

/// A scratch folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lectern-rerank-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn missing_and_corrupt_models_are_clear_errors() {
    let tmp = TempDir::new("corrupt");
    let err = Reranker::load(RerankerConfig::new(tmp.path()), &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    let src = tiny("tiny-reranker");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::write(tmp.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = Reranker::load(RerankerConfig::new(tmp.path()), &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::InvalidFile { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // A classifier with two labels is not a relevance scorer.
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["id2label"] = serde_json::json!({"0": "no", "1": "yes"});
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = Reranker::load(RerankerConfig::new(tmp.path()), &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("2 labels"), "{err}");
}
