//! Ingest real documents, search them with every mode, and reopen the library.

use lectern_engine::{SearchMode, SearchRequest};
use lectern_tests::{doc, ingest, open};

fn req(query: &str, mode: SearchMode) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode,
        top_k: 5,
        collection: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_reopen_on_real_documents() {
    let data = tempfile::tempdir().unwrap();
    let corrupt_dir = tempfile::tempdir().unwrap();
    let corrupt = corrupt_dir.path().join("broken.pdf");
    std::fs::write(&corrupt, b"%PDF-1.7\nthis is not really a pdf\n%%EOF").unwrap();

    let engine = open(data.path().to_path_buf()).await;
    let files = vec![
        doc("pdf/dpr-paper-2col-tables.pdf"),
        doc("md/rust-book-ch04-01-what-is-ownership.md"),
        doc("md/rust-book-ch03-02-data-types.md"),
        doc("txt/udhr-article1-all-languages.txt"),
        doc("pdf/scanned-huckfinn-p22.pdf"),
        corrupt.clone(),
    ];
    let (report, events) = ingest(&engine, files.clone()).await;

    // The corrupt PDF fails alone; everything else is indexed.
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, corrupt);
    assert!(
        report.failed[0].1.contains("broken.pdf"),
        "{}",
        report.failed[0].1
    );
    assert_eq!(report.indexed, 5);
    assert!(report.chunks > 50, "only {} chunks", report.chunks);
    assert!(events
        .iter()
        .any(|e| matches!(e, lectern_engine::IngestEvent::FileFailed { .. })));

    // Progress: each indexed file goes through the stages in order, the
    // scan's OCR pages are announced when OCR ran, and the run's overall
    // progress ends at every file and byte.
    use lectern_engine::{IngestEvent, IngestStage};
    let md = doc("md/rust-book-ch03-02-data-types.md");
    let stages: Vec<IngestStage> = events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Stage { path, stage } if *path == md => Some(*stage),
            _ => None,
        })
        .collect();
    assert_eq!(
        stages,
        [
            IngestStage::Parse,
            IngestStage::Chunk,
            IngestStage::Embed,
            IngestStage::Index
        ]
    );
    let overall: Vec<&lectern_engine::OverallProgress> = events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Overall(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(overall.len(), files.len());
    let last = overall.last().unwrap();
    assert_eq!(last.files_done, files.len());
    let total_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(
        (last.bytes_done, last.bytes_total),
        (total_bytes, total_bytes)
    );
    assert!(overall
        .windows(2)
        .all(|w| w[0].bytes_done <= w[1].bytes_done));
    assert!(overall[0].eta_seconds.is_some_and(|s| s > 0.0));
    assert!(last.eta_seconds.is_none());
    assert!(report.stages.parse > 0.0 && report.stages.embed > 0.0 && report.stages.index > 0.0);
    assert!(report.pages >= 13 + 3, "{} pages", report.pages);

    // The image-only scan is kept but flagged as needing OCR.
    let docs = engine.documents().await;
    let scan = docs
        .iter()
        .find(|d| d.path.ends_with("scanned-huckfinn-p22.pdf"))
        .expect("scan is listed");
    assert!(
        scan.warnings.iter().any(|w| w.contains("OCR")),
        "{:?}",
        scan.warnings
    );
    if scan
        .warnings
        .iter()
        .any(|w| w.contains("recognised by OCR"))
    {
        assert!(
            events.iter().any(|e| matches!(e, IngestEvent::OcrPage { path, page: 1, done: 0, total: 1 } if path.ends_with("scanned-huckfinn-p22.pdf"))),
            "no OCR progress for the scan"
        );
    }
    let pdf = docs
        .iter()
        .find(|d| d.path.ends_with("dpr-paper-2col-tables.pdf"))
        .unwrap();
    assert_eq!(pdf.pages, 13);

    // Known passages, with the right page, in every mode.
    for mode in [SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid] {
        let hits = engine
            .search(&req(
                "FAISS lets DPR process 995 questions per second, while BM25 Lucene handles 23.7 per CPU thread",
                mode,
            ))
            .await
            .unwrap();
        let top = &hits[0].chunk;
        assert!(
            top.path.ends_with("dpr-paper-2col-tables.pdf"),
            "{mode}: {}",
            top.path
        );
        assert_eq!(
            top.page,
            Some(7),
            "{mode}: wrong page for the run-time passage"
        );
        assert!(top.text.contains("995"), "{mode}: {}", top.text);

        let hits = engine
            .search(&req(
                "Mahalanobis distance is equivalent to L2 distance in a transformed space",
                mode,
            ))
            .await
            .unwrap();
        assert_eq!(
            hits[0].chunk.page,
            Some(3),
            "{mode}: {:?}",
            hits[0].chunk.title
        );
    }

    // Markdown hits carry their heading path.
    let hits = engine
        .search(&req("Each value in Rust has an owner", SearchMode::Hybrid))
        .await
        .unwrap();
    let top = &hits[0];
    assert!(top
        .chunk
        .path
        .ends_with("rust-book-ch04-01-what-is-ownership.md"));
    assert!(
        top.chunk
            .heading_path
            .iter()
            .any(|h| h.contains("Ownership")),
        "{:?}",
        top.chunk.heading_path
    );
    // Hybrid hits record where they ranked in each leg.
    assert!(top.bm25_rank.is_some() || top.dense_rank.is_some());
    assert!(hits
        .iter()
        .any(|h| h.bm25_rank.is_some() && h.dense_rank.is_some()));

    // Plain text, found by its words.
    let hits = engine
        .search(&req(
            "All human beings are born free and equal in dignity and rights",
            SearchMode::Bm25,
        ))
        .await
        .unwrap();
    assert!(hits[0]
        .chunk
        .path
        .ends_with("udhr-article1-all-languages.txt"));

    // Offsets point at the chunk's text within its page.
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.vector_rows, stats.manifest_chunks);
    assert_eq!(stats.text_docs, stats.manifest_chunks);
    drop(engine);

    // Reopening finds the same chunks in both stores, and re-ingesting the
    // same files does no work.
    let engine = open(data.path().to_path_buf()).await;
    let again = engine.stats().await.unwrap();
    assert_eq!(again, stats);
    let (report, _) = ingest(&engine, files[..5].to_vec()).await;
    assert_eq!(report.unchanged, 5);
    assert_eq!(report.indexed, 0);
    assert_eq!(engine.stats().await.unwrap(), stats);

    // Deleting a document removes its chunks from both stores.
    assert!(engine.delete_document(&pdf.doc_id).await.unwrap());
    let after = engine.stats().await.unwrap();
    assert_eq!(after.documents, stats.documents - 1);
    assert_eq!(after.vector_rows, stats.vector_rows - pdf.chunks as usize);
    assert_eq!(after.text_docs, after.vector_rows);
    let hits = engine
        .search(&req(
            "Mahalanobis distance L2 transformed space",
            SearchMode::Bm25,
        ))
        .await
        .unwrap();
    assert!(hits
        .iter()
        .all(|h| !h.chunk.path.ends_with("dpr-paper-2col-tables.pdf")));
}
