//! all-MiniLM-L6-v2 through Lectern's embedder against sentence-transformers'
//! vectors for the same texts (fixture from `models/golden_minilm.py`).

use std::path::PathBuf;

use candle_core::Device;
use lectern_models::{Embedder, EmbedderConfig};

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        })
        .join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} missing: run models/provision.sh",
        dir.display()
    );
    dir
}

#[test]
fn minilm_matches_sentence_transformers() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let reference: Reference = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let embedder = Embedder::load(EmbedderConfig::new(minilm_dir()), &Device::Cpu).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    // Together (one packed batch of mixed lengths) and one at a time.
    let together = embedder.embed(&texts).unwrap();
    for (i, want) in reference.vectors.iter().enumerate() {
        let alone = embedder.embed(&texts[i..=i]).unwrap().remove(0);
        for got in [&together[i], &alone] {
            let cos: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
            assert!(cos >= 0.999, "text {i}: cosine {cos}");
            let diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-3, "text {i}: max difference {diff}");
        }
    }
}

#[test]
fn many_texts_across_batches_come_back_in_input_order() {
    let mut cfg = EmbedderConfig::new(minilm_dir());
    cfg.batch_size = 4;
    let embedder = Embedder::load(cfg, &Device::Cpu).unwrap();
    // Lengths from a few tokens to past the 256-token cap, in scrambled order,
    // so the texts spread over many batches and parallel passes.
    let texts: Vec<String> = (0..37)
        .map(|i| {
            let n = (i * 17) % 37 + 1;
            format!("Passage {i}: ") + &"evidence about protein folding ".repeat(n)
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = embedder.embed(&refs).unwrap();
    assert_eq!(together.len(), texts.len());
    for i in [0usize, 5, 17, 36] {
        let alone = embedder.embed(&refs[i..=i]).unwrap().remove(0);
        let cos: f32 = alone.iter().zip(&together[i]).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99999, "text {i}: cosine {cos}");
    }
}
