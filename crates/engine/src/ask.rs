//! The ask pipeline: retrieve, pack numbered sources into the prompt
//! budget, generate, and list what the answer cites.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lectern_index::{SearchHit, SearchMode};
use lectern_models::{ChatMessage, GenerationParams, GenerationStats, Llm, Role};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError, SearchRequest};

/// A question for the documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AskRequest {
    /// The question.
    pub question: String,
    /// Language model to use (folder or .gguf); the configured default otherwise.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Passages to retrieve before packing.
    #[serde(default = "default_sources")]
    pub top_k: usize,
    /// Retrieval mode.
    #[serde(default)]
    pub mode: SearchMode,
    /// Sampling settings.
    #[serde(default)]
    pub generation: GenerationParams,
}

fn default_sources() -> usize {
    8
}

impl AskRequest {
    /// A request with default settings.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            model: None,
            top_k: default_sources(),
            mode: SearchMode::Hybrid,
            generation: GenerationParams::default(),
        }
    }
}

/// A numbered source given to the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRef {
    /// The number the prompt gave it (`[n]`).
    pub n: usize,
    /// Document title.
    pub title: String,
    /// Document path.
    pub path: String,
    /// Page, for paged formats.
    pub page: Option<u32>,
    /// Chunk id.
    pub chunk_id: String,
    /// Start offset (characters) into the page.
    pub char_start: u64,
    /// End offset (characters) into the page.
    pub char_end: u64,
    /// Where the passage is, for people ("p. 3", "slide 4"); may be empty.
    #[serde(default)]
    pub location: String,
    /// Headings in force at the passage, outermost first.
    #[serde(default)]
    pub heading_path: Vec<String>,
    /// The passage text given to the model.
    #[serde(default)]
    pub text: String,
    /// Retrieval score (fused score in hybrid mode).
    #[serde(default)]
    pub score: f32,
    /// 1-based rank in the BM25 leg, if it appeared there.
    #[serde(default)]
    pub bm25_rank: Option<usize>,
    /// BM25 score, if it appeared in that leg.
    #[serde(default)]
    pub bm25_score: Option<f32>,
    /// 1-based rank in the dense leg, if it appeared there.
    #[serde(default)]
    pub dense_rank: Option<usize>,
    /// Cosine distance, if it appeared in the dense leg.
    #[serde(default)]
    pub dense_distance: Option<f32>,
    /// Whether the answer cites it.
    pub cited: bool,
}

/// Events while an answer is produced.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AskEvent {
    /// Retrieval finished; these sources go into the prompt.
    Sources {
        /// The numbered sources.
        sources: Vec<SourceRef>,
        /// Prompt tokens used.
        prompt_tokens: usize,
    },
    /// A piece of answer text.
    Token {
        /// The text.
        text: String,
    },
}

/// A finished answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The answer text.
    pub text: String,
    /// Sources given to the model, with `cited` set for those the answer cites.
    pub sources: Vec<SourceRef>,
    /// Generation statistics.
    pub stats: GenerationStats,
}

const SYSTEM_PROMPT: &str = "You answer questions using only the numbered sources provided. \
Cite every claim with the source number in square brackets, like [1] or [2][3]. \
If the sources do not contain the answer, say that the documents do not contain it.";

fn source_block(n: usize, hit: &SearchHit) -> String {
    let c = &hit.chunk;
    let mut head = format!("[{n}] {}", c.title);
    if let Some(p) = c.page {
        head.push_str(&format!(", page {p}"));
    }
    if !c.heading_path.is_empty() {
        head.push_str(&format!(" ({})", c.heading_path.join(" > ")));
    }
    format!("{head}\n{}\n", c.text.trim())
}

fn user_message(question: &str, blocks: &[String]) -> String {
    let mut s = String::from("Sources:\n\n");
    for b in blocks {
        s.push_str(b);
        s.push('\n');
    }
    s.push_str("Question: ");
    s.push_str(question.trim());
    s
}

/// Numbers `[n]` that appear in `text`.
pub(crate) fn cited_numbers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'[' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > start && j < bytes.len() && bytes[j] == b']' {
                if let Ok(n) = text[start..j].parse::<usize>() {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
                i = j;
            }
        }
        i += 1;
    }
    out
}

/// Packs as many hits as fit into `budget` prompt tokens (counted with
/// `count`, including the chat template's overhead) and returns the rendered
/// prompt, its token count and the hits used.
fn pack_prompt(
    llm: &Llm,
    question: &str,
    hits: &[SearchHit],
    budget: usize,
) -> Result<(String, usize, usize), EngineError> {
    let render = |blocks: &[String]| -> Result<String, EngineError> {
        Ok(llm.render_chat(&[
            ChatMessage::new(Role::System, SYSTEM_PROMPT),
            ChatMessage::new(Role::User, user_message(question, blocks)),
        ])?)
    };
    let mut blocks: Vec<String> = Vec::new();
    let mut prompt = render(&blocks)?;
    let mut tokens = llm.count_tokens(&prompt)?;
    if tokens > budget {
        return Err(EngineError::InvalidInput(format!(
            "the question alone takes {tokens} tokens, more than the {budget} the model can take"
        )));
    }
    for (i, hit) in hits.iter().enumerate() {
        blocks.push(source_block(i + 1, hit));
        let candidate = render(&blocks)?;
        let t = llm.count_tokens(&candidate)?;
        if t > budget {
            blocks.pop();
            break;
        }
        prompt = candidate;
        tokens = t;
    }
    let used = blocks.len();
    Ok((prompt, tokens, used))
}

impl Engine {
    fn llm_path(&self, req: &AskRequest) -> Result<PathBuf, EngineError> {
        req.model.clone().or_else(|| self.config.llm_path.clone()).ok_or_else(|| {
            EngineError::NotConfigured(
                "no language model: pass --model PATH (a Qwen3 folder or .gguf file) or set LECTERN_LLM"
                    .into(),
            )
        })
    }

    /// Answers a question from the library, streaming events to `on_event`.
    /// Setting `cancel` stops generation within one token.
    pub async fn ask(
        &self,
        req: AskRequest,
        on_event: Arc<dyn Fn(AskEvent) + Send + Sync>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Answer, EngineError> {
        if req.question.trim().is_empty() {
            return Err(EngineError::InvalidInput("the question is empty".into()));
        }
        let model_path = self.llm_path(&req)?;
        let hits = if self.library.is_empty().await {
            Vec::new()
        } else {
            self.search(&SearchRequest {
                query: req.question.clone(),
                mode: req.mode,
                top_k: req.top_k,
            })
            .await?
        };
        let slot = self.llm.clone();
        let gpu = self.gpu_side.clone();
        let max_context = self.config.max_context;
        tokio::task::spawn_blocking(move || {
            let _active = gpu.active();
            let mut guard = slot
                .lock()
                .map_err(|_| EngineError::Internal("language model lock poisoned".into()))?;
            if guard
                .as_ref()
                .map(|m| m.path() != model_path)
                .unwrap_or(true)
            {
                *guard = None;
                let device = gpu.admit_llm(&model_path, max_context, &slot)?;
                let dev = lectern_models::candle_device(&device)?;
                tracing::info!(model = %model_path.display(), %device, "loading language model");
                *guard = Some(Llm::load(&model_path, &dev, max_context)?);
                gpu.llm_loaded();
            }
            let _in_use = gpu.llm_in_use();
            let llm = guard
                .as_mut()
                .ok_or_else(|| EngineError::Internal("language model missing".into()))?;
            let budget = llm
                .context_length()
                .saturating_sub(req.generation.max_tokens);
            let (prompt, prompt_tokens, used) = pack_prompt(llm, &req.question, &hits, budget)?;
            let mut sources: Vec<SourceRef> = hits[..used]
                .iter()
                .enumerate()
                .map(|(i, h)| SourceRef {
                    n: i + 1,
                    title: h.chunk.title.clone(),
                    path: h.chunk.path.clone(),
                    page: h.chunk.page,
                    chunk_id: h.chunk.chunk_id.clone(),
                    char_start: h.chunk.char_start,
                    char_end: h.chunk.char_end,
                    location: h.chunk.location.clone(),
                    heading_path: h.chunk.heading_path.clone(),
                    text: h.chunk.text.clone(),
                    score: h.score,
                    bm25_rank: h.bm25_rank,
                    bm25_score: h.bm25_score,
                    dense_rank: h.dense_rank,
                    dense_distance: h.dense_distance,
                    cited: false,
                })
                .collect();
            on_event(AskEvent::Sources {
                sources: sources.clone(),
                prompt_tokens,
            });
            let mut on_piece = |piece: &str| {
                on_event(AskEvent::Token {
                    text: piece.to_string(),
                });
                !cancel.load(Ordering::Relaxed)
            };
            let stats = llm.generate(&prompt, &req.generation, &mut on_piece)?;
            for n in cited_numbers(&stats.text) {
                if let Some(s) = sources.iter_mut().find(|s| s.n == n) {
                    s.cited = true;
                }
            }
            Ok(Answer {
                text: stats.text.clone(),
                sources,
                stats,
            })
        })
        .await
        .map_err(EngineError::join)?
    }
}

#[cfg(test)]
mod tests {
    use super::cited_numbers;

    #[test]
    fn finds_citation_numbers_in_order_without_duplicates() {
        assert_eq!(
            cited_numbers("Rust is fast [2]. It is safe [1][2], see [x] and [ 3] or [10]."),
            vec![2, 1, 10]
        );
        assert!(cited_numbers("no citations [] here [").is_empty());
    }
}
