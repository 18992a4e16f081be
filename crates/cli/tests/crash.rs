//! A `lectern ingest` killed with SIGKILL at arbitrary moments leaves a
//! library whose stores agree, and resuming reaches exactly the state of an
//! uninterrupted run.

mod common;

use common::{lectern_command as lectern, ok, shared_docs};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

/// `lectern ingest FOLDER` writing to the stores every few documents, so a
/// short run has many commits for kills to land between.
fn ingest(data: &Path, folder: &str) -> std::process::Command {
    let mut c = lectern(data, &["ingest", folder]);
    c.env("LECTERN_WRITE_BATCH_CHUNKS", "8");
    c
}

/// What a finished library holds: per document path, its content hash and
/// chunk count.
fn library_state(data: &Path) -> BTreeMap<String, (String, u64)> {
    let out = ok(&lectern(data, &["docs", "--json"]).output().unwrap());
    let docs: serde_json::Value = serde_json::from_str(&out).unwrap();
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                (
                    d["content_hash"].as_str().unwrap().to_string(),
                    d["chunks"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Opens the library (which clears unfinished documents) and checks that
/// manifest, LanceDB and tantivy agree; returns (documents, chunks).
fn check(data: &Path) -> (u64, u64) {
    let out = lectern(data, &["check", "--json"]).output().unwrap();
    let text = ok(&out);
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        c["problems"].as_array().unwrap().is_empty(),
        "inconsistent library: {text}"
    );
    let chunks = c["chunks"].as_u64().unwrap();
    assert_eq!(c["vector_rows"].as_u64().unwrap(), chunks, "{text}");
    assert_eq!(c["text_rows"].as_u64().unwrap(), chunks, "{text}");
    (c["documents"].as_u64().unwrap(), chunks)
}

#[test]
fn sigkill_during_ingest_never_leaves_a_half_built_library() {
    // Many small real documents: two book chapters cut into pieces of about
    // 3 KB at paragraph breaks, so kills land between many commits.
    let folder = tempfile::tempdir().unwrap();
    let mut files = 0;
    for name in [
        "md/rust-book-ch03-02-data-types.md",
        "md/rust-book-ch08-02-strings.md",
    ] {
        let text = std::fs::read_to_string(shared_docs().join(name)).unwrap();
        let stem = name.trim_start_matches("md/").trim_end_matches(".md");
        let mut piece = String::new();
        let mut write = |piece: &mut String| {
            std::fs::write(folder.path().join(format!("{stem}-{files:02}.md")), &*piece).unwrap();
            files += 1;
            piece.clear();
        };
        for para in text.split("\n\n") {
            piece.push_str(para);
            piece.push_str("\n\n");
            if piece.len() > 3000 {
                write(&mut piece);
            }
        }
        if !piece.trim().is_empty() {
            write(&mut piece);
        }
    }
    assert!(files >= 8, "only {files} sections");
    let folder_arg = folder.path().to_str().unwrap().to_string();

    // The reference: one uninterrupted run.
    let reference_dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    ok(&ingest(reference_dir.path(), &folder_arg).output().unwrap());
    let full = t.elapsed();
    let reference = library_state(reference_dir.path());
    assert_eq!(reference.len(), files);
    let (_, reference_chunks) = check(reference_dir.path());

    let trials: u32 = std::env::var("LECTERN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut partial = 0;
    for i in 0..trials {
        let data = tempfile::tempdir().unwrap();
        // Kill times spread over the whole run, start-up included, with a
        // deterministic jitter so runs differ from trial to trial.
        let frac = (f64::from(i) + 0.5 + 0.37 * f64::from((i * 7) % 5) / 5.0) / f64::from(trials);
        let delay = full.mul_f64(frac.min(0.98));
        let mut child = ingest(data.path(), &folder_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();

        let (docs, _) = check(data.path());
        if docs > 0 && (docs as usize) < reference.len() {
            partial += 1;
        }
        // Resuming finishes the job, and ends exactly where the reference did.
        ok(&ingest(data.path(), &folder_arg).output().unwrap());
        assert_eq!(
            library_state(data.path()),
            reference,
            "trial {i}, killed after {delay:?}"
        );
        let (_, chunks) = check(data.path());
        assert_eq!(chunks, reference_chunks, "trial {i}");
    }
    eprintln!(
        "{trials} SIGKILL trials over a {:.1}s ingest of {files} files: {partial} left a partly indexed library, all consistent and resumed to the reference state",
        full.as_secs_f64()
    );
    // The kills must have landed mid-ingest for the test to mean anything.
    assert!(
        trials < 10 || partial >= 2,
        "only {partial} of {trials} kills left a partly indexed library (run took {full:?})"
    );
}
