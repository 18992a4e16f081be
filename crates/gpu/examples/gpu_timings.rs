//! Measures the GPU manager's own costs: device detection, one telemetry
//! snapshot (simulator, no-GPU and, where a driver is present, NVML), and a
//! full out-of-memory recovery on the simulator.
//!
//! Run with `cargo run -p lectern-gpu --example gpu_timings`. The budgets
//! are: detection < 100 ms, a snapshot < 1 ms, a full recovery < 2 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lectern_gpu::{
    probe_telemetry, select_device, Capabilities, DevicePreference, GpuError, NoGpu,
    RecoveryPolicy, SimulatedGpu, Target, TelemetryBackend, WorkError,
};

/// Runs `f` `runs` times and returns the median and the slowest run.
fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

fn report(what: &str, runs: usize, (median, max): (Duration, Duration)) {
    println!("{what:<40} median {median:>12.3?}  max {max:>12.3?}  ({runs} runs)");
}

fn main() {
    let caps = Capabilities {
        cuda: true,
        metal: false,
    };
    let runs = 20;
    report(
        "detection (probe + select, auto)",
        runs,
        time(runs, || {
            let telemetry = probe_telemetry();
            let selection = select_device(DevicePreference::Auto, caps, telemetry.as_ref());
            assert!(selection.is_ok());
        }),
    );

    let sim = SimulatedGpu::new("vram=16GiB".parse().expect("valid options"));
    let runs = 10_000;
    report(
        "snapshot: simulator",
        runs,
        time(runs, || {
            sim.snapshot(0).expect("the simulator answers");
        }),
    );
    let none = NoGpu::new("no GPU");
    report(
        "snapshots: no GPU",
        runs,
        time(runs, || {
            assert!(none.snapshots().is_empty());
        }),
    );
    let real = probe_telemetry();
    if real.name() == "nvml" && real.device_count() > 0 {
        let runs = 200;
        report(
            "snapshot: NVML GPU 0",
            runs,
            time(runs, || {
                real.snapshot(0).expect("GPU 0 answers");
            }),
        );
    } else {
        println!(
            "snapshot: NVML                           not measured: {}",
            real.unavailable_reason().unwrap_or_default()
        );
    }

    let items: Vec<u64> = (0..256).collect();
    let runs = 200;
    report(
        "full OOM recovery (3 steps, 256 items)",
        runs,
        time(runs, || {
            let gpu = Arc::new(SimulatedGpu::new(
                "oom_at=1..".parse().expect("valid options"),
            ));
            let done = RecoveryPolicy::new()
                .map_batches(
                    &items,
                    32,
                    || {},
                    |batch, target| {
                        if target == Target::Gpu {
                            gpu.allocate(batch.len() as u64 * 1024)
                                .map_err(|e| match e {
                                    GpuError::OutOfMemory { .. } => WorkError::OutOfMemory(e),
                                    other => WorkError::Failed(other),
                                })?;
                        }
                        Ok(batch.iter().map(|x| x * 2).collect::<Vec<_>>())
                    },
                )
                .expect("recovered on the CPU");
            assert_eq!(done.steps.len(), 3);
            assert_eq!(done.value.len(), items.len());
        }),
    );
}
