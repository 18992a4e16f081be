//! Embedder settings really applied: tiny random-weight BERT checkpoints
//! written here (with MiniLM's tokenizer) and the tiny random Qwen3 made by
//! `models/provision.sh`, compared against the networks' own hidden states.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use lectern_models::{
    instruction_prefix, Embedder, EmbedderArchitecture, EmbedderConfig, Logits, Pooling, Qwen3,
    Qwen3Options,
};
use serde_json::json;
use tokenizers::Tokenizer;

fn models_dir() -> PathBuf {
    common::models_dir_with(&["tiny-qwen3", "all-MiniLM-L6-v2"])
}

const HIDDEN: usize = 64;
const LAYERS: usize = 2;
const INTER: usize = 64;

/// Writes a random-weight BERT (hidden 32, 2 layers, 4 heads) with
/// MiniLM's tokenizer into a fresh folder named after `name`.
fn tiny_bert(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lectern-tiny-bert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let minilm = models_dir().join("all-MiniLM-L6-v2");
    std::fs::copy(minilm.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let vocab = 30522;
    let config = json!({
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.0,
        "hidden_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "classifier_dropout": null,
        "hidden_act": "gelu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 2,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": vocab,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let dev = Device::Cpu;
    let rand = |shape: &[usize]| Tensor::randn(0f32, 0.1, shape, &dev).unwrap();
    let gamma = |n: usize| (Tensor::ones(n, DType::F32, &dev).unwrap() + rand(&[n])).unwrap();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert(
        "embeddings.word_embeddings.weight".into(),
        rand(&[vocab, HIDDEN]),
    );
    t.insert(
        "embeddings.position_embeddings.weight".into(),
        rand(&[512, HIDDEN]),
    );
    t.insert(
        "embeddings.token_type_embeddings.weight".into(),
        rand(&[2, HIDDEN]),
    );
    t.insert("embeddings.LayerNorm.weight".into(), gamma(HIDDEN));
    t.insert("embeddings.LayerNorm.bias".into(), rand(&[HIDDEN]));
    for i in 0..LAYERS {
        let p = format!("encoder.layer.{i}");
        for m in ["query", "key", "value"] {
            t.insert(
                format!("{p}.attention.self.{m}.weight"),
                rand(&[HIDDEN, HIDDEN]),
            );
            t.insert(format!("{p}.attention.self.{m}.bias"), rand(&[HIDDEN]));
        }
        t.insert(
            format!("{p}.attention.output.dense.weight"),
            rand(&[HIDDEN, HIDDEN]),
        );
        t.insert(format!("{p}.attention.output.dense.bias"), rand(&[HIDDEN]));
        t.insert(
            format!("{p}.attention.output.LayerNorm.weight"),
            gamma(HIDDEN),
        );
        t.insert(
            format!("{p}.attention.output.LayerNorm.bias"),
            rand(&[HIDDEN]),
        );
        t.insert(
            format!("{p}.intermediate.dense.weight"),
            rand(&[INTER, HIDDEN]),
        );
        t.insert(format!("{p}.intermediate.dense.bias"), rand(&[INTER]));
        t.insert(format!("{p}.output.dense.weight"), rand(&[HIDDEN, INTER]));
        t.insert(format!("{p}.output.dense.bias"), rand(&[HIDDEN]));
        t.insert(format!("{p}.output.LayerNorm.weight"), gamma(HIDDEN));
        t.insert(format!("{p}.output.LayerNorm.bias"), rand(&[HIDDEN]));
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    dir
}

/// The hidden states candle's own BERT gives for `text` (no pooling):
/// `(tokens, hidden)` rows.
fn bert_hidden(dir: &Path, text: &str) -> Vec<Vec<f32>> {
    let cfg: BertConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let model = BertModel::load(vb, &cfg).unwrap();
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    // MiniLM's tokenizer file pads to 128 tokens; the embedder never pads.
    tok.with_padding(None);
    let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
    let n = ids.len();
    let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    model
        .forward(&ids, &types, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < tol, "vectors differ by {worst}");
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn load(dir: &Path, params: serde_json::Value) -> Embedder {
    let cfg = EmbedderConfig::from_catalog_params(dir, &params).expect("params parse");
    Embedder::load(cfg, &Device::Cpu).expect("tiny model loads")
}

const TEXT: &str = "Photosynthesis turns light into chemical energy in plants.";

#[test]
fn each_pooling_takes_the_rows_it_names() {
    let dir = tiny_bert("pooling");
    let hidden = bert_hidden(&dir, TEXT);
    assert!(hidden.len() > 5);
    let cls = load(&dir, json!({"architecture": "bert", "pooling": "cls"}));
    assert_eq!(cls.pooling(), Pooling::Cls);
    let got = cls.embed(&[TEXT]).unwrap().remove(0);
    assert_close(&got, &normalised(&hidden[0]), 1e-4);

    let mean = load(&dir, json!({"pooling": "mean"}));
    let mut avg = vec![0f32; HIDDEN];
    for row in &hidden {
        for (a, x) in avg.iter_mut().zip(row) {
            *a += x / hidden.len() as f32;
        }
    }
    let got_mean = mean.embed(&[TEXT]).unwrap().remove(0);
    assert_close(&got_mean, &normalised(&avg), 1e-4);

    let last = load(&dir, json!({"pooling": "last"}));
    let got_last = last.embed(&[TEXT]).unwrap().remove(0);
    assert_close(&got_last, &normalised(hidden.last().unwrap()), 1e-4);

    // Random weights: the three poolings really give different vectors.
    assert!(max_diff(&got, &got_mean) > 1e-2);
    assert!(max_diff(&got, &got_last) > 1e-2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn normalisation_can_be_turned_off() {
    let dir = tiny_bert("normalize");
    let hidden = bert_hidden(&dir, TEXT);
    let raw = load(&dir, json!({"pooling": "cls", "normalize": false}));
    let got = raw.embed(&[TEXT]).unwrap().remove(0);
    assert_close(&got, &hidden[0], 1e-3);
    let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-2, "norm {norm}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_query_prefix_reaches_queries_only() {
    let dir = tiny_bert("prefix");
    let prefix = "Represent this sentence for searching relevant passages: ";
    let e = load(
        &dir,
        json!({"pooling": "cls", "query_prefix": prefix, "max_tokens": 512}),
    );
    let query = e.embed_query(TEXT).unwrap();
    let passage = e.embed_passages(&[TEXT]).unwrap().remove(0);
    let plain = e.embed(&[TEXT]).unwrap().remove(0);
    let prefixed = e.embed(&[&format!("{prefix}{TEXT}")]).unwrap().remove(0);
    assert_close(&query, &prefixed, 1e-5);
    assert_close(&passage, &plain, 1e-5);
    assert!(max_diff(&query, &passage) > 1e-2);

    let p = load(
        &dir,
        json!({"pooling": "mean", "passage_prefix": "passage: ", "query_prefix": "query: "}),
    );
    let passage = p.embed_passages(&[TEXT]).unwrap().remove(0);
    let expected = p.embed(&[&format!("passage: {TEXT}")]).unwrap().remove(0);
    assert_close(&passage, &expected, 1e-5);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_folder_without_catalog_entry_reads_sentence_transformers_files() {
    let dir = tiny_bert("folder");
    let plain = EmbedderConfig::from_folder(&dir);
    assert_eq!(plain.pooling, None);
    assert!(plain.query_prefix.is_empty());
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 64, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        r#"{"prompts": {"query": "query: ", "document": "doc: "}, "default_prompt_name": null}"#,
    )
    .unwrap();
    let cfg = EmbedderConfig::from_folder(&dir);
    assert_eq!(cfg.pooling, Some(Pooling::Cls));
    assert_eq!(cfg.query_prefix, "query: ");
    assert_eq!(cfg.passage_prefix, "doc: ");
    let e = Embedder::load(cfg, &Device::Cpu).unwrap();
    let hidden = bert_hidden(&dir, &format!("query: {TEXT}"));
    assert_close(&e.embed_query(TEXT).unwrap(), &normalised(&hidden[0]), 1e-4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_catalog_params_are_refused_with_a_reason() {
    let dir = PathBuf::from("/nonexistent");
    let err = EmbedderConfig::from_catalog_params(&dir, &json!({"architecture": "t5"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("t5"), "{err}");
    let err = EmbedderConfig::from_catalog_params(&dir, &json!({"pooling": "max"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max"), "{err}");
    let err = EmbedderConfig::from_catalog_params(&dir, &json!({"max_tokens": 0}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_tokens"), "{err}");
}

fn tiny_qwen3_embedder(params: serde_json::Value) -> Embedder {
    load(&models_dir().join("tiny-qwen3"), params)
}

const TASK: &str = "Given a web search query, retrieve relevant passages that answer the query";

#[test]
fn qwen3_params_mean_last_token_pooling_and_an_instruction() {
    let cfg = EmbedderConfig::from_catalog_params(
        "/m",
        &json!({"architecture": "qwen3", "pooling": "last", "dims": 1024, "instruction": TASK}),
    )
    .unwrap();
    assert_eq!(cfg.architecture, EmbedderArchitecture::Qwen3);
    assert_eq!(cfg.pooling, Some(Pooling::Last));
    assert_eq!(cfg.query_prefix, format!("Instruct: {TASK}\nQuery:"));
    assert!(cfg.passage_prefix.is_empty());
    // A Qwen3 folder without catalog entry is recognised from config.json.
    let folder = EmbedderConfig::from_folder(models_dir().join("tiny-qwen3"));
    assert_eq!(folder.architecture, EmbedderArchitecture::Qwen3);
    assert_eq!(folder.pooling, Some(Pooling::Last));
}

#[test]
fn qwen3_last_token_vector_is_the_final_hidden_state_after_end_of_text() {
    let dir = models_dir().join("tiny-qwen3");
    let e = tiny_qwen3_embedder(json!({"architecture": "qwen3", "max_tokens": 64}));
    assert_eq!(e.dim(), 64);
    let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let eos = tok.token_to_id("<|endoftext|>").unwrap();
    let mut ids = tok.encode(TEXT, true).unwrap().get_ids().to_vec();
    assert_ne!(ids.last(), Some(&eos));
    assert_eq!(e.count_tokens(TEXT).unwrap(), ids.len() + 1);
    ids.push(eos);

    // A manual run through the decode path: the tied head's logits at the
    // last position are that position's hidden state times the token table.
    let mut model = Qwen3::load_safetensors(&dir, &Device::Cpu, Qwen3Options::new(64)).unwrap();
    let logits: Vec<Vec<f32>> = model.forward(&ids, Logits::All).unwrap().to_vec2().unwrap();
    let hidden = model.forward_hidden(&ids).unwrap();
    assert_eq!(hidden.dims(), [ids.len(), 64]);
    let table = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .remove("model.embed_tokens.weight")
        .unwrap();
    let from_hidden: Vec<Vec<f32>> = hidden
        .matmul(&table.t().unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    for pos in [0, ids.len() - 1] {
        let worst = max_diff(&logits[pos], &from_hidden[pos]);
        assert!(worst < 1e-3, "position {pos}: logits differ by {worst}");
    }

    let rows: Vec<Vec<f32>> = hidden.to_vec2().unwrap();
    let got = e.embed(&[TEXT]).unwrap().remove(0);
    assert_close(&got, &normalised(rows.last().unwrap()), 1e-5);
    let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    // The last token matters: without end-of-text the vector differs.
    assert!(max_diff(&got, &normalised(&rows[rows.len() - 2])) > 1e-3);
}

#[test]
fn qwen3_vectors_do_not_depend_on_batch_or_neighbours() {
    let e = tiny_qwen3_embedder(json!({"architecture": "qwen3", "max_tokens": 128}));
    let texts = [
        "short",
        TEXT,
        "A much longer passage about the mitochondria, which is the powerhouse of the cell, \
         and about how cells turn glucose into usable energy.",
    ];
    let together = e.embed(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let alone = e.embed(&[t]).unwrap().remove(0);
        assert_close(&together[i], &alone, 1e-5);
    }
    assert!(max_diff(&together[0], &together[1]) > 1e-3);
    // Truncation keeps the end-of-text token: a long input still pools it.
    let long = "word ".repeat(400);
    let short_cap = tiny_qwen3_embedder(json!({"architecture": "qwen3", "max_tokens": 16}));
    let v = short_cap.embed(&[&long]).unwrap().remove(0);
    assert_eq!(v.len(), 64);
    assert!(v.iter().all(|x| x.is_finite()));
}

#[test]
fn qwen3_instruction_goes_before_queries_not_passages() {
    let e = tiny_qwen3_embedder(json!({"architecture": "qwen3", "instruction": TASK}));
    let q = "what turns light into energy";
    let query = e.embed_query(q).unwrap();
    let manual = e
        .embed(&[&format!("{}{q}", instruction_prefix(TASK))])
        .unwrap()
        .remove(0);
    assert_close(&query, &manual, 1e-5);
    let passage = e.embed_passages(&[q]).unwrap().remove(0);
    assert_close(&passage, &e.embed(&[q]).unwrap().remove(0), 1e-5);
    assert!(max_diff(&query, &passage) > 1e-3);
}

#[test]
fn qwen3_embedding_checkpoints_without_the_model_prefix_load() {
    // Qwen3-Embedding ships its backbone as `embed_tokens.weight`,
    // `layers.N.…`, `norm.weight`: the tiny Qwen3 rewritten that way.
    let src = models_dir().join("tiny-qwen3");
    let dir = std::env::temp_dir().join(format!("lectern-flat-qwen3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != "lm_head.weight")
        .map(|(k, v)| (k.strip_prefix("model.").unwrap_or(&k).to_string(), v))
        .collect::<HashMap<String, Tensor>>();
    assert!(tensors.contains_key("embed_tokens.weight"));
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let flat = load(&dir, json!({"architecture": "qwen3"}));
    let nested = tiny_qwen3_embedder(json!({"architecture": "qwen3"}));
    assert_close(
        &flat.embed(&[TEXT]).unwrap().remove(0),
        &nested.embed(&[TEXT]).unwrap().remove(0),
        1e-6,
    );
    std::fs::remove_dir_all(&dir).ok();
}
