//! `lectern gpu status|watch|recommend` and `lectern doctor` against the
//! simulated GPU, selected the way a user selects it: `LECTERN_GPU`.

// Not every helper is used here.
#[allow(dead_code)]
mod common;

use common::{lectern_command, ok};

use std::path::Path;
use std::process::Output;

fn lectern_with_gpu(data: &Path, gpu: &str, args: &[&str]) -> Output {
    lectern_command(data, args)
        .env("LECTERN_GPU", gpu)
        .env("LECTERN_DEVICE", "auto")
        .output()
        .expect("lectern runs")
}

fn json(out: &Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Each line of a `--json` stream, parsed.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn gpu_status_shows_the_simulated_gpu_its_readings_and_no_reservations() {
    let data = tempfile::tempdir().unwrap();
    let out = lectern_with_gpu(
        data.path(),
        "sim:vram=12GiB,used=3GiB,name=Demo GPU,temp=51",
        &["gpu", "status", "--json"],
    );
    let status = json(&out);
    assert_eq!(status["telemetry_backend"], "sim");
    assert_eq!(status["driver_version"], "simulated");
    let gpu = &status["gpus"][0];
    assert_eq!(gpu["name"], "Demo GPU");
    assert_eq!(gpu["memory_total"], 12u64 << 30);
    assert_eq!(gpu["memory_used"], 3u64 << 30);
    assert_eq!(gpu["temperature_c"], 51);
    assert!(gpu["power_limit_mw"].as_u64().unwrap() > 0);
    // A fresh process holds no model yet; the fields are there for the app.
    assert_eq!(status["residents"], serde_json::json!([]));
    assert_eq!(status["reserved_bytes"], 0);
    assert_eq!(status["idle_timeout_ms"], 600_000);

    let text = ok(&lectern_command(data.path(), &["gpu", "status"])
        .env("LECTERN_GPU", "sim:vram=12GiB,used=3GiB,name=Demo GPU")
        .env("LECTERN_IDLE_UNLOAD", "90s")
        .output()
        .unwrap());
    assert!(text.contains("GPU 0: Demo GPU"), "{text}");
    assert!(text.contains("3.00 / 12.00 GiB (25.0%)"), "{text}");
    assert!(
        text.contains("Models:    none holding GPU memory (idle models unload after 90 s)"),
        "{text}"
    );
}

#[test]
fn gpu_status_rejects_a_bad_simulator_option_by_name() {
    let data = tempfile::tempdir().unwrap();
    // Status still runs, and says why there are no readings.
    let out = lectern_with_gpu(data.path(), "sim:vram=lots", &["gpu", "status"]);
    let text = ok(&out);
    assert!(text.contains("Device:    cpu"), "{text}");
    assert!(
        text.contains(r#"LECTERN_GPU: vram: expected a number, found "lots""#),
        "{text}"
    );
    // Watching needs readings: it fails, naming the option.
    let out = lectern_with_gpu(
        data.path(),
        "sim:vram=lots",
        &["gpu", "watch", "--count", "1"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vram"), "{err}");
}

#[test]
fn gpu_watch_streams_changing_readings_and_threshold_events() {
    let data = tempfile::tempdir().unwrap();
    // Hot from 0.3 s to 1.3 s; it cools quickly afterwards.
    let out = lectern_with_gpu(
        data.path(),
        "sim:temp=45,tau=200ms,hot_at=300ms,hot_for=1s,hot_temp=92",
        &[
            "gpu",
            "watch",
            "--json",
            "--interval",
            "100ms",
            "--count",
            "25",
        ],
    );
    let lines = json_lines(&out);
    let samples: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "sample").collect();
    assert_eq!(samples.len(), 25);
    let temps: Vec<u64> = samples
        .iter()
        .map(|s| s["gpus"][0]["temperature_c"].as_u64().unwrap())
        .collect();
    assert_eq!(temps[0], 45, "{temps:?}");
    assert!(temps.contains(&92), "{temps:?}");
    assert!(*temps.last().unwrap() < 80, "{temps:?}");
    let times: Vec<u64> = samples
        .iter()
        .map(|s| s["at_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let events: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "event")
        .map(|l| l["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "temperature_warning",
            "temperature_limit",
            "temperature_limit_cleared",
            "temperature_warning_cleared"
        ]
    );
    assert!(lines
        .iter()
        .any(|l| l["message"].as_str().is_some_and(|m| m.contains("92 °C"))));

    // Text form: one line per reading, events marked.
    let out = lectern_with_gpu(
        data.path(),
        "sim:temp=45,hot_at=0s,hot_for=10s,hot_temp=95",
        &["gpu", "watch", "--interval", "50ms", "--count", "3"],
    );
    let text = ok(&out);
    assert!(text.contains("Watching 1 GPU(s) through sim"), "{text}");
    assert_eq!(text.matches("  GPU 0  VRAM ").count(), 3, "{text}");
    assert!(text.contains("95 °C"), "{text}");
    assert!(
        text.contains("! GPU 0 reached its temperature limit"),
        "{text}"
    );
}

#[test]
fn gpu_recommend_picks_the_largest_variant_that_fits_the_simulated_memory() {
    let data = tempfile::tempdir().unwrap();
    let out = lectern_with_gpu(
        data.path(),
        "sim:vram=16GiB",
        &["gpu", "recommend", "--context", "8192", "--json"],
    );
    let advice = json(&out);
    assert_eq!(advice["context"], 8192);
    let variants = advice["variants"].as_array().unwrap();
    assert!(variants.len() >= 9, "{advice}");
    let choice = &advice["choice"];
    if advice["budget"]["device"] == "gpu" {
        // A CUDA build sees the simulated 16 GB card: 4B at full precision.
        assert_eq!(choice["model"], "qwen3-4b-instruct-2507", "{advice}");
        assert_eq!(choice["format"], "bf16", "{advice}");
    } else {
        // A CPU-only build plans for the CPU: a quantized small model.
        let params = choice["parameters"].as_u64().unwrap();
        assert!(params <= 2_000_000_000, "{advice}");
        assert!(
            choice["format"] == "q8_0" || choice["format"] == "q4_k_m",
            "{advice}"
        );
    }
    if choice["fits"] == true {
        assert!(choice["max_context"].as_u64().unwrap() >= 8192, "{advice}");
    }

    let text = ok(&lectern_with_gpu(
        data.path(),
        "sim:vram=16GiB",
        &["gpu", "recommend"],
    ));
    assert!(text.contains("max ctx"), "{text}");
    assert!(text.contains("qwen3-0.6b"), "{text}");
    assert!(text.contains("Q4_K_M"), "{text}");
}

#[test]
fn doctor_reports_host_gpu_models_and_library_health() {
    let data = tempfile::tempdir().unwrap();
    let report = json(&lectern_with_gpu(
        data.path(),
        "sim:vram=8GiB,name=Doctor GPU",
        &["doctor", "--json"],
    ));
    assert_eq!(report["host"]["os"], std::env::consts::OS);
    assert!(report["host"]["logical_cpus"].as_u64().unwrap() >= 1);
    if cfg!(target_arch = "x86_64") {
        let features = report["host"]["cpu_features"].as_array().unwrap();
        assert!(features.iter().any(|f| f == "sse4.2"), "{report}");
    }
    assert_eq!(report["gpu"]["gpus"][0]["name"], "Doctor GPU");
    assert_eq!(report["gpu"]["gpus"][0]["memory_total"], 8u64 << 30);
    // NVML is probed for real, whatever LECTERN_GPU says.
    let nvml = &report["nvml"];
    if nvml["available"] == false {
        assert!(
            nvml["reason"].as_str().unwrap().contains("NVIDIA"),
            "{nvml}"
        );
    }
    let models = report["models"].as_array().unwrap();
    let minilm = models
        .iter()
        .find(|m| m["id"] == "all-MiniLM-L6-v2")
        .expect("the catalog lists the embedder");
    assert_eq!(minilm["install"]["state"], "installed", "{minilm}");
    assert!(report["recommendation"]["choice"]["model"].is_string());
    // No library yet: nothing to check, nothing created.
    assert_eq!(report["data_dir"]["library"]["present"], false);
    assert_eq!(report["data_dir"]["writable"], true);
    assert!(!data.path().join("library").exists());

    // With a library, its stores are compared.
    let doc = data.path().join("note.md");
    std::fs::write(
        &doc,
        "# Notes\n\nThe doctor checks the library's stores agree.\n",
    )
    .unwrap();
    ok(
        &lectern_command(data.path(), &["ingest", doc.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let report = json(&lectern_with_gpu(
        data.path(),
        "sim:vram=8GiB",
        &["doctor", "--json"],
    ));
    let library = &report["data_dir"]["library"];
    assert_eq!(library["present"], true, "{report}");
    assert_eq!(library["consistency"]["documents"], 1, "{report}");
    assert_eq!(
        library["consistency"]["chunks"],
        library["consistency"]["vector_rows"]
    );
    assert_eq!(library["consistency"]["problems"], serde_json::json!([]));

    let text = ok(&lectern_with_gpu(data.path(), "sim:vram=8GiB", &["doctor"]));
    for label in [
        "OS:",
        "CPU features:",
        "NVML:",
        "Models in",
        "Data folder:",
        "Library:",
    ] {
        assert!(text.contains(label), "missing {label:?} in\n{text}");
    }
    assert!(text.contains("1 document(s)"), "{text}");
    assert!(text.contains("consistent"), "{text}");
}
