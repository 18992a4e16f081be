//! What the process boundary costs: SciFact passages embedded in batches
//! of 32 in this process and through the worker, in the same run,
//! alternating, on the CPU; the round trip of an empty request; and
//! vectors framed as raw `f32` bytes against JSON numbers.
//!
//! `cargo test -p lectern-worker --test overhead -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::*;
use lectern_engine::gpu::{DeviceKind, DevicePreference};
use lectern_engine::worker::{EmbedKind, WorkerProcess};
use lectern_worker_protocol::{decode_vectors, encode_vectors};

/// The same allocator as the worker and the front ends.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSAGES: usize = 320;
const BATCH: usize = 32;
const REPETITIONS: usize = 3;

fn rate(items: usize, elapsed: Duration) -> f64 {
    items as f64 / elapsed.as_secs_f64()
}

#[test]
#[ignore = "a measurement: run it explicitly with --ignored --nocapture"]
fn embedding_throughput_in_process_and_through_the_worker() {
    let texts = scifact_passages(PASSAGES, usize::MAX);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let config = lectern_engine::embedder_config_for(&minilm()).unwrap();
    let local = lectern_models::Embedder::load(
        config,
        &lectern_models::candle_device(&DeviceKind::Cpu).unwrap(),
    )
    .unwrap();
    let mut worker = WorkerProcess::start(&worker_config("")).unwrap();
    worker
        .load_embedder(
            &minilm(),
            DevicePreference::Cpu,
            Some(embedder_settings(&minilm())),
        )
        .unwrap();
    // Warm both up (first-touch allocations, kernel selection).
    local.embed_passages(&refs[..BATCH]).unwrap();
    worker.embed(0, &refs[..BATCH], EmbedKind::Passage).unwrap();

    println!(
        "{PASSAGES} SciFact passages (title + abstract), batches of {BATCH}, all-MiniLM-L6-v2 on the CPU"
    );
    let (mut local_rates, mut worker_rates) = (Vec::new(), Vec::new());
    let mut batch_id = 1;
    for rep in 1..=REPETITIONS {
        let started = Instant::now();
        for batch in refs.chunks(BATCH) {
            local.embed_passages(batch).unwrap();
        }
        let in_process = rate(PASSAGES, started.elapsed());
        let started = Instant::now();
        for batch in refs.chunks(BATCH) {
            worker.embed(batch_id, batch, EmbedKind::Passage).unwrap();
            batch_id += 1;
        }
        let through_worker = rate(PASSAGES, started.elapsed());
        println!(
            "rep {rep}: in process {in_process:.1} passages/s, through the worker {through_worker:.1} passages/s ({:+.1} %)",
            (through_worker / in_process - 1.0) * 100.0
        );
        local_rates.push(in_process);
        worker_rates.push(through_worker);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: in process {:.1} passages/s, through the worker {:.1} passages/s",
        mean(&local_rates),
        mean(&worker_rates)
    );

    let trips = 200;
    let started = Instant::now();
    for _ in 0..trips {
        worker.embed(batch_id, &[], EmbedKind::Passage).unwrap();
        batch_id += 1;
    }
    println!(
        "round trip of an empty request: {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(trips)
    );

    let vectors = local.embed_passages(&refs[..BATCH]).unwrap();
    let rounds = 200;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let payload = encode_vectors(&vectors, 384).unwrap();
        bytes = payload.len();
        let back = decode_vectors(&payload, BATCH, 384).unwrap();
        assert_eq!(back.len(), BATCH);
    }
    let raw = started.elapsed() / rounds;
    let started = Instant::now();
    let mut json_bytes = 0;
    for _ in 0..rounds {
        let json = serde_json::to_vec(&vectors).unwrap();
        json_bytes = json.len();
        let back: Vec<Vec<f32>> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.len(), BATCH);
    }
    let json = started.elapsed() / rounds;
    println!(
        "one batch of {BATCH} vectors, encode + decode: raw f32 {bytes} bytes in {:.1} µs, JSON numbers {json_bytes} bytes in {:.1} µs",
        raw.as_secs_f64() * 1e6,
        json.as_secs_f64() * 1e6
    );
    let status = worker.shutdown().unwrap();
    assert!(status.success());
}
