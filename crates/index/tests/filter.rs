//! Searching within a set of documents: both legs apply the filter before
//! ranking, so the top k is filled from the allowed documents however low
//! they rank in the whole library, with the exact and the ANN dense leg.

use std::collections::HashSet;

use lectern_index::{
    AnnPolicy, ChunkRecord, DocFilter, DocumentEntry, Fusion, IndexError, LegHit, Library,
    SearchMode,
};

const DIM: usize = 16;

/// Document ids as the engine makes them: 16 hex digits.
fn doc_id(n: usize) -> String {
    format!("{:016x}", 0xd0c0_0000u64 + n as u64)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A unit vector pointing mostly along axis `axis`, tilted by `tilt` along
/// the next axis.
fn axis_vector(axis: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[axis % DIM] = 1.0;
    v[(axis + 1) % DIM] = tilt;
    unit(v)
}

fn document(n: usize, texts: &[String], vectors: &[Vec<f32>]) -> (DocumentEntry, Vec<ChunkRecord>) {
    let id = doc_id(n);
    let chunks: Vec<ChunkRecord> = texts
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (text, v))| ChunkRecord {
            chunk_id: format!("{id}:{i}"),
            doc_id: id.clone(),
            path: format!("/docs/{n}.txt"),
            title: format!("Document {n}"),
            page: None,
            heading_path: vec![],
            ordinal: i as u32,
            char_start: 0,
            char_end: text.chars().count() as u64,
            chunk_hash: ChunkRecord::hash_text(text),
            text: text.clone(),
            format: "text".into(),
            location: String::new(),
            ocr: false,
            vector: v.clone(),
        })
        .collect();
    let entry = DocumentEntry {
        doc_id: id,
        path: format!("/docs/{n}.txt"),
        title: format!("Document {n}"),
        format: "text".into(),
        content_hash: format!("h{n}"),
        bytes: 1,
        pages: 1,
        chunks: chunks.len() as u32,
        indexed_at: 0,
        warnings: vec![],
    };
    (entry, chunks)
}

/// Six documents that match the query strongly in both legs and two that
/// match it weakly (four chunks each).
async fn library(dir: &std::path::Path) -> Library {
    let lib = Library::open(dir, DIM).await.unwrap();
    let mut batch = Vec::new();
    for n in 0..6 {
        let texts: Vec<String> = (0..4)
            .map(|i| format!("Ownership rules: ownership moves, ownership borrows ({n}, {i})."))
            .collect();
        let vectors: Vec<Vec<f32>> = (0..4)
            .map(|i| axis_vector(0, 0.05 * (n * 4 + i) as f32))
            .collect();
        batch.push(document(n, &texts, &vectors));
    }
    for n in 6..8 {
        let texts: Vec<String> = (0..4)
            .map(|i| {
                format!("A long passage about gardens, rivers and the weather in spring; ownership comes up once here ({n}, {i}).")
            })
            .collect();
        // Far from the query, each at its own distance.
        let vectors: Vec<Vec<f32>> = (0..4)
            .map(|i| {
                let mut v = vec![0.0; DIM];
                v[0] = 0.05 * (1 + (n - 6) * 4 + i) as f32;
                v[3 + i] = 1.0;
                unit(v)
            })
            .collect();
        batch.push(document(n, &texts, &vectors));
    }
    lib.put_documents(batch).await.unwrap();
    lib
}

fn docs_of(hits: &[LegHit]) -> HashSet<String> {
    hits.iter().map(|h| h.chunk.doc_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_legs_fill_k_from_the_allowed_documents() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library(dir.path()).await;
    let query = axis_vector(0, 0.0);
    let quiet: HashSet<String> = [doc_id(6), doc_id(7)].into_iter().collect();
    let filter = DocFilter::new(quiet.iter().cloned()).unwrap();

    // Unfiltered, the quiet documents are nowhere near the top.
    let all = lib.search_bm25("ownership", 8).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(docs_of(&all).is_disjoint(&quiet), "{:?}", docs_of(&all));
    let all = lib.search_dense(&query, 8).await.unwrap();
    assert!(docs_of(&all).is_disjoint(&quiet));

    // Filtered, k = 5 comes back entirely from them.
    let bm25 = lib
        .search_bm25_filtered("ownership", 5, Some(&filter))
        .await
        .unwrap();
    assert_eq!(bm25.len(), 5);
    assert!(docs_of(&bm25).is_subset(&quiet));
    // The filter does not change BM25 scores: they equal the unfiltered ones.
    let everything = lib.search_bm25("ownership", 100).await.unwrap();
    for h in &bm25 {
        let same = everything
            .iter()
            .find(|e| e.chunk.chunk_id == h.chunk.chunk_id)
            .expect("filtered hit found unfiltered");
        assert!((same.score - h.score).abs() < 1e-6);
    }

    let dense = lib
        .search_dense_filtered(&query, 5, Some(&filter))
        .await
        .unwrap();
    assert_eq!(dense.len(), 5);
    assert!(docs_of(&dense).is_subset(&quiet));
    assert!(dense.windows(2).all(|w| w[0].score <= w[1].score));
    let exact = lib
        .search_dense_exact_filtered(&query, 5, Some(&filter))
        .await
        .unwrap();
    let ids = |h: &[LegHit]| {
        h.iter()
            .map(|h| h.chunk.chunk_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&dense), ids(&exact));

    for mode in [SearchMode::Hybrid, SearchMode::Dense, SearchMode::Bm25] {
        for fusion in [Fusion::default(), Fusion::Rrf] {
            let hits = lib
                .search_fused_filtered("ownership", Some(&query), mode, 6, fusion, Some(&filter))
                .await
                .unwrap();
            assert_eq!(hits.len(), 6, "{mode}");
            assert!(
                hits.iter().all(|h| quiet.contains(&h.chunk.doc_id)),
                "{mode}"
            );
        }
    }

    // No filter is the whole library; an empty one allows nothing.
    let hits = lib
        .search_fused_filtered(
            "ownership",
            Some(&query),
            SearchMode::Hybrid,
            6,
            Fusion::default(),
            None,
        )
        .await
        .unwrap();
    assert!(hits.iter().all(|h| !quiet.contains(&h.chunk.doc_id)));
    let empty = DocFilter::default();
    for mode in [SearchMode::Hybrid, SearchMode::Dense, SearchMode::Bm25] {
        let hits = lib
            .search_fused_filtered(
                "ownership",
                Some(&query),
                mode,
                6,
                Fusion::default(),
                Some(&empty),
            )
            .await
            .unwrap();
        assert!(hits.is_empty(), "{mode}");
    }
    // A query vector of the wrong size is still refused under an empty filter.
    let err = lib
        .search_dense_filtered(&[1.0, 0.0], 3, Some(&empty))
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::DimensionMismatch { .. }), "{err}");

    // Ids the library does not hold match nothing; a deleted document's
    // chunks never come back.
    let filter = DocFilter::new([doc_id(6), doc_id(99)]).unwrap();
    assert!(lib.delete_document(&doc_id(6)).await.unwrap());
    let bm25 = lib
        .search_bm25_filtered("ownership", 10, Some(&filter))
        .await
        .unwrap();
    let dense = lib
        .search_dense_filtered(&query, 10, Some(&filter))
        .await
        .unwrap();
    assert!(bm25.is_empty() && dense.is_empty(), "{bm25:?} {dense:?}");
    let filter = DocFilter::new([doc_id(6), doc_id(7)]).unwrap();
    let bm25 = lib
        .search_bm25_filtered("ownership", 10, Some(&filter))
        .await
        .unwrap();
    assert_eq!(bm25.len(), 4);
    assert!(bm25.iter().all(|h| h.chunk.doc_id == doc_id(7)));
}

/// splitmix64, for test vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn near(&mut self, center: &[f32], spread: f32) -> Vec<f32> {
        unit(center.iter().map(|x| x + spread * self.next()).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ann_index_prefilters_a_document_far_from_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path(), DIM).await.unwrap();
    lib.set_ann_policy(AnnPolicy {
        min_rows: 1_000,
        background: false,
        ..AnnPolicy::default()
    });
    let mut rng = Rng(11);
    let centers: Vec<Vec<f32>> = (0..30)
        .map(|_| unit((0..DIM).map(|_| rng.next()).collect()))
        .collect();
    // 24 documents of 60 passages spread over every cluster...
    let mut batch = Vec::new();
    for n in 0..24 {
        let vectors: Vec<Vec<f32>> = (0..60)
            .map(|i| rng.near(&centers[(n * 60 + i) % centers.len()], 0.3))
            .collect();
        let texts: Vec<String> = (0..60).map(|i| format!("passage {i} of {n}")).collect();
        batch.push(document(n, &texts, &vectors));
    }
    // ...and one whose passages all sit in the cluster opposite the query.
    let query = centers[0].clone();
    let opposite: Vec<f32> = query.iter().map(|x| -x).collect();
    let far: Vec<Vec<f32>> = (0..40).map(|_| rng.near(&opposite, 0.2)).collect();
    let texts: Vec<String> = (0..40).map(|i| format!("far passage {i}")).collect();
    batch.push(document(24, &texts, &far));
    lib.put_documents(batch).await.unwrap();
    let state = lib.build_vector_index().await.unwrap();
    assert!(state.has_index && state.unindexed_rows == 0, "{state:?}");

    let filter = DocFilter::new([doc_id(24)]).unwrap();
    let approx = lib
        .search_dense_filtered(&query, 10, Some(&filter))
        .await
        .unwrap();
    assert_eq!(approx.len(), 10, "{approx:?}");
    assert!(approx.iter().all(|h| h.chunk.doc_id == doc_id(24)));
    let exact = lib
        .search_dense_exact_filtered(&query, 10, Some(&filter))
        .await
        .unwrap();
    let exact_ids: HashSet<&str> = exact.iter().map(|h| h.chunk.chunk_id.as_str()).collect();
    let found = approx
        .iter()
        .filter(|h| exact_ids.contains(h.chunk.chunk_id.as_str()))
        .count();
    assert!(found >= 8, "recall@10 {found}/10");
    // Unfiltered, none of its passages is among the nearest 50.
    let all = lib.search_dense(&query, 50).await.unwrap();
    assert!(all.iter().all(|h| h.chunk.doc_id != doc_id(24)));
}
