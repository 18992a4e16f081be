//! The engine's embedding through the real worker process, with faults
//! injected: a crash, a hang, out-of-memory answers, a missing binary and
//! a worker of another protocol version. Every run must finish with the
//! vectors an undisturbed run gives, in order, nothing lost or doubled.

mod common;

use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use lectern_engine::gpu::DeviceKind;
use lectern_engine::{
    DevicePreference, Engine, EngineConfig, GpuEvent, RecoveryStep, WorkerConfig,
};

/// Passages per run: an ingest-sized run of several batches of 32.
const PASSAGES: usize = 224;

async fn open_engine(data: &std::path::Path, worker: Option<WorkerConfig>) -> Engine {
    let mut config = EngineConfig::from_env(Some(data.to_path_buf())).unwrap();
    config.models_dir = models_dir();
    config.embedder_dir = minilm();
    config.embedder_explicit = true;
    config.llm_path = None;
    config.reranker = None;
    config.device = DevicePreference::Cpu;
    config.worker = worker;
    Engine::open(config).await.expect("engine opens")
}

/// The SciFact passages of a run and their vectors from the in-process
/// embedder (computed once for all tests).
fn undisturbed() -> (Vec<String>, Vec<Vec<f32>>) {
    static RUN: OnceLock<(Vec<String>, Vec<Vec<f32>>)> = OnceLock::new();
    RUN.get_or_init(|| {
        let texts = scifact_passages(PASSAGES, 600);
        let config = lectern_engine::embedder_config_for(&minilm()).unwrap();
        let embedder = lectern_models::Embedder::load(
            config,
            &lectern_models::candle_device(&DeviceKind::Cpu).unwrap(),
        )
        .unwrap();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = embedder.embed_passages(&refs).unwrap();
        (texts, vectors)
    })
    .clone()
}

fn recovery_steps(events: &Receiver<GpuEvent>) -> Vec<RecoveryStep> {
    events
        .try_iter()
        .filter_map(|e| match e {
            GpuEvent::Recovery { step } => Some(step),
            _ => None,
        })
        .collect()
}

/// Same vectors as the undisturbed run, one per passage, in order (each
/// passage is encoded on its own, so batching does not change its
/// vector; a lost, doubled or shifted passage would differ by far more).
fn assert_same_run(expected: &[Vec<f32>], got: &[Vec<f32>]) {
    let diff = max_abs_diff(expected, got);
    assert!(diff <= 1e-6, "vectors differ by {diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undisturbed_run_through_the_worker_equals_the_in_process_one() {
    let (texts, expected) = undisturbed();
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), Some(worker_config(""))).await;
    let events = engine.subscribe_gpu_events();
    let got = engine.embed_passages_managed(texts).await.unwrap();
    assert_same_run(&expected, &got);
    assert!(recovery_steps(&events).is_empty());
    let status = engine.worker_status().expect("a worker is configured");
    let pid = status.pid.expect("the worker runs");
    assert_eq!((status.starts, status.lost), (1, 0));
    assert_eq!(status.device, Some(DeviceKind::Cpu));
    assert_eq!(status.model.unwrap().dim, 384);
    drop(engine);
    assert!(
        process_gone(pid),
        "closing the engine stops and reaps the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crash_mid_run_moves_the_rest_to_the_cpu_and_the_next_run_restarts_it() {
    let (texts, expected) = undisturbed();
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), Some(worker_config("crash-at-batch:3"))).await;
    let events = engine.subscribe_gpu_events();
    let got = engine.embed_passages_managed(texts.clone()).await.unwrap();
    assert_same_run(&expected, &got);

    let steps = recovery_steps(&events);
    assert_eq!(steps.len(), 1, "{steps:?}");
    match &steps[0] {
        RecoveryStep::MovedToCpu { reason } => {
            assert!(
                reason.contains("model worker died during embedding batch 3"),
                "{reason}"
            );
            assert!(
                reason.contains("SIGABRT") || reason.contains("signal"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let status = engine.worker_status().unwrap();
    assert_eq!((status.starts, status.lost, status.pid), (1, 1, None));
    let crashed = status.last_pid.unwrap();
    assert!(process_gone(crashed), "the crashed worker is reaped");
    assert!(status.last_error.unwrap().contains("died"));

    // The next run starts a new worker.
    let got = engine
        .embed_passages_managed(texts[..20].to_vec())
        .await
        .unwrap();
    assert_same_run(&expected[..20], &got);
    let status = engine.worker_status().unwrap();
    assert_eq!(status.starts, 2);
    let pid = status.pid.expect("a new worker runs");
    assert_ne!(pid, crashed);
    assert!(recovery_steps(&events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_after_the_timeout_and_the_run_completes() {
    let (texts, expected) = undisturbed();
    let dir = tempfile::tempdir().unwrap();
    // Long enough for the first batch on a busy machine; the second never
    // finishes.
    let mut config = worker_config("hang-at-batch:2");
    config.request_timeout = Duration::from_secs(15);
    let engine = open_engine(dir.path(), Some(config)).await;
    let events = engine.subscribe_gpu_events();
    let got = engine.embed_passages_managed(texts).await.unwrap();
    assert_same_run(&expected, &got);
    let steps = recovery_steps(&events);
    assert!(
        matches!(&steps[..], [RecoveryStep::MovedToCpu { reason }]
            if reason.contains("did not finish embedding batch 2 within 15000 ms")),
        "{steps:?}"
    );
    let status = engine.worker_status().unwrap();
    assert_eq!((status.lost, status.pid), (1, None));
    assert!(
        process_gone(status.last_pid.unwrap()),
        "the hung worker is killed and reaped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_answers_take_the_out_of_memory_steps_in_the_same_worker() {
    let (texts, expected) = undisturbed();
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(
        dir.path(),
        Some(worker_config("oom-at-batch:1,oom-at-batch:2")),
    )
    .await;
    let events = engine.subscribe_gpu_events();
    let got = engine.embed_passages_managed(texts).await.unwrap();
    assert_same_run(&expected, &got);
    // Free caches and retry, then halve the batch; the third try works
    // in the worker, which is still the first one.
    assert_eq!(
        recovery_steps(&events),
        [
            RecoveryStep::FreedCaches { batch: 32 },
            RecoveryStep::HalvedBatch { from: 32, to: 16 }
        ]
    );
    let status = engine.worker_status().unwrap();
    assert_eq!((status.starts, status.lost), (1, 0));
    assert!(status.pid.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_incompatible_worker_means_embedding_on_the_cpu_with_the_reason() {
    let (texts, expected) = undisturbed();
    let texts = texts[..64].to_vec();
    let expected = &expected[..64];
    for (config, why) in [
        (
            WorkerConfig::new("/no/such/dir/lectern-worker"),
            "model worker not found at /no/such/dir/lectern-worker",
        ),
        (
            worker_config("bad-hello"),
            "speaks protocol version 1002, this build speaks 2",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path(), Some(config)).await;
        let events = engine.subscribe_gpu_events();
        let got = engine.embed_passages_managed(texts.clone()).await.unwrap();
        assert_same_run(expected, &got);
        let steps = recovery_steps(&events);
        assert!(
            matches!(&steps[..], [RecoveryStep::MovedToCpu { reason }] if reason.contains(why)),
            "{steps:?}"
        );
        let status = engine.worker_status().unwrap();
        assert_eq!(status.pid, None);
        assert!(
            status.last_error.as_deref().unwrap_or("").contains(why),
            "{status:?}"
        );

        // Within the back-off the next run does not try again: it goes to
        // the CPU at once, saying why.
        let got = engine
            .embed_passages_managed(texts[..8].to_vec())
            .await
            .unwrap();
        assert_same_run(&expected[..8], &got);
        let steps = recovery_steps(&events);
        assert!(
            matches!(&steps[..], [RecoveryStep::MovedToCpu { reason }]
                if reason.contains("unavailable (next try in") && reason.contains(why)),
            "{steps:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lost_twice_in_a_row_is_left_alone_for_the_back_off() {
    let (texts, expected) = undisturbed();
    let (texts, expected) = (texts[..8].to_vec(), &expected[..8]);
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), Some(worker_config("crash-at-batch:1"))).await;
    let events = engine.subscribe_gpu_events();
    for run in 1..=3 {
        let got = engine.embed_passages_managed(texts.clone()).await.unwrap();
        assert_same_run(expected, &got);
        let steps = recovery_steps(&events);
        let reason = match &steps[..] {
            [RecoveryStep::MovedToCpu { reason }] => reason.clone(),
            other => panic!("run {run}: {other:?}"),
        };
        let status = engine.worker_status().unwrap();
        if run < 3 {
            assert!(reason.contains("died"), "run {run}: {reason}");
            assert_eq!((status.starts, status.lost), (run, run));
        } else {
            // No third start: the CPU at once, saying why.
            assert!(reason.contains("unavailable (next try in"), "{reason}");
            assert!(reason.contains("died"), "{reason}");
            assert_eq!((status.starts, status.lost), (2, 2));
        }
    }
}
