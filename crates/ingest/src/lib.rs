//! Lectern's ingestion: from files on disk to pages to chunks ready to embed
//! and index.
//!
//! The pipeline has three steps, each usable on its own:
//!
//! 1. [`discover`] expands the files and folders a user picked into the list
//!    of supported files ([`Discovery`]), saying why anything was passed over.
//! 2. [`parse_file`] reads one file into a [`ParsedDocument`]: its [`Page`]s
//!    of text (one per PDF page, numbered from 1; a single unnumbered page for
//!    text and Markdown), a title, a BLAKE3 content hash, and warnings such as
//!    PDF pages that have no text layer and need OCR.
//! 3. A [`Chunker`] splits a parsed document into [`Chunk`]s of at most
//!    [`ChunkConfig::max_tokens`] tokens, counted with the embedding model's
//!    own tokenizer. A chunk never spans two pages nor, in Markdown, a
//!    heading; it records its page, its heading path and its exact `char`
//!    range in the page text, so answers can cite page and passage.
//!
//! Formats are recognised by extension ([`detect_format`]): plain text,
//! Markdown and PDF. PDF text comes from `pdf_oxide`, a pure-Rust parser.
//! Parsers can panic on unusual files; every parse runs under
//! `catch_unwind`, so a panic becomes [`IngestError::Panicked`] for that one
//! file (or a warning for that one page) instead of taking the process down.
//!
//! The crate is synchronous and holds no global state: callers run it on
//! worker threads and may parse many files in parallel.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use lectern_ingest::{discover, parse_file, ChunkConfig, Chunker};
//!
//! # fn main() -> Result<(), lectern_ingest::IngestError> {
//! let chunker = Chunker::from_tokenizer_file(
//!     Path::new("models/all-MiniLM-L6-v2/tokenizer.json"),
//!     ChunkConfig::default(),
//! )?;
//! let found = discover(&[PathBuf::from("docs")]);
//! for path in &found.files {
//!     let doc = parse_file(path)?;
//!     for chunk in chunker.chunk(&doc) {
//!         println!("{:?} p.{:?}: {}", doc.title, chunk.page, chunk.text);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod chunk;
mod discover;
mod error;
mod format;
mod markdown;
mod parse;
mod pdf;

pub use chunk::{Chunk, ChunkConfig, Chunker, MIN_MAX_TOKENS};
pub use discover::{discover, Discovery};
pub use error::IngestError;
pub use format::{detect_format, Format};
pub use parse::{parse_file, Page, ParsedDocument};
