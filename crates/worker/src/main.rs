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
//! Embedding requests are counted from 1 in each process.

mod fault;
mod serve;

use std::process::ExitCode;

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

    let telemetry = lectern_gpu::probe_telemetry();
    let caps = lectern_models::capabilities();
    let status = match lectern_gpu::status(
        lectern_gpu::DevicePreference::Auto,
        caps,
        telemetry.as_ref(),
    ) {
        Ok(status) => status,
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
        device: status.selected,
        device_reason: status.reason.clone(),
        capabilities: caps,
        pid: std::process::id(),
    };
    tracing::info!(device = %hello.device, reason = %hello.device_reason, "model worker started");

    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut server = serve::Server::new(faults, telemetry);
    match server.run(&mut stdin.lock(), &mut stdout.lock(), &hello) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "model worker stopped");
            ExitCode::from(1)
        }
    }
}
