use std::collections::HashMap;

use crate::{LegHit, SearchHit};

/// The conventional RRF constant: damps the weight of the very top ranks so
/// one leg's first hit cannot dominate.
pub const RRF_K: f32 = 60.0;

/// Fuses a BM25 ranking and a dense ranking: each chunk scores
/// `Σ 1 / (k + rank)` over the legs it appears in (ranks from 1). Ties keep
/// the order in which chunks were first seen (BM25 first).
pub fn reciprocal_rank_fusion(
    bm25: Vec<LegHit>,
    dense: Vec<LegHit>,
    k: f32,
    top_k: usize,
) -> Vec<SearchHit> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut fused: Vec<SearchHit> = Vec::new();
    for (i, h) in bm25.into_iter().enumerate() {
        by_id.insert(h.chunk.chunk_id.clone(), fused.len());
        fused.push(SearchHit {
            score: 1.0 / (k + (i + 1) as f32),
            chunk: h.chunk,
            bm25_rank: Some(i + 1),
            bm25_score: Some(h.score),
            dense_rank: None,
            dense_distance: None,
        });
    }
    for (i, h) in dense.into_iter().enumerate() {
        let contribution = 1.0 / (k + (i + 1) as f32);
        match by_id.get(&h.chunk.chunk_id) {
            Some(&at) => {
                let hit = &mut fused[at];
                hit.score += contribution;
                hit.dense_rank = Some(i + 1);
                hit.dense_distance = Some(h.score);
            }
            None => {
                by_id.insert(h.chunk.chunk_id.clone(), fused.len());
                fused.push(SearchHit {
                    score: contribution,
                    chunk: h.chunk,
                    bm25_rank: None,
                    bm25_score: None,
                    dense_rank: Some(i + 1),
                    dense_distance: Some(h.score),
                });
            }
        }
    }
    // A stable sort keeps first-seen order among equal scores.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(top_k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkRecord;

    fn hit(id: &str, score: f32) -> LegHit {
        LegHit {
            chunk: ChunkRecord {
                chunk_id: id.into(),
                doc_id: "d".into(),
                path: "p".into(),
                title: "t".into(),
                page: None,
                heading_path: vec![],
                ordinal: 0,
                char_start: 0,
                char_end: 0,
                text: String::new(),
                chunk_hash: String::new(),
                format: String::new(),
                location: String::new(),
                ocr: false,
                vector: vec![],
            },
            score,
        }
    }

    #[test]
    fn rrf_scores_match_hand_computation() {
        // a: bm25 rank 1, dense rank 3 → 1/61 + 1/63
        // b: bm25 rank 2             → 1/62
        // c: dense rank 1            → 1/61
        // d: bm25 rank 3, dense rank 2 → 1/63 + 1/62
        let bm25 = vec![hit("a", 9.0), hit("b", 8.0), hit("d", 7.0)];
        let dense = vec![hit("c", 0.1), hit("d", 0.2), hit("a", 0.3)];
        let fused = reciprocal_rank_fusion(bm25, dense, 60.0, 10);
        let ids: Vec<&str> = fused.iter().map(|h| h.chunk.chunk_id.as_str()).collect();
        // a (1/61 + 1/63) > d (1/62 + 1/63) > c (1/61) > b (1/62).
        assert_eq!(ids, ["a", "d", "c", "b"]);
        let a = &fused[0];
        assert!((a.score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert_eq!((a.bm25_rank, a.dense_rank), (Some(1), Some(3)));
        let c = &fused[2];
        assert_eq!((c.bm25_rank, c.dense_rank), (None, Some(1)));
        assert_eq!(c.dense_distance, Some(0.1));
    }

    #[test]
    fn rrf_truncates_to_top_k() {
        let bm25 = (0..20).map(|i| hit(&format!("b{i}"), 1.0)).collect();
        let dense = (0..20).map(|i| hit(&format!("v{i}"), 0.5)).collect();
        assert_eq!(reciprocal_rank_fusion(bm25, dense, 60.0, 5).len(), 5);
    }
}
