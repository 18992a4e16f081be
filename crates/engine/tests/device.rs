//! The engine's GPU side against the simulated GPU, selected the way a user
//! selects it: through `LECTERN_GPU`.
//!
//! Everything runs in one test because the environment variable is
//! process-wide; each engine reads it when it opens.

mod common;

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use lectern_engine::{DevicePreference, Engine, EngineConfig, GpuEvent, RecoveryStep};
use lectern_gpu::DeviceKind;

fn models_dir() -> PathBuf {
    common::models_dir_with(&["all-MiniLM-L6-v2/model.safetensors"])
}

/// Opens an engine on a fresh data folder with the simulator configured as
/// `sim`.
async fn open_with(sim: &str, data: &tempfile::TempDir) -> Engine {
    std::env::set_var("LECTERN_GPU", sim);
    let models = models_dir();
    let mut cfg = EngineConfig::from_env(Some(data.path().to_path_buf())).expect("config");
    cfg.embedder_dir = models.join("all-MiniLM-L6-v2");
    cfg.models_dir = models;
    cfg.device = DevicePreference::Auto;
    Engine::open(cfg).await.expect("engine opens")
}

fn passages() -> Vec<String> {
    (0..40)
        .map(|i| {
            let words = "the quick brown fox jumps over the lazy dog ".repeat(1 + i % 7);
            format!("Passage {i}: {words}and lands in paragraph {}.", i * 3)
        })
        .collect()
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

fn assert_same_vectors(expected: &[Vec<f32>], got: &[Vec<f32>], what: &str) {
    assert_eq!(expected.len(), got.len(), "{what}: one vector per passage");
    for (i, (a, b)) in expected.iter().zip(got).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: passage {i} dimension");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: passage {i} differs by {worst}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_embedding_recovers_from_simulated_faults_with_the_same_vectors() {
    let texts = passages();

    // A clean run: no faults, no recovery steps.
    let data = tempfile::tempdir().unwrap();
    let clean = open_with("sim:vram=16GiB", &data).await;
    assert_eq!(
        clean.gpu_status().telemetry_backend,
        "sim",
        "LECTERN_GPU selects the simulator"
    );
    if !lectern_models::capabilities().cuda {
        assert_eq!(
            clean.gpu_status().selected,
            DeviceKind::Cpu,
            "without CUDA in the build the simulated GPU is observed, not used"
        );
    }
    let history = clean.gpu_history();
    let first = history.first().expect("the sampler read the GPU at open");
    assert_eq!(first.gpus.len(), 1);
    assert_eq!(first.gpus[0].memory_total, Some(16 << 30));
    let events = clean.subscribe_gpu_events();
    let expected = clean.embed_passages_managed(texts.clone()).await.unwrap();
    assert_eq!(expected.len(), texts.len());
    assert!(
        recovery_steps(&events).is_empty(),
        "a clean run needs no recovery"
    );
    drop(clean);

    // The first two batch allocations run out of memory: free caches,
    // then halve the batch, which succeeds and stays in effect.
    let data = tempfile::tempdir().unwrap();
    let halving = open_with("sim:vram=16GiB,oom_at=1..2", &data).await;
    let events = halving.subscribe_gpu_events();
    let got = halving.embed_passages_managed(texts.clone()).await.unwrap();
    assert_same_vectors(&expected, &got, "after halving");
    let steps = recovery_steps(&events);
    assert!(
        matches!(
            steps.as_slice(),
            [
                RecoveryStep::FreedCaches { batch: 32 },
                RecoveryStep::HalvedBatch { from: 32, to: 16 }
            ]
        ),
        "unexpected steps {steps:?}"
    );
    drop(halving);

    // Every allocation fails: after freeing caches and halving, the work
    // moves to the CPU and still produces every vector.
    let data = tempfile::tempdir().unwrap();
    let persistent = open_with("sim:vram=16GiB,oom_at=1..", &data).await;
    let events = persistent.subscribe_gpu_events();
    let got = persistent
        .embed_passages_managed(texts.clone())
        .await
        .unwrap();
    assert_same_vectors(&expected, &got, "after moving to the CPU");
    let steps = recovery_steps(&events);
    assert_eq!(steps.len(), 3, "unexpected steps {steps:?}");
    assert!(matches!(steps[2], RecoveryStep::MovedToCpu { .. }));
    drop(persistent);

    // The device is lost at the second batch: the rest moves to the CPU
    // at once, and nothing is lost or embedded twice.
    let data = tempfile::tempdir().unwrap();
    let lost = open_with("sim:vram=16GiB,lost_at=2", &data).await;
    let events = lost.subscribe_gpu_events();
    let got = lost.embed_passages_managed(texts.clone()).await.unwrap();
    assert_same_vectors(&expected, &got, "after losing the device");
    let steps = recovery_steps(&events);
    assert!(
        matches!(steps.as_slice(), [RecoveryStep::MovedToCpu { reason }] if reason.contains("lost")),
        "unexpected steps {steps:?}"
    );
    drop(lost);

    // Bad input to the managed path is not an error: nothing to embed.
    let data = tempfile::tempdir().unwrap();
    let empty = open_with("sim:vram=16GiB", &data).await;
    assert!(empty
        .embed_passages_managed(Vec::new())
        .await
        .unwrap()
        .is_empty());
    std::env::remove_var("LECTERN_GPU");
}
