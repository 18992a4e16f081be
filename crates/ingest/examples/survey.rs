//! Parses and chunks every supported file under the given paths and prints
//! one line per file: format, pages (or slides, sheets, chapters), chunks,
//! OCR pages, warnings or the error, and the first chunks' location labels.
//!
//! ```text
//! cargo run -p lectern-ingest --example survey -- <path>...
//! ```
//!
//! The tokenizer is read as in the `chunk_file` example.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use lectern_ingest::{discover, parse_file, ChunkConfig, Chunker};

fn main() -> Result<(), Box<dyn Error>> {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err("usage: survey <path>...".into());
    }
    let models = match std::env::var_os("LECTERN_MODELS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?)
            .join(".cache/lectern/models"),
    };
    let chunker = Chunker::from_tokenizer_file(
        &models.join("all-MiniLM-L6-v2/tokenizer.json"),
        ChunkConfig::default(),
    )?;
    let found = discover(&paths);
    for (path, reason) in &found.skipped {
        println!("SKIPPED {}: {reason}", path.display());
    }
    let (mut ok, mut failed) = (0, 0);
    for path in &found.files {
        let started = Instant::now();
        match parse_file(path) {
            Ok(doc) => {
                ok += 1;
                let chunks = chunker.chunk(&doc);
                let ocr = doc.pages.iter().filter(|p| p.ocr).count();
                let labels: Vec<String> = chunks
                    .iter()
                    .step_by((chunks.len() / 3).max(1))
                    .take(3)
                    .map(|c| c.location_label())
                    .collect();
                println!(
                    "OK {} | {} | {} pages | {} chunks | {} OCR pages | {:.1} s | labels: {}",
                    path.display(),
                    doc.format,
                    doc.pages.len(),
                    chunks.len(),
                    ocr,
                    started.elapsed().as_secs_f64(),
                    labels.join(" ; ")
                );
                for w in &doc.warnings {
                    println!("    warning: {w}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAILED {}: {e}", path.display());
            }
        }
    }
    println!(
        "{ok} parsed, {failed} failed, {} skipped",
        found.skipped.len()
    );
    Ok(())
}
