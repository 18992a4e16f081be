//! Switching a library's embedding model through a shadow table: search
//! keeps the old vectors until the atomic flip, documents changed meanwhile
//! are caught up, an interrupted switch resumes, and a query vector from
//! the wrong model is refused.

use lectern_index::{ChunkRecord, DocumentEntry, IndexError, Library, SearchMode};

/// A document of `n` passages whose vectors are `dim`-dimensional and
/// depend on the passage text and `salt` (standing for the model).
fn document(doc: usize, n: usize, dim: usize, salt: u64) -> (DocumentEntry, Vec<ChunkRecord>) {
    let doc_id = format!("doc{doc}");
    let chunks: Vec<ChunkRecord> = (0..n)
        .map(|i| {
            let text = format!("passage {i} of document {doc} about topic{doc}");
            ChunkRecord {
                chunk_id: format!("{doc_id}:{i}"),
                doc_id: doc_id.clone(),
                path: format!("/docs/{doc}.txt"),
                title: format!("Document {doc}"),
                page: None,
                heading_path: vec![],
                ordinal: i as u32,
                char_start: 0,
                char_end: text.len() as u64,
                chunk_hash: ChunkRecord::hash_text(&text),
                vector: vector_for(&text, dim, salt),
                text,
                format: "text".into(),
                location: String::new(),
                ocr: false,
            }
        })
        .collect();
    let entry = DocumentEntry {
        doc_id,
        path: format!("/docs/{doc}.txt"),
        title: format!("Document {doc}"),
        format: "text".into(),
        content_hash: format!("h{doc}-{n}"),
        bytes: 1,
        pages: 1,
        chunks: n as u32,
        indexed_at: 0,
        warnings: vec![],
    };
    (entry, chunks)
}

/// A deterministic unit vector for `text` under model `salt`.
fn vector_for(text: &str, dim: usize, salt: u64) -> Vec<f32> {
    let mut h = blake3_like(text, salt);
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((h >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn blake3_like(text: &str, salt: u64) -> u64 {
    text.bytes().fold(salt ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Embeds every pending document for the "new model" (`salt` 2, `dim`).
async fn embed_pending(lib: &Library, dim: usize, limit: usize) -> usize {
    let pending = lib.switch_pending().await.unwrap();
    let group: Vec<String> = pending.into_iter().take(limit).collect();
    let mut chunks = lib.chunks_of(&group).await.unwrap();
    for c in &mut chunks {
        assert!(c.vector.is_empty());
        c.vector = vector_for(&c.text, dim, 2);
    }
    lib.put_switch_vectors(&group, chunks).await.unwrap();
    group.len()
}

fn lance_tables(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("lance"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lance"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_flips_atomically_catches_up_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("library");
    let lib = Library::open_for(&dir, 8, Some("old-model")).await.unwrap();
    lib.put_documents((0..6).map(|d| document(d, 3, 8, 1)).collect())
        .await
        .unwrap();

    lib.begin_switch("new-model", 12).await.unwrap();
    assert_eq!(lib.switch_pending().await.unwrap().len(), 6);
    assert_eq!(embed_pending(&lib, 12, 2).await, 2);
    // Not finished: nothing changes, search still uses the old vectors.
    assert!(!lib.finish_switch().await.unwrap());
    let old_query = vector_for("passage 0 of document 3 about topic3", 8, 1);
    let hits = lib
        .search("topic3", Some(&old_query), SearchMode::Dense, 1)
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.chunk_id, "doc3:0");
    assert!(lib.check_query_embedder(Some("old-model"), 8).await.is_ok());
    assert!(matches!(
        lib.check_query_embedder(Some("new-model"), 12).await,
        Err(IndexError::EmbedderMismatch { .. })
    ));

    // An interruption: the library is reopened with the old model.
    drop(lib);
    let lib = Library::open_for(&dir, 8, Some("old-model")).await.unwrap();
    let sw = lib.switch_in_progress().await.expect("switch recorded");
    assert_eq!((sw.embedder.as_str(), sw.dim), ("new-model", 12));
    assert!(
        lib.switch_pending().await.is_err(),
        "not begun in this process"
    );
    lib.begin_switch("new-model", 12).await.unwrap();
    // Resumed: the two documents done before are still done.
    assert_eq!(lib.switch_pending().await.unwrap().len(), 4);

    // Meanwhile a document changes (re-indexed with 4 passages), one is
    // deleted and one is added, all with the old model.
    lib.put_documents(vec![document(0, 4, 8, 1), document(9, 2, 8, 1)])
        .await
        .unwrap();
    lib.delete_document("doc1").await.unwrap();
    let mut pending = lib.switch_pending().await.unwrap();
    pending.sort();
    assert_eq!(pending, ["doc0", "doc2", "doc3", "doc4", "doc5", "doc9"]);
    while embed_pending(&lib, 12, 4).await > 0 {}
    assert!(lib.finish_switch().await.unwrap());

    // After the flip: the new model's vectors only, everything consistent.
    assert_eq!(lib.embedder().await.as_deref(), Some("new-model"));
    assert_eq!(lib.vector_dim(), 12);
    assert!(lib.switch_in_progress().await.is_none());
    let c = lib.verify().await.unwrap();
    assert!(c.is_consistent(), "{:?}", c.problems);
    assert_eq!((c.documents, c.chunks, c.vector_rows), (6, 18, 18));
    assert_eq!(lance_tables(&dir), ["chunks_new_model.lance"]);
    let new_query = vector_for("passage 1 of document 9 about topic9", 12, 2);
    let hits = lib
        .search("topic9", Some(&new_query), SearchMode::Dense, 1)
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.chunk_id, "doc9:1");
    assert!(matches!(
        lib.check_query_embedder(Some("old-model"), 8).await,
        Err(IndexError::EmbedderMismatch { .. })
    ));
    assert!(matches!(
        lib.check_query_embedder(Some("new-model"), 8).await,
        Err(IndexError::DimensionMismatch { .. })
    ));
    // Old-model vectors no longer fit the table.
    assert!(matches!(
        lib.put_documents(vec![document(20, 1, 8, 1)]).await,
        Err(IndexError::DimensionMismatch { .. })
    ));
    lib.put_documents(vec![document(20, 1, 12, 2)])
        .await
        .unwrap();

    // The flip is on disk: a reopen with the new model finds its table, and
    // one with the old model is refused.
    drop(lib);
    let err = Library::open_for(&dir, 8, Some("old-model"))
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::EmbedderMismatch { .. }), "{err}");
    let err = Library::open_for(&dir, 8, Some("new-model"))
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::DimensionMismatch { .. }), "{err}");
    let lib = Library::open_for(&dir, 12, Some("new-model"))
        .await
        .unwrap();
    assert_eq!(lib.documents().await.len(), 7);
    assert!(lib.verify().await.unwrap().is_consistent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_switch_leaves_the_library_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("library");
    let lib = Library::open_for(&dir, 8, Some("old-model")).await.unwrap();
    lib.put_documents((0..3).map(|d| document(d, 2, 8, 1)).collect())
        .await
        .unwrap();
    assert!(matches!(
        lib.begin_switch("old-model", 8).await,
        Err(IndexError::InvalidInput(_))
    ));
    lib.begin_switch("new-model", 16).await.unwrap();
    embed_pending(&lib, 16, 1).await;
    assert_eq!(lance_tables(&dir).len(), 2);
    assert!(lib.cancel_switch().await.unwrap());
    assert!(!lib.cancel_switch().await.unwrap());
    assert!(lib.switch_in_progress().await.is_none());
    assert_eq!(lance_tables(&dir), ["chunks.lance"]);
    assert_eq!(lib.embedder().await.as_deref(), Some("old-model"));
    let c = lib.verify().await.unwrap();
    assert!(c.is_consistent());
    assert_eq!(c.vector_rows, 6);

    // Switching to one model then another: the first one's work is dropped.
    lib.begin_switch("new-model", 16).await.unwrap();
    embed_pending(&lib, 16, 3).await;
    lib.begin_switch("third-model", 4).await.unwrap();
    assert_eq!(lib.switch_pending().await.unwrap().len(), 3);
    assert_eq!(
        lance_tables(&dir),
        ["chunks.lance", "chunks_third_model.lance"]
    );
}
