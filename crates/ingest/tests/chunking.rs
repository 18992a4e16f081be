//! Chunking real documents with the real all-MiniLM-L6-v2 tokenizer.

mod common;

use common::{check_invariants, chunker, doc, tokenizer_path};
use lectern_ingest::{parse_file, ChunkConfig, Chunker, IngestError};

fn small() -> ChunkConfig {
    ChunkConfig {
        max_tokens: 48,
        overlap_tokens: 12,
    }
}

#[test]
fn invariants_hold_on_real_documents() {
    let default = chunker(ChunkConfig::default());
    let small = chunker(small());
    let no_overlap = chunker(ChunkConfig {
        max_tokens: 64,
        overlap_tokens: 0,
    });
    for name in [
        "md/rust-book-ch03-02-data-types.md",
        "md/rust-book-ch08-02-strings.md",
        "md/rust-book-appendix-02-operators.md",
        "txt/udhr-article1-all-languages.txt",
        "pdf/acmart-sample-sigconf-2col.pdf",
        "pdf/habibi-arabic.pdf",
        "pdf/scanned-multipage-mixed.pdf",
    ] {
        let parsed = parse_file(&doc(name)).unwrap();
        for chunker in [&default, &small, &no_overlap] {
            let chunks = chunker.chunk(&parsed);
            assert!(!chunks.is_empty(), "{name}: no chunks");
            check_invariants(&parsed, &chunks, chunker);
        }
    }
}

#[test]
fn invariants_hold_on_a_long_cjk_pdf() {
    // Japanese has no spaces between words, so windows end at sentence ends
    // or between tokens, which exercises the fallbacks.
    let parsed = parse_file(&doc("pdf/debian-reference.ja.pdf")).unwrap();
    let chunker = chunker(small());
    let chunks = chunker.chunk(&parsed);
    check_invariants(&parsed, &chunks, &chunker);
    let pages: std::collections::BTreeSet<_> = chunks.iter().filter_map(|c| c.page).collect();
    assert!(pages.len() > 260, "chunks on only {} pages", pages.len());
}

/// How chunks end: (share ending a sentence or a paragraph, share ending at
/// least at a line end).
fn ending_shares(page: &str, chunks: &[lectern_ingest::Chunk]) -> (f64, f64) {
    let bytes_at: Vec<usize> = page
        .char_indices()
        .map(|(b, _)| b)
        .chain([page.len()])
        .collect();
    let blanks: &[char] = &[' ', '\t', '\r', '\u{a0}'];
    let mut sentence = 0;
    let mut line = 0;
    for c in chunks {
        let rest = page[bytes_at[c.char_end]..].trim_start_matches(blanks);
        let line_end = rest.is_empty() || rest.starts_with('\n');
        let paragraph_end = rest.is_empty()
            || rest
                .strip_prefix('\n')
                .is_some_and(|r| r.trim_start_matches(blanks).starts_with('\n'));
        let sentence_end = c
            .text
            .trim_end_matches(['"', '\'', ')', '”', '’'])
            .ends_with(['.', '!', '?']);
        sentence += usize::from(sentence_end || paragraph_end);
        line += usize::from(sentence_end || line_end);
    }
    let n = chunks.len() as f64;
    (sentence as f64 / n, line as f64 / n)
}

#[test]
fn windows_prefer_paragraph_sentence_and_line_ends() {
    let chunker = chunker(ChunkConfig::default());
    for (name, min_sentence, min_line) in [
        // A manual full of tables and command listings.
        ("txt/debian-reference.en.txt", 0.3, 0.8),
        // A novel: prose in short paragraphs.
        ("txt/war-and-peace-maude.txt", 0.85, 0.95),
    ] {
        let parsed = parse_file(&doc(name)).unwrap();
        let chunks = chunker.chunk(&parsed);
        let (sentence, line) = ending_shares(&parsed.pages[0].text, &chunks);
        println!(
            "{name}: {:.1}% end a sentence or paragraph, {:.1}% at least a line",
            sentence * 100.0,
            line * 100.0
        );
        assert!(
            sentence >= min_sentence,
            "{name}: only {:.0}% of chunks end a sentence or paragraph",
            sentence * 100.0
        );
        assert!(
            line >= min_line,
            "{name}: only {:.0}% of chunks end at a line end",
            line * 100.0
        );
        // Windows use most of their budget.
        let mean = chunks.iter().map(|c| c.token_count).sum::<usize>() as f64 / chunks.len() as f64;
        println!("{name}: mean {mean:.0} tokens");
        assert!(
            mean > 0.75 * 192.0,
            "{name}: mean chunk is only {mean:.0} tokens"
        );
    }
}

#[test]
fn a_whole_novel_chunks_with_the_invariants_intact() {
    let path = doc("txt/war-and-peace-maude.txt");
    let chunker = chunker(ChunkConfig::default());
    let parsed = parse_file(&path).unwrap();
    let chunks = chunker.chunk(&parsed);
    assert!(chunks.len() > 4_000, "{} chunks", chunks.len());
    check_invariants(&parsed, &chunks, &chunker);
}

#[test]
fn pdf_chunks_stay_on_their_page() {
    let parsed = parse_file(&doc("pdf/dpr-paper-2col-tables.pdf")).unwrap();
    let chunker = chunker(ChunkConfig::default());
    let chunks = chunker.chunk(&parsed);
    check_invariants(&parsed, &chunks, &chunker);
    for chunk in &chunks {
        let page = &parsed.pages[chunk.page.unwrap() as usize - 1];
        assert!(page.text.contains(&chunk.text));
    }
    let first_pages: Vec<u32> = chunks.iter().filter_map(|c| c.page).collect();
    assert!(first_pages.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(first_pages.last(), Some(&13));
}

#[test]
fn counts_exclude_special_tokens_and_ignore_tokenizer_limits() {
    // The tokenizer file truncates and pads to 128 tokens; the chunker must
    // not.
    let chunker = chunker(ChunkConfig::default());
    assert_eq!(chunker.count_tokens("hello world"), 2);
    assert_eq!(chunker.count_tokens(""), 0);
    let long = "word ".repeat(300);
    assert_eq!(chunker.count_tokens(&long), 300);
}

#[test]
fn invalid_configs_are_rejected() {
    for (max_tokens, overlap_tokens) in [(8, 0), (15, 2), (64, 32), (192, 96), (192, 500)] {
        let config = ChunkConfig {
            max_tokens,
            overlap_tokens,
        };
        match Chunker::from_tokenizer_file(&tokenizer_path(), config) {
            Err(IngestError::InvalidConfig(message)) => assert!(!message.is_empty()),
            other => panic!("({max_tokens}, {overlap_tokens}) accepted: {other:?}"),
        }
    }
    let missing = std::path::Path::new("/nonexistent/tokenizer.json");
    match Chunker::from_tokenizer_file(missing, ChunkConfig::default()) {
        Err(e @ IngestError::Tokenizer(_)) => {
            assert!(e.to_string().contains("/nonexistent/tokenizer.json"))
        }
        other => panic!("expected a tokenizer error, got {other:?}"),
    }
}

#[test]
fn types_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Chunker>();
    assert_send_sync::<IngestError>();
    assert_send_sync::<lectern_ingest::ParsedDocument>();
    assert_send_sync::<lectern_ingest::Chunk>();
}

#[test]
fn default_config_is_192_with_32_overlap() {
    let config = ChunkConfig::default();
    assert_eq!((config.max_tokens, config.overlap_tokens), (192, 32));
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(json, r#"{"max_tokens":192,"overlap_tokens":32}"#);
}
