//! The rerank stage of search with the tiny random-weight cross-encoder
//! (`models/make_tiny_reranker.py`): hits come ordered by its score and
//! keep their retrieval evidence; with reranking off, or no reranker, the
//! order is the retrieval order; a broken reranker never breaks search in
//! `auto` and is a clear error in `on`.

mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lectern_engine::{
    AskRequest, Engine, EngineConfig, RerankMode, SearchHit, SearchMode, SearchRequest,
};
use lectern_models::{Reranker, RerankerConfig};

fn models_dir() -> PathBuf {
    common::models_dir_with(&["tiny-reranker/model.safetensors"])
}

const DOCS: [&str; 8] = [
    "Mitochondria are the powerhouse of the cell. They produce ATP through oxidative phosphorylation.",
    "Mitochondrial DNA mutations accumulate with age in human skeletal muscle fibres.",
    "The stock market rallied as quarterly revenue of cloud providers beat expectations.",
    "Muscle fibres lose mass with age; exercise slows the decline of mitochondrial function.",
    "A recipe for bread: flour, water, salt and yeast, kneaded and left to rise overnight.",
    "Cells divide by mitosis; mitochondria are inherited from the mother's egg cell.",
    "The history of the printing press begins with Gutenberg in fifteenth-century Mainz.",
    "Oxidative stress damages mitochondria and is linked to ageing in many tissues.",
];

const QUERY: &str = "how do mitochondria change with age in muscle?";

async fn open(data: &std::path::Path, reranker: Option<PathBuf>) -> Engine {
    let models = models_dir();
    let mut cfg = EngineConfig::from_env(Some(data.to_path_buf())).expect("config");
    cfg.embedder_dir = models.join("all-MiniLM-L6-v2");
    cfg.models_dir = models;
    cfg.device = lectern_engine::DevicePreference::Cpu;
    cfg.reranker = reranker;
    cfg.rerank_depth = 30;
    Engine::open(cfg).await.expect("engine opens")
}

async fn search(engine: &Engine, mode: SearchMode, top_k: usize) -> Vec<SearchHit> {
    engine
        .search(&SearchRequest {
            query: QUERY.into(),
            mode,
            top_k,
            collection: None,
        })
        .await
        .expect("search")
}

fn ids(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.chunk.chunk_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reranked_hits_are_ordered_by_the_cross_encoder_and_keep_their_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (i, text) in DOCS.iter().enumerate() {
        std::fs::write(docs.join(format!("doc{i}.txt")), text).unwrap();
    }
    let data = tmp.path().join("data");
    let tiny = models_dir().join("tiny-reranker");

    {
        let engine = open(&data, Some(tiny.clone())).await;
        engine
            .ingest(
                vec![docs.clone()],
                Arc::new(|_| {}),
                Arc::new(AtomicBool::new(false)),
            )
            .await
            .expect("ingest");
        assert_eq!(engine.rerank_mode(), RerankMode::Auto);
        assert_eq!(
            engine.active_reranker().await.unwrap().as_deref(),
            Some("tiny-reranker")
        );

        // The retrieval order: every candidate, no rerank score.
        engine.set_rerank_mode(RerankMode::Off);
        let fused = search(&engine, SearchMode::Hybrid, 30).await;
        assert_eq!(fused.len(), DOCS.len());
        assert!(fused.iter().all(|h| h.rerank_score.is_none()));
        let fused_top5 = search(&engine, SearchMode::Hybrid, 5).await;
        assert_eq!(ids(&fused_top5), ids(&fused[..5]));

        // What the cross-encoder says about every candidate, computed here.
        let reference = Reranker::load(
            RerankerConfig::new(&tiny),
            &lectern_models::candle_device(&lectern_engine::gpu::DeviceKind::Cpu).unwrap(),
        )
        .unwrap();
        let texts: Vec<&str> = fused.iter().map(|h| h.chunk.text.as_str()).collect();
        let scores = reference.score(QUERY, &texts).unwrap();
        let mut expected: Vec<(String, f32)> = fused
            .iter()
            .zip(&scores)
            .map(|(h, &s)| (h.chunk.chunk_id.clone(), s))
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_ne!(
            expected
                .iter()
                .map(|e| e.0.clone())
                .take(5)
                .collect::<Vec<_>>(),
            ids(&fused_top5),
            "the reranker must change the order for this test to mean anything"
        );

        for mode in [RerankMode::Auto, RerankMode::On] {
            engine.set_rerank_mode(mode);
            let hits = search(&engine, SearchMode::Hybrid, 5).await;
            assert_eq!(hits.len(), 5);
            // The best five of all candidates by the cross-encoder, in its order.
            for (hit, (id, s)) in hits.iter().zip(&expected) {
                assert_eq!(&hit.chunk.chunk_id, id, "{mode}");
                let got = hit
                    .rerank_score
                    .expect("every hit carries its rerank score");
                assert!((got - s).abs() <= 1e-5, "{mode}: {got} vs {s}");
            }
            // Retrieval evidence is kept as it was before reranking.
            for hit in &hits {
                let before = fused
                    .iter()
                    .find(|h| h.chunk.chunk_id == hit.chunk.chunk_id)
                    .unwrap();
                assert_eq!(hit.score, before.score);
                assert_eq!(hit.bm25_rank, before.bm25_rank);
                assert_eq!(hit.bm25_score, before.bm25_score);
                assert_eq!(hit.dense_rank, before.dense_rank);
                assert_eq!(hit.dense_distance, before.dense_distance);
                assert!(hit.bm25_rank.is_some() || hit.dense_rank.is_some());
            }
        }

        // The ask pipeline numbers its sources in the reranked order, and its
        // trace and sources carry the rerank score.
        engine.set_rerank_mode(RerankMode::Auto);
        let mut req = AskRequest::new(QUERY);
        req.model = Some(models_dir().join("tiny-qwen3"));
        req.top_k = 5;
        req.generation.max_tokens = 4;
        let answer = engine
            .ask(req, Arc::new(|_| {}), Arc::new(AtomicBool::new(false)))
            .await
            .expect("ask");
        assert_eq!(answer.retrieval.hits.len(), 5);
        for (hit, (id, s)) in answer.retrieval.hits.iter().zip(&expected) {
            assert_eq!(&hit.chunk_id, id);
            assert!((hit.rerank_score.unwrap() - s).abs() <= 1e-5);
        }
        assert!(!answer.sources.is_empty());
        for (source, (id, s)) in answer.sources.iter().zip(&expected) {
            assert_eq!(&source.chunk_id, id);
            assert!((source.rerank_score.unwrap() - s).abs() <= 1e-5);
        }

        // Single-leg searches are reranked too, and keep their leg's evidence.
        engine.set_rerank_mode(RerankMode::Auto);
        let bm25 = search(&engine, SearchMode::Bm25, 3).await;
        assert!(bm25
            .iter()
            .all(|h| h.rerank_score.is_some() && h.bm25_rank.is_some()));
        assert!(bm25
            .windows(2)
            .all(|w| w[0].rerank_score >= w[1].rerank_score));
    }

    // No reranker installed: the retrieval order, and `on` says why it cannot.
    {
        let engine = open(&data, None).await;
        let hits = search(&engine, SearchMode::Hybrid, 5).await;
        let plain = {
            engine.set_rerank_mode(RerankMode::Off);
            search(&engine, SearchMode::Hybrid, 5).await
        };
        assert_eq!(ids(&hits), ids(&plain));
        assert!(hits.iter().all(|h| h.rerank_score.is_none()));
        assert_eq!(engine.active_reranker().await.unwrap(), None);
        engine.set_rerank_mode(RerankMode::On);
        let err = engine
            .search(&SearchRequest {
                query: QUERY.into(),
                mode: SearchMode::Hybrid,
                top_k: 5,
                collection: None,
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no reranker is installed"),
            "{err}"
        );
    }

    // A corrupt reranker: `auto` searches without it, `on` is an error naming the file.
    {
        let broken = tmp.path().join("broken-reranker");
        std::fs::create_dir_all(&broken).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(tiny.join(f), broken.join(f)).unwrap();
        }
        std::fs::write(broken.join("model.safetensors"), b"truncated").unwrap();
        let engine = open(&data, Some(broken)).await;
        let hits = search(&engine, SearchMode::Hybrid, 5).await;
        assert!(hits.iter().all(|h| h.rerank_score.is_none()));
        engine.set_rerank_mode(RerankMode::Off);
        assert_eq!(
            ids(&hits),
            ids(&search(&engine, SearchMode::Hybrid, 5).await)
        );
        engine.set_rerank_mode(RerankMode::On);
        let err = engine.active_reranker().await.unwrap_err().to_string();
        assert!(
            err.contains("reranker could not be loaded") && err.contains("model.safetensors"),
            "{err}"
        );
    }
}
