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

use pdf_oxide::converters::ConversionOptions;
use pdf_oxide::geometry::Rect;
use pdf_oxide::layout::{RectFilterMode, TextSpan};
use pdf_oxide::object::Object;
use pdf_oxide::PdfDocument;

use crate::ocr::Ocr;
use crate::parse::{
    panic_message, Extracted, OcrMode, Page, PageAnchor, ParseOptions, ParseProgress,
};

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

/// The text layer of every page: from the primary extractor, or from the
/// fallback one when the primary cannot read the file (with a warning
/// saying so). Pages without text are listed in [`PdfText::textless`].
pub(crate) fn extract_any(bytes: &[u8]) -> Result<PdfText, String> {
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
    let mut extracted = extracted;
    extracted.warnings.splice(0..0, notes);
    Ok(extracted)
}

/// Turns extracted page texts into pages numbered from 1, reading scanned pages with OCR
/// where `options` allow it and Tesseract is installed. OCR runs here, on
/// the caller's thread, with its own per-page time limit.
pub(crate) fn finish(
    path: &Path,
    text: PdfText,
    options: &ParseOptions,
    observe: &dyn Fn(ParseProgress),
) -> Extracted {
    let PdfText {
        pages: texts,
        title,
        mut warnings,
        textless,
    } = text;
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
            let total = textless.len();
            for (done, number) in textless.into_iter().enumerate() {
                observe(ParseProgress::OcrPage {
                    page: number,
                    done,
                    total,
                });
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
    Extracted {
        pages,
        title,
        warnings,
    }
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

/// The text of one page in reading order.
///
/// `pdf_oxide` reads two-column pages column by column, which also cuts a
/// title or author block that spans both columns in two, putting its
/// right half after the whole left column. When a page has such a block
/// above its columns, the block and the columns are read separately, block
/// first.
fn page_text(doc: &PdfDocument, index: usize) -> pdf_oxide::Result<String> {
    let spans = doc.extract_spans(index)?;
    let Some(split) = header_split(&spans) else {
        return doc.extract_text(index);
    };
    let region = |bottom: f32, top: f32| ConversionOptions {
        extract_tables: true,
        include_region: Some((
            Rect::new(split.left, bottom, split.right - split.left, top - bottom),
            RectFilterMode::MinOverlap(0.5),
        )),
        ..ConversionOptions::default()
    };
    let header = doc.extract_text_with_options(index, &region(split.boundary, split.top))?;
    let body = doc.extract_text_with_options(index, &region(split.bottom, split.boundary))?;
    Ok(format!("{}\n\n{}", header.trim_end(), body.trim_start()))
}

/// Where a full-width block above two columns ends, with the page's text
/// bounds (PDF user space, y up).
#[derive(Debug, Clone, Copy, PartialEq)]
struct HeaderSplit {
    left: f32,
    right: f32,
    bottom: f32,
    top: f32,
    boundary: f32,
}

/// One line of a page: spans sharing a baseline, as horizontal segments.
struct Line {
    top: f32,
    bottom: f32,
    /// `(x0, x1)` runs of text separated by wide gaps, left to right.
    segments: Vec<(f32, f32)>,
}

/// Finds a block of lines at the top of a two-column page that cross the
/// gutter (a title, authors), followed by column text. `None` for
/// single-column pages and for two-column pages without such a block.
fn header_split(spans: &[TextSpan]) -> Option<HeaderSplit> {
    let spans: Vec<&TextSpan> = spans
        .iter()
        .filter(|s| !s.text.trim().is_empty() && s.bbox.width > 0.0 && s.bbox.height > 0.0)
        .collect();
    if spans.len() < 20 {
        return None;
    }
    let left = spans.iter().map(|s| s.bbox.x).fold(f32::INFINITY, f32::min);
    let right = spans
        .iter()
        .map(|s| s.bbox.x + s.bbox.width)
        .fold(f32::NEG_INFINITY, f32::max);
    let bottom = spans.iter().map(|s| s.bbox.y).fold(f32::INFINITY, f32::min);
    let top = spans
        .iter()
        .map(|s| s.bbox.y + s.bbox.height)
        .fold(f32::NEG_INFINITY, f32::max);
    let width = right - left;
    if width < 200.0 {
        return None;
    }
    let mid = (left + right) / 2.0;
    let gutter = 0.02 * width;

    let lines = lines_of(&spans, gutter);
    // A column line has every segment on one side of the gutter; a
    // crossing line has a segment that runs across it.
    let crosses = |l: &Line| {
        l.segments
            .iter()
            .any(|&(a, b)| a < mid - gutter && b > mid + gutter)
    };
    let column = |l: &Line| !crosses(l);
    let left_lines = lines
        .iter()
        .filter(|l| l.segments.iter().any(|&(_, b)| b <= mid + gutter))
        .count();
    let right_lines = lines
        .iter()
        .filter(|l| l.segments.iter().any(|&(a, _)| a >= mid - gutter))
        .count();
    if left_lines < 8 || right_lines < 8 {
        return None;
    }
    // The block ends before the first run of three column lines.
    const RUN: usize = 3;
    let end = (0..lines.len())
        .find(|&i| lines.len() >= i + RUN && lines[i..i + RUN].iter().all(column))?;
    if end == 0 || !lines[..end].iter().any(crosses) {
        return None;
    }
    // Most of the page must still be columns below the block.
    if lines.len() - end < 10 {
        return None;
    }
    let boundary = (lines[end - 1].bottom + lines[end].top) / 2.0;
    Some(HeaderSplit {
        left: left - 1.0,
        right: right + 1.0,
        bottom: bottom - 1.0,
        top: top + 1.0,
        boundary,
    })
}

/// Groups spans into lines, top to bottom, and each line into segments
/// split at gaps wider than `gap`.
fn lines_of(spans: &[&TextSpan], gap: f32) -> Vec<Line> {
    let mut sorted: Vec<&TextSpan> = spans.to_vec();
    sorted.sort_by(|a, b| b.bbox.y.total_cmp(&a.bbox.y));
    let mut lines: Vec<(f32, Vec<&TextSpan>)> = Vec::new();
    for s in sorted {
        let tolerance = 0.5 * s.bbox.height.min(12.0);
        match lines.last_mut() {
            Some((y, members)) if (*y - s.bbox.y).abs() <= tolerance => members.push(s),
            _ => lines.push((s.bbox.y, vec![s])),
        }
    }
    lines
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_by(|a, b| a.bbox.x.total_cmp(&b.bbox.x));
            let mut segments: Vec<(f32, f32)> = Vec::new();
            for s in &members {
                let (a, b) = (s.bbox.x, s.bbox.x + s.bbox.width);
                match segments.last_mut() {
                    Some(last) if a - last.1 <= gap => last.1 = last.1.max(b),
                    _ => segments.push((a, b)),
                }
            }
            Line {
                top: members
                    .iter()
                    .map(|s| s.bbox.y + s.bbox.height)
                    .fold(f32::NEG_INFINITY, f32::max),
                bottom: members
                    .iter()
                    .map(|s| s.bbox.y)
                    .fold(f32::INFINITY, f32::min),
                segments,
            }
        })
        .collect()
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
        match catch_unwind(AssertUnwindSafe(|| page_text(&doc, index))) {
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
