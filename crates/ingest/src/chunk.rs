//! Token-bounded, overlapping chunks of parsed documents.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::markdown::{self, Section};
use crate::{Format, IngestError, ParsedDocument};

/// The smallest `max_tokens` a [`Chunker`] accepts.
pub const MIN_MAX_TOKENS: usize = 16;

/// Sections are tokenized in blocks of about this many bytes, cut at line
/// breaks, so that a very long text is tokenized in parallel and never held
/// as one giant encoding.
const BLOCK_BYTES: usize = 64 * 1024;

/// How many planned windows are checked against their own token count at once.
const VERIFY_BATCH: usize = 64;

/// How large chunks are and how much consecutive chunks share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkConfig {
    /// The most tokens a chunk may hold, counted without special tokens.
    pub max_tokens: usize,
    /// How many tokens at most a chunk repeats from the end of the previous
    /// chunk of the same section.
    pub overlap_tokens: usize,
}

/// 192 tokens with 32 tokens of overlap.
///
/// The embedding model, all-MiniLM-L6-v2, reads at most 256 tokens including
/// its `[CLS]` and `[SEP]` tokens, so a 192-token chunk always fits whole,
/// with room to spare for text the embedder adds around it (a title or a
/// heading path). An overlap of about a sixth of the chunk is enough for a
/// typical sentence, so a sentence cut at a chunk boundary still appears
/// whole in one of the two chunks, without inflating the index much.
impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 192,
            overlap_tokens: 32,
        }
    }
}

impl ChunkConfig {
    /// Checks that `max_tokens` is at least [`MIN_MAX_TOKENS`] and that the
    /// overlap is less than half of `max_tokens`, so that chunking always
    /// moves forward by a good part of a chunk.
    pub fn validate(&self) -> Result<(), IngestError> {
        if self.max_tokens < MIN_MAX_TOKENS {
            return Err(IngestError::InvalidConfig(format!(
                "max_tokens must be at least {MIN_MAX_TOKENS}, got {}",
                self.max_tokens
            )));
        }
        if self.overlap_tokens >= self.max_tokens / 2 {
            return Err(IngestError::InvalidConfig(format!(
                "overlap_tokens must be less than half of max_tokens ({}), got {}",
                self.max_tokens, self.overlap_tokens
            )));
        }
        Ok(())
    }
}

/// A passage of one page, small enough to embed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position of the chunk in its document, counting from 0.
    pub ordinal: u32,
    /// The passage, without leading or trailing whitespace.
    pub text: String,
    /// The 1-based page the passage is on, for PDFs; `None` for text and Markdown.
    pub page: Option<u32>,
    /// The Markdown headings in force, outermost first; empty for other formats.
    pub heading_path: Vec<String>,
    /// Where the passage starts in its page's text, counted in `char`s.
    pub char_start: usize,
    /// Where the passage ends (exclusive) in its page's text, counted in `char`s.
    ///
    /// `page.text.chars().skip(char_start).take(char_end - char_start)`
    /// yields exactly [`Chunk::text`].
    pub char_end: usize,
    /// Number of tokens in [`Chunk::text`], without special tokens.
    pub token_count: usize,
}

/// Splits parsed documents into [`Chunk`]s measured with a real tokenizer.
///
/// A chunk never spans two pages, and in Markdown never crosses a heading.
/// Within a page (or a Markdown section) chunks are windows of at most
/// `max_tokens` tokens; a window preferably ends at a paragraph break (but
/// not right after a heading-like line), else at the end of a sentence, else
/// at a line break, else between words, as late as possible within its last
/// quarter. The next window starts up to `overlap_tokens` tokens
/// earlier, at the start of a sentence when one lies in that range, else at
/// the start of a word. Together the chunks of a page cover all of its
/// non-whitespace text.
pub struct Chunker {
    tokenizer: Tokenizer,
    config: ChunkConfig,
    /// Whether the tokenizer never lets a token span whitespace and
    /// normalizes each char on its own, so that text cut at whitespace
    /// tokenizes exactly as it did in context.
    splits_at_whitespace: bool,
}

impl fmt::Debug for Chunker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("config", &self.config)
            .field("splits_at_whitespace", &self.splits_at_whitespace)
            .finish_non_exhaustive()
    }
}

/// A run of text the tokenizer turned into one or more tokens that cannot be
/// separated (their source spans overlap). Offsets are bytes into the section.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

/// How good a place a boundary between two units is to end a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    /// Between two tokens with no whitespace, e.g. inside a long word.
    Token,
    /// Between words on one line.
    Space,
    /// At a line break, e.g. between table rows or lines of code.
    Line,
    /// After the end of a sentence.
    Sentence,
    /// At a blank line, unless what precedes it looks like a heading.
    Paragraph,
}

/// A chunk before it is tied to its page: trimmed byte range and token count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
    tokens: usize,
}

impl Chunker {
    /// Creates a chunker that counts tokens with `tokenizer`.
    ///
    /// Truncation and padding configured in the tokenizer are switched off, so
    /// that counts are true counts. Fails with
    /// [`IngestError::InvalidConfig`] when `config` is not valid (see
    /// [`ChunkConfig::validate`]).
    pub fn new(mut tokenizer: Tokenizer, config: ChunkConfig) -> Result<Self, IngestError> {
        config.validate()?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| IngestError::Tokenizer(format!("cannot switch off truncation: {e}")))?;
        tokenizer.with_padding(None);
        let splits_at_whitespace = splits_at_whitespace(&tokenizer);
        Ok(Chunker {
            tokenizer,
            config,
            splits_at_whitespace,
        })
    }

    /// Loads a Hugging Face `tokenizer.json` and creates a chunker with it.
    pub fn from_tokenizer_file(path: &Path, config: ChunkConfig) -> Result<Self, IngestError> {
        config.validate()?;
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            IngestError::Tokenizer(format!(
                "cannot load tokenizer from {}: {e}",
                path.display()
            ))
        })?;
        Chunker::new(tokenizer, config)
    }

    /// The configuration this chunker was created with.
    pub fn config(&self) -> &ChunkConfig {
        &self.config
    }

    /// Counts the tokens of `text`, without special tokens.
    ///
    /// Should the tokenizer fail on the text, which a word-piece tokenizer
    /// does not do, the number of `char`s is returned instead: an upper
    /// bound for word-piece tokenizers, so limits stay respected.
    pub fn count_tokens(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, false) {
            Ok(encoding) => encoding.len(),
            Err(e) => {
                tracing::warn!(error = %e, "tokenizer failed; counting chars instead");
                text.chars().count()
            }
        }
    }

    /// Splits every page of `doc` into chunks, numbered in document order.
    pub fn chunk(&self, doc: &ParsedDocument) -> Vec<Chunk> {
        let started = std::time::Instant::now();
        let mut chunks = Vec::new();
        for page in &doc.pages {
            let sections = match doc.format {
                Format::Markdown => markdown::sections(&page.text),
                Format::Text | Format::Pdf => vec![Section {
                    start: 0,
                    end: page.text.len(),
                    heading_path: Vec::new(),
                }],
            };
            // Chunk starts and ends only move forward within a page, so two
            // cursors convert byte offsets to char offsets in linear time.
            let mut starts = CharCursor::default();
            let mut ends = CharCursor::default();
            for section in sections {
                let text = &page.text[section.start..section.end];
                for w in self.windows(text) {
                    let (start, end) = (section.start + w.start, section.start + w.end);
                    chunks.push(Chunk {
                        ordinal: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
                        text: page.text[start..end].to_string(),
                        page: page.number,
                        heading_path: section.heading_path.clone(),
                        char_start: starts.seek(&page.text, start),
                        char_end: ends.seek(&page.text, end),
                        token_count: w.tokens,
                    });
                }
            }
        }
        tracing::debug!(
            path = %doc.path.display(),
            chunks = chunks.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "chunked document"
        );
        chunks
    }

    /// The chunk windows of one section, as trimmed byte ranges into `text`.
    fn windows(&self, text: &str) -> Vec<Window> {
        if text.trim().is_empty() {
            return Vec::new();
        }
        let units = self.units(text);
        let n = units.len();
        if n == 0 {
            return Vec::new();
        }
        // cum[k] is the number of tokens in units[..k].
        let mut cum = Vec::with_capacity(n + 1);
        cum.push(0usize);
        for u in &units {
            cum.push(cum[cum.len() - 1] + u.tokens);
        }

        let max = self.config.max_tokens;
        let mut out = Vec::new();
        let mut i = 0;
        // Windows are planned with the section's token counts. A window cut
        // at whitespace keeps that count when the tokenizer splits at
        // whitespace; any other window is checked, in parallel batches,
        // against the count of its own text. The two can differ when a
        // window is cut inside a word; such a window is shrunk until it fits
        // and planning resumes after it.
        'plan: loop {
            let mut plan = Vec::with_capacity(VERIFY_BATCH);
            let mut at = i;
            loop {
                let k = self.cut(text, &units, &cum, at);
                let next = (k < n).then(|| self.next_start(text, &units, &cum, at, k));
                plan.push((at, k, next));
                match next {
                    Some(next) if plan.len() < VERIFY_BATCH => at = next,
                    _ => break,
                }
            }
            let ranges: Vec<(usize, usize)> = plan
                .iter()
                .map(|&(at, k, _)| window_range(text, &units, at, k))
                .collect();
            let counts = self.window_counts(text, &units, &cum, &plan, &ranges);
            for ((&(at, k, next), &(a, b)), tokens) in plan.iter().zip(&ranges).zip(counts) {
                if tokens <= max || k <= at + 1 {
                    push_window(&mut out, a, b, tokens);
                    match next {
                        Some(next) => i = next,
                        None => break 'plan,
                    }
                } else {
                    let (k, window) = self.shrink(text, &units, &cum, at, k, tokens);
                    push_window(&mut out, window.start, window.end, window.tokens);
                    i = self.next_start(text, &units, &cum, at, k);
                    continue 'plan;
                }
            }
        }
        out
    }

    /// Where the window starting at unit `i` ends, by the section's counts:
    /// at the end of the section if the rest fits, else at the best break in
    /// the last quarter of the window.
    fn cut(&self, text: &str, units: &[Unit], cum: &[usize], i: usize) -> usize {
        let limit = cum[i] + self.config.max_tokens;
        let fits = cum.partition_point(|&c| c <= limit) - 1;
        let j = fits.max(i + 1);
        if j == units.len() {
            j
        } else {
            self.choose_cut(text, units, cum, i, j)
        }
    }

    /// Moves the end of the window `i..k`, whose own text has `tokens` tokens,
    /// back until the text fits in `max_tokens` or holds a single unit.
    fn shrink(
        &self,
        text: &str,
        units: &[Unit],
        cum: &[usize],
        i: usize,
        mut k: usize,
        mut tokens: usize,
    ) -> (usize, Window) {
        let max = self.config.max_tokens;
        loop {
            // Give up as many units as there are excess tokens, at least one.
            let target = cum[k].saturating_sub(tokens - max);
            k = cum[..k]
                .partition_point(|&c| c <= target)
                .saturating_sub(1)
                .max(i + 1);
            let (a, b) = window_range(text, units, i, k);
            tokens = self.count_tokens(&text[a..b]);
            if tokens <= max || k <= i + 1 {
                return (
                    k,
                    Window {
                        start: a,
                        end: b,
                        tokens,
                    },
                );
            }
        }
    }

    /// The token counts of planned windows (`(start unit, end unit, _)`)
    /// whose trimmed byte ranges are `ranges`: taken from the section's
    /// counts where that is exact, else computed in parallel.
    fn window_counts(
        &self,
        text: &str,
        units: &[Unit],
        cum: &[usize],
        plan: &[(usize, usize, Option<usize>)],
        ranges: &[(usize, usize)],
    ) -> Vec<usize> {
        let spaced = |k: usize| {
            k == 0
                || k == units.len()
                || text[units[k - 1].end.min(units[k].start)..units[k].start]
                    .contains(is_split_space)
        };
        let mut counts = vec![0; plan.len()];
        let mut unsure = Vec::new();
        for (n, &(i, k, _)) in plan.iter().enumerate() {
            if self.splits_at_whitespace && spaced(i) && spaced(k) {
                counts[n] = cum[k] - cum[i];
            } else {
                unsure.push(n);
            }
        }
        if !unsure.is_empty() {
            let inputs: Vec<&str> = unsure
                .iter()
                .map(|&n| &text[ranges[n].0..ranges[n].1])
                .collect();
            match self.tokenizer.encode_batch_fast(inputs.clone(), false) {
                Ok(encodings) => {
                    for (&n, encoding) in unsure.iter().zip(&encodings) {
                        counts[n] = encoding.len();
                    }
                }
                Err(_) => {
                    for (&n, input) in unsure.iter().zip(&inputs) {
                        counts[n] = self.count_tokens(input);
                    }
                }
            }
        }
        counts
    }

    /// Tokenizes a section once and groups its tokens into [`Unit`]s.
    fn units(&self, text: &str) -> Vec<Unit> {
        let blocks = split_blocks(text, BLOCK_BYTES);
        let inputs: Vec<&str> = blocks.iter().map(|&(_, b)| b).collect();
        let encodings = match self.tokenizer.encode_batch(inputs, false) {
            Ok(encodings) => encodings,
            Err(e) => {
                tracing::warn!(error = %e, "tokenizer failed; chunking by chars instead");
                return char_units(text);
            }
        };
        let mut units: Vec<Unit> = Vec::new();
        for (&(base, block), encoding) in blocks.iter().zip(&encodings) {
            for &(s, e) in encoding.get_offsets() {
                let s = base + block.floor_char_boundary(s.min(block.len()));
                let e = base + block.ceil_char_boundary(e.min(block.len()));
                match units.last_mut() {
                    Some(last) if s < last.end || s >= e => {
                        last.end = last.end.max(e);
                        last.tokens += 1;
                    }
                    _ => units.push(Unit {
                        start: s,
                        end: e,
                        tokens: 1,
                    }),
                }
            }
        }
        units
    }

    /// Picks where a window that starts at unit `i` and can hold units up to
    /// `j` (exclusive) ends: the best [`Break`] in its last quarter, latest first.
    fn choose_cut(&self, text: &str, units: &[Unit], cum: &[usize], i: usize, j: usize) -> usize {
        let quarter_in = cum[i] + (self.config.max_tokens * 3).div_ceil(4);
        let lo = cum.partition_point(|&c| c < quarter_in).clamp(i + 1, j);
        let mut best = (Break::Token, j);
        for k in (lo..=j).rev() {
            let b = boundary(text, units, k);
            if b > best.0 {
                best = (b, k);
                if b == Break::Paragraph {
                    break;
                }
            }
        }
        best.1
    }

    /// Picks where the window after a cut at unit `k` starts: within the last
    /// `overlap_tokens` tokens before `k`, at the earliest sentence start,
    /// else at the earliest word start, else exactly `overlap_tokens` back.
    /// Always after `i`, so chunking moves forward.
    fn next_start(&self, text: &str, units: &[Unit], cum: &[usize], i: usize, k: usize) -> usize {
        let overlap = self.config.overlap_tokens;
        if overlap == 0 {
            return k;
        }
        let target = cum
            .partition_point(|&c| c + overlap < cum[k])
            .clamp(i + 1, k);
        let mut word = None;
        for s in target..k {
            match boundary(text, units, s) {
                Break::Paragraph | Break::Sentence => return s,
                Break::Line | Break::Space if word.is_none() => word = Some(s),
                _ => {}
            }
        }
        word.unwrap_or(target)
    }
}

/// Whether `tokenizer` splits text at whitespace before its model sees it
/// and normalizes char by char: then no token spans whitespace and a
/// passage cut at whitespace tokenizes exactly as it did in context.
fn splits_at_whitespace(tokenizer: &Tokenizer) -> bool {
    use tokenizers::{NormalizerWrapper as N, PreTokenizerWrapper as P};
    let normalizer_is_local = match tokenizer.get_normalizer() {
        None => true,
        Some(n) => matches!(
            n,
            N::BertNormalizer(_)
                | N::Lowercase(_)
                | N::StripAccents(_)
                | N::NFC(_)
                | N::NFD(_)
                | N::NFKC(_)
                | N::NFKD(_)
        ),
    };
    let pre_tokenizer_splits = matches!(
        tokenizer.get_pre_tokenizer(),
        Some(P::BertPreTokenizer(_) | P::Whitespace(_) | P::WhitespaceSplit(_))
    );
    normalizer_is_local && pre_tokenizer_splits
}

/// Whitespace that every tokenizer accepted by [`splits_at_whitespace`]
/// splits at. Narrower than [`char::is_whitespace`]: BERT's normalizer
/// deletes control characters such as form feed, joining the words around them.
fn is_split_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// The trimmed byte range of the window from unit `i` to the boundary before
/// unit `k`; the first window starts at the section start and the last ends
/// at the section end, so text the tokenizer skips is still covered.
fn window_range(text: &str, units: &[Unit], i: usize, k: usize) -> (usize, usize) {
    let start = if i == 0 { 0 } else { units[i].start };
    let end = units.get(k).map_or(text.len(), |u| u.start);
    trim(text, start, end)
}

/// Adds a window unless it is empty.
fn push_window(out: &mut Vec<Window>, start: usize, end: usize, tokens: usize) {
    if start < end && tokens > 0 {
        out.push(Window { start, end, tokens });
    }
}

/// Classifies the boundary before `units[k]`; `0 < k < units.len()`.
fn boundary(text: &str, units: &[Unit], k: usize) -> Break {
    let next_start = units[k].start;
    let prev_end = units[k - 1].end.min(next_start);
    let gap = &text[prev_end..next_start];
    let before = &text[..prev_end];
    let newlines = gap.bytes().filter(|&b| b == b'\n').count();
    if newlines >= 2 {
        // A heading keeps its paragraph: a chunk should not end right after it.
        return if ends_with_heading_like_line(before) {
            Break::Line
        } else {
            Break::Paragraph
        };
    }
    let spaced = newlines > 0 || gap.chars().any(char::is_whitespace);
    let next = text[next_start..].chars().next();
    match sentence_end(before) {
        Some(true) => return Break::Sentence,
        Some(false) if spaced && next.is_some_and(starts_sentence) => return Break::Sentence,
        _ => {}
    }
    if newlines == 1 {
        Break::Line
    } else if spaced {
        Break::Space
    } else {
        Break::Token
    }
}

/// Whether a sentence can start with `c`: not a lowercase letter, and a
/// letter, digit or opening quote or bracket (so `:q! |` is no sentence end).
fn starts_sentence(c: char) -> bool {
    !c.is_lowercase()
        && (c.is_alphanumeric()
            || ['"', '\'', '“', '‘', '«', '(', '[', '¿', '¡', '「', '『'].contains(&c))
}

/// Whether `before` ends with a short line that stands alone as a paragraph
/// and does not end like a sentence: a heading such as `1.4.8. Using vim`.
fn ends_with_heading_like_line(before: &str) -> bool {
    // Look back a bounded distance so that a long section without line
    // breaks costs constant time per boundary.
    let from = before.floor_char_boundary(before.len().saturating_sub(400));
    let tail = &before[from..];
    let line_start = match tail.rfind('\n') {
        Some(p) => p + 1,
        None if from == 0 => 0,
        None => return false,
    };
    let line = tail[line_start..].trim();
    if line.is_empty()
        || line.chars().count() > 80
        || sentence_end(line).is_some()
        || line.ends_with([',', ';', ':'])
    {
        return false;
    }
    let above = &tail[..line_start];
    let above = above.strip_suffix('\n').unwrap_or(above);
    let above = above.strip_suffix('\r').unwrap_or(above);
    let above = above.trim_end_matches(|c: char| c != '\n' && c.is_whitespace());
    above.ends_with('\n') || (above.is_empty() && from == 0)
}

/// Whether `before` ends a sentence, looking past up to three closing quotes
/// or brackets. `Some(true)` for full-width terminators, which need no space
/// after them; `Some(false)` for ASCII ones, which do.
fn sentence_end(before: &str) -> Option<bool> {
    const CLOSERS: &[char] = &['"', '\'', ')', ']', '»', '”', '’', '」', '』', '）'];
    let mut chars = before.chars().rev();
    for _ in 0..4 {
        match chars.next()? {
            c if CLOSERS.contains(&c) => continue,
            '.' | '!' | '?' | '…' => return Some(false),
            '。' | '！' | '？' | '｡' => return Some(true),
            _ => return None,
        }
    }
    None
}

/// The byte range `a..b` of `text` without leading and trailing whitespace;
/// empty (`a..a`) when it holds only whitespace.
fn trim(text: &str, a: usize, b: usize) -> (usize, usize) {
    let s = &text[a..b];
    let t = s.trim_start();
    if t.is_empty() {
        return (a, a);
    }
    let start = a + (s.len() - t.len());
    let end = start + t.trim_end().len();
    (start, end)
}

/// Cuts `text` into blocks of at most about `max` bytes, preferably after a
/// line break, else after whitespace, in the second half of each block.
fn split_blocks(text: &str, max: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        if text.len() - start <= max {
            out.push((start, &text[start..]));
            break;
        }
        let limit = text.ceil_char_boundary(start + max);
        let window = &text[start..limit];
        let after = |p: usize| p + window[p..].chars().next().map_or(1, char::len_utf8);
        let cut = window
            .rfind('\n')
            .filter(|&p| p >= max / 2)
            .map(after)
            .or_else(|| {
                window
                    .rfind(char::is_whitespace)
                    .filter(|&p| p >= max / 2)
                    .map(after)
            })
            .unwrap_or(window.len());
        out.push((start, &text[start..start + cut]));
        start += cut;
    }
    out
}

/// One unit per non-whitespace char: the fallback when the tokenizer fails.
fn char_units(text: &str) -> Vec<Unit> {
    text.char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .map(|(i, c)| Unit {
            start: i,
            end: i + c.len_utf8(),
            tokens: 1,
        })
        .collect()
}

/// Converts byte offsets into char offsets, walking from the previous answer.
#[derive(Debug, Default)]
struct CharCursor {
    byte: usize,
    chars: usize,
}

impl CharCursor {
    fn seek(&mut self, text: &str, byte: usize) -> usize {
        if byte >= self.byte {
            self.chars += text[self.byte..byte].chars().count();
        } else {
            self.chars -= text[byte..self.byte].chars().count();
        }
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(ChunkConfig::default().validate().is_ok());
        let small = ChunkConfig {
            max_tokens: 15,
            overlap_tokens: 0,
        };
        assert!(matches!(
            small.validate(),
            Err(IngestError::InvalidConfig(_))
        ));
        let overlap = ChunkConfig {
            max_tokens: 64,
            overlap_tokens: 32,
        };
        assert!(
            matches!(overlap.validate(), Err(IngestError::InvalidConfig(m)) if m.contains("overlap_tokens"))
        );
        let ok = ChunkConfig {
            max_tokens: 16,
            overlap_tokens: 7,
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn trim_keeps_offsets() {
        let text = "  ab c \n";
        assert_eq!(trim(text, 0, text.len()), (2, 6));
        assert_eq!(trim(text, 6, text.len()), (6, 6));
    }

    #[test]
    fn blocks_cover_text_and_respect_char_boundaries() {
        let text = "héllo wörld\nzwei drei\n".repeat(500) + &"ü".repeat(3000);
        let blocks = split_blocks(&text, 1000);
        let mut pos = 0;
        for (start, block) in &blocks {
            assert_eq!(*start, pos);
            assert!(block.len() <= 1004);
            pos += block.len();
        }
        assert_eq!(pos, text.len());
        assert!(blocks[0].1.ends_with('\n'));
    }

    #[test]
    fn sentence_ends() {
        assert_eq!(sentence_end("He left."), Some(false));
        assert_eq!(sentence_end("“Go!”"), Some(false));
        assert_eq!(sentence_end("(see above.)"), Some(false));
        assert_eq!(sentence_end("終わり。"), Some(true));
        assert_eq!(sentence_end("no end"), None);
        assert_eq!(sentence_end(""), None);
    }

    #[test]
    fn heading_like_lines() {
        assert!(ends_with_heading_like_line(
            "text.\n\n1.4.8.\u{a0}Using vim"
        ));
        assert!(ends_with_heading_like_line("Tip"));
        assert!(!ends_with_heading_like_line("text.\n\nA whole sentence."));
        assert!(!ends_with_heading_like_line("a wrapped\nline of prose"));
        assert!(!ends_with_heading_like_line("text.\n\nSee the following:"));
    }

    #[test]
    fn cursor_moves_both_ways() {
        let text = "aé😀b";
        let mut c = CharCursor::default();
        assert_eq!(c.seek(text, text.len()), 4);
        assert_eq!(c.seek(text, 3), 2);
        assert_eq!(c.seek(text, 7), 3);
    }
}
