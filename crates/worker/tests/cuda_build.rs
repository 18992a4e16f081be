//! The worker built with `--features cuda` (`scripts/cuda-worker.sh`), on
//! a machine without the NVIDIA driver: it starts, says in its hello that
//! it runs on the CPU and why, embeds exactly like the in-process
//! embedder, refuses an explicit GPU request with an error frame instead
//! of crashing, and the engine ingests through it. Set
//! `LECTERN_CUDA_WORKER` to the binary (`scripts/cuda-worker.sh --check`
//! does); without it those tests say they were skipped.
//!
//! The auto policy is also checked here with real processes: a simulated
//! GPU and the CPU-only worker this crate builds leave models in process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use lectern_engine::gpu::{Capabilities, DeviceKind, DevicePreference};
use lectern_engine::worker::{EmbedKind, ErrorKind, WorkerProcess};
use lectern_engine::worker_policy::{plan_worker, probe_hello};
use lectern_engine::{Engine, EngineConfig, WorkerConfig, WorkerError, WorkerMode};

/// The reason a CUDA build gives where libcuda cannot be loaded.
const NO_DRIVER: &str = "CUDA build, but no NVIDIA driver: libcuda.so.1 could not be loaded";

/// The CUDA-built worker, or `None` (and a note) when the test is skipped.
fn cuda_worker(test: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os("LECTERN_CUDA_WORKER").map(PathBuf::from) else {
        eprintln!("{test}: skipped; set LECTERN_CUDA_WORKER to a lectern-worker built with --features cuda (scripts/cuda-worker.sh --check)");
        return None;
    };
    assert!(
        path.is_file(),
        "LECTERN_CUDA_WORKER={} is not a file",
        path.display()
    );
    if Path::new("/proc/driver/nvidia/version").exists() {
        eprintln!("{test}: skipped; this machine has the NVIDIA driver");
        return None;
    }
    Some(path)
}

/// A configuration for `program` with `LECTERN_GPU=gpu` and short
/// timeouts.
fn config_for(program: &Path, gpu: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(program);
    config.handshake_timeout = std::time::Duration::from_secs(60);
    config.env.insert("LECTERN_GPU".into(), gpu.into());
    config
}

#[test]
fn the_cuda_build_starts_without_the_driver_and_runs_on_the_cpu() {
    let Some(program) = cuda_worker("the_cuda_build_starts_without_the_driver") else {
        return;
    };
    // No GPU in sight (no NVML) and a simulated one: either way the worker
    // starts, has CUDA, and runs on the CPU because libcuda is missing.
    for gpu in ["auto", "sim:vram=16GiB,name=Simulated H200"] {
        let worker = WorkerProcess::start(&config_for(&program, gpu))
            .unwrap_or_else(|e| panic!("LECTERN_GPU={gpu}: the CUDA worker starts: {e}"));
        let hello = worker.hello().clone();
        eprintln!("LECTERN_GPU={gpu}: hello {hello:?}");
        assert_eq!(
            hello.capabilities,
            Capabilities {
                cuda: true,
                metal: false
            }
        );
        assert_eq!(hello.device, DeviceKind::Cpu, "LECTERN_GPU={gpu}");
        assert!(
            hello.device_reason.starts_with(NO_DRIVER),
            "LECTERN_GPU={gpu}: {}",
            hello.device_reason
        );
        let pid = worker.pid();
        assert!(worker.shutdown().unwrap().success());
        assert!(process_gone(pid));
    }
}

#[test]
fn the_cuda_build_embeds_on_the_cpu_and_refuses_an_explicit_gpu_request() {
    let Some(program) = cuda_worker("the_cuda_build_embeds_on_the_cpu") else {
        return;
    };
    let mut worker =
        WorkerProcess::start(&config_for(&program, "sim:vram=16GiB")).expect("worker starts");
    // Asking for the GPU by name is an error frame that says why; the
    // worker goes on serving.
    match worker.load_embedder(
        &minilm(),
        DevicePreference::Cuda(0),
        Some(embedder_settings(&minilm())),
    ) {
        Err(WorkerError::Remote {
            kind: ErrorKind::DeviceUnavailable,
            message,
        }) => assert!(
            message.contains("libcuda.so.1 could not be loaded"),
            "{message}"
        ),
        other => panic!("expected device_unavailable, got {other:?}"),
    }
    let model = worker
        .load_embedder(
            &minilm(),
            DevicePreference::Auto,
            Some(embedder_settings(&minilm())),
        )
        .expect("the embedder loads on the CPU");
    assert_eq!(model.device, DeviceKind::Cpu);
    assert_eq!(model.dim, 384);

    let local = lectern_models::Embedder::load(
        lectern_engine::embedder_config_for(&minilm()).unwrap(),
        &lectern_models::candle_device(&DeviceKind::Cpu).unwrap(),
    )
    .unwrap();
    let texts = scifact_passages(48, 1200);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = local.embed_passages(&refs).unwrap();
    let got = worker.embed(1, &refs, EmbedKind::Passage).unwrap();
    let diff = max_abs_diff(&expected, &got);
    eprintln!("48 SciFact passages: max abs difference {diff:e} from the in-process embedder");
    assert!(diff <= 1e-6, "passage vectors differ by {diff}");
    assert!(worker.shutdown().unwrap().success());
}

/// Ingests `docs` into `data` with `worker` (`None`: in process) and
/// returns the engine and the passage hash of every chunk.
async fn ingest(
    data: &Path,
    docs: &[PathBuf],
    worker: Option<WorkerConfig>,
) -> (Engine, Vec<String>) {
    let mut config = EngineConfig::from_env(Some(data.to_path_buf())).unwrap();
    config.models_dir = models_dir();
    config.embedder_dir = minilm();
    config.embedder_explicit = true;
    config.llm_path = None;
    config.reranker = None;
    config.device = DevicePreference::Auto;
    // `off` would also turn off an explicit worker.
    config.worker_mode = if worker.is_some() {
        WorkerMode::default()
    } else {
        WorkerMode::Off
    };
    config.worker = worker;
    let engine = Engine::open(config).await.expect("engine opens");
    let report = engine
        .ingest(
            docs.to_vec(),
            Arc::new(|_| {}),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .expect("ingest");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.indexed, docs.len());
    let hashes = all_chunk_hashes(&engine).await;
    (engine, hashes)
}

/// The passage hash of every chunk in the engine's library, from a dense
/// search that returns them all.
async fn all_chunk_hashes(engine: &Engine) -> Vec<String> {
    let counts = engine.stats().await.unwrap();
    let mut request = lectern_engine::SearchRequest::new("ownership and borrowing");
    request.top_k = counts.vector_rows;
    request.mode = lectern_engine::SearchMode::Dense;
    let hits = engine.search(&request).await.unwrap();
    assert_eq!(hits.len(), counts.vector_rows, "every chunk found");
    hits.iter().map(|h| h.chunk.chunk_hash.clone()).collect()
}

/// The vectors stored in the library in `data` for `hashes` (the engine
/// that wrote it is closed).
async fn stored_vectors(
    data: &Path,
    hashes: &[String],
) -> std::collections::HashMap<String, Vec<f32>> {
    let library = lectern_index::Library::open(&data.join("library"), 384)
        .await
        .expect("the library opens");
    library.vectors_by_hash(hashes).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_ingests_through_the_cuda_build_with_the_in_process_vectors() {
    let Some(program) = cuda_worker("the_engine_ingests_through_the_cuda_build") else {
        return;
    };
    let md = shared_dir().join("eval/docs/md");
    let docs: Vec<PathBuf> = [
        "rust-book-README.md",
        "rust-book-ch03-02-data-types.md",
        "rust-book-ch04-01-what-is-ownership.md",
    ]
    .iter()
    .map(|name| md.join(name))
    .collect();

    let through_worker = tempfile::tempdir().unwrap();
    let (engine, hashes) = ingest(
        through_worker.path(),
        &docs,
        Some(config_for(&program, "auto")),
    )
    .await;
    let status = engine.worker_status().expect("a worker is configured");
    eprintln!("worker status after ingest: {status:?}");
    assert_eq!(status.starts, 1);
    assert_eq!(status.lost, 0, "{:?}", status.last_error);
    assert_eq!(status.device, Some(DeviceKind::Cpu));
    let hello = status.hello.expect("the worker's hello is kept");
    assert!(hello.capabilities.cuda);
    assert!(
        hello.device_reason.starts_with(NO_DRIVER),
        "{}",
        hello.device_reason
    );
    let report = engine.worker_report();
    assert_eq!(report.state, "running");
    assert_eq!(report.cuda_build, Some(true));
    drop(engine);
    let got = stored_vectors(through_worker.path(), &hashes).await;

    let in_process = tempfile::tempdir().unwrap();
    let (engine, hashes) = ingest(in_process.path(), &docs, None).await;
    assert!(engine.worker_status().is_none(), "no worker in process");
    drop(engine);
    let expected = stored_vectors(in_process.path(), &hashes).await;
    assert!(expected.len() > 20, "{} passages", expected.len());
    assert_eq!(
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        expected.keys().collect::<std::collections::BTreeSet<_>>(),
        "the same passages"
    );
    let mut diff = 0.0f32;
    for (hash, vector) in &expected {
        diff = diff.max(max_abs_diff(
            std::slice::from_ref(vector),
            std::slice::from_ref(&got[hash]),
        ));
    }
    eprintln!(
        "{} passages of 3 documents: max abs difference {diff:e} between the CUDA build's vectors and the in-process ones",
        expected.len()
    );
    assert!(diff <= 1e-6, "stored vectors differ by {diff}");
}

#[test]
fn a_simulated_gpu_and_the_cpu_only_worker_leave_models_in_process() {
    let gpu = lectern_engine::gpu::SimulatedGpu::new(lectern_engine::gpu::SimConfig::default());
    let status =
        lectern_engine::gpu::status(DevicePreference::Auto, Capabilities::default(), &gpu).unwrap();
    let plan = plan_worker(
        None,
        &WorkerMode::Auto {
            program: Some(worker_binary()),
        },
        DevicePreference::Auto,
        &status,
        PathBuf::from("/nowhere/lectern-worker"),
        |config| probe_hello(&config_for(&config.program, "sim:vram=16GiB")),
    );
    assert!(!plan.used, "{plan:?}");
    assert!(plan.config.is_none());
    let hello = plan
        .hello
        .as_ref()
        .expect("the worker was started to check it");
    assert!(!hello.capabilities.cuda);
    assert_eq!(
        plan.reason,
        "the model worker was built without CUDA; models run in this process"
    );
}

#[test]
fn a_simulated_gpu_and_the_cuda_build_without_the_driver_leave_models_in_process() {
    let Some(program) = cuda_worker("a_simulated_gpu_and_the_cuda_build") else {
        return;
    };
    let gpu = lectern_engine::gpu::SimulatedGpu::new(lectern_engine::gpu::SimConfig::default());
    let status =
        lectern_engine::gpu::status(DevicePreference::Auto, Capabilities::default(), &gpu).unwrap();
    let plan = plan_worker(
        None,
        &WorkerMode::Auto {
            program: Some(program),
        },
        DevicePreference::Auto,
        &status,
        PathBuf::from("/nowhere/lectern-worker"),
        |config| probe_hello(&config_for(&config.program, "sim:vram=16GiB")),
    );
    eprintln!("plan: {}", plan.reason);
    assert!(!plan.used);
    assert!(plan.hello.as_ref().unwrap().capabilities.cuda);
    assert!(
        plan.reason
            .starts_with(&format!("the model worker cannot use the GPU: {NO_DRIVER}")),
        "{}",
        plan.reason
    );
}
