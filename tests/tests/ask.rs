//! `ask` end to end with tiny random-weight Qwen3 checkpoints: retrieval,
//! prompt packing, streaming generation through candle, and sources.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use lectern_engine::{AskEvent, AskRequest};
use lectern_tests::{doc, ingest, models_dir, open};

async fn ask_with(model: std::path::PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let engine = open(data.path().to_path_buf()).await;
    ingest(
        &engine,
        vec![doc("md/rust-book-ch04-01-what-is-ownership.md")],
    )
    .await;
    let tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let sources_seen = Arc::new(Mutex::new(0usize));
    let (t, s) = (tokens.clone(), sources_seen.clone());
    let on_event = Arc::new(move |e: AskEvent| match e {
        AskEvent::Token { text } => t.lock().unwrap().push(text),
        AskEvent::Sources { sources, .. } => *s.lock().unwrap() = sources.len(),
    });
    let mut req = AskRequest::new("What are the ownership rules in Rust?");
    req.model = Some(model);
    req.top_k = 4;
    req.generation.max_tokens = 12;
    req.generation.temperature = 0.0;
    let answer = engine
        .ask(req, on_event, Arc::new(AtomicBool::new(false)))
        .await
        .expect("ask runs");

    assert_eq!(answer.sources.len(), 4, "all four passages fit the prompt");
    assert_eq!(*sources_seen.lock().unwrap(), 4);
    assert!(answer
        .sources
        .iter()
        .all(|s| s.path.ends_with("rust-book-ch04-01-what-is-ownership.md")));
    assert!(
        answer.stats.prompt_tokens > 200,
        "sources are in the prompt"
    );
    assert!(answer.stats.generated_tokens >= 1);
    let streamed: String = tokens.lock().unwrap().concat();
    assert_eq!(
        streamed, answer.text,
        "streamed pieces add up to the answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_streams_with_tiny_safetensors_model() {
    ask_with(models_dir().join("tiny-qwen3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_streams_with_tiny_gguf_model() {
    ask_with(models_dir().join("tiny-qwen3.gguf")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_without_a_model_says_how_to_get_one() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = lectern_tests::config(data.path().to_path_buf());
    cfg.llm_path = None;
    let engine = lectern_engine::Engine::open(cfg).await.unwrap();
    let err = engine
        .ask(
            AskRequest::new("anything"),
            Arc::new(|_| {}),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--model"), "{err}");
}
