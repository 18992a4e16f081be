//! `lectern-worker`: the process that holds Lectern's models on a GPU.
//!
//! The app and the CLI are CPU-only binaries; a binary built with CUDA
//! will not even start on a machine without the NVIDIA driver, and a
//! corrupted CUDA context cannot be recovered inside one process. So the
//! models that run on a GPU live here, in a process the engine starts,
//! talks to over stdin/stdout (the framed protocol of
//! `lectern-worker-protocol`) and replaces when it crashes or hangs. The
//! worker runs on whatever device its build has (`--features cuda` for
//! NVIDIA GPUs, the CPU otherwise).
//!
//! It writes [`Hello`] first, then answers requests one at a time, in
//! order. A request it cannot serve gets an error frame and the worker
//! goes on; it exits with status 0 on `shutdown` or when its stdin closes
//! (the engine is gone). Logs go to stderr (`LECTERN_LOG` filters them);
//! stdout carries frames only.
//!
//! # Fault injection
//!
//! `LECTERN_WORKER_FAULT` makes the worker misbehave on purpose, so the
//! engine's supervision can be tested with a real process. It is a
//! comma-separated list of:
//!
//! * `crash-at-batch:N` — abort (SIGABRT) on the Nth embedding request;
//! * `hang-at-batch:N` — never answer the Nth embedding request;
//! * `oom-at-batch:N` — answer the Nth embedding request with an
//!   `out_of_memory` error frame;
//! * `bad-hello` — announce a protocol version the engine does not speak;
//! * `hang-at-start` — never send the hello;
//! * `exit-at-start` — exit with status 3 before the hello.
//!
//! Embedding requests are counted from 1 in each process. The language
//! model's faults (`crash-at-token:N`, `hang-at-token:N`,
//! `oom-at-llm-load`) are described in `fault.rs`.
//!
//! # Device at start
//!
//! The worker picks its device once, before the hello: the best device
//! its build has and the GPU telemetry reports (`LECTERN_GPU` applies).
//! A build with CUDA then opens that GPU for real. cudarc loads the driver
//! (`libcuda.so.1`), cuBLAS and cuRAND when first used and panics when one
//! is missing; that panic, or any error opening the device, is caught and
//! the worker runs on the CPU instead, with the reason in its hello (for
//! example "CUDA build, but no NVIDIA driver: libcuda.so.1 could not be
//! loaded; running on CPU"). A GPU whose compute capability is not the
//! one the build's kernels were compiled for (`CUDA_COMPUTE_CAP`; they
//! are machine code for that architecture alone) is refused the same way,
//! before it is opened. Requests that ask for `auto` then run on the
//! CPU, and requests that ask for a GPU explicitly get a
//! `device_unavailable` error frame saying why.

mod fault;
mod llm;
mod serve;

use std::process::ExitCode;

use std::panic::{catch_unwind, AssertUnwindSafe};

use lectern_gpu::{
    Capabilities, DeviceKind, DevicePreference, DeviceSelection, GpuError, NoGpu, TelemetryBackend,
};
use lectern_worker_protocol::{Hello, FAULT_ENV_VAR, PROTOCOL_VERSION};

/// Tensor work allocates and frees large buffers at a high rate; mimalloc
/// keeps that cheap (as in the CLI and the app).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log filter used when `LECTERN_LOG` is not set.
const DEFAULT_LOG: &str = "warn,lectern_worker=info";

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LECTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let faults = match fault::Faults::from_env() {
        Ok(faults) => faults,
        Err(message) => {
            tracing::error!("{FAULT_ENV_VAR}: {message}");
            return ExitCode::from(2);
        }
    };
    if faults.exit_at_start {
        tracing::error!("exiting before the hello ({FAULT_ENV_VAR})");
        return ExitCode::from(3);
    }
    if faults.hang_at_start {
        tracing::warn!("never sending the hello ({FAULT_ENV_VAR})");
        fault::hang();
    }

    let caps = lectern_models::capabilities();
    let (telemetry, choice) = match choose_device(
        caps,
        lectern_gpu::probe_telemetry(),
        kernel_compute_capability(),
        open_cuda_device,
    ) {
        Ok(chosen) => chosen,
        Err(error) => {
            tracing::error!(%error, "cannot select a device");
            return ExitCode::from(2);
        }
    };
    let hello = Hello {
        protocol: if faults.bad_hello {
            PROTOCOL_VERSION + 1000
        } else {
            PROTOCOL_VERSION
        },
        worker_version: env!("CARGO_PKG_VERSION").to_owned(),
        device: choice.kind,
        device_reason: choice.reason,
        capabilities: caps,
        pid: std::process::id(),
    };
    tracing::info!(device = %hello.device, reason = %hello.device_reason, "model worker started");

    let stdout = std::io::stdout();
    let mut server = serve::Server::new(faults, telemetry);
    match server.run(std::io::stdin(), &mut stdout.lock(), &hello) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "model worker stopped");
            ExitCode::from(1)
        }
    }
}

/// The compute capability the build's CUDA kernels were compiled for:
/// `CUDA_COMPUTE_CAP` at build time (`90` is 9.0), when it was set.
fn kernel_compute_capability() -> Option<(u32, u32)> {
    parse_compute_cap(option_env!("CUDA_COMPUTE_CAP")?)
}

/// `"90"` → 9.0, `"89"` → 8.9, `"100"` → 10.0: the last digit is the minor
/// version.
fn parse_compute_cap(text: &str) -> Option<(u32, u32)> {
    let n: u32 = text.trim().parse().ok()?;
    (n >= 10).then_some((n / 10, n % 10))
}

/// Why GPU `index`, of compute capability `device`, cannot run kernels
/// built for `kernels`, or `None` when it can (or either is unknown).
fn kernel_mismatch(
    index: usize,
    kernels: Option<(u32, u32)>,
    device: Option<(u32, u32)>,
) -> Option<String> {
    let ((km, kn), (dm, dn)) = (kernels?, device?);
    ((km, kn) != (dm, dn)).then(|| {
        format!(
            "cuda:{index} has compute capability {dm}.{dn} and this worker's kernels are built \
             for {km}.{kn} only (build it with CUDA_COMPUTE_CAP={dm}{dn} scripts/cuda-worker.sh)"
        )
    })
}

/// Picks the device the worker runs on: what `auto` selects from the
/// build's capabilities and `telemetry`, then, for a build with CUDA, a
/// check that the GPU's compute capability is the one its `kernels` were
/// built for and with `open_cuda` that the GPU really opens (and, when the
/// telemetry sees no GPU, why CUDA cannot run, which makes a better
/// reason than "no GPU"). When the GPU does not open, the telemetry handed
/// back reports no GPU with that reason, so later model loads pick the
/// CPU (or explain why an explicit `cuda` request cannot be served).
fn choose_device(
    caps: Capabilities,
    telemetry: Box<dyn TelemetryBackend>,
    kernels: Option<(u32, u32)>,
    open_cuda: impl Fn(usize) -> Result<(), String>,
) -> Result<(Box<dyn TelemetryBackend>, DeviceSelection), GpuError> {
    let selection = lectern_gpu::select_device(DevicePreference::Auto, caps, telemetry.as_ref())?;
    if !caps.cuda {
        return Ok((telemetry, selection));
    }
    match selection.kind {
        DeviceKind::Cuda(index) => {
            match kernel_mismatch(index, kernels, telemetry.compute_capability(index as u32))
                .map_or_else(|| open_cuda(index), Err)
            {
                Ok(()) => Ok((telemetry, selection)),
                Err(why) => {
                    tracing::warn!(%why, "the GPU cannot be used; running on the CPU");
                    let reason = format!("CUDA build, but {why}; running on CPU");
                    let selection = DeviceSelection {
                        kind: DeviceKind::Cpu,
                        reason: reason.clone(),
                    };
                    Ok((Box::new(NoGpu::new(why)), selection))
                }
            }
        }
        // No GPU in sight: say what CUDA itself reports, when it fails.
        _ if telemetry.device_count() == 0 => match open_cuda(0) {
            Err(why) => Ok((
                telemetry,
                DeviceSelection {
                    kind: selection.kind,
                    reason: format!("CUDA build, but {why}; {}", selection.reason),
                },
            )),
            Ok(()) => Ok((telemetry, selection)),
        },
        _ => Ok((telemetry, selection)),
    }
}

/// Opens CUDA device `index` through candle and lets it go again. A
/// missing CUDA library panics inside cudarc; the panic is caught, kept
/// off stderr, and described.
fn open_cuda_device(index: usize) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = catch_unwind(AssertUnwindSafe(|| {
        lectern_models::candle_device(&DeviceKind::Cuda(index)).map(drop)
    }));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("cuda:{index} cannot be used: {error}")),
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(describe_cuda_panic(&text))
        }
    }
}

/// A person's account of a panic raised while CUDA starts. cudarc says
/// `Unable to dynamically load the "cuda" shared library - …` when a
/// library is missing.
fn describe_cuda_panic(text: &str) -> String {
    let missing = text
        .split_once("load the \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name);
    match missing {
        Some("cuda") => "no NVIDIA driver: libcuda.so.1 could not be loaded".to_owned(),
        Some(name) => format!(
            "the CUDA library lib{name} could not be loaded \
             (install the CUDA runtime libraries or set LD_LIBRARY_PATH)"
        ),
        None => format!("CUDA failed to start: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lectern_gpu::{SimConfig, SimulatedGpu};

    const NO_DRIVER: &str = r#"Unable to dynamically load the "cuda" shared library - searched for library names: ["libcuda.so", "libcuda.so.1"]. Ensure that `LD_LIBRARY_PATH` has the correct path to the installed library."#;

    fn simulated_gpu() -> Box<dyn TelemetryBackend> {
        Box::new(SimulatedGpu::new(SimConfig::default()))
    }

    const CUDA: Capabilities = Capabilities {
        cuda: true,
        metal: false,
    };

    /// Kernels built with `CUDA_COMPUTE_CAP=90`; the simulator is a 9.0 GPU
    /// unless told otherwise.
    const H100: Option<(u32, u32)> = Some((9, 0));

    #[test]
    fn compute_caps_parse_with_the_last_digit_as_minor() {
        assert_eq!(parse_compute_cap("90"), Some((9, 0)));
        assert_eq!(parse_compute_cap("89"), Some((8, 9)));
        assert_eq!(parse_compute_cap("100"), Some((10, 0)));
        assert_eq!(parse_compute_cap("9"), None);
        assert_eq!(parse_compute_cap("sm_90"), None);
    }

    #[test]
    fn a_gpu_of_another_architecture_is_refused_before_it_is_opened() {
        let ada = Box::new(SimulatedGpu::new("cc=8.9".parse::<SimConfig>().unwrap()));
        let (telemetry, choice) = choose_device(CUDA, ada, H100, |_| {
            panic!("a GPU the kernels cannot run on must not be opened")
        })
        .unwrap();
        assert_eq!(choice.kind, DeviceKind::Cpu);
        assert_eq!(
            choice.reason,
            "CUDA build, but cuda:0 has compute capability 8.9 and this worker's kernels are \
             built for 9.0 only (build it with CUDA_COMPUTE_CAP=89 scripts/cuda-worker.sh); \
             running on CPU"
        );
        assert_eq!(telemetry.device_count(), 0);
        // Unknown on either side: the GPU is tried.
        let (_, choice) = choose_device(CUDA, simulated_gpu(), None, |_| Ok(())).unwrap();
        assert_eq!(choice.kind, DeviceKind::Cuda(0));
    }

    #[test]
    fn cuda_panics_are_described() {
        assert_eq!(
            describe_cuda_panic(NO_DRIVER),
            "no NVIDIA driver: libcuda.so.1 could not be loaded"
        );
        let cublas = describe_cuda_panic(
            r#"Unable to dynamically load the "cublas" shared library - searched for library names: ["libcublas.so"]."#,
        );
        assert!(
            cublas.starts_with("the CUDA library libcublas could not be loaded"),
            "{cublas}"
        );
        assert_eq!(
            describe_cuda_panic("index out of bounds"),
            "CUDA failed to start: index out of bounds"
        );
    }

    #[test]
    fn a_gpu_that_does_not_open_leaves_the_worker_on_the_cpu_with_the_reason() {
        let (telemetry, choice) = choose_device(CUDA, simulated_gpu(), H100, |index| {
            assert_eq!(index, 0);
            Err(describe_cuda_panic(NO_DRIVER))
        })
        .unwrap();
        assert_eq!(choice.kind, DeviceKind::Cpu);
        assert_eq!(
            choice.reason,
            "CUDA build, but no NVIDIA driver: libcuda.so.1 could not be loaded; running on CPU"
        );
        // Later loads see no GPU: `auto` picks the CPU, `cuda` says why not.
        assert_eq!(telemetry.device_count(), 0);
        let auto =
            lectern_gpu::select_device(DevicePreference::Auto, CUDA, telemetry.as_ref()).unwrap();
        assert_eq!(auto.kind, DeviceKind::Cpu);
        let explicit =
            lectern_gpu::select_device(DevicePreference::Cuda(0), CUDA, telemetry.as_ref())
                .unwrap_err()
                .to_string();
        assert!(
            explicit.contains("libcuda.so.1 could not be loaded"),
            "{explicit}"
        );
    }

    #[test]
    fn a_gpu_that_opens_is_used() {
        let (telemetry, choice) = choose_device(CUDA, simulated_gpu(), H100, |_| Ok(())).unwrap();
        assert_eq!(choice.kind, DeviceKind::Cuda(0));
        assert_eq!(telemetry.device_count(), 1);
    }

    #[test]
    fn without_a_gpu_the_reason_says_why_cuda_cannot_run() {
        let none = Box::new(NoGpu::new("NVML library not found"));
        let (_, choice) =
            choose_device(CUDA, none, H100, |_| Err(describe_cuda_panic(NO_DRIVER))).unwrap();
        assert_eq!(choice.kind, DeviceKind::Cpu);
        assert!(
            choice.reason.starts_with("CUDA build, but no NVIDIA driver: libcuda.so.1 could not be loaded; no usable NVIDIA GPU (NVML library not found)"),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn a_cpu_build_never_touches_cuda() {
        let cpu = Capabilities::default();
        let (_, choice) = choose_device(cpu, simulated_gpu(), None, |_| {
            panic!("a CPU build must not open CUDA")
        })
        .unwrap();
        assert_eq!(choice.kind, DeviceKind::Cpu);
        assert!(
            choice.reason.contains("no CUDA support in this build"),
            "{}",
            choice.reason
        );
    }
}
