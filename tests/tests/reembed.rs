//! Switching a real library from all-MiniLM-L6-v2 (384 dimensions) to a
//! Qwen3 embedder (the tiny random Qwen3, 64 dimensions): search keeps
//! working before, during and after, a cancelled switch leaves the old model
//! in use and resumes, documents ingested meanwhile are carried over, and
//! the library then opens with its new model only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lectern_engine::{
    Engine, EngineError, ReembedEvent, ReembedProgressFn, SearchMode, SearchRequest,
};
use lectern_tests::{config, ingest, models_dir, open};

const TOPICS: [&str; 8] = [
    "photosynthesis turns sunlight into sugar in the leaves of plants",
    "glaciers carve valleys as they slowly flow downhill",
    "the violin has four strings tuned in fifths",
    "sourdough bread rises with wild yeast and lactic bacteria",
    "volcanoes erupt when magma pressure breaks the crust",
    "chess openings fight for control of the centre squares",
    "honeybees dance to tell the hive where flowers are",
    "tidal forces of the moon raise the ocean twice a day",
];

/// Writes `n` small text files, each about one topic with its own number.
fn write_docs(dir: &std::path::Path, first: usize, n: usize) -> Vec<PathBuf> {
    (first..first + n)
        .map(|i| {
            let p = dir.join(format!("note-{i:02}.txt"));
            let topic = TOPICS[i % TOPICS.len()];
            std::fs::write(
                &p,
                format!("Note {i} marker{i}. {topic}. This note, number {i}, is about it.\n"),
            )
            .unwrap();
            p
        })
        .collect()
}

async fn search(engine: &Engine, query: &str, mode: SearchMode) -> Vec<lectern_engine::SearchHit> {
    engine
        .search(&SearchRequest {
            query: query.into(),
            mode,
            top_k: 5,
            collection: None,
        })
        .await
        .expect("search works")
}

fn recorder() -> (ReembedProgressFn, Arc<Mutex<Vec<ReembedEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (Arc::new(move |e| sink.lock().unwrap().push(e)), events)
}

fn qwen_dir() -> PathBuf {
    models_dir().join("tiny-qwen3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_embedder_keeps_the_library_working_throughout() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let data = tmp.path().join("data");
    let engine = Arc::new(open(data.clone()).await);
    ingest(&engine, write_docs(&docs, 0, 40)).await;
    assert_eq!(
        engine.embedder_name().await.as_deref(),
        Some("all-MiniLM-L6-v2")
    );
    assert_eq!(
        search(&engine, "marker7", SearchMode::Bm25).await[0]
            .chunk
            .title,
        "note-07"
    );

    // Cancelled after the first written group: the old model stays in use.
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = cancel.clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress: ReembedProgressFn = Arc::new(move |e| {
        if matches!(e, ReembedEvent::Progress { .. }) {
            stop.store(true, Ordering::Relaxed);
        }
        sink.lock().unwrap().push(e);
    });
    let qwen = qwen_dir().to_string_lossy().into_owned();
    let err = engine
        .switch_embedder(&qwen, progress, cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert_eq!(
        engine.embedder_switch_in_progress().await,
        Some(("tiny-qwen3".to_string(), 64))
    );
    assert_eq!(
        engine.embedder_name().await.as_deref(),
        Some("all-MiniLM-L6-v2")
    );
    let dense = search(&engine, "sourdough yeast", SearchMode::Dense).await;
    assert_eq!(dense.len(), 5);
    assert!(search(&engine, "marker12", SearchMode::Hybrid).await.len() > 1);
    assert!(engine.verify().await.unwrap().is_consistent());

    // A document added mid-switch, with the old model.
    ingest(&engine, write_docs(&docs, 40, 1)).await;

    // Resume, searching all the while.
    let (progress, events) = recorder();
    let switching = {
        let engine = engine.clone();
        let qwen = qwen.clone();
        tokio::spawn(async move {
            engine
                .switch_embedder(&qwen, progress, Arc::new(AtomicBool::new(false)))
                .await
        })
    };
    let mut searches = 0;
    while !switching.is_finished() {
        let hits = search(&engine, "marker40", SearchMode::Hybrid).await;
        assert!(!hits.is_empty());
        assert!(hits.iter().any(|h| h.chunk.title == "note-40"));
        searches += 1;
    }
    let report = switching.await.unwrap().expect("switch finishes");
    assert!(searches > 0);
    assert_eq!((report.embedder.as_str(), report.dim), ("tiny-qwen3", 64));
    assert_eq!(report.documents, 41);
    let started = events.lock().unwrap()[0].clone();
    match started {
        ReembedEvent::Started {
            documents, pending, ..
        } => {
            assert_eq!(documents, 41);
            assert!(pending < documents, "resumed run redoes everything");
        }
        other => panic!("first event {other:?}"),
    }
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(ReembedEvent::Finished { dim: 64, .. })
    ));

    // After: the new model answers queries over the new vectors.
    assert_eq!(engine.embedder_name().await.as_deref(), Some("tiny-qwen3"));
    assert!(engine.embedder_switch_in_progress().await.is_none());
    assert_eq!(
        search(&engine, "glaciers", SearchMode::Dense).await.len(),
        5
    );
    assert_eq!(
        search(&engine, "marker3", SearchMode::Bm25).await[0]
            .chunk
            .title,
        "note-03"
    );
    let c = engine.verify().await.unwrap();
    assert!(c.is_consistent(), "{:?}", c.problems);
    assert_eq!(c.documents, 41);
    assert_eq!(c.vector_rows, c.chunks);
    // New documents get the new model's vectors.
    ingest(&engine, write_docs(&docs, 41, 1)).await;
    assert!(search(&engine, "marker41", SearchMode::Dense).await.len() == 5);
    assert!(engine.verify().await.unwrap().is_consistent());
    drop(engine);

    // Reopened without an explicit model, the library's own is used.
    let reopened = open(data.clone()).await;
    assert_eq!(
        reopened.embedder_name().await.as_deref(),
        Some("tiny-qwen3")
    );
    assert_eq!(
        search(&reopened, "volcano magma", SearchMode::Dense)
            .await
            .len(),
        5
    );
    drop(reopened);
    // Asking for the old model explicitly is refused with the way out.
    let mut cfg = config(data);
    cfg.set_embedder(&models_dir().join("all-MiniLM-L6-v2").to_string_lossy());
    let err = Engine::open(cfg).await.unwrap_err().to_string();
    assert!(err.contains("reembed"), "{err}");
}
