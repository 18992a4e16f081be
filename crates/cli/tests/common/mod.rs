//! Where the command-line tests find models and real documents.

use std::path::PathBuf;

/// Where `models/provision.sh` put the test models.
pub fn models_dir() -> PathBuf {
    std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        })
}

/// `shared/eval/docs` beside the repository (or under `LECTERN_SHARED_DIR`).
pub fn shared_docs() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    std::env::var_os("LECTERN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("shared"))
        .join("eval/docs")
}

/// `lectern --data-dir DATA ARGS…` on the CPU with the test models, ready
/// to run. `LECTERN_BIN` runs another build of `lectern` (for long
/// benchmark runs of these tests from a copy of the binaries).
pub fn lectern_command(data: &std::path::Path, args: &[&str]) -> std::process::Command {
    let bin = std::env::var_os("LECTERN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lectern")));
    let mut c = std::process::Command::new(bin);
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("LECTERN_MODELS_DIR", models_dir())
        .env("LECTERN_DEVICE", "cpu")
        .env_remove("LECTERN_LLM")
        .stdin(std::process::Stdio::null());
    c
}

/// The standard output of a run that must have succeeded.
pub fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
