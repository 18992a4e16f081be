//! Nothing leaves the machine: the everyday flows (ingest, search, ask,
//! library checks, model and device status) run under `strace` and must not
//! try to open a single IP connection. Local sockets (the name service cache,
//! D-Bus) are allowed; anything with an internet address is not.

mod common;

use std::path::Path;
use std::process::Command;

use common::{lectern_command, models_dir, ok, shared_docs};

/// Runs `lectern ARGS` under `strace -f` and returns the connection attempts
/// to IP addresses it made, with its output.
fn traced(data: &Path, args: &[&str]) -> (String, Vec<String>) {
    let log = data.join(format!("strace-{}.log", args[0]));
    let inner = lectern_command(data, args);
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o"])
        .arg(&log)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().unwrap_or_else(|e| {
        panic!("strace could not run ({e}); scripts/setup.sh installs it (Debian package strace)")
    });
    let stdout = ok(&out);
    let trace = std::fs::read_to_string(&log).expect("strace wrote its log");
    let network = trace
        .lines()
        .filter(|l| l.contains("AF_INET") || l.contains("AF_INET6"))
        .map(str::to_owned)
        .collect();
    (stdout, network)
}

#[test]
fn everyday_flows_open_no_network_connection() {
    let data = tempfile::tempdir().unwrap();
    let docs = shared_docs();
    let pdf = docs.join("pdf/dpr-paper-2col-tables.pdf");
    let md = docs.join("md");
    let model = models_dir().join("tiny-qwen3");

    let flows: Vec<Vec<&str>> = vec![
        vec!["ingest", pdf.to_str().unwrap(), md.to_str().unwrap()],
        vec!["search", "dense passage retrieval question encoder"],
        vec![
            "ask",
            "What does the question encoder do?",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "4",
            "--temperature",
            "0",
        ],
        vec!["docs"],
        vec!["check"],
        vec!["models", "list"],
        vec!["gpu", "status"],
    ];
    let mut ran = 0;
    for args in &flows {
        let (stdout, network) = traced(data.path(), args);
        assert!(
            network.is_empty(),
            "`lectern {}` tried to reach the network:\n{}\n(output: {stdout})",
            args.join(" "),
            network.join("\n")
        );
        ran += 1;
    }
    assert_eq!(ran, flows.len());

    // The trace really records connections: a process that does connect is seen.
    let log = data.path().join("strace-probe.log");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(&log)
        .args([
            "python3",
            "-c",
            "import socket; s=socket.socket(); s.settimeout(0.2)\ntry: s.connect(('192.0.2.1', 9))\nexcept OSError: pass",
        ])
        .status()
        .expect("strace runs python3");
    assert!(status.success());
    let probe = std::fs::read_to_string(&log).unwrap();
    assert!(
        probe.contains("AF_INET"),
        "strace did not record a known connection attempt:\n{probe}"
    );
}
