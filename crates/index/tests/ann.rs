//! The dense leg's approximate-nearest-neighbour index on a small table with
//! a lowered threshold: built when asked or in the background, searched
//! with high recall against exact search, and extended after appends.

use std::time::{Duration, Instant};

use lectern_index::{AnnPolicy, ChunkRecord, DocumentEntry, Library};

const DIM: usize = 32;

/// splitmix64: a small deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Vectors around `centers` cluster centres (a Gaussian mixture on the sphere).
fn mixture(rng: &mut Rng, centers: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let c = &centers[i % centers.len()];
            unit(c.iter().map(|x| x + 0.12 * rng.gaussian()).collect())
        })
        .collect()
}

fn document(doc: usize, vectors: &[Vec<f32>]) -> (DocumentEntry, Vec<ChunkRecord>) {
    let doc_id = format!("doc{doc}");
    let chunks: Vec<ChunkRecord> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = format!("passage {i} of document {doc}");
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
                text,
                format: "text".into(),
                location: String::new(),
                ocr: false,
                vector: v.clone(),
            }
        })
        .collect();
    let entry = DocumentEntry {
        doc_id,
        path: format!("/docs/{doc}.txt"),
        title: format!("Document {doc}"),
        format: "text".into(),
        content_hash: format!("h{doc}"),
        bytes: 1,
        pages: 1,
        chunks: chunks.len() as u32,
        indexed_at: 0,
        warnings: vec![],
    };
    (entry, chunks)
}

async fn put(lib: &Library, first_doc: usize, vectors: &[Vec<f32>]) {
    let batch = vectors
        .chunks(100)
        .enumerate()
        .map(|(i, vs)| document(first_doc + i, vs))
        .collect();
    lib.put_documents(batch).await.unwrap();
}

fn ids(hits: &[lectern_index::LegHit]) -> Vec<String> {
    hits.iter().map(|h| h.chunk.chunk_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ann_index_is_built_searched_with_high_recall_and_extended() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path(), DIM).await.unwrap();
    lib.set_ann_policy(AnnPolicy {
        min_rows: 2_000,
        background: false,
        ..AnnPolicy::default()
    });
    let mut rng = Rng(7);
    let centers: Vec<Vec<f32>> = (0..40)
        .map(|_| unit((0..DIM).map(|_| rng.gaussian()).collect()))
        .collect();
    let vectors = mixture(&mut rng, &centers, 3_000);
    put(&lib, 0, &vectors).await;

    // Below and before maintenance: no index, exact search.
    let state = lib.vector_index().await.unwrap();
    assert!(!state.has_index);
    assert_eq!(state.rows, 3_000);

    let state = lib.build_vector_index().await.unwrap();
    assert!(state.has_index, "{state:?}");
    assert_eq!((state.indexed_rows, state.unindexed_rows), (3_000, 0));

    // Recall@10 of the index against exact search, on queries near corpus points.
    let queries = mixture(&mut rng, &centers, 40);
    let mut found = 0usize;
    for q in &queries {
        let approx = ids(&lib.search_dense(q, 10).await.unwrap());
        let exact = ids(&lib.search_dense_exact(q, 10).await.unwrap());
        assert_eq!(exact.len(), 10);
        found += exact.iter().filter(|id| approx.contains(id)).count();
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");

    // A stored vector finds its own chunk first, at distance ~0.
    let hits = lib.search_dense(&vectors[1234], 5).await.unwrap();
    assert_eq!(hits[0].chunk.chunk_id, "doc12:34");
    assert!(hits[0].score.abs() < 1e-3, "{}", hits[0].score);

    // Rows added after training are searched (exactly) before they are indexed.
    let more = mixture(&mut rng, &centers, 400);
    put(&lib, 100, &more).await;
    let state = lib.vector_index().await.unwrap();
    assert_eq!((state.indexed_rows, state.unindexed_rows), (3_000, 400));
    let hits = lib.search_dense(&more[250], 3).await.unwrap();
    assert_eq!(hits[0].chunk.chunk_id, "doc102:50");

    // 400 new rows exceed the append share (5 %): maintenance folds them in.
    let state = lib.build_vector_index().await.unwrap();
    assert_eq!((state.indexed_rows, state.unindexed_rows), (3_400, 0));
    let hits = lib.search_dense(&more[250], 3).await.unwrap();
    assert_eq!(hits[0].chunk.chunk_id, "doc102:50");

    // Deleting a document hides its chunks from the indexed search.
    assert!(lib.delete_document("doc12").await.unwrap());
    let hits = lib.search_dense(&vectors[1234], 5).await.unwrap();
    assert!(hits.iter().all(|h| h.chunk.doc_id != "doc12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_threshold_build_the_index_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path(), DIM).await.unwrap();
    lib.set_ann_policy(AnnPolicy {
        min_rows: 1_000,
        ..AnnPolicy::default()
    });
    let mut rng = Rng(11);
    let centers: Vec<Vec<f32>> = (0..20)
        .map(|_| unit((0..DIM).map(|_| rng.gaussian()).collect()))
        .collect();
    put(&lib, 0, &mixture(&mut rng, &centers, 600)).await;
    // Below the threshold nothing is built, even after maintenance runs.
    assert!(!lib.build_vector_index().await.unwrap().has_index);
    put(&lib, 10, &mixture(&mut rng, &centers, 600)).await;
    let started = Instant::now();
    loop {
        let state = lib.vector_index().await.unwrap();
        if state.has_index {
            assert_eq!(state.rows, 1_200);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no index after 5 minutes: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Search works while and after the index is built.
    let q = mixture(&mut rng, &centers, 1).remove(0);
    assert_eq!(lib.search_dense(&q, 10).await.unwrap().len(), 10);
}
