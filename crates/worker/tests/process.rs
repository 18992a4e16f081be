//! The real worker process through the engine's client: the handshake,
//! embeddings equal to the in-process embedder's, error frames, and every
//! way the process can fail.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lectern_engine::gpu::{DeviceKind, DevicePreference};
use lectern_engine::worker::{EmbedKind, ErrorKind, WorkerError, WorkerProcess, PROTOCOL_VERSION};
use lectern_worker_protocol::{read_frame, write_frame, Request, Response};

fn in_process_embedder() -> lectern_models::Embedder {
    let config = lectern_engine::embedder_config_for(&minilm()).unwrap();
    lectern_models::Embedder::load(
        config,
        &lectern_models::candle_device(&DeviceKind::Cpu).unwrap(),
    )
    .expect("the test embedder loads")
}

#[test]
fn vectors_from_the_worker_equal_the_in_process_embedders() {
    let mut worker = WorkerProcess::start(&worker_config("")).expect("worker starts");
    let hello = worker.hello().clone();
    assert_eq!(hello.protocol, PROTOCOL_VERSION);
    assert_eq!(hello.device, DeviceKind::Cpu);
    assert_eq!(hello.worker_version, env!("CARGO_PKG_VERSION"));
    assert!(!hello.device_reason.is_empty());
    assert_ne!(hello.pid, std::process::id());

    let model = worker
        .load_embedder(
            &minilm(),
            DevicePreference::Cpu,
            Some(embedder_settings(&minilm())),
        )
        .expect("the embedder loads in the worker");
    assert_eq!(model.model, "all-MiniLM-L6-v2");
    assert_eq!(model.dim, 384);
    assert_eq!(model.device, DeviceKind::Cpu);

    let local = in_process_embedder();
    let texts = scifact_passages(48, 1200);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = local.embed_passages(&refs).unwrap();
    let got = worker.embed(7, &refs, EmbedKind::Passage).unwrap();
    let diff = max_abs_diff(&expected, &got);
    assert!(diff <= 1e-6, "passage vectors differ by {diff}");

    let queries = [
        "what causes white matter damage",
        "vitamin D and bone density",
    ];
    let got = worker.embed(8, &queries, EmbedKind::Query).unwrap();
    let expected: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| local.embed_query(q).unwrap())
        .collect();
    let diff = max_abs_diff(&expected, &got);
    assert!(diff <= 1e-6, "query vectors differ by {diff}");

    assert!(worker.embed(9, &[], EmbedKind::Passage).unwrap().is_empty());
    let pid = worker.pid();
    let status = worker.shutdown().expect("the worker shuts down");
    assert!(status.success(), "{status}");
    assert!(process_gone(pid));
}

#[test]
fn failed_requests_come_back_as_error_frames_and_the_worker_goes_on() {
    let mut worker = WorkerProcess::start(&worker_config("")).unwrap();
    let pid = worker.pid();
    match worker.embed(1, &["too early"], EmbedKind::Passage) {
        Err(WorkerError::Remote {
            kind: ErrorKind::NotLoaded,
            message,
        }) => {
            assert!(message.contains("load_embedder"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let missing = minilm().join("no-such-model");
    match worker.load_embedder(&missing, DevicePreference::Cpu, None) {
        Err(WorkerError::Remote {
            kind: ErrorKind::LoadFailed,
            message,
        }) => {
            assert!(message.contains("no-such-model"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // The same process serves the next requests.
    worker
        .load_embedder(&minilm(), DevicePreference::Cpu, None)
        .unwrap();
    let vectors = worker
        .embed(2, &["a sentence"], EmbedKind::Passage)
        .unwrap();
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].len(), 384);
    worker.unload().unwrap();
    assert!(matches!(
        worker.embed(3, &["unloaded"], EmbedKind::Passage),
        Err(WorkerError::Remote {
            kind: ErrorKind::NotLoaded,
            ..
        })
    ));
    assert_eq!(worker.pid(), pid);
    drop(worker);
    assert!(process_gone(pid), "dropping the client reaps the worker");
}

#[test]
fn a_crash_mid_request_is_reported_with_its_signal_and_the_process_reaped() {
    let mut worker = WorkerProcess::start(&worker_config("crash-at-batch:2")).unwrap();
    let pid = worker.pid();
    worker
        .load_embedder(&minilm(), DevicePreference::Cpu, None)
        .unwrap();
    worker
        .embed(1, &["first batch"], EmbedKind::Passage)
        .unwrap();
    let error = worker
        .embed(2, &["second batch"], EmbedKind::Passage)
        .unwrap_err();
    match &error {
        WorkerError::Died {
            during,
            status,
            stderr,
        } => {
            assert_eq!(during, "embedding batch 2");
            assert!(
                status.contains("SIGABRT") || status.contains("signal"),
                "{status}"
            );
            assert!(stderr.contains("injected fault"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_device_lost() && error.ended_process());
    assert!(process_gone(pid), "the crashed worker is reaped");
    // Nothing more goes to a dead worker.
    assert!(matches!(
        worker.embed(3, &["after"], EmbedKind::Passage),
        Err(WorkerError::Died { .. })
    ));
}

#[test]
fn a_hung_request_is_killed_after_its_timeout() {
    let mut config = worker_config("hang-at-batch:1");
    config.request_timeout = Duration::from_secs(2);
    let mut worker = WorkerProcess::start(&config).unwrap();
    let pid = worker.pid();
    worker
        .load_embedder(&minilm(), DevicePreference::Cpu, None)
        .unwrap();
    let started = Instant::now();
    let error = worker
        .embed(1, &["never answered"], EmbedKind::Passage)
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&error, WorkerError::Hung { after, .. } if *after == Duration::from_secs(2)),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    assert!(error.to_string().contains("was killed"), "{error}");
    assert!(process_gone(pid), "the hung worker is killed and reaped");
}

#[test]
fn start_failures_are_typed_and_say_why() {
    let missing = WorkerProcess::start(&lectern_engine::WorkerConfig::new(
        "/no/such/lectern-worker",
    ))
    .unwrap_err();
    assert!(
        matches!(missing, WorkerError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("/no/such/lectern-worker"),
        "{missing}"
    );

    let not_a_program = WorkerProcess::start(&lectern_engine::WorkerConfig::new(
        minilm().join("config.json"),
    ))
    .unwrap_err();
    assert!(
        matches!(not_a_program, WorkerError::Spawn { .. }),
        "{not_a_program:?}"
    );

    let bad = WorkerProcess::start(&worker_config("bad-hello")).unwrap_err();
    match &bad {
        WorkerError::VersionMismatch {
            found, expected, ..
        } => {
            assert_eq!(*expected, PROTOCOL_VERSION);
            assert_ne!(found, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(bad.to_string().contains("protocol version"), "{bad}");

    let exited = WorkerProcess::start(&worker_config("exit-at-start")).unwrap_err();
    match &exited {
        WorkerError::Died {
            during,
            status,
            stderr,
        } => {
            assert_eq!(during, "the handshake");
            assert!(status.contains('3'), "{status}");
            assert!(stderr.contains("exiting before the hello"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }

    let mut slow = worker_config("hang-at-start");
    slow.handshake_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let silent = WorkerProcess::start(&slow).unwrap_err();
    assert!(
        matches!(silent, WorkerError::HandshakeTimeout { .. }),
        "{silent:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        silent.to_string().contains("never sending the hello"),
        "{silent}"
    );
}

/// Starts the worker binary directly and reads its hello.
fn spawn_raw(faults: &str) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = Command::new(worker_binary())
        .env("LECTERN_WORKER_FAULT", faults)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let hello = read_frame(&mut stdout).unwrap().unwrap();
    assert!(matches!(
        hello.decode::<Response>().unwrap(),
        Response::Hello(_)
    ));
    (child, stdout)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_worker_exits_cleanly_when_its_parent_closes_stdin() {
    let (mut child, _stdout) = spawn_raw("");
    drop(child.stdin.take());
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn garbage_requests_get_an_error_frame_and_shutdown_exits_zero() {
    let (mut child, mut stdout) = spawn_raw("");
    let mut stdin = child.stdin.take().unwrap();
    let nonsense = serde_json::json!({"type": "transmogrify", "id": 41});
    write_frame(&mut stdin, &nonsense, &[]).unwrap();
    let answer = read_frame(&mut stdout).unwrap().unwrap();
    match answer.decode::<Response>().unwrap() {
        Response::Error { id, kind, message } => {
            assert_eq!(id, 41);
            assert_eq!(kind, ErrorKind::InvalidRequest);
            assert!(message.contains("transmogrify"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    write_frame(&mut stdin, &Request::Shutdown { id: 42 }, &[]).unwrap();
    let answer = read_frame(&mut stdout).unwrap().unwrap();
    assert_eq!(
        answer.decode::<Response>().unwrap(),
        Response::Done { id: 42 }
    );
    assert!(read_frame(&mut stdout).unwrap().is_none(), "stdout closes");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn the_supervisor_starts_on_first_use_and_stops_on_shutdown() {
    let supervisor =
        lectern_engine::worker::WorkerSupervisor::new(worker_config(""), DevicePreference::Auto);
    assert_eq!(
        supervisor.status(),
        Default::default(),
        "nothing runs before first use"
    );
    let spec = lectern_engine::worker::EmbedderSpec {
        dir: minilm(),
        config: Some(embedder_settings(&minilm())),
    };
    let vectors = supervisor
        .embed(&spec, &["one", "two"], EmbedKind::Passage)
        .unwrap();
    assert_eq!(vectors.len(), 2);
    let status = supervisor.status();
    let pid = status.pid.expect("running");
    assert_eq!(status.device, Some(DeviceKind::Cpu));
    assert_eq!(
        status.model.as_ref().map(|m| m.model.as_str()),
        Some("all-MiniLM-L6-v2")
    );
    assert_eq!((status.starts, status.lost), (1, 0));
    supervisor.shutdown();
    let status = supervisor.status();
    assert_eq!((status.pid, status.last_pid), (None, Some(pid)));
    assert!(process_gone(pid));
}
