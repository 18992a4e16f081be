//! `Engine::watch` keeps the library in step with a folder: new, changed,
//! renamed and deleted files.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lectern_engine::{DocumentEntry, Engine, WatchEvent};
use lectern_tests::{doc, open};

/// Polls the library until `pred` holds, for at most a minute.
async fn wait_for(engine: &Engine, what: &str, pred: impl Fn(&[DocumentEntry]) -> bool) {
    let start = Instant::now();
    loop {
        let docs = engine.documents().await;
        if pred(&docs) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}; library: {:?}",
            docs.iter().map(|d| &d.path).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has(docs: &[DocumentEntry], name: &str) -> bool {
    docs.iter()
        .any(|d| Path::new(&d.path).file_name().is_some_and(|n| n == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_new_changed_renamed_and_deleted_files() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(
        doc("md/rust-book-README.md"),
        folder.path().join("readme.md"),
    )
    .unwrap();
    let engine = Arc::new(open(data.path().to_path_buf()).await);
    let cancel = Arc::new(AtomicBool::new(false));
    let events: Arc<Mutex<Vec<WatchEvent>>> = Arc::default();
    let task = {
        let (engine, cancel, events) = (engine.clone(), cancel.clone(), events.clone());
        let folder = folder.path().to_path_buf();
        tokio::spawn(async move {
            engine
                .watch(
                    &folder,
                    Arc::new(|_| {}),
                    Arc::new(move |e| events.lock().unwrap().push(e)),
                    cancel,
                )
                .await
        })
    };

    // The initial sync indexes what is already there.
    wait_for(&engine, "the existing file is indexed", |d| {
        has(d, "readme.md")
    })
    .await;

    // A new file.
    std::fs::copy(
        doc("md/rust-book-ch08-02-strings.md"),
        folder.path().join("strings.md"),
    )
    .unwrap();
    wait_for(&engine, "a new file is indexed", |d| has(d, "strings.md")).await;

    // A changed file gets its new content hash.
    let old_hash = engine
        .documents()
        .await
        .into_iter()
        .find(|d| d.path.ends_with("readme.md"))
        .unwrap()
        .content_hash;
    let mut text = std::fs::read_to_string(folder.path().join("readme.md")).unwrap();
    text.push_str("\n\nA closing remark about lighthouses.\n");
    std::fs::write(folder.path().join("readme.md"), text).unwrap();
    wait_for(&engine, "the changed file is re-indexed", |d| {
        d.iter()
            .any(|e| e.path.ends_with("readme.md") && e.content_hash != old_hash)
    })
    .await;

    // A rename drops the old path and adds the new one.
    std::fs::rename(
        folder.path().join("strings.md"),
        folder.path().join("strings-renamed.md"),
    )
    .unwrap();
    wait_for(&engine, "the rename is followed", |d| {
        has(d, "strings-renamed.md") && !has(d, "strings.md")
    })
    .await;

    // A deletion removes the document.
    std::fs::remove_file(folder.path().join("readme.md")).unwrap();
    wait_for(&engine, "the deleted file is removed", |d| {
        !has(d, "readme.md") && d.len() == 1
    })
    .await;

    cancel.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch stops when cancelled")
        .unwrap()
        .unwrap();
    {
        let events = events.lock().unwrap();
        assert!(matches!(
            events.first(),
            Some(WatchEvent::Synced { indexed: 1, .. })
        ));
        assert!(events
            .iter()
            .any(|e| matches!(e, WatchEvent::Watching { .. })));
    }
    let c = engine.verify().await.unwrap();
    assert!(c.is_consistent(), "{c:?}");
}
