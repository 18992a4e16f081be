//! Parses and chunks one file, printing what came out and how long it took.
//!
//! ```text
//! cargo run -p lectern-ingest --example chunk_file -- <file> [max_tokens] [overlap_tokens] [chunks_to_show]
//! ```
//!
//! The tokenizer is read from
//! `$LECTERN_MODELS_DIR/all-MiniLM-L6-v2/tokenizer.json`, with
//! `LECTERN_MODELS_DIR` defaulting to `$HOME/.cache/lectern/models`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lectern_ingest::{parse_file, ChunkConfig, Chunker};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        return Err(
            "usage: chunk_file <file> [max_tokens] [overlap_tokens] [chunks_to_show]".into(),
        );
    };
    let defaults = ChunkConfig::default();
    let config = ChunkConfig {
        max_tokens: args.get(1).map_or(Ok(defaults.max_tokens), |a| a.parse())?,
        overlap_tokens: args
            .get(2)
            .map_or(Ok(defaults.overlap_tokens), |a| a.parse())?,
    };
    let show: usize = args.get(3).map_or(Ok(3), |a| a.parse())?;

    let models = match std::env::var_os("LECTERN_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?)
            .join(".cache/lectern/models"),
    };
    let chunker =
        Chunker::from_tokenizer_file(&models.join("all-MiniLM-L6-v2/tokenizer.json"), config)?;

    let started = Instant::now();
    let doc = parse_file(Path::new(file))?;
    let parsed_in = started.elapsed();
    let chunks = chunker.chunk(&doc);
    let chunked_in = started.elapsed() - parsed_in;

    println!(
        "{} ({}, {:?}): {} pages/sections, {} chars, {} chunks; parsed in {parsed_in:.2?}, chunked in {chunked_in:.2?}",
        doc.path.display(),
        doc.format,
        doc.title.as_deref().unwrap_or(""),
        doc.pages.len(),
        doc.char_count(),
        chunks.len(),
    );
    for warning in &doc.warnings {
        println!("warning: {warning}");
    }
    for chunk in chunks.iter().take(show) {
        println!(
            "--- #{} [{}] chars {}..{} ({} tokens)\n{}",
            chunk.ordinal,
            chunk.location_label(),
            chunk.char_start,
            chunk.char_end,
            chunk.token_count,
            chunk.text
        );
    }
    Ok(())
}
