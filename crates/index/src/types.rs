use serde::{Deserialize, Serialize};

/// One chunk with everything a citation needs and its embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// `<doc_id>:<ordinal>`.
    pub chunk_id: String,
    /// The document it belongs to.
    pub doc_id: String,
    /// Document path.
    pub path: String,
    /// Document title.
    pub title: String,
    /// 1-based page for paged formats.
    pub page: Option<u32>,
    /// Headings in force, outermost first.
    pub heading_path: Vec<String>,
    /// Position in the document.
    pub ordinal: u32,
    /// Start offset in characters into the page text.
    pub char_start: u64,
    /// End offset in characters into the page text.
    pub char_end: u64,
    /// The chunk's text.
    pub text: String,
    /// blake3 of [`ChunkRecord::text`] (32 hex digits): equal text, equal
    /// embedding, so re-indexing reuses vectors by this key.
    #[serde(default)]
    pub chunk_hash: String,
    /// The document's format (`pdf`, `markdown`, `docx`, …).
    #[serde(default)]
    pub format: String,
    /// Where the passage is, for people: "p. 3", "slide 4", "Sheet1 rows 2–41".
    #[serde(default)]
    pub location: String,
    /// Whether the text came from OCR rather than a text layer.
    #[serde(default)]
    pub ocr: bool,
    /// Embedding (empty in search results).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub vector: Vec<f32>,
}

impl ChunkRecord {
    /// A record that names a chunk and its document and nothing else, for a
    /// search hit whose other fields are read later.
    pub(crate) fn ids_only(chunk_id: &str, doc_id: &str) -> Self {
        Self {
            chunk_id: chunk_id.to_owned(),
            doc_id: doc_id.to_owned(),
            path: String::new(),
            title: String::new(),
            page: None,
            heading_path: Vec::new(),
            ordinal: 0,
            char_start: 0,
            char_end: 0,
            text: String::new(),
            chunk_hash: String::new(),
            format: String::new(),
            location: String::new(),
            ocr: false,
            vector: Vec::new(),
        }
    }

    /// The key under which a chunk's embedding is reused: blake3 of its text.
    pub fn hash_text(text: &str) -> String {
        blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
    }
}

/// A hit from one retrieval leg.
#[derive(Debug, Clone)]
pub struct LegHit {
    /// The chunk (without its vector).
    pub chunk: ChunkRecord,
    /// BM25 score, or cosine distance for the dense leg.
    pub score: f32,
}

/// Which retrieval to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 and dense, fused.
    #[default]
    Hybrid,
    /// Embedding similarity only.
    Dense,
    /// Keyword (BM25) only.
    Bm25,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "hybrid" => Ok(SearchMode::Hybrid),
            "dense" => Ok(SearchMode::Dense),
            "bm25" => Ok(SearchMode::Bm25),
            other => Err(format!(
                "unknown search mode `{other}` (expected hybrid, dense or bm25)"
            )),
        }
    }
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Dense => "dense",
            SearchMode::Bm25 => "bm25",
        })
    }
}

/// A search result with the evidence for its rank.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHit {
    /// The chunk.
    pub chunk: ChunkRecord,
    /// Final score (fused score in hybrid mode, BM25 score or cosine similarity otherwise).
    pub score: f32,
    /// 1-based rank in the BM25 leg, if it appeared there.
    pub bm25_rank: Option<usize>,
    /// BM25 score, if it appeared in that leg.
    pub bm25_score: Option<f32>,
    /// 1-based rank in the dense leg, if it appeared there.
    pub dense_rank: Option<usize>,
    /// Cosine distance, if it appeared in the dense leg.
    pub dense_distance: Option<f32>,
    /// The cross-encoder reranker's logit, when a reranker re-scored this
    /// hit (hits are then ordered by it; `score` keeps the retrieval score).
    #[serde(default)]
    pub rerank_score: Option<f32>,
}

impl SearchHit {
    pub(crate) fn from_leg(hit: LegHit, index: usize, mode: SearchMode) -> Self {
        let rank = Some(index + 1);
        match mode {
            SearchMode::Dense => SearchHit {
                score: 1.0 - hit.score,
                chunk: hit.chunk,
                bm25_rank: None,
                bm25_score: None,
                dense_rank: rank,
                dense_distance: Some(hit.score),
                rerank_score: None,
            },
            _ => SearchHit {
                score: hit.score,
                chunk: hit.chunk,
                bm25_rank: rank,
                bm25_score: Some(hit.score),
                dense_rank: None,
                dense_distance: None,
                rerank_score: None,
            },
        }
    }
}
