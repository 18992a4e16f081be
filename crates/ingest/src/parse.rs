//! Reading files into [`ParsedDocument`]s: one page per PDF page, slide,
//! sheet or chapter; one page for a whole text, Markdown, Word, web page,
//! CSV or source file.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::discover::unsupported_reason;
use crate::{detect_format, epub, html, markdown, office, pdf, sheet, Format, IngestError};

/// What a page stands for in its document: the anchor a citation points at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageAnchor {
    /// The whole document (text, Markdown, Word, web page, CSV, source code).
    #[default]
    Document,
    /// A PDF page, numbered from 1.
    Page {
        /// The 1-based page number.
        number: u32,
    },
    /// A presentation slide, numbered from 1.
    Slide {
        /// The 1-based slide number.
        number: u32,
        /// The slide's title, when it has one.
        title: Option<String>,
    },
    /// A spreadsheet sheet.
    Sheet {
        /// The sheet's name as shown on its tab.
        name: String,
    },
    /// An e-book chapter (a document of the EPUB spine), numbered from 1.
    Chapter {
        /// The 1-based position among the book's chapters that hold text.
        number: u32,
        /// The chapter's title from the table of contents or its first heading.
        title: Option<String>,
    },
}

/// A heading inside a page's text, for formats whose headings are known
/// from their structure (Word, web pages, e-books, speaker notes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadingMark {
    /// Byte offset in [`Page::text`] where the heading's line starts.
    pub offset: usize,
    /// Heading level, 1 (outermost) to 6.
    pub level: u8,
    /// The heading's text.
    pub text: String,
}

/// One row of a table page: where its line lies in [`Page::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRow {
    /// The row's number in its sheet or file, counting from 1 as a
    /// spreadsheet program shows it.
    pub row: u32,
    /// Byte offset where the row's line starts.
    pub start: usize,
    /// Byte offset where the row's line ends, before its line break.
    pub end: usize,
}

/// The row structure of a page that is a table (a sheet or a CSV file):
/// every line of the page text is one row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLayout {
    /// The header row, repeated at the start of every chunk that begins
    /// after it.
    pub header: Option<TableRow>,
    /// Every row, the header included, in order.
    pub rows: Vec<TableRow>,
}

/// One page of a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The 1-based page number for PDFs and the slide number for
    /// presentations; `None` for the other formats, whose pages are a whole
    /// document, a sheet or a chapter (see [`Page::anchor`]).
    pub number: Option<u32>,
    /// The page's text; empty for a PDF page without a text layer or that
    /// could not be read (see [`ParsedDocument::warnings`]).
    pub text: String,
    /// What the page stands for: the document, a PDF page, a slide, a sheet
    /// or a chapter.
    #[serde(default)]
    pub anchor: PageAnchor,
    /// Whether the text was recognised by OCR from a scanned page rather
    /// than read from a text layer.
    #[serde(default)]
    pub ocr: bool,
    /// Headings known from the document's structure, in order. Markdown
    /// headings are found when chunking and are not listed here.
    #[serde(default)]
    pub headings: Vec<HeadingMark>,
    /// The row structure, for a page that is a table.
    #[serde(default)]
    pub table: Option<TableLayout>,
}

impl Page {
    /// A page with the given number and text and nothing else known.
    pub fn new(number: Option<u32>, text: String) -> Self {
        Page {
            number,
            text,
            ..Page::default()
        }
    }
}

/// A file read and split into pages, ready for chunking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedDocument {
    /// The path the file was read from, as given.
    pub path: PathBuf,
    /// The format the file was parsed as.
    pub format: Format,
    /// The first `# ` heading of a Markdown file, the title in a PDF's,
    /// Office file's or e-book's metadata, a web page's first `<h1>` or
    /// `<title>`, or else the file name without its extension.
    pub title: Option<String>,
    /// BLAKE3 hash of the file's bytes, in lowercase hex.
    pub content_hash: String,
    /// Size of the file in bytes.
    pub byte_len: u64,
    /// The pages, in order.
    pub pages: Vec<Page>,
    /// Problems that did not stop parsing, such as pages without a text
    /// layer, pages read by OCR, or bytes that were not valid UTF-8.
    pub warnings: Vec<String>,
}

impl ParsedDocument {
    /// Total number of `char`s over all pages.
    pub fn char_count(&self) -> usize {
        self.pages.iter().map(|p| p.text.chars().count()).sum()
    }
}

/// Whether scanned PDF pages are read with OCR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    /// OCR scanned pages when the `tesseract` and `pdftoppm` programs are
    /// installed; otherwise report them as needing OCR.
    #[default]
    Auto,
    /// Never OCR; report scanned pages as needing OCR.
    Off,
}

/// How [`parse_file_with`] reads files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseOptions {
    /// Whether scanned PDF pages are OCRed.
    pub ocr: OcrMode,
    /// Tesseract languages joined by `+` (for example `"eng+deu"`). `None`
    /// uses English and German where installed, else the first installed
    /// language.
    pub ocr_languages: Option<String>,
    /// The longest one page may take to render and recognise; a page that
    /// takes longer is reported as needing OCR.
    pub ocr_page_timeout: Duration,
    /// Files larger than this are refused before they are read.
    pub max_file_bytes: u64,
    /// Zip-based files (Word, PowerPoint, spreadsheets, e-books) whose
    /// entries would unpack to more than this are refused before parsing.
    pub max_unpacked_bytes: u64,
    /// Zip-based files above 64 MiB unpacked that unpack to more than this
    /// many times their size are refused as decompression bombs.
    pub max_unpack_ratio: u64,
    /// How long a format parser may work on a file before the file is given
    /// up ([`IngestError::TimedOut`]), plus one second per MiB of file.
    /// OCR is not counted: each page has its own `ocr_page_timeout`.
    pub parse_time_limit: Duration,
}

/// Default for [`ParseOptions::max_file_bytes`]: 1 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// Default for [`ParseOptions::max_unpacked_bytes`]: 2 GiB.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 2 << 30;
/// Default for [`ParseOptions::parse_time_limit`]: one minute.
pub const DEFAULT_PARSE_TIME_LIMIT: Duration = Duration::from_secs(60);
/// Default for [`ParseOptions::max_unpack_ratio`].
pub const DEFAULT_MAX_UNPACK_RATIO: u64 = 100;
/// Archives that unpack to less than this are never called bombs.
const RATIO_FLOOR_BYTES: u64 = 64 << 20;

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            ocr: OcrMode::Auto,
            ocr_languages: None,
            ocr_page_timeout: Duration::from_secs(120),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_unpack_ratio: DEFAULT_MAX_UNPACK_RATIO,
            parse_time_limit: DEFAULT_PARSE_TIME_LIMIT,
        }
    }
}

impl ParseOptions {
    /// The time a parser gets for a file of `size` bytes:
    /// [`ParseOptions::parse_time_limit`] plus one second per MiB.
    pub fn time_limit_for(&self, size: u64) -> Duration {
        self.parse_time_limit
            .saturating_add(Duration::from_secs(size >> 20))
    }
}

/// Refuses a zip-based file whose entries would unpack to more than the
/// limit, or to a suspicious multiple of its own size. The sizes come from
/// the archive's central directory, so nothing is decompressed here; a file
/// that is not a zip archive (an old binary `.xls`) is left to its parser.
fn check_unpacked_size(
    path: &Path,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<(), IngestError> {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else {
        return Ok(());
    };
    let mut unpacked: u64 = 0;
    for i in 0..archive.len() {
        if let Ok(entry) = archive.by_index_raw(i) {
            unpacked = unpacked.saturating_add(entry.size());
        }
    }
    let too_large = |what: &str, limit: u64| IngestError::TooLarge {
        path: path.to_path_buf(),
        what: what.into(),
        size: unpacked,
        limit,
    };
    if unpacked > options.max_unpacked_bytes {
        return Err(too_large(
            "its unpacked contents",
            options.max_unpacked_bytes,
        ));
    }
    let packed = (bytes.len() as u64).max(1);
    let ratio_limit = packed.saturating_mul(options.max_unpack_ratio);
    if unpacked > RATIO_FLOOR_BYTES && unpacked > ratio_limit {
        return Err(too_large(
            &format!(
                "what it unpacks to ({}× its size, a likely decompression bomb)",
                unpacked / packed
            ),
            ratio_limit,
        ));
    }
    Ok(())
}

/// What a format parser hands back.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub pages: Vec<Page>,
    pub title: Option<String>,
    pub warnings: Vec<String>,
}

/// Reads and parses the file at `path` with the default [`ParseOptions`].
///
/// See [`parse_file_with`].
pub fn parse_file(path: &Path) -> Result<ParsedDocument, IngestError> {
    parse_file_with(path, &ParseOptions::default())
}

/// Reads and parses the file at `path`, choosing the parser by extension.
///
/// PDF pages without text keep their place so page numbers stay right.
/// Scanned pages are read by OCR when Tesseract is installed and
/// `options.ocr` allows it; their pages are marked [`Page::ocr`] and a
/// warning says so. Otherwise they keep empty text and a warning names
/// them: "pages 3, 4 have no text layer (needs OCR)"; "page 7 is blank" for
/// pages that paint nothing. Text and Markdown files that are not valid
/// UTF-8 are decoded with invalid bytes replaced by U+FFFD, with a warning.
///
/// A file that cannot be parsed is an [`IngestError::Parse`] naming it; a
/// parser that panics is contained and becomes [`IngestError::Panicked`]
/// for this file alone.
pub fn parse_file_with(path: &Path, options: &ParseOptions) -> Result<ParsedDocument, IngestError> {
    parse_file_observed(path, options, &|_| {})
}

/// A slow step inside parsing, reported while it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ParseProgress {
    /// A scanned PDF page is being read by OCR.
    OcrPage {
        /// The page's 1-based number.
        page: usize,
        /// Scanned pages of the file finished before this one.
        done: usize,
        /// Scanned pages in the file.
        total: usize,
    },
}

/// [`parse_file_with`], calling `observe` as slow steps (OCR pages) start.
pub fn parse_file_observed(
    path: &Path,
    options: &ParseOptions,
    observe: &dyn Fn(ParseProgress),
) -> Result<ParsedDocument, IngestError> {
    if detect_format(path).is_none() {
        return Err(IngestError::Unsupported {
            path: path.to_path_buf(),
            reason: unsupported_reason(path),
        });
    }
    let size = std::fs::metadata(path)
        .map_err(|e| IngestError::io(path, e))?
        .len();
    if size > options.max_file_bytes {
        return Err(IngestError::TooLarge {
            path: path.to_path_buf(),
            what: "the file".into(),
            size,
            limit: options.max_file_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| IngestError::io(path, e))?;
    parse_bytes(path, bytes, options, observe)
}

/// Parses a file's contents, read already, choosing the parser by the
/// extension of `path`. `path` names the file in errors and warnings, and
/// is where OCR renders scanned PDF pages from (when `options.ocr` allows
/// it). Everything else is as [`parse_file_with`], which calls this after
/// checking the file's size. `observe` hears of slow steps as they start.
pub fn parse_bytes(
    path: &Path,
    bytes: Vec<u8>,
    options: &ParseOptions,
    observe: &dyn Fn(ParseProgress),
) -> Result<ParsedDocument, IngestError> {
    let format = detect_format(path).ok_or_else(|| IngestError::Unsupported {
        path: path.to_path_buf(),
        reason: unsupported_reason(path),
    })?;
    let started = Instant::now();
    if bytes.len() as u64 > options.max_file_bytes {
        return Err(IngestError::TooLarge {
            path: path.to_path_buf(),
            what: "the file".into(),
            size: bytes.len() as u64,
            limit: options.max_file_bytes,
        });
    }
    if matches!(
        format,
        Format::Docx | Format::Pptx | Format::Spreadsheet | Format::Epub
    ) {
        check_unpacked_size(path, &bytes, options)?;
    }
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let byte_len = bytes.len() as u64;
    let limit = options.time_limit_for(byte_len);

    let extracted = match format {
        Format::Text | Format::Markdown | Format::Code => {
            let mut warnings = Vec::new();
            let text = decode_text(bytes, &mut warnings);
            let title = match format {
                Format::Markdown => markdown::title(&text),
                _ => None,
            };
            Extracted {
                pages: vec![Page::new(None, text)],
                title,
                warnings,
            }
        }
        Format::Pdf => {
            let text = contained(path, format, limit, move || pdf::extract_any(&bytes))?;
            pdf::finish(path, text, options, observe)
        }
        Format::Docx => contained(path, format, limit, move || office::parse_docx(&bytes))?,
        Format::Pptx => contained(path, format, limit, move || office::parse_pptx(&bytes))?,
        Format::Spreadsheet => {
            contained(path, format, limit, move || sheet::parse_workbook(&bytes))?
        }
        Format::Csv => {
            let tabs = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            contained(path, format, limit, move || sheet::parse_csv(&bytes, tabs))?
        }
        Format::Html => contained(path, format, limit, move || html::parse(&bytes))?,
        Format::Epub => contained(path, format, limit, move || epub::parse(&bytes))?,
    };
    let Extracted {
        pages,
        title,
        warnings,
    } = extracted;
    let title = title.or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
    });
    for w in &warnings {
        tracing::warn!(path = %path.display(), "{w}");
    }
    tracing::debug!(
        path = %path.display(),
        %format,
        pages = pages.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "parsed document"
    );
    Ok(ParsedDocument {
        path: path.to_path_buf(),
        format,
        title,
        content_hash,
        byte_len,
        pages,
        warnings,
    })
}

/// Stack size of a parser thread: deeply nested documents recurse deeply
/// in some parsers, and running out of stack would end the whole process.
const PARSER_STACK_BYTES: usize = 256 << 20;

/// Runs a format parser on its own thread under `catch_unwind`, for at most
/// `limit`: its error becomes [`IngestError::Parse`], its panic
/// [`IngestError::Panicked`] and running past the limit
/// [`IngestError::TimedOut`], each naming the file. A parser that runs past
/// its limit is left to finish on its own thread; its result is dropped.
fn contained<T: Send + 'static>(
    path: &Path,
    format: Format,
    limit: Duration,
    parse: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, IngestError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("lectern-parse-{format}"))
        .stack_size(PARSER_STACK_BYTES)
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(parse));
            // The caller may have given up waiting; nobody to tell then.
            let _ = tx.send(outcome);
        })
        .map_err(|e| IngestError::io(path, e))?;
    let outcome = match rx.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            tracing::error!(path = %path.display(), %format, limit_s = limit.as_secs(), "parser ran past its time limit");
            return Err(IngestError::TimedOut {
                path: path.to_path_buf(),
                format,
                limit,
            });
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err(IngestError::Panicked {
                path: path.to_path_buf(),
                message: "the parser thread ended without a result".into(),
            })
        }
    };
    outcome
        .map_err(|payload| {
            let message = panic_message(payload.as_ref());
            tracing::error!(path = %path.display(), %format, %message, "parser panicked");
            IngestError::Panicked {
                path: path.to_path_buf(),
                message,
            }
        })?
        .map_err(|message| IngestError::Parse {
            path: path.to_path_buf(),
            format,
            message,
        })
}

/// Decodes a text file: UTF-16 when it starts with a UTF-16 byte-order mark,
/// else UTF-8 with invalid bytes replaced. A leading byte-order mark is dropped.
pub(crate) fn decode_text(bytes: Vec<u8>, warnings: &mut Vec<String>) -> String {
    let utf16 = match bytes.get(..2) {
        Some([0xFF, 0xFE]) => Some(u16::from_le_bytes as fn([u8; 2]) -> u16),
        Some([0xFE, 0xFF]) => Some(u16::from_be_bytes as fn([u8; 2]) -> u16),
        _ => None,
    };
    if let Some(from_bytes) = utf16 {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| from_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16_lossy(&units);
        let replaced = text.matches('\u{FFFD}').count();
        if replaced > 0 || !bytes.len().is_multiple_of(2) {
            warnings.push(format!(
                "file is not valid UTF-16; {replaced} invalid sequence(s) replaced with U+FFFD"
            ));
        }
        return text;
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.into_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let replaced = text.matches('\u{FFFD}').count();
            warnings.push(format!(
                "file is not valid UTF-8; {replaced} invalid byte sequence(s) replaced with U+FFFD"
            ));
            text
        }
    };
    if text.starts_with('\u{FEFF}') {
        text.drain(..'\u{FEFF}'.len_utf8());
    }
    text
}

/// The message a panic carried, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".to_string()
    }
}

/// Builds a page's text block by block, recording headings, for the
/// structured formats (Word, slides, web pages, e-books).
#[derive(Debug, Default)]
pub(crate) struct TextBuilder {
    pub text: String,
    pub headings: Vec<HeadingMark>,
}

impl TextBuilder {
    /// Starts a new paragraph-level block: a blank line after what came before.
    fn open_block(&mut self) {
        let trimmed = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(trimmed);
        if self.text.is_empty() {
            return;
        }
        while !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Starts a new line within the current block.
    pub fn open_line(&mut self) {
        let trimmed = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(trimmed);
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    /// Adds a heading as its own block, recorded at its offset. Blank
    /// headings are left out.
    pub fn heading(&mut self, level: u8, text: &str) {
        let text = collapse_whitespace(text);
        if text.is_empty() {
            return;
        }
        self.open_block();
        self.headings.push(HeadingMark {
            offset: self.text.len(),
            level: level.clamp(1, 6),
            text: text.clone(),
        });
        self.text.push_str(&text);
        self.open_block();
    }

    /// Adds a paragraph as its own block; lines within it are kept.
    pub fn paragraph(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.open_block();
        self.text.push_str(text);
    }

    /// Adds one line (a list item or a table row) to the current block.
    pub fn line(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.open_line();
        self.text.push_str(text);
    }

    /// Ends the current block, so that the next line starts a new one.
    pub fn end_block(&mut self) {
        self.open_block();
    }

    /// The finished text, without trailing whitespace.
    pub fn finish(mut self) -> (String, Vec<HeadingMark>) {
        let trimmed = self.text.trim_end().len();
        self.text.truncate(trimmed);
        self.headings.retain(|h| h.offset < self.text.len());
        (self.text, self.headings)
    }
}

/// Runs of whitespace become one space; the ends are trimmed.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_decoding_warns() {
        let mut warnings = Vec::new();
        let text = decode_text(b"ok \xff\xfe done".to_vec(), &mut warnings);
        assert!(text.starts_with("ok "));
        assert!(text.contains('\u{FFFD}'));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("not valid UTF-8"), "{warnings:?}");
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut warnings = Vec::new();
        let mut le = vec![0xFF, 0xFE];
        le.extend("Grüße 日本".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode_text(le, &mut warnings), "Grüße 日本");
        let mut be = vec![0xFE, 0xFF];
        be.extend("Grüße".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(be, &mut warnings), "Grüße");
        assert!(warnings.is_empty());
    }

    #[test]
    fn bom_is_dropped() {
        let mut warnings = Vec::new();
        let text = decode_text("\u{FEFF}# Hi".as_bytes().to_vec(), &mut warnings);
        assert_eq!(text, "# Hi");
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_parser_that_never_finishes_is_given_up_at_its_limit() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let path = Path::new("stuck.docx");
        let err = contained(path, Format::Docx, Duration::from_millis(200), move || {
            // Stands for a parser stuck in an endless loop: it only ends
            // when the test lets it go.
            let _ = wait.recv();
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(&err, IngestError::TimedOut { limit, format: Format::Docx, .. } if *limit == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(err.to_string().contains("stuck.docx"), "{err}");
        assert_eq!(err.path(), Some(path));
        drop(release);
    }

    #[test]
    fn parser_results_errors_and_panics_come_back_from_its_thread() {
        let path = Path::new("a.html");
        let limit = Duration::from_secs(30);
        assert_eq!(contained(path, Format::Html, limit, || Ok(7)).unwrap(), 7);
        let err = contained::<()>(path, Format::Html, limit, || Err("bad tag".into())).unwrap_err();
        assert!(
            matches!(&err, IngestError::Parse { message, .. } if message == "bad tag"),
            "{err:?}"
        );
        let err =
            contained::<()>(path, Format::Html, limit, || panic!("deep trouble")).unwrap_err();
        assert!(
            matches!(&err, IngestError::Panicked { message, .. } if message == "deep trouble"),
            "{err:?}"
        );
    }

    #[test]
    fn deep_recursion_in_a_parser_fits_its_stack() {
        fn depth(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 512]);
            if n == 0 {
                u32::from(pad[0])
            } else {
                1 + depth(n - 1) + u32::from(pad[1])
            }
        }
        // About 60 MiB of stack: more than a default thread has.
        let got = contained(
            Path::new("deep.epub"),
            Format::Epub,
            Duration::from_secs(60),
            || Ok(depth(100_000)),
        )
        .unwrap();
        assert_eq!(got, 100_000);
    }

    #[test]
    fn larger_files_get_more_time() {
        let options = ParseOptions::default();
        assert_eq!(options.time_limit_for(0), DEFAULT_PARSE_TIME_LIMIT);
        assert_eq!(
            options.time_limit_for(300 << 20),
            DEFAULT_PARSE_TIME_LIMIT + Duration::from_secs(300)
        );
    }

    #[test]
    fn panic_messages() {
        let p = catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 7");
        let p = catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static");
    }

    #[test]
    fn text_builder_blocks_lines_and_headings() {
        let mut b = TextBuilder::default();
        b.heading(1, "  Title \n here ");
        b.paragraph("First paragraph.");
        b.line("a | b");
        b.line("c | d");
        b.end_block();
        b.heading(2, "Sub");
        b.heading(3, "   ");
        b.paragraph("Body.");
        let (text, headings) = b.finish();
        assert_eq!(
            text,
            "Title here\n\nFirst paragraph.\na | b\nc | d\n\nSub\n\nBody."
        );
        assert_eq!(headings.len(), 2);
        assert_eq!(&text[headings[0].offset..][..10], "Title here");
        assert_eq!(&text[headings[1].offset..][..3], "Sub");
        assert_eq!(headings[1].level, 2);
    }
}
