//! `lectern reembed` killed with SIGKILL at arbitrary moments (and at
//! moments within the switch itself, which a fast embedder makes a small
//! part of the run) leaves a library that searches with its old model, and
//! running it again finishes
//! the switch to the new one (all-MiniLM-L6-v2, 384 dimensions, to the tiny
//! random Qwen3 as an embedder, 64 dimensions).

#[allow(dead_code)]
mod common;

use common::{lectern_command as lectern, models_dir, ok};

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Checks that the stores agree; returns (documents, chunks).
fn check(data: &Path) -> (u64, u64) {
    let text = ok(&lectern(data, &["check", "--json"]).output().unwrap());
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(c["problems"].as_array().unwrap().is_empty(), "{text}");
    let chunks = c["chunks"].as_u64().unwrap();
    assert_eq!(c["vector_rows"].as_u64().unwrap(), chunks, "{text}");
    (c["documents"].as_u64().unwrap(), chunks)
}

/// The library's manifest: (embedder, switch in progress).
fn manifest(data: &Path) -> (String, bool) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("library").join("manifest.json")).unwrap())
            .unwrap();
    (
        m["embedder"].as_str().unwrap().to_string(),
        !m["switch"].is_null(),
    )
}

/// [`manifest`], or `None` while it cannot be read (being replaced).
fn try_manifest(data: &Path) -> Option<(String, bool)> {
    let bytes = std::fs::read(data.join("library").join("manifest.json")).ok()?;
    let m: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((m["embedder"].as_str()?.to_string(), !m["switch"].is_null()))
}

/// Hybrid search for a note's unique marker finds that note.
fn searches(data: &Path, marker: &str, note: &str) {
    let out = ok(
        &lectern(data, &["search", marker, "--json", "--rerank", "off"])
            .output()
            .unwrap(),
    );
    assert!(out.contains(note), "{marker}: {out}");
}

fn reembed(data: &Path, target: &str) -> std::process::Command {
    lectern(data, &["--embedder", target, "reembed"])
}

#[test]
fn sigkill_during_reembed_keeps_the_old_model_and_resumes() {
    let notes = tempfile::tempdir().unwrap();
    for i in 0..120 {
        std::fs::write(
            notes.path().join(format!("note-{i:03}.txt")),
            format!(
                "Note {i}, marker{i}. Passage number {i} about rivers, mountains and the \
                 weather of valley {i}, written for the embedding switch test.\n"
            ),
        )
        .unwrap();
    }
    let base = tempfile::tempdir().unwrap();
    ok(
        &lectern(base.path(), &["ingest", notes.path().to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let (docs, chunks) = check(base.path());
    assert_eq!(docs, 120);
    let qwen = models_dir().join("tiny-qwen3");
    let qwen = qwen.to_str().unwrap();

    // The reference: one uninterrupted switch, watched for when its
    // manifest says a switch is under way.
    let reference = tempfile::tempdir().unwrap();
    copy_dir(base.path(), reference.path());
    let t = Instant::now();
    let child = reembed(reference.path(), qwen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut first, mut last) = (None, None);
    let out = std::thread::scope(|s| {
        let waiter = s.spawn(|| child.wait_with_output().unwrap());
        while !waiter.is_finished() {
            if try_manifest(reference.path()).is_some_and(|(_, switching)| switching) {
                first.get_or_insert(t.elapsed());
                last = Some(t.elapsed());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        waiter.join().unwrap()
    });
    let full = t.elapsed();
    let out = ok(&out);
    let span = match (first, last) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => std::time::Duration::ZERO,
    };
    assert!(out.contains("tiny-qwen3 (64 dimensions)"), "{out}");
    assert_eq!(manifest(reference.path()), ("tiny-qwen3".into(), false));
    assert_eq!(check(reference.path()), (docs, chunks));
    searches(reference.path(), "marker17", "note-017");

    let trials: u32 = std::env::var("LECTERN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut midway = 0;
    for i in 0..trials {
        let data = tempfile::tempdir().unwrap();
        copy_dir(base.path(), data.path());
        let frac = (f64::from(i / 2) + 0.5) / f64::from(trials.div_ceil(2));
        let mut child = reembed(data.path(), qwen)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i % 2 == 0 {
            // An arbitrary moment of the run.
            std::thread::sleep(full.mul_f64(frac.min(0.98)));
        } else {
            // A moment of the switch itself: once the manifest says it has
            // begun, part of the way through as long as the reference's.
            while child.try_wait().unwrap().is_none()
                && !try_manifest(data.path()).is_some_and(|(_, switching)| switching)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(span.mul_f64(frac.min(0.9)));
        }
        let _ = child.kill();
        let _ = child.wait();

        // Whatever the moment, the library is consistent and searchable
        // with the model its manifest names.
        let (embedder, switching) = manifest(data.path());
        if switching {
            midway += 1;
            assert_eq!(embedder, "all-MiniLM-L6-v2", "trial {i}");
        }
        assert_eq!(check(data.path()), (docs, chunks), "trial {i}");
        searches(data.path(), "marker42", "note-042");

        // Running it again finishes the switch.
        if embedder != "tiny-qwen3" {
            ok(&reembed(data.path(), qwen).output().unwrap());
        }
        assert_eq!(
            manifest(data.path()),
            ("tiny-qwen3".into(), false),
            "trial {i}"
        );
        assert_eq!(check(data.path()), (docs, chunks), "trial {i}");
        searches(data.path(), "marker99", "note-099");
        let lance: Vec<String> = std::fs::read_dir(data.path().join("library/lance"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lance"))
            .collect();
        assert_eq!(lance, ["chunks_tiny_qwen3.lance"], "trial {i}");
    }
    eprintln!(
        "{trials} SIGKILL trials, half anywhere in a {:.1}s run and half in its {:.2}s switch ({docs} documents): {midway} interrupted mid-switch, all consistent and resumed",
        full.as_secs_f64(),
        span.as_secs_f64()
    );
    // Some kills must have landed mid-switch for the test to mean anything.
    assert!(
        trials < 6 || midway >= 1,
        "no kill of {trials} landed mid-switch (the switch took {full:?})"
    );
}
