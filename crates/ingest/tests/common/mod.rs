//! Helpers shared by the integration tests: where the real documents and the
//! real tokenizer live, and the invariants every chunking must satisfy.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lectern_ingest::{Chunk, ChunkConfig, Chunker, Format, ParsedDocument};

/// The evaluation documents, at `<repository>/../shared/eval/docs`.
pub fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/docs")
}

/// A document under [`docs_dir`], checked to exist.
pub fn doc(relative: &str) -> PathBuf {
    let path = docs_dir().join(relative);
    assert!(
        path.is_file(),
        "evaluation document {} is missing; the shared folder should sit next to the repository",
        path.display()
    );
    path
}

/// The all-MiniLM-L6-v2 `tokenizer.json`, under `$LECTERN_MODELS_DIR`
/// (default `$HOME/.cache/lectern/models`).
pub fn tokenizer_path() -> PathBuf {
    let dir = match std::env::var_os("LECTERN_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .or_else(|| std::env::var_os("USERPROFILE"))
                .expect("neither LECTERN_MODELS_DIR nor HOME is set");
            PathBuf::from(home).join(".cache/lectern/models")
        }
    };
    let path = dir.join("all-MiniLM-L6-v2/tokenizer.json");
    assert!(
        path.is_file(),
        "tokenizer not found at {}: run models/provision.sh, or point LECTERN_MODELS_DIR \
         at a folder holding all-MiniLM-L6-v2/tokenizer.json",
        path.display()
    );
    path
}

pub fn chunker(config: ChunkConfig) -> Chunker {
    Chunker::from_tokenizer_file(&tokenizer_path(), config).expect("load tokenizer")
}

/// Checks every documented chunk invariant of `chunks` against `doc`.
pub fn check_invariants(doc: &ParsedDocument, chunks: &[Chunk], chunker: &Chunker) {
    let config = chunker.config();
    let name = doc.path.display().to_string();
    let mut previous: Option<&Chunk> = None;
    // Per page: char offset -> byte offset, and how far chunks have covered it.
    let mut page_index = usize::MAX;
    let mut bytes_at: Vec<usize> = Vec::new();
    let mut covered = 0usize;

    let check_gap = |text: &str, bytes_at: &[usize], from: usize, to: usize, what: &str| {
        if from < to {
            let gap = &text[bytes_at[from]..bytes_at[to]];
            assert!(
                gap.trim().is_empty(),
                "{name}: non-whitespace text {what} not covered by any chunk: {:?}",
                truncate(gap)
            );
        }
    };

    for (n, chunk) in chunks.iter().enumerate() {
        assert_eq!(
            chunk.ordinal as usize, n,
            "{name}: ordinals must count up from 0"
        );
        let index = chunk.page_index as usize;
        match (doc.format, chunk.page) {
            (Format::Pdf | Format::Pptx, Some(number)) => {
                assert!(number >= 1, "{name}: page numbers start at 1");
                assert_eq!(number as usize, index + 1, "{name}: page number and index");
            }
            (Format::Pdf | Format::Pptx, None) => panic!("{name}: PDF chunk without a page"),
            (_, None) => {}
            (_, Some(p)) => panic!("{name}: text chunk with page {p}"),
        }
        assert_eq!(chunk.format, doc.format, "{name}: chunk format");
        let page = &doc.pages[index];
        assert_eq!(chunk.ocr, page.ocr, "{name}: chunk OCR flag");
        assert_eq!(page.number, chunk.page);
        if index != page_index {
            if page_index != usize::MAX {
                let text = &doc.pages[page_index].text;
                check_gap(
                    text,
                    &bytes_at,
                    covered,
                    bytes_at.len() - 1,
                    "at a page end",
                );
                for skipped in &doc.pages[page_index + 1..index] {
                    assert!(
                        skipped.text.trim().is_empty(),
                        "{name}: a page with text has no chunk"
                    );
                }
            } else {
                for skipped in &doc.pages[..index] {
                    assert!(
                        skipped.text.trim().is_empty(),
                        "{name}: a page with text has no chunk"
                    );
                }
            }
            assert!(
                index > page_index || page_index == usize::MAX,
                "{name}: pages out of order"
            );
            page_index = index;
            bytes_at = page.text.char_indices().map(|(b, _)| b).collect();
            bytes_at.push(page.text.len());
            covered = 0;
            previous = None;
        }

        // Offsets reproduce the text exactly.
        assert!(chunk.char_start < chunk.char_end, "{name}: empty chunk {n}");
        assert!(
            chunk.char_end < bytes_at.len(),
            "{name}: chunk {n} ends past its page"
        );
        let slice = &page.text[bytes_at[chunk.char_start]..bytes_at[chunk.char_end]];
        let own: String = chunk
            .text
            .chars()
            .skip(chunk.repeated_header_chars)
            .collect();
        assert_eq!(
            slice, own,
            "{name}: chunk {n} offsets do not match its text"
        );
        if chunk.repeated_header_chars > 0 {
            let header: String = chunk
                .text
                .chars()
                .take(chunk.repeated_header_chars)
                .collect();
            assert!(header.ends_with('\n'), "{name}: header ends its line");
            assert!(
                page.text.contains(header.trim_end()),
                "{name}: repeated header is not from the page"
            );
        }
        assert_eq!(
            chunk.text.trim(),
            chunk.text,
            "{name}: chunk {n} is not trimmed"
        );

        // Token bounds.
        assert!(chunk.token_count > 0, "{name}: chunk {n} has no tokens");
        assert!(
            chunk.token_count <= config.max_tokens,
            "{name}: chunk {n} has {} tokens, over {}",
            chunk.token_count,
            config.max_tokens
        );
        assert_eq!(
            chunk.token_count,
            chunker.count_tokens(&chunk.text),
            "{name}: chunk {n} token_count is not the chunk's own count"
        );

        // Consecutive chunks overlap or are contiguous, move forward, and
        // overlap by at most the configured number of tokens.
        if let Some(prev) = previous {
            assert!(
                chunk.char_start > prev.char_start && chunk.char_end > prev.char_end,
                "{name}: chunk {n} does not move forward"
            );
            if chunk.char_start < prev.char_end && chunk.heading_path == prev.heading_path {
                let (from, to) = (bytes_at[chunk.char_start], bytes_at[prev.char_end]);
                let shared_tokens = chunker.count_tokens(&page.text[from..to]);
                // Cut out of whole words, the shared text tokenizes as it did
                // within the page; cut inside a word, its end pieces may
                // split into a few more tokens on their own.
                let whole_words = page.text[..from].ends_with(char::is_whitespace)
                    && page.text[to..].starts_with(char::is_whitespace);
                let slack = if whole_words { 0 } else { 4 };
                assert!(
                    shared_tokens <= config.overlap_tokens + slack,
                    "{name}: chunks {} and {n} share {shared_tokens} tokens, over {}",
                    n - 1,
                    config.overlap_tokens
                );
            }
        }
        check_gap(
            &page.text,
            &bytes_at,
            covered,
            chunk.char_start,
            "between chunks",
        );
        covered = covered.max(chunk.char_end);
        previous = Some(chunk);
    }

    if page_index != usize::MAX {
        let text = &doc.pages[page_index].text;
        check_gap(
            text,
            &bytes_at,
            covered,
            bytes_at.len() - 1,
            "at a page end",
        );
        for rest in &doc.pages[page_index + 1..] {
            assert!(
                rest.text.trim().is_empty(),
                "{name}: a page with text has no chunk"
            );
        }
    } else {
        for page in &doc.pages {
            assert!(page.text.trim().is_empty(), "{name}: text but no chunks");
        }
    }

    // The documented formula, literally, on a few chunks.
    for chunk in chunks.iter().step_by((chunks.len() / 5).max(1)).take(6) {
        let text: String = doc.pages[chunk.page_index as usize]
            .text
            .chars()
            .skip(chunk.char_start)
            .take(chunk.char_end - chunk.char_start)
            .collect();
        let own: String = chunk
            .text
            .chars()
            .skip(chunk.repeated_header_chars)
            .collect();
        assert_eq!(text, own);
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}
