//! A fresh install has no models: the engine says so in a way a front end can
//! act on, and opens once an embedding model has arrived, with nothing to
//! restart.

mod common;

use lectern_engine::{Engine, EngineConfig, EngineError};

#[tokio::test]
async fn no_embedder_is_a_specific_retryable_error_until_one_is_installed() {
    let real = common::models_dir_with(&[
        "all-MiniLM-L6-v2/config.json",
        "all-MiniLM-L6-v2/model.safetensors",
        "all-MiniLM-L6-v2/tokenizer.json",
    ])
    .join("all-MiniLM-L6-v2");
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::from_env(Some(data.path().to_path_buf())).expect("config");
    cfg.models_dir = models.path().to_path_buf();
    cfg.embedder_dir = models.path().join("all-MiniLM-L6-v2");

    let err = match Engine::open(cfg.clone()).await {
        Ok(_) => panic!("an engine opened without an embedding model"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, EngineError::NoEmbedder(dir) if *dir == cfg.embedder_dir),
        "{err:?}"
    );
    let info = err.info();
    assert_eq!(info.code, "no_embedder");
    assert!(
        info.retryable,
        "installing a model makes the same call succeed"
    );
    assert!(info.message.contains("Models screen"), "{}", info.message);
    assert!(
        info.message.contains("all-MiniLM-L6-v2"),
        "{}",
        info.message
    );
    // Nothing was created for the library that could get in the way later.
    assert!(!data.path().join("library").join("lance").exists());

    // A half-finished folder (no config.json yet) is still "not installed".
    std::fs::create_dir_all(&cfg.embedder_dir).unwrap();
    std::fs::copy(
        real.join("tokenizer.json"),
        cfg.embedder_dir.join("tokenizer.json"),
    )
    .unwrap();
    let err = Engine::open(cfg.clone()).await.expect_err("still missing");
    assert_eq!(err.info().code, "no_embedder");

    // The download lands: the same configuration now opens.
    copy_dir(&real, &cfg.embedder_dir);
    let engine = Engine::open(cfg)
        .await
        .expect("opens once the model is there");
    assert_eq!(engine.stats().await.expect("stats").documents, 0);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
