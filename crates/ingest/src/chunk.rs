//! Token-bounded, overlapping chunks of parsed documents.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::markdown::{self, Section};
use crate::parse::{PageAnchor, TableLayout};
use crate::{code, Format, IngestError, Location, Page, ParsedDocument};

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
    /// The passage, without leading or trailing whitespace. For a table
    /// chunk that starts after the header row, the header row comes first,
    /// repeated, followed by a line break (see [`Chunk::repeated_header_chars`]).
    pub text: String,
    /// The 1-based page the passage is on for PDFs, its slide number for
    /// presentations; `None` for the other formats.
    pub page: Option<u32>,
    /// The headings in force, outermost first: Markdown headings, and the
    /// headings of Word documents, web pages, e-book chapters and speaker
    /// notes; empty where the format has none.
    pub heading_path: Vec<String>,
    /// Where the passage starts in its page's text, counted in `char`s.
    pub char_start: usize,
    /// Where the passage ends (exclusive) in its page's text, counted in `char`s.
    ///
    /// `page.text.chars().skip(char_start).take(char_end - char_start)`
    /// yields exactly [`Chunk::text`] after its first
    /// [`Chunk::repeated_header_chars`] chars (all of it when that is 0).
    pub char_end: usize,
    /// Number of tokens in [`Chunk::text`], without special tokens.
    pub token_count: usize,
    /// The format of the document the chunk comes from.
    #[serde(default)]
    pub format: Format,
    /// The index of the chunk's page in [`ParsedDocument::pages`].
    #[serde(default)]
    pub page_index: u32,
    /// Where the passage is, for citations: page, slide, sheet and row
    /// range, chapter, or line range.
    #[serde(default)]
    pub location: Location,
    /// Whether the passage was recognised by OCR from a scanned page.
    #[serde(default)]
    pub ocr: bool,
    /// How many `char`s at the start of [`Chunk::text`] repeat the table's
    /// header row (and the line break after it) rather than come from
    /// `char_start..char_end`; 0 for every chunk that is not a table chunk
    /// continuing after its header.
    #[serde(default)]
    pub repeated_header_chars: usize,
}

impl Chunk {
    /// A short human-readable citation anchor: `"p. 3"`, `"slide 4 — Title"`,
    /// `"Sheet1 rows 2–41"`, `"ch. 2 — Title"`, `"lines 10–42"`, followed by
    /// the heading path (`" · Usage › Options"`) when there is one, and by
    /// `" (OCR)"` for text recognised from a scan. A chunk of a document
    /// with neither is labelled `"document"`.
    pub fn location_label(&self) -> String {
        let mut label = self.location.label();
        let mut path: &[String] = &self.heading_path;
        // A chapter or slide title repeated as the first heading adds nothing.
        if let (Some(title), Some(first)) = (self.location.title(), path.first()) {
            if title == first {
                path = &path[1..];
            }
        }
        if !path.is_empty() {
            if !label.is_empty() {
                label.push_str(" · ");
            }
            label.push_str(&path.join(" › "));
        }
        if label.is_empty() {
            label.push_str("document");
        }
        if self.ocr {
            label.push_str(" (OCR)");
        }
        label
    }
}

/// A chunk before it is tied to its document: byte range in the page text,
/// token count of its full text, heading path, repeated header and rows.
#[derive(Debug, Clone)]
struct Piece {
    start: usize,
    end: usize,
    tokens: usize,
    heading_path: Vec<String>,
    header: Option<String>,
    /// Indices of the first and last table row (or code item) it holds.
    spans: Option<(usize, usize)>,
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
        for (index, page) in doc.pages.iter().enumerate() {
            let pieces = self.pieces(doc.format, page);
            // Chunk starts and ends mostly move forward within a page, so
            // cursors convert byte offsets to char and line numbers cheaply.
            let mut starts = CharCursor::default();
            let mut ends = CharCursor::default();
            let mut first_lines = LineCursor::default();
            let mut last_lines = LineCursor::default();
            for piece in pieces {
                let body = &page.text[piece.start..piece.end];
                let (text, repeated_header_chars) = match &piece.header {
                    Some(header) => (format!("{header}\n{body}"), header.chars().count() + 1),
                    None => (body.to_string(), 0),
                };
                let lines = || {
                    (
                        first_lines.seek(&page.text, piece.start),
                        last_lines.seek(&page.text, piece.end),
                    )
                };
                let location = location(doc.format, page, &piece, lines);
                chunks.push(Chunk {
                    ordinal: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
                    text,
                    page: page.number,
                    heading_path: piece.heading_path,
                    char_start: starts.seek(&page.text, piece.start),
                    char_end: ends.seek(&page.text, piece.end),
                    token_count: piece.tokens,
                    format: doc.format,
                    page_index: u32::try_from(index).unwrap_or(u32::MAX),
                    location,
                    ocr: page.ocr,
                    repeated_header_chars,
                });
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

    /// The pieces of one page: table rows packed under a repeated header,
    /// source code packed by top-level item, else token windows within
    /// each heading section.
    fn pieces(&self, format: Format, page: &Page) -> Vec<Piece> {
        let text = &page.text;
        if let Some(table) = &page.table {
            return self.table_pieces(text, table);
        }
        if format == Format::Code {
            let items = code::items(text);
            return self.pack(text, &items, None);
        }
        let sections = if format == Format::Markdown {
            markdown::sections(text)
        } else if !page.headings.is_empty() {
            markdown::sections_from_headings(
                text.len(),
                page.headings
                    .iter()
                    .filter(|h| h.offset <= text.len() && text.is_char_boundary(h.offset))
                    .map(|h| (h.offset, usize::from(h.level), h.text.clone())),
            )
        } else {
            vec![Section {
                start: 0,
                end: text.len(),
                heading_path: Vec::new(),
            }]
        };
        let mut out = Vec::new();
        for section in sections {
            let slice = &text[section.start..section.end];
            for w in self.windows(slice, self.config.max_tokens) {
                out.push(Piece {
                    start: section.start + w.start,
                    end: section.start + w.end,
                    tokens: w.tokens,
                    heading_path: section.heading_path.clone(),
                    header: None,
                    spans: None,
                });
            }
        }
        out
    }

    /// Table rows packed into chunks, never cut inside a row unless one row
    /// alone is too long; chunks after the header row repeat it first, when
    /// it takes at most half of `max_tokens`.
    fn table_pieces(&self, text: &str, table: &TableLayout) -> Vec<Piece> {
        let rows: Vec<(usize, usize)> = table
            .rows
            .iter()
            .filter(|r| r.start <= r.end && r.end <= text.len())
            .filter(|r| text.is_char_boundary(r.start) && text.is_char_boundary(r.end))
            .map(|r| (r.start, r.end))
            .collect();
        let header = table
            .header
            .filter(|h| {
                h.end <= text.len()
                    && text.is_char_boundary(h.start)
                    && text.is_char_boundary(h.end)
            })
            .map(|h| (h.end, text[h.start..h.end].trim().to_string()))
            .filter(|(_, h)| !h.is_empty());
        let mut pieces = self.pack(
            text,
            &rows,
            header.as_ref().map(|(end, h)| (*end, h.as_str())),
        );
        // Map span indices back to the layout's rows.
        let kept: Vec<usize> = table
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| rows.contains(&(r.start, r.end)))
            .map(|(i, _)| i)
            .collect();
        for piece in &mut pieces {
            piece.spans = piece.spans.map(|(a, b)| (kept[a], kept[b]));
        }
        pieces
    }

    /// Packs consecutive spans (byte ranges covering their part of `text`)
    /// into pieces of at most `max_tokens` tokens. With a `header` (`(end
    /// of the header row, its text)`), a piece that starts at or after that
    /// end begins with the header. A span too long for a piece of its own
    /// is cut into token windows.
    fn pack(
        &self,
        text: &str,
        spans: &[(usize, usize)],
        header: Option<(usize, &str)>,
    ) -> Vec<Piece> {
        let max = self.config.max_tokens;
        let header = header.and_then(|(end, h)| {
            let tokens = self.count_tokens(h);
            (tokens > 0 && tokens <= max / 2).then_some((end, h, tokens))
        });
        let inputs: Vec<&str> = spans.iter().map(|&(a, b)| &text[a..b]).collect();
        let counts: Vec<usize> = match self.tokenizer.encode_batch_fast(inputs.clone(), false) {
            Ok(encodings) => encodings.iter().map(|e| e.len()).collect(),
            Err(_) => inputs.iter().map(|t| self.count_tokens(t)).collect(),
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < spans.len() {
            let prefix = header.filter(|&(end, _, _)| spans[i].0 >= end);
            let budget = max - prefix.map_or(0, |(_, _, t)| t);
            let mut j = i;
            let mut sum = 0;
            while j < spans.len() && sum + counts[j] <= budget {
                sum += counts[j];
                j += 1;
            }
            // Whitespace-only spans cost nothing: take them along.
            while j < spans.len() && counts[j] == 0 {
                j += 1;
            }
            loop {
                if j <= i {
                    break;
                }
                let (a, b) = trim(text, spans[i].0, spans[j - 1].1);
                if a == b {
                    break;
                }
                let full = match prefix {
                    Some((_, h, _)) => format!("{h}\n{}", &text[a..b]),
                    None => text[a..b].to_string(),
                };
                let tokens = self.count_tokens(&full);
                if tokens <= max {
                    out.push(Piece {
                        start: a,
                        end: b,
                        tokens,
                        heading_path: Vec::new(),
                        header: prefix.map(|(_, h, _)| h.to_string()),
                        spans: Some((i, j - 1)),
                    });
                    break;
                }
                if j == i + 1 {
                    j = i;
                    break;
                }
                j -= 1;
            }
            if j <= i {
                // One span alone is too long: cut it into windows.
                let (a, b) = spans[i];
                let slice = &text[a..b];
                for w in self.windows(slice, budget) {
                    let (start, end) = (a + w.start, a + w.end);
                    let (header_text, tokens) = match prefix {
                        Some((_, h, _)) => {
                            let tokens = self.count_tokens(&format!("{h}\n{}", &text[start..end]));
                            if tokens <= max {
                                (Some(h.to_string()), tokens)
                            } else {
                                (None, w.tokens)
                            }
                        }
                        None => (None, w.tokens),
                    };
                    out.push(Piece {
                        start,
                        end,
                        tokens,
                        heading_path: Vec::new(),
                        header: header_text,
                        spans: Some((i, i)),
                    });
                }
                j = i + 1;
            }
            i = j;
        }
        out
    }

    /// The chunk windows of one section, as trimmed byte ranges into `text`.
    fn windows(&self, text: &str, max: usize) -> Vec<Window> {
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
                let k = self.cut(text, &units, &cum, at, max);
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
                    let (k, window) = self.shrink(text, &units, &cum, at, k, tokens, max);
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
    fn cut(&self, text: &str, units: &[Unit], cum: &[usize], i: usize, max: usize) -> usize {
        let limit = cum[i] + max;
        let fits = cum.partition_point(|&c| c <= limit) - 1;
        let j = fits.max(i + 1);
        if j == units.len() {
            j
        } else {
            self.choose_cut(text, units, cum, i, j, max)
        }
    }

    /// Moves the end of the window `i..k`, whose own text has `tokens` tokens,
    /// back until the text fits in `max_tokens` or holds a single unit.
    #[allow(clippy::too_many_arguments)]
    fn shrink(
        &self,
        text: &str,
        units: &[Unit],
        cum: &[usize],
        i: usize,
        mut k: usize,
        mut tokens: usize,
        max: usize,
    ) -> (usize, Window) {
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
    fn choose_cut(
        &self,
        text: &str,
        units: &[Unit],
        cum: &[usize],
        i: usize,
        j: usize,
        max: usize,
    ) -> usize {
        let quarter_in = cum[i] + (max * 3).div_ceil(4);
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

/// Converts byte offsets into 1-based line numbers, walking from the
/// previous answer.
#[derive(Debug, Default)]
struct LineCursor {
    byte: usize,
    newlines: usize,
}

impl LineCursor {
    /// The line holding the byte at `byte`; at a line's end (just after its
    /// last char, or at the end of the text) that line.
    fn seek(&mut self, text: &str, byte: usize) -> u32 {
        if byte >= self.byte {
            self.newlines += text.as_bytes()[self.byte..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        } else {
            self.newlines -= text.as_bytes()[byte..self.byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        }
        self.byte = byte;
        u32::try_from(self.newlines + 1).unwrap_or(u32::MAX)
    }
}

/// Where a piece of `page` is, for citations.
fn location(
    format: Format,
    page: &Page,
    piece: &Piece,
    lines: impl FnOnce() -> (u32, u32),
) -> Location {
    let rows = || {
        let (table, (a, b)) = (page.table.as_ref()?, piece.spans?);
        Some((table.rows.get(a)?.row, table.rows.get(b)?.row))
    };
    match &page.anchor {
        PageAnchor::Page { number } => Location::Page { number: *number },
        PageAnchor::Slide { number, title } => Location::Slide {
            number: *number,
            title: title.clone(),
        },
        PageAnchor::Chapter { number, title } => Location::Chapter {
            number: *number,
            title: title.clone(),
        },
        PageAnchor::Sheet { name } => {
            let (first_row, last_row) = rows().unwrap_or((0, 0));
            Location::Sheet {
                name: name.clone(),
                first_row,
                last_row,
            }
        }
        PageAnchor::Document => match (page.number, format) {
            (Some(number), Format::Pdf) => Location::Page { number },
            (Some(number), Format::Pptx) => Location::Slide {
                number,
                title: None,
            },
            _ => {
                if let Some((first, last)) = rows() {
                    Location::Rows { first, last }
                } else if matches!(format, Format::Text | Format::Markdown | Format::Code) {
                    let (first, last) = lines();
                    Location::Lines { first, last }
                } else {
                    Location::Document
                }
            }
        },
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
    fn line_cursor_counts_newlines_both_ways() {
        let text = "a\nb\n\nc";
        let mut c = LineCursor::default();
        assert_eq!(c.seek(text, 0), 1);
        assert_eq!(c.seek(text, text.len()), 4);
        assert_eq!(c.seek(text, 2), 2);
        assert_eq!(c.seek(text, 1), 1);
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
