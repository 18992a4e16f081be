//! Lectern's ingestion: from files on disk to pages to chunks ready to embed
//! and index.
//!
//! The pipeline has three steps, each usable on its own:
//!
//! 1. [`discover`] expands the files and folders a user picked into the list
//!    of supported files ([`Discovery`]), saying why anything was passed over.
//! 2. [`parse_file`] (or [`parse_file_with`] and its [`ParseOptions`]) reads
//!    one file into a [`ParsedDocument`]: its [`Page`]s of text, a title, a
//!    BLAKE3 content hash, and warnings such as PDF pages that have no text
//!    layer. Each page says what it stands for ([`PageAnchor`]): a PDF page
//!    or a slide (numbered from 1), a sheet, an e-book chapter, or the whole
//!    document; it may carry headings known from the document's structure
//!    ([`HeadingMark`]), a table's rows ([`TableLayout`]), and whether its
//!    text came from OCR.
//! 3. A [`Chunker`] splits a parsed document into [`Chunk`]s of at most
//!    [`ChunkConfig::max_tokens`] tokens, counted with the embedding model's
//!    own tokenizer. A chunk never spans two pages nor crosses a heading; a
//!    table chunk holds whole rows and starts with the header row repeated;
//!    a source-code chunk ends between top-level items where it can. A chunk
//!    records its format, page, heading path, exact `char` range in the page
//!    text, a [`Location`] (page, slide, sheet and rows, chapter, or lines),
//!    whether it is OCR text, and gives a citation label with
//!    [`Chunk::location_label`] (`"p. 3"`, `"slide 4 — Title"`,
//!    `"Sheet1 rows 2–41"`, `"ch. 2 — Title"`).
//!
//! Formats are recognised by extension ([`detect_format`]):
//!
//! | format | read with | pages |
//! | --- | --- | --- |
//! | text, Markdown, source code | the file's UTF-8 / UTF-16 | one |
//! | PDF | `pdf_oxide`; `pdf-extract` as fallback; Tesseract OCR for scans | one per page |
//! | DOCX, PPTX | `office_oxide` | one; one per slide, with speaker notes |
//! | XLSX, XLSM, XLSB, XLS, ODS | `calamine` (`office_oxide` for sheets it rejects) | one per sheet |
//! | CSV, TSV | `csv` | one |
//! | HTML | `dom_query`, main content by markup | one |
//! | EPUB | `rbook`, chapters through the HTML reader | one per chapter |
//!
//! Scanned PDF pages are recognised with the `tesseract` program (rendered by
//! `pdftoppm`), run as a child process with a time limit; without it they are
//! reported as needing OCR, never silently empty. Parsers can panic on
//! unusual files; every parse runs under `catch_unwind`, so a panic becomes
//! [`IngestError::Panicked`] for that one file (or a warning for that one
//! page) and a file that cannot be read becomes [`IngestError::Parse`]
//! naming it, instead of taking the process down.
//!
//! The crate is synchronous and holds no global state beyond a
//! once-per-process look at which OCR languages are installed: callers run
//! it on worker threads and may parse many files in parallel.
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
//!         println!("{:?} [{}]: {}", doc.title, chunk.location_label(), chunk.text);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod chunk;
mod code;
mod discover;
mod epub;
mod error;
mod format;
mod html;
mod location;
mod markdown;
mod ocr;
mod office;
mod parse;
mod pdf;
mod sheet;

pub use chunk::{Chunk, ChunkConfig, Chunker, MIN_MAX_TOKENS};
pub use discover::{discover, Discovery};
pub use error::IngestError;
pub use format::{code_language, detect_format, Format};
pub use location::Location;
pub use parse::{
    parse_bytes, parse_file, parse_file_observed, parse_file_with, HeadingMark, OcrMode, Page,
    PageAnchor, ParseOptions, ParseProgress, ParsedDocument, TableLayout, TableRow,
};
