//! `ask` end to end with tiny random-weight Qwen3 checkpoints: retrieval,
//! prompt packing, streaming generation through candle, and sources.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use lectern_engine::{AskEvent, AskRequest, Support};
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
    let checked = Arc::new(Mutex::new(None));
    let c = checked.clone();
    let on_event = Arc::new(move |e: AskEvent| match e {
        AskEvent::Token { text } => t.lock().unwrap().push(text),
        AskEvent::Sources { sources, .. } => *s.lock().unwrap() = sources.len(),
        AskEvent::Checked { checks } => *c.lock().unwrap() = Some(checks.len()),
        _ => {}
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
    assert_eq!(
        *checked.lock().unwrap(),
        Some(answer.checks.len()),
        "the quote check arrives as an event after the tokens"
    );

    // The JSON form (`lectern ask --json`) carries the trace and timings.
    let json = serde_json::to_value(&answer).unwrap();
    for key in [
        "text",
        "citations",
        "checks",
        "retrieval",
        "timings",
        "sources",
    ] {
        assert!(json.get(key).is_some(), "answer JSON has {key}: {json}");
    }
    assert_eq!(answer.retrieval.packed, 4);
    assert!(answer.retrieval.hits.len() >= 4);
    assert!(answer.retrieval.hits[..4]
        .iter()
        .enumerate()
        .all(|(i, h)| h.n == Some(i + 1)));
    assert!(answer.retrieval.prompt_tokens <= answer.retrieval.prompt_budget);
    let t = &answer.timings;
    assert!(t.retrieve_ms > 0.0 && t.prefill_ms > 0.0, "{t:?}");
    assert!(t.first_token_ms >= t.retrieve_ms + t.prefill_ms, "{t:?}");
    assert!(t.total_ms >= t.first_token_ms + t.decode_ms, "{t:?}");
    assert!(t.prefill_tok_s > 0.0, "{t:?}");
    // Every citation listed is one the answer makes, with its passage.
    for c in &answer.citations {
        let s = &answer.sources[c.n - 1];
        assert!(s.cited && c.chunk_id == s.chunk_id && c.char_end > c.char_start);
    }
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

/// The quote check with the library's real embedder: a paraphrase of a
/// passage holds up, an invented claim and a citation of a source that was
/// not given are flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_check_flags_unsupported_citations_with_the_real_embedder() {
    let data = tempfile::tempdir().unwrap();
    let engine = open(data.path().to_path_buf()).await;
    let hits = {
        ingest(
            &engine,
            vec![doc("md/rust-book-ch04-01-what-is-ownership.md")],
        )
        .await;
        engine
            .search(&lectern_engine::SearchRequest {
                query: "ownership rules owner goes out of scope dropped".into(),
                mode: lectern_engine::SearchMode::Hybrid,
                top_k: 1,
                collection: None,
            })
            .await
            .unwrap()
    };
    let passage = hits[0].chunk.text.clone();
    assert!(passage.contains("owner"), "{passage}");
    let source = lectern_engine::SourceRef {
        n: 1,
        title: hits[0].chunk.title.clone(),
        path: hits[0].chunk.path.clone(),
        page: None,
        chunk_id: hits[0].chunk.chunk_id.clone(),
        char_start: hits[0].chunk.char_start,
        char_end: hits[0].chunk.char_end,
        location: String::new(),
        heading_path: Vec::new(),
        text: passage,
        score: 1.0,
        bm25_rank: None,
        bm25_score: None,
        dense_rank: None,
        dense_distance: None,
        rerank_score: None,
        cited: true,
    };
    let answer = "In Rust, each value has an owner and there can only be one owner at a time [1]. \
The Eiffel Tower was painted green in 1889 by volunteers from Lyon [1]. Values are copied to the heap [4].";
    let checks = engine
        .check_citations(answer.into(), vec![source])
        .await
        .unwrap();
    assert_eq!(checks.len(), 3, "{checks:#?}");
    assert_eq!(checks[0].support, Support::Supported, "{checks:#?}");
    assert!(
        checks[0].similarity.is_some(),
        "embedding similarity computed"
    );
    assert!(
        checks[0].similarity > checks[1].similarity,
        "the true claim is closer to the passage: {checks:#?}"
    );
    assert!(
        checks[1].flagged && checks[1].support == Support::Unsupported,
        "{checks:#?}"
    );
    assert_eq!(checks[2].support, Support::NoSuchSource);
}
