//! Re-ingesting is incremental: unchanged files are skipped before parsing,
//! changed files re-embed only passages whose text changed, renamed files
//! reuse every embedding, and deleted documents leave the disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lectern_engine::{SearchMode, SearchRequest};
use lectern_tests::{doc, ingest, open};

fn copy_docs(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let src = doc(n);
            let dst = dir.join(src.file_name().unwrap());
            std::fs::copy(&src, &dst).unwrap();
            dst
        })
        .collect()
}

async fn bm25_paths(engine: &lectern_engine::Engine, query: &str) -> Vec<String> {
    engine
        .search(&SearchRequest {
            query: query.into(),
            mode: SearchMode::Bm25,
            top_k: 3,
            collection: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.chunk.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_changed_and_renamed_files() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let files = copy_docs(
        folder.path(),
        &[
            "md/rust-book-ch04-01-what-is-ownership.md",
            "md/rust-book-ch08-02-strings.md",
            "md/rust-book-appendix-02-operators.md",
        ],
    );
    let engine = open(data.path().to_path_buf()).await;

    let (first, _) = ingest(&engine, vec![folder.path().to_path_buf()]).await;
    assert_eq!(first.indexed, 3);
    assert_eq!(first.embedded + first.reused, first.chunks);
    assert!(first.embedded > 30, "{first:?}");

    // Same content: nothing is parsed or embedded.
    let (second, events) = ingest(&engine, vec![folder.path().to_path_buf()]).await;
    assert_eq!((second.indexed, second.unchanged), (0, 3), "{second:?}");
    assert_eq!(second.embedded, 0);
    assert!(!events
        .iter()
        .any(|e| matches!(e, lectern_engine::IngestEvent::Embedded { .. })));

    // One new paragraph: only the passages around it are embedded again.
    let changed = &files[1];
    let before = engine
        .documents()
        .await
        .into_iter()
        .find(|d| d.path.ends_with("rust-book-ch08-02-strings.md"))
        .unwrap();
    let mut text = std::fs::read_to_string(changed).unwrap();
    text.push_str(
        "\n\n## Quartz lanterns\n\nThe quartz lantern of Zembla glows violet whenever a String is cloned.\n",
    );
    std::fs::write(changed, text).unwrap();
    let (third, _) = ingest(&engine, vec![folder.path().to_path_buf()]).await;
    assert_eq!((third.indexed, third.unchanged), (1, 2), "{third:?}");
    assert!(third.embedded >= 1 && third.embedded <= 3, "{third:?}");
    assert!(
        third.reused + 3 >= before.chunks as usize,
        "only {} of {} passages reused",
        third.reused,
        before.chunks
    );
    let hits = bm25_paths(&engine, "quartz lantern Zembla violet").await;
    assert!(
        hits.first()
            .is_some_and(|p| p.ends_with("rust-book-ch08-02-strings.md")),
        "{hits:?}"
    );

    // A rename is a new path with known text: no embedding at all. Syncing
    // the folder then drops the old path.
    let renamed = folder.path().join("ownership-renamed.md");
    std::fs::rename(&files[0], &renamed).unwrap();
    let (report, removed) = engine
        .sync_folder(
            folder.path(),
            Arc::new(|_| {}),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
    assert_eq!(report.indexed, 1, "{report:?}");
    assert_eq!(report.embedded, 0, "{report:?}");
    assert!(report.reused > 10, "{report:?}");
    assert_eq!(removed, 1);
    let docs = engine.documents().await;
    assert_eq!(docs.len(), 3);
    assert!(docs
        .iter()
        .any(|d| d.path.ends_with("ownership-renamed.md")));
    assert!(!docs
        .iter()
        .any(|d| d.path.ends_with("rust-book-ch04-01-what-is-ownership.md")));

    let c = engine.verify().await.unwrap();
    assert!(c.is_consistent(), "{c:?}");
    assert_eq!(c.vector_rows, c.chunks);
    assert_eq!(c.text_rows, c.chunks);
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_text_leaves_the_disk() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let secret = folder.path().join("secret.md");
    let sentence = "The quartz lighthouse of Zembla hums a violet tune at dawn.";
    std::fs::write(
        &secret,
        format!("# Field notes\n\n{sentence}\n\nNothing else of note happened that week.\n"),
    )
    .unwrap();
    let kept = copy_docs(folder.path(), &["md/rust-book-ch03-02-data-types.md"]);
    let engine = open(data.path().to_path_buf()).await;
    let (report, _) = ingest(&engine, vec![secret.clone(), kept[0].clone()]).await;
    assert_eq!(report.indexed, 2);

    // The stores keep the passage text for citations, so it is on disk now.
    let before = files_containing(data.path(), sentence.as_bytes());
    assert!(
        !before.is_empty(),
        "the sentence should be stored before deletion"
    );

    assert!(engine.delete_path(&secret).await.unwrap());
    let after = files_containing(data.path(), sentence.as_bytes());
    assert!(after.is_empty(), "still on disk after deletion: {after:?}");
    // Nor in any form the text index keeps (the stemmed rare words).
    assert!(bm25_paths(&engine, "Zembla lighthouse").await.is_empty());
    assert!(files_containing(data.path(), b"zembla").is_empty());

    // The other document is untouched and the stores agree.
    let hits = bm25_paths(&engine, "integer types signed unsigned").await;
    assert!(hits
        .first()
        .is_some_and(|p| p.ends_with("rust-book-ch03-02-data-types.md")));
    let c = engine.verify().await.unwrap();
    assert!(c.is_consistent(), "{c:?}");
    assert_eq!(c.documents, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_reads_again_and_a_failure_keeps_the_indexed_version() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let files = copy_docs(
        folder.path(),
        &[
            "pdf/acmart-sample-sigconf-2col.pdf",
            "md/rust-book-ch08-02-strings.md",
        ],
    );
    let engine = open(data.path().to_path_buf()).await;
    let (first, _) = ingest(&engine, files.clone()).await;
    assert_eq!(first.indexed, 2, "{first:?}");
    let pdf = engine
        .documents()
        .await
        .into_iter()
        .find(|d| d.path.ends_with(".pdf"))
        .unwrap();
    engine.create_collection("Papers").await.unwrap();
    engine
        .add_to_collection("Papers", std::slice::from_ref(&pdf.doc_id))
        .await
        .unwrap();
    let quiet: lectern_engine::ProgressFn = Arc::new(|_| {});
    let no_cancel = || Arc::new(AtomicBool::new(false));

    // Unchanged, but read again on request: same id, same passages.
    let again = engine
        .reindex(vec![files[0].clone()], quiet.clone(), no_cancel())
        .await
        .unwrap();
    assert_eq!((again.indexed, again.unchanged), (1, 0), "{again:?}");
    assert_eq!(again.chunks, pdf.chunks as usize);
    let members = engine.collection("Papers").await.unwrap().doc_ids;
    assert_eq!(members, vec![pdf.doc_id.clone()]);

    // The file is now damaged: the read fails, and the library still has the
    // version it indexed, searchable and in its collection.
    std::fs::write(
        &files[0],
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage",
    )
    .unwrap();
    let broken = engine
        .reindex(vec![files[0].clone()], quiet, no_cancel())
        .await
        .unwrap();
    assert_eq!((broken.indexed, broken.failed.len()), (0, 1), "{broken:?}");
    let kept = engine
        .documents()
        .await
        .into_iter()
        .find(|d| d.doc_id == pdf.doc_id)
        .expect("the indexed version is still there");
    assert_eq!(kept.chunks, pdf.chunks);
    assert_eq!(kept.content_hash, pdf.content_hash);
    let scoped = engine
        .search(&SearchRequest {
            query: "ACM reference format".into(),
            mode: SearchMode::Bm25,
            top_k: 3,
            collection: Some("Papers".into()),
        })
        .await
        .unwrap();
    assert!(!scoped.is_empty());
    assert!(scoped.iter().all(|h| h.chunk.doc_id == pdf.doc_id));
    let c = engine.verify().await.unwrap();
    assert!(c.is_consistent(), "{c:?}");
}
