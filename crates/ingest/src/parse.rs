//! Reading files into [`ParsedDocument`]s: one page per PDF page, one page for
//! a whole text or Markdown file.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::discover::unsupported_reason;
use crate::{detect_format, markdown, pdf, Format, IngestError};

/// One page of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The 1-based page number for PDFs; `None` for text and Markdown, whose
    /// whole content is a single page.
    pub number: Option<u32>,
    /// The page's text; empty for a PDF page without a text layer or that
    /// could not be read (see [`ParsedDocument::warnings`]).
    pub text: String,
}

/// A file read and split into pages, ready for chunking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedDocument {
    /// The path the file was read from, as given.
    pub path: PathBuf,
    /// The format the file was parsed as.
    pub format: Format,
    /// The first `# ` heading of a Markdown file, the title in a PDF's
    /// metadata, or else the file name without its extension.
    pub title: Option<String>,
    /// BLAKE3 hash of the file's bytes, in lowercase hex.
    pub content_hash: String,
    /// Size of the file in bytes.
    pub byte_len: u64,
    /// The pages, in order.
    pub pages: Vec<Page>,
    /// Problems that did not stop parsing, such as pages without a text
    /// layer or bytes that were not valid UTF-8.
    pub warnings: Vec<String>,
}

impl ParsedDocument {
    /// Total number of `char`s over all pages.
    pub fn char_count(&self) -> usize {
        self.pages.iter().map(|p| p.text.chars().count()).sum()
    }
}

/// Reads and parses the file at `path`, choosing the parser by extension.
///
/// PDF pages without text keep their place (with empty text) so page numbers
/// stay right, and a warning names them: "pages 3, 4 have no text layer
/// (needs OCR)" for scans, "page 7 is blank" for pages that paint nothing. Text and Markdown files that are not
/// valid UTF-8 are decoded with invalid bytes replaced by U+FFFD, with a
/// warning. A parser that panics is contained: the panic becomes
/// [`IngestError::Panicked`] for this file alone.
pub fn parse_file(path: &Path) -> Result<ParsedDocument, IngestError> {
    let format = detect_format(path).ok_or_else(|| IngestError::Unsupported {
        path: path.to_path_buf(),
        reason: unsupported_reason(path),
    })?;
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| IngestError::io(path, e))?;
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let byte_len = bytes.len() as u64;

    let mut warnings = Vec::new();
    let (pages, title) = match format {
        Format::Text | Format::Markdown => {
            let text = decode_text(bytes, &mut warnings);
            let title = match format {
                Format::Markdown => markdown::title(&text),
                _ => None,
            };
            (vec![Page { number: None, text }], title)
        }
        Format::Pdf => {
            let extracted = catch_unwind(AssertUnwindSafe(|| pdf::extract(&bytes)))
                .map_err(|payload| {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(path = %path.display(), %message, "PDF parser panicked");
                    IngestError::Panicked {
                        path: path.to_path_buf(),
                        message,
                    }
                })?
                .map_err(|message| IngestError::Parse {
                    path: path.to_path_buf(),
                    format,
                    message,
                })?;
            warnings.extend(extracted.warnings);
            let pages: Vec<Page> = extracted
                .pages
                .into_iter()
                .enumerate()
                .map(|(i, text)| Page {
                    number: Some(u32::try_from(i + 1).unwrap_or(u32::MAX)),
                    text,
                })
                .collect();
            (pages, extracted.title)
        }
    };
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

/// Decodes a text file: UTF-16 when it starts with a UTF-16 byte-order mark,
/// else UTF-8 with invalid bytes replaced. A leading byte-order mark is dropped.
fn decode_text(bytes: Vec<u8>, warnings: &mut Vec<String>) -> String {
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
    fn panic_messages() {
        let p = catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 7");
        let p = catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static");
    }
}
