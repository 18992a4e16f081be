//! The model worker in `lectern gpu status` and `lectern doctor`: whether
//! it would be used and why, its binary, its build and state, with the GPU
//! chosen the way a user chooses it (`LECTERN_GPU`, `LECTERN_WORKER`).

// Not every helper is used here.
#[allow(dead_code)]
mod common;

use common::{lectern_command, ok};

use std::path::{Path, PathBuf};
use std::process::Output;

/// `lectern ARGS` with `LECTERN_GPU=gpu`, the device left to `auto` and
/// `LECTERN_WORKER=worker` (`None`: unset).
fn lectern(data: &Path, gpu: &str, worker: Option<&str>, args: &[&str]) -> Output {
    let mut command = lectern_command(data, args);
    command
        .env("LECTERN_GPU", gpu)
        .env("LECTERN_DEVICE", "auto");
    match worker {
        Some(value) => command.env("LECTERN_WORKER", value),
        None => command.env_remove("LECTERN_WORKER"),
    };
    command.output().expect("lectern runs")
}

fn json(out: &Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

const SIM: &str = "sim:vram=16GiB,name=Demo GPU";

#[test]
fn without_a_gpu_the_worker_is_not_used_and_gpu_status_says_why() {
    let data = tempfile::tempdir().unwrap();
    let status = json(&lectern(
        data.path(),
        "none",
        None,
        &["gpu", "status", "--json"],
    ));
    let worker = &status["worker"];
    assert_eq!(worker["mode"], "auto");
    assert_eq!(worker["used"], false);
    assert_eq!(worker["state"], "not started");
    assert_eq!(worker["cuda_build"], serde_json::Value::Null);
    let reason = worker["reason"].as_str().unwrap();
    assert!(reason.starts_with("no usable NVIDIA GPU ("), "{reason}");
    // The binary looked for sits beside `lectern`.
    let program = PathBuf::from(worker["program"].as_str().unwrap());
    assert_eq!(program.file_name().unwrap(), "lectern-worker");
    assert_eq!(
        program.parent(),
        Path::new(env!("CARGO_BIN_EXE_lectern")).parent()
    );

    let text = ok(&lectern(data.path(), "none", None, &["gpu", "status"]));
    assert!(text.contains("Model worker: not used (auto)"), "{text}");
    assert!(
        text.contains("  why:      no usable NVIDIA GPU ("),
        "{text}"
    );
    assert!(text.contains("  build:    unknown (not started)"), "{text}");
    assert!(text.contains("  state:    not started"), "{text}");
}

#[test]
fn a_simulated_gpu_without_a_worker_binary_keeps_models_in_process() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("bin/lectern-worker");
    let setting = format!("auto:{}", missing.display());
    let status = json(&lectern(
        data.path(),
        SIM,
        Some(&setting),
        &["gpu", "status", "--json"],
    ));
    assert_eq!(status["gpus"][0]["name"], "Demo GPU");
    let worker = &status["worker"];
    assert_eq!(worker["mode"], "auto");
    assert_eq!(worker["used"], false);
    assert_eq!(worker["found"], false);
    assert_eq!(worker["program"], missing.to_str().unwrap());
    let reason = worker["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "there is no model worker at {}",
            missing.display()
        )),
        "{reason}"
    );
    let text = ok(&lectern(
        data.path(),
        SIM,
        Some(&setting),
        &["gpu", "status"],
    ));
    assert!(
        text.contains(&format!("  binary:   {} (not found)", missing.display())),
        "{text}"
    );
}

#[test]
fn doctor_shows_a_worker_turned_off_or_given_by_path() {
    let data = tempfile::tempdir().unwrap();
    let report = json(&lectern(
        data.path(),
        SIM,
        Some("off"),
        &["doctor", "--json"],
    ));
    assert_eq!(report["worker"]["mode"], "off");
    assert_eq!(report["worker"]["used"], false);
    assert_eq!(report["worker"]["program"], serde_json::Value::Null);
    let text = ok(&lectern(data.path(), SIM, Some("off"), &["doctor"]));
    assert!(text.contains("Model worker: not used (off)"), "{text}");
    assert!(text.contains("turned off (LECTERN_WORKER=off)"), "{text}");

    // An explicit path is used for every run; it starts with the first batch.
    let explicit = data.path().join("elsewhere/lectern-worker");
    let explicit = explicit.to_str().unwrap();
    let report = json(&lectern(
        data.path(),
        "none",
        Some(explicit),
        &["doctor", "--json"],
    ));
    let worker = &report["worker"];
    assert_eq!(worker["mode"], "path");
    assert_eq!(worker["used"], true);
    assert_eq!(worker["found"], false);
    assert_eq!(worker["state"], "not started");
    assert_eq!(worker["program"], explicit);
    let text = ok(&lectern(data.path(), "none", Some(explicit), &["doctor"]));
    assert!(text.contains("Model worker: used (path)"), "{text}");
}

#[test]
fn a_cuda_worker_without_the_driver_is_not_used_and_says_why() {
    let Some(cuda_worker) = std::env::var_os("LECTERN_CUDA_WORKER") else {
        eprintln!("skipped: set LECTERN_CUDA_WORKER to a lectern-worker built with --features cuda (scripts/cuda-worker.sh --check)");
        return;
    };
    if Path::new("/proc/driver/nvidia/version").exists() {
        eprintln!("skipped: this machine has the NVIDIA driver");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let setting = format!("auto:{}", PathBuf::from(cuda_worker).display());
    let status = json(&lectern(
        data.path(),
        SIM,
        Some(&setting),
        &["gpu", "status", "--json"],
    ));
    let worker = &status["worker"];
    assert_eq!(worker["used"], false);
    assert_eq!(worker["found"], true);
    assert_eq!(worker["cuda_build"], true, "{worker}");
    assert_eq!(worker["device"], "cpu");
    let reason = worker["reason"].as_str().unwrap();
    assert!(
        reason.contains("the model worker cannot use the GPU: CUDA build, but no NVIDIA driver: libcuda.so.1 could not be loaded"),
        "{reason}"
    );
    let text = ok(&lectern(
        data.path(),
        SIM,
        Some(&setting),
        &["gpu", "status"],
    ));
    assert!(text.contains("  build:    CUDA\n"), "{text}");
    assert!(
        text.contains("  device:   cpu — CUDA build, but no NVIDIA driver"),
        "{text}"
    );
}
