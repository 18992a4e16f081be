//! PDF text extraction with `pdf_oxide`, one string per page.
//!
//! `pdf_oxide` rather than `pdf-extract`: on real papers it keeps word order
//! better in two-column layouts and rotated tables, it opens damaged files
//! (truncated, or without a cross-reference table) that `pdf-extract`
//! rejects, and it does not panic on fonts that make `pdf-extract` panic.
//! Each page is still extracted under `catch_unwind`, so one bad page costs
//! only that page.
//!
//! When `pdf_oxide` cannot open a file at all, or panics on it, the text is
//! taken with `pdf-extract` instead (its own parser, `lopdf`), also under
//! `catch_unwind`. Pages that have no text layer but paint an image are
//! scans: they are read with OCR (see [`crate::ocr`]) when Tesseract is
//! installed, and reported as needing OCR otherwise.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use pdf_oxide::object::Object;
use pdf_oxide::PdfDocument;

use crate::ocr::Ocr;
use crate::parse::{panic_message, Extracted, OcrMode, Page, PageAnchor, ParseOptions};

/// At most this many unreadable pages are named one by one in warnings.
const MAX_PAGE_WARNINGS: usize = 10;

/// The text of a PDF, page by page, with what went wrong along the way.
#[derive(Debug)]
pub(crate) struct PdfText {
    /// One entry per page, in page order; empty for pages without text.
    pub pages: Vec<String>,
    /// The `/Title` of the document information dictionary, if set.
    pub title: Option<String>,
    /// Pages that could not be read, and blank pages.
    pub warnings: Vec<String>,
    /// 1-based numbers of the pages that have no text but paint images: scans.
    pub textless: Vec<usize>,
}

/// Reads a PDF into pages numbered from 1: the text layer of each page,
/// with OCR for scanned pages where available, and the fallback extractor
/// when the primary one cannot read the file.
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<Extracted, String> {
    let mut notes = Vec::new();
    let extracted = match catch_unwind(AssertUnwindSafe(|| extract(bytes))) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) if e.contains("encrypted") => return Err(e),
        Ok(Err(e)) => {
            let text = fallback(bytes)
                .map_err(|f| format!("{e}; the fallback extractor failed too: {f}"))?;
            notes.push(format!(
                "the primary PDF parser could not read the file ({e}); its text comes from the fallback extractor"
            ));
            text
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::warn!(%message, "PDF parser panicked; trying the fallback extractor");
            let text = fallback(bytes).map_err(|f| {
                format!("the parser crashed ({message}) and the fallback extractor failed: {f}")
            })?;
            notes.push(format!(
                "the primary PDF parser crashed on the file ({message}); its text comes from the fallback extractor"
            ));
            text
        }
    };
    let PdfText {
        pages: texts,
        title,
        mut warnings,
        textless,
    } = extracted;
    warnings.splice(0..0, notes);
    let mut pages: Vec<Page> = texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            Page {
                number: Some(number),
                text,
                anchor: PageAnchor::Page { number },
                ..Page::default()
            }
        })
        .collect();

    let ocr = match options.ocr {
        OcrMode::Auto if !textless.is_empty() => {
            Ocr::find(options.ocr_languages.as_deref(), options.ocr_page_timeout)
        }
        _ => None,
    };
    let mut recognised = Vec::new();
    let mut unread = Vec::new();
    let mut wordless = Vec::new();
    match &ocr {
        None => unread = textless,
        Some(ocr) => {
            for number in textless {
                match ocr.page_text(path, number) {
                    Ok(text) if !text.trim().is_empty() => {
                        let page = &mut pages[number - 1];
                        page.text = text;
                        page.ocr = true;
                        recognised.push(number);
                    }
                    Ok(_) => wordless.push(number),
                    Err(e) => {
                        tracing::warn!(page = number, error = %e, "OCR failed");
                        warnings.push(format!("page {number}: OCR failed: {e}"));
                        unread.push(number);
                    }
                }
            }
        }
    }
    if let (Some(ocr), Some(list)) = (&ocr, page_list(&recognised)) {
        let (noun, verb) = if recognised.len() == 1 {
            ("page", "has")
        } else {
            ("pages", "have")
        };
        warnings.push(format!(
            "{noun} {list} {verb} no text layer; text recognised by OCR (tesseract, {})",
            ocr.languages()
        ));
    }
    if let Some(list) = page_list(&wordless) {
        let (noun, verb) = if wordless.len() == 1 {
            ("page", "has")
        } else {
            ("pages", "have")
        };
        warnings.push(format!(
            "{noun} {list} {verb} no text layer and OCR found no words on {}",
            if wordless.len() == 1 { "it" } else { "them" }
        ));
    }
    if let Some(w) = no_text_warning(&unread) {
        warnings.push(w);
    }
    Ok(Extracted {
        pages,
        title,
        warnings,
    })
}

/// `"3"` or `"3, 4"`; `None` for no pages.
fn page_list(pages: &[usize]) -> Option<String> {
    (!pages.is_empty()).then(|| {
        pages
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Extracts page texts with `pdf-extract`, isolated under `catch_unwind`
/// (it panics on some fonts). Pages without text count as scans.
pub(crate) fn fallback(bytes: &[u8]) -> Result<PdfText, String> {
    let pages = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
    }))
    .map_err(|payload| format!("it crashed: {}", panic_message(payload.as_ref())))?
    .map_err(|e| e.to_string())?;
    if pages.is_empty() {
        return Err("no pages found".to_string());
    }
    let pages: Vec<String> = pages.into_iter().map(clean).collect();
    if pages.iter().all(|p| p.trim().is_empty()) {
        return Err("no page has text".to_string());
    }
    let textless = pages
        .iter()
        .enumerate()
        .filter(|(_, p)| p.trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect();
    Ok(PdfText {
        pages,
        title: None,
        warnings: Vec::new(),
        textless,
    })
}

/// Extracts the text of every page of the PDF in `bytes`.
///
/// Fails when the file cannot be opened as a PDF at all, is encrypted with a
/// password, has no pages, or has no page that could be read. Pages that
/// fail on their own (error or panic) are kept with empty text and a warning;
/// so are pages without text, told apart as scans (they paint an image) or
/// blank pages.
pub(crate) fn extract(bytes: &[u8]) -> Result<PdfText, String> {
    let doc =
        PdfDocument::from_bytes(bytes.to_vec()).map_err(|e| format!("not a readable PDF: {e}"))?;
    if doc.is_encrypted() && !doc.is_authenticated() {
        return Err("the PDF is encrypted and needs a password".to_string());
    }
    let count = doc
        .page_count()
        .map_err(|e| format!("cannot read the page tree: {e}"))?;
    if count == 0 {
        return Err("the PDF has no pages".to_string());
    }

    let mut pages = Vec::with_capacity(count);
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut textless = Vec::new();
    let mut blank = Vec::new();
    for index in 0..count {
        let number = index + 1;
        match catch_unwind(AssertUnwindSafe(|| doc.extract_text(index))) {
            Ok(Ok(text)) => {
                let text = clean(text);
                if text.trim().is_empty() {
                    if is_blank(&doc, index) {
                        blank.push(number);
                    } else {
                        textless.push(number);
                    }
                }
                pages.push(text);
            }
            Ok(Err(e)) => {
                tracing::debug!(page = number, error = %e, "cannot extract PDF page");
                failed.push((number, e.to_string()));
                pages.push(String::new());
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::warn!(page = number, %message, "PDF parser panicked on a page");
                failed.push((number, format!("the parser crashed: {message}")));
                pages.push(String::new());
            }
        }
    }
    if failed.len() == count {
        let (number, first) = &failed[0];
        return Err(format!(
            "none of its {count} page(s) could be read (page {number}: {first})"
        ));
    }

    let mut warnings = Vec::new();
    for (number, message) in failed.iter().take(MAX_PAGE_WARNINGS) {
        warnings.push(format!("page {number} could not be read: {message}"));
    }
    if failed.len() > MAX_PAGE_WARNINGS {
        warnings.push(format!(
            "{} more pages could not be read",
            failed.len() - MAX_PAGE_WARNINGS
        ));
    }
    if let Some(w) = blank_warning(&blank) {
        warnings.push(w);
    }
    Ok(PdfText {
        pages,
        title: title(&doc),
        warnings,
        textless,
    })
}

/// Drops NUL characters, which some fonts map glyphs to and which no
/// downstream consumer of the text wants.
fn clean(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

/// Whether a page without text also paints no image: an empty page rather
/// than a scan. A page whose images cannot be listed counts as a scan.
fn is_blank(doc: &PdfDocument, index: usize) -> bool {
    catch_unwind(AssertUnwindSafe(|| doc.page_image_handles(index)))
        .ok()
        .and_then(Result::ok)
        .is_some_and(|images| images.is_empty())
}

/// The warning naming pages that hold neither text nor images.
fn blank_warning(pages: &[usize]) -> Option<String> {
    match pages {
        [] => None,
        [one] => Some(format!("page {one} is blank")),
        many => {
            let list: Vec<String> = many.iter().map(|n| n.to_string()).collect();
            Some(format!("pages {} are blank", list.join(", ")))
        }
    }
}

/// The warning naming the pages, read without error, that have no text
/// but paint images: scans that need OCR.
pub(crate) fn no_text_warning(pages: &[usize]) -> Option<String> {
    match pages {
        [] => None,
        [one] => Some(format!("page {one} has no text layer (needs OCR)")),
        many => {
            let list: Vec<String> = many.iter().map(|n| n.to_string()).collect();
            Some(format!(
                "pages {} have no text layer (needs OCR)",
                list.join(", ")
            ))
        }
    }
}

/// The document's `/Info /Title`, decoded, if present and not blank.
fn title(doc: &PdfDocument) -> Option<String> {
    let info = doc.trailer().as_dict()?.get("Info")?;
    let info = doc.resolve_object(info).ok()?;
    let raw = info.as_dict()?.get("Title")?;
    let value: Object = doc.resolve_object(raw).ok()?;
    let title = decode_text_string(value.as_string()?);
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

/// Decodes a PDF text string (ISO 32000-1 §7.9.2.2): UTF-16BE or UTF-8 when
/// marked by a byte-order mark, else PDFDocEncoding.
fn decode_text_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    bytes.iter().map(|&b| pdf_doc_char(b)).collect()
}

/// PDFDocEncoding (ISO 32000-1 Annex D): Latin-1 except for 0x80–0xA0.
fn pdf_doc_char(b: u8) -> char {
    const HIGH: [char; 33] = [
        '•', '†', '‡', '…', '—', '–', 'ƒ', '⁄', '‹', '›', '−', '‰', '„', '“', '”', '‘', '’', '‚',
        '™', 'ﬁ', 'ﬂ', 'Ł', 'Œ', 'Š', 'Ÿ', 'Ž', 'ı', 'ł', 'œ', 'š', 'ž', '\u{FFFD}', '€',
    ];
    match b {
        0x80..=0xA0 => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_strings() {
        assert_eq!(decode_text_string(b"Plain (c) \x80 \xe9"), "Plain (c) • é");
        assert_eq!(
            decode_text_string(&[0xFE, 0xFF, 0x30, 0xEA, 0x00, 0x41]),
            "リA"
        );
        assert_eq!(decode_text_string("\u{FEFF}Grüße".as_bytes()), "Grüße");
    }

    #[test]
    fn fallback_extractor_reads_a_real_paper_page_by_page() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/eval/docs/pdf/acmart-sample-sigconf-2col.pdf");
        let bytes = std::fs::read(&path).expect("evaluation PDF");
        let got = fallback(&bytes).unwrap();
        assert_eq!(got.pages.len(), 6);
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        let phrase = squash("Regardless of the rights management choice");
        let on: Vec<usize> = got
            .pages
            .iter()
            .enumerate()
            .filter(|(_, p)| squash(p).contains(&phrase))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(on, [3]);
        assert!(got.textless.is_empty());
        assert!(fallback(b"%PDF-1.4 not really").is_err());
    }

    #[test]
    fn no_text_warnings() {
        assert_eq!(no_text_warning(&[]), None);
        assert_eq!(
            no_text_warning(&[2]).as_deref(),
            Some("page 2 has no text layer (needs OCR)")
        );
        assert_eq!(
            no_text_warning(&[3, 4]).as_deref(),
            Some("pages 3, 4 have no text layer (needs OCR)")
        );
    }
}
