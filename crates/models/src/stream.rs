use tokenizers::Tokenizer;

use crate::{error::tok_err, ModelError};

/// Incremental detokeniser: turns a growing list of token ids into text
/// pieces without ever splitting a UTF-8 character.
///
/// Byte-level BPE tokens can end in the middle of a multi-byte character; the
/// decoded text then ends in U+FFFD. Such a piece is held back until the
/// following tokens complete the character.
#[derive(Debug)]
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    prev_index: usize,
    current_index: usize,
}

impl<'a> TokenStream<'a> {
    /// A stream over `tokenizer` with no tokens yet.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev_index: 0,
            current_index: 0,
        }
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(tokens, true).map_err(tok_err)
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>, ModelError> {
        let prev_text = if self.tokens.is_empty() {
            String::new()
        } else {
            self.decode(&self.tokens[self.prev_index..self.current_index])?
        };
        self.tokens.push(token);
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() && !text.ends_with('\u{FFFD}') {
            let piece = match text.get(prev_text.len()..) {
                Some(p) => p.to_string(),
                None => return Ok(None),
            };
            self.prev_index = self.current_index;
            self.current_index = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever text is still held back (for example a dangling partial character).
    pub fn flush(&self) -> Result<Option<String>, ModelError> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() {
            Ok(text.get(prev_text.len()..).map(str::to_string))
        } else {
            Ok(None)
        }
    }

    /// All tokens pushed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// Opens a Qwen3 reasoning block.
pub const THINK_OPEN: &str = "<think>";
/// Closes a Qwen3 reasoning block.
pub const THINK_CLOSE: &str = "</think>";

/// A piece of generated text, sorted by where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text inside the `<think>…</think>` block.
    Thinking(String),
    /// Text of the answer proper.
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkState {
    /// Nothing but whitespace seen yet: a `<think>` may still open.
    Start,
    /// Inside the reasoning block.
    Inside,
    /// Just after `</think>`: whitespace separating it from the answer is dropped.
    Closed,
    /// In the answer.
    Answer,
}

/// Separates a leading `<think>…</think>` block (Qwen3 thinking mode) from
/// the answer in streamed text. The tags may arrive split across pieces at
/// any byte; a piece that could be the start of a tag is held back until
/// the next piece settles it.
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    state: ThinkState,
    held: String,
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_tag_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && tag.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

impl ThinkSplitter {
    /// A splitter for output that follows `prompt`: when the prompt itself
    /// ends inside an open `<think>` block (templates that start the
    /// reasoning for the model), the output begins as thinking.
    pub fn for_prompt(prompt: &str) -> Self {
        let open = prompt.rfind(THINK_OPEN);
        let close = prompt.rfind(THINK_CLOSE);
        let inside = match (open, close) {
            (Some(o), Some(c)) => o > c,
            (Some(_), None) => true,
            _ => false,
        };
        Self {
            state: if inside {
                ThinkState::Inside
            } else {
                ThinkState::Start
            },
            held: String::new(),
        }
    }

    /// A splitter for output that may open with a `<think>` block.
    pub fn new() -> Self {
        Self {
            state: ThinkState::Start,
            held: String::new(),
        }
    }

    /// Whether the output is (still) inside the reasoning block.
    pub fn in_thinking(&self) -> bool {
        self.state == ThinkState::Inside
    }

    /// Feeds the next piece of text; returns what can be told apart so far.
    pub fn push(&mut self, piece: &str) -> Vec<Segment> {
        self.held.push_str(piece);
        let mut out = Vec::new();
        loop {
            match self.state {
                ThinkState::Start => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        return out;
                    }
                    if let Some(after) = rest.strip_prefix(THINK_OPEN) {
                        self.held = after.to_string();
                        self.state = ThinkState::Inside;
                        continue;
                    }
                    if THINK_OPEN.starts_with(rest) {
                        return out;
                    }
                    self.state = ThinkState::Answer;
                }
                ThinkState::Inside => {
                    if let Some(at) = self.held.find(THINK_CLOSE) {
                        let thought = self.held[..at].to_string();
                        let after = self.held[at + THINK_CLOSE.len()..].to_string();
                        if !thought.is_empty() {
                            out.push(Segment::Thinking(thought));
                        }
                        self.held = after;
                        self.state = ThinkState::Closed;
                        continue;
                    }
                    let keep = partial_tag_suffix(&self.held, THINK_CLOSE);
                    let cut = self.held.len() - keep;
                    if cut > 0 {
                        out.push(Segment::Thinking(self.held[..cut].to_string()));
                        self.held.drain(..cut);
                    }
                    return out;
                }
                ThinkState::Closed => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_string();
                    self.state = ThinkState::Answer;
                }
                ThinkState::Answer => {
                    if !self.held.is_empty() {
                        out.push(Segment::Answer(std::mem::take(&mut self.held)));
                    }
                    return out;
                }
            }
        }
    }

    /// Whatever is still held back, once no more text will come. An
    /// unfinished reasoning block stays thinking; a lone partial tag at the
    /// start is answer text.
    pub fn finish(&mut self) -> Vec<Segment> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            ThinkState::Inside if !held.is_empty() => vec![Segment::Thinking(held)],
            ThinkState::Start | ThinkState::Answer if !held.trim().is_empty() => {
                self.state = ThinkState::Answer;
                vec![Segment::Answer(held)]
            }
            _ => Vec::new(),
        }
    }
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: ThinkSplitter, pieces: &[&str]) -> (String, String) {
        let (mut thinking, mut answer) = (String::new(), String::new());
        let mut segs = Vec::new();
        for p in pieces {
            segs.extend(s.push(p));
        }
        segs.extend(s.finish());
        for seg in segs {
            match seg {
                Segment::Thinking(t) => thinking.push_str(&t),
                Segment::Answer(a) => answer.push_str(&a),
            }
        }
        (thinking, answer)
    }

    #[test]
    fn separates_a_think_block_split_at_every_byte() {
        let text = "<think>\nThe user asks about ownership; source [1] says so.\n</think>\n\nEach value has one owner [1].";
        let (t, a) = run(ThinkSplitter::new(), &[text]);
        assert_eq!(t, "\nThe user asks about ownership; source [1] says so.\n");
        assert_eq!(a, "Each value has one owner [1].");
        // Every way of cutting the text in two gives the same split.
        for cut in 1..text.len() {
            let (t2, a2) = run(ThinkSplitter::new(), &[&text[..cut], &text[cut..]]);
            assert_eq!(
                (t2.as_str(), a2.as_str()),
                (t.as_str(), a.as_str()),
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let bytes: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run(ThinkSplitter::new(), &pieces), (t, a));
    }

    #[test]
    fn text_without_a_think_block_is_all_answer() {
        let (t, a) = run(
            ThinkSplitter::new(),
            &["<", "b>Bold</b> claim [2]. Later <think> is literal."],
        );
        assert_eq!(t, "");
        assert_eq!(a, "<b>Bold</b> claim [2]. Later <think> is literal.");
        let (t, a) = run(ThinkSplitter::new(), &["<th"]);
        assert_eq!((t.as_str(), a.as_str()), ("", "<th"));
    }

    #[test]
    fn a_prompt_that_opens_the_block_starts_in_thinking() {
        let s = ThinkSplitter::for_prompt("<|im_start|>assistant\n<think>\n");
        assert!(s.in_thinking());
        let (t, a) = run(s, &["Let me check.</thi", "nk>\n\nThe answer [1]."]);
        assert_eq!(t, "Let me check.");
        assert_eq!(a, "The answer [1].");
        // An empty, closed block in the prompt (thinking off) does not.
        let s = ThinkSplitter::for_prompt("<|im_start|>assistant\n<think>\n\n</think>\n\n");
        assert!(!s.in_thinking());
        assert_eq!(run(s, &["Plain."]), (String::new(), "Plain.".to_string()));
    }

    #[test]
    fn an_unfinished_block_stays_thinking() {
        let (t, a) = run(
            ThinkSplitter::new(),
            &["<think>still reasoning when cut off </th"],
        );
        assert_eq!(t, "still reasoning when cut off </th");
        assert_eq!(a, "");
    }
}
