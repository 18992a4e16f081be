//! PDF parsing against the real evaluation PDFs. Expected page counts come
//! from `pdfinfo` and phrases from `pdftotext -f N -l N` (poppler).

mod common;

use std::path::Path;

use common::{check_invariants, chunker, doc};
use lectern_ingest::{
    parse_file, parse_file_with, ChunkConfig, Format, IngestError, Location, OcrMode, PageAnchor,
    ParseOptions, ParsedDocument,
};

fn no_ocr() -> ParseOptions {
    ParseOptions {
        ocr: OcrMode::Off,
        ..ParseOptions::default()
    }
}

/// Whether the OCR programs are installed; tests that need them are
/// skipped (with a message) when they are not.
fn ocr_available() -> bool {
    let runs = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("tesseract", "--version") && runs("pdftoppm", "-v");
    if !ok {
        eprintln!("tesseract or pdftoppm is not installed: skipping the OCR test");
    }
    ok
}

fn parse_pdf(name: &str) -> ParsedDocument {
    parse_pdf_with(name, &no_ocr())
}

fn parse_pdf_with(name: &str, options: &ParseOptions) -> ParsedDocument {
    let path = doc(&format!("pdf/{name}"));
    let parsed = parse_file_with(&path, options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.format, Format::Pdf);
    for (i, page) in parsed.pages.iter().enumerate() {
        assert_eq!(
            page.number,
            Some(i as u32 + 1),
            "{name}: pages numbered from 1"
        );
        assert_eq!(
            page.anchor,
            PageAnchor::Page {
                number: i as u32 + 1
            }
        );
    }
    parsed
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Asserts `phrase` is on page `number` and on neither neighbour, so page
/// numbers are exact rather than off by one.
fn assert_phrase_on_page(doc: &ParsedDocument, number: usize, phrase: &str) {
    let on = |n: usize| {
        doc.pages
            .get(n.wrapping_sub(1))
            .is_some_and(|p| squash(&p.text).contains(&squash(phrase)))
    };
    assert!(
        on(number),
        "{:?} not found on page {number} of {}; the page reads:\n{}",
        phrase,
        doc.path.display(),
        doc.pages[number - 1].text
    );
    assert!(
        !on(number - 1) && !on(number + 1),
        "{phrase:?} also on a neighbouring page"
    );
}

#[test]
fn debian_reference_en_pages_phrase_and_title() {
    let parsed = parse_pdf("debian-reference.en.pdf");
    assert_eq!(parsed.pages.len(), 261);
    assert_phrase_on_page(
        &parsed,
        100,
        "Use of apt-pinning by a novice user is sure call for major troubles.",
    );
    assert_eq!(parsed.title.as_deref(), Some("Debian Reference"));
    let chars: usize = parsed.char_count();
    assert!(chars > 500_000, "only {chars} chars extracted");
}

#[test]
fn debian_reference_ja_pages_and_cjk_phrase() {
    let parsed = parse_pdf("debian-reference.ja.pdf");
    assert_eq!(parsed.pages.len(), 272);
    assert_phrase_on_page(
        &parsed,
        100,
        "単純化した apt-pinning テクニックの説明を次にします。",
    );
    assert_eq!(parsed.title.as_deref(), Some("Debian リファレンス"));
}

#[test]
fn two_column_paper_pages_and_phrase() {
    let parsed = parse_pdf("acmart-sample-sigconf-2col.pdf");
    assert_eq!(parsed.pages.len(), 6);
    assert_phrase_on_page(&parsed, 3, "Regardless of the rights management choice");
    assert_eq!(
        parsed.title.as_deref(),
        Some("The Name of the Title Is Hope")
    );
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
}

#[test]
fn a_title_and_authors_across_both_columns_are_read_before_the_columns() {
    let parsed = parse_pdf("dpr-paper-2col-tables.pdf");
    let first = &parsed.pages[0].text;
    // The title spans the gutter; read column by column it would be cut
    // after "Open-Domain" and its end put after the left column.
    assert!(
        squash(first).starts_with(&squash(
            "Dense Passage Retrieval for Open-Domain Question Answering"
        )),
        "{}",
        &first[..first.len().min(300)]
    );
    let at = |phrase: &str| {
        squash(first)
            .find(&squash(phrase))
            .unwrap_or_else(|| panic!("{phrase:?} not on page 1"))
    };
    // Every author comes before the abstract, which comes before the
    // right column's first sentence.
    for author in ["Sewon Min", "Patrick Lewis", "Danqi Chen", "Wen-tau Yih"] {
        assert!(at(author) < at("Abstract"), "{author} after the abstract");
    }
    assert!(at("Abstract") < at("Retrieval in open-domain QA is usually"));
    // Later pages have no such block and read as before.
    assert_phrase_on_page(
        &parsed,
        2,
        "Our Dense Passage Retriever (DPR) is exceptionally strong",
    );
}

#[test]
fn tables_paper_pages_and_title_from_file_name() {
    let parsed = parse_pdf("aastex-sample631-tables.pdf");
    assert_eq!(parsed.pages.len(), 19);
    // The metadata title is empty, so the file name stands in.
    assert_eq!(parsed.title.as_deref(), Some("aastex-sample631-tables"));
    // Page 16 is a rotated table page; its rows must keep their words apart.
    assert_phrase_on_page(&parsed, 16, "Table 1 continued on next page");
    assert!(parsed.pages[15].text.contains("V1065 Cen"));
}

#[test]
fn other_pdfs_have_the_right_page_counts() {
    for (name, pages) in [
        ("dpr-paper-2col-tables.pdf", 13),
        ("geotopo-lecture-notes.de.pdf", 117),
        ("habibi-arabic.pdf", 1),
        ("scanned-graph-with-ocr-layer.pdf", 1),
    ] {
        let parsed = parse_pdf(name);
        assert_eq!(parsed.pages.len(), pages, "{name}");
        assert!(
            parsed.pages.iter().all(|p| !p.text.trim().is_empty()),
            "{name}: every page has a text layer"
        );
        assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
    }
}

#[test]
fn scanned_pages_warn_that_they_need_ocr() {
    let parsed = parse_pdf("scanned-huckfinn-p22.pdf");
    assert_eq!(parsed.pages.len(), 1);
    assert_eq!(parsed.pages[0].text.trim(), "");
    assert_eq!(
        parsed.warnings,
        vec!["page 1 has no text layer (needs OCR)".to_string()]
    );

    let parsed = parse_pdf("scanned-linn-brochure-2col.pdf");
    assert_eq!(
        parsed.warnings,
        vec!["page 1 has no text layer (needs OCR)".to_string()]
    );

    // Six scanned pages; only page 4 carries a small OCR text layer.
    let parsed = parse_pdf("scanned-multipage-mixed.pdf");
    assert_eq!(parsed.pages.len(), 6);
    assert!(
        parsed.pages[3].text.contains("Oppose"),
        "{:?}",
        parsed.pages[3].text
    );
    assert_eq!(
        parsed.warnings,
        vec!["pages 1, 2, 3, 5, 6 have no text layer (needs OCR)".to_string()]
    );
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(str::to_lowercase)
        .collect()
}

/// Share of the ground truth's words found in `text`, counting repeats
/// (a word seen twice in the truth must be recognised twice).
fn word_recall(truth: &str, text: &str) -> f64 {
    let mut have: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in words(text) {
        *have.entry(w).or_default() += 1;
    }
    let truth = words(truth);
    let mut found = 0;
    for w in &truth {
        if let Some(n) = have.get_mut(w).filter(|n| **n > 0) {
            *n -= 1;
            found += 1;
        }
    }
    found as f64 / truth.len() as f64
}

#[test]
fn scanned_brochure_is_read_by_ocr_close_to_its_ground_truth() {
    if !ocr_available() {
        return;
    }
    let parsed = parse_pdf_with("scanned-linn-brochure-2col.pdf", &ParseOptions::default());
    assert_eq!(parsed.pages.len(), 1);
    let page = &parsed.pages[0];
    assert!(page.ocr, "the page is marked as OCR text");
    assert!(
        parsed
            .warnings
            .iter()
            .any(|w| w.contains("recognised by OCR")),
        "{:?}",
        parsed.warnings
    );
    let truth =
        std::fs::read_to_string(doc("pdf/scanned-linn-brochure-2col.groundtruth.txt")).unwrap();
    let recall = word_recall(&truth, &page.text);
    eprintln!("OCR word recall against the ground truth: {recall:.3}");
    assert!(
        recall >= 0.7,
        "word recall {recall:.3}; OCR text:\n{}",
        page.text
    );

    let chunker = chunker(ChunkConfig::default());
    let chunks = chunker.chunk(&parsed);
    check_invariants(&parsed, &chunks, &chunker);
    assert!(chunks
        .iter()
        .all(|c| c.ocr && c.location == Location::Page { number: 1 }));
    assert_eq!(chunks[0].location_label(), "p. 1 (OCR)");
}

#[test]
fn mixed_scan_ocrs_only_the_pages_without_text() {
    if !ocr_available() {
        return;
    }
    let parsed = parse_pdf_with("scanned-multipage-mixed.pdf", &ParseOptions::default());
    let ocr: Vec<bool> = parsed.pages.iter().map(|p| p.ocr).collect();
    assert_eq!(ocr, [true, true, true, false, true, true]);
    assert!(parsed.pages[3].text.contains("Oppose"));
    for page in &parsed.pages {
        assert!(
            !page.text.trim().is_empty(),
            "page {:?} is empty",
            page.number
        );
    }
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert!(
        parsed.warnings[0]
            .starts_with("pages 1, 2, 3, 5, 6 have no text layer; text recognised by OCR"),
        "{:?}",
        parsed.warnings
    );
}

#[test]
fn content_hash_and_size_describe_the_file_bytes() {
    let path = doc("pdf/habibi-arabic.pdf");
    let parsed = parse_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(parsed.byte_len, bytes.len() as u64);
    assert_eq!(
        parsed.content_hash,
        blake3::hash(&bytes).to_hex().to_string()
    );
    assert_eq!(parsed.content_hash.len(), 64);
}

/// A small valid PDF whose pages are given as content streams (`None`: a page
/// without contents), with a UTF-16 `/Title`.
fn synthetic_pdf(pages: &[Option<&str>], title: &str) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    let first_page = 5;
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", first_page + 2 * i))
        .collect();
    let title_hex: String = std::iter::once(0xFEFF)
        .chain(title.encode_utf16())
        .map(|u| format!("{u:04X}"))
        .collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_string());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string());
    objects.push(format!("<< /Title <{title_hex}> >>"));
    for (i, content) in pages.iter().enumerate() {
        let contents_id = first_page + 2 * i + 1;
        let contents = match content {
            Some(_) => format!(" /Contents {contents_id} 0 R"),
            None => String::new(),
        };
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
             /Resources << /Font << /F1 3 0 R >> >>{contents} >>"
        ));
        let stream = content.unwrap_or("");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len() + 1
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .bytes(),
    );
    out
}

#[test]
fn blank_pages_are_told_apart_from_scans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.pdf");
    let text = |s: &str| format!("BT /F1 24 Tf 72 700 Td ({s}) Tj ET");
    let (one, three, five) = (
        text("Alpha page one"),
        text("Gamma page three"),
        text("Epsilon page five"),
    );
    let pdf = synthetic_pdf(
        &[
            Some(&one),
            None,
            Some(&three),
            Some("0.5 g 72 72 100 100 re f"),
            Some(&five),
        ],
        "Drei Seiten – Grüße",
    );
    std::fs::write(&path, pdf).unwrap();
    let parsed = parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.pages.len(), 5);
    assert_phrase_on_page(&parsed, 1, "Alpha page one");
    assert_phrase_on_page(&parsed, 3, "Gamma page three");
    assert_phrase_on_page(&parsed, 5, "Epsilon page five");
    assert_eq!(parsed.pages[1].text.trim(), "");
    assert_eq!(parsed.pages[3].text.trim(), "");
    assert_eq!(parsed.title.as_deref(), Some("Drei Seiten – Grüße"));
    assert_eq!(parsed.warnings, vec!["pages 2, 4 are blank".to_string()]);
}

fn assert_fails_naming_file(path: &Path) {
    match parse_file(path) {
        Err(e @ (IngestError::Parse { .. } | IngestError::Panicked { .. })) => {
            assert_eq!(e.path(), Some(path));
            let message = e.to_string();
            assert!(
                message.contains("x.pdf"),
                "message does not name the file: {message}"
            );
        }
        other => panic!(
            "expected a parse error for {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn corrupt_pdfs_fail_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pdf");

    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_fails_naming_file(&path);

    std::fs::write(&path, b"").unwrap();
    assert_fails_naming_file(&path);

    std::fs::write(
        &path,
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n%%EOF\n",
    )
    .unwrap();
    assert_fails_naming_file(&path);

    // A real paper cut off after its first kilobyte.
    let real = std::fs::read(doc("pdf/dpr-paper-2col-tables.pdf")).unwrap();
    std::fs::write(&path, &real[..1024]).unwrap();
    assert_fails_naming_file(&path);
}

#[test]
fn missing_and_unsupported_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone.pdf");
    match parse_file(&missing) {
        Err(e @ IngestError::Io { .. }) => assert!(e.to_string().contains("gone.pdf"), "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let image = dir.path().join("photo.jpg");
    std::fs::write(&image, b"\xff\xd8").unwrap();
    match parse_file(&image) {
        Err(e @ IngestError::Unsupported { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("photo.jpg") && message.contains(".jpg"),
                "{message}"
            );
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn a_scan_without_words_says_ocr_found_nothing_instead_of_needs_ocr() {
    if !ocr_available() {
        return;
    }
    // A blank white page, wrapped in a PDF as a scan by tesseract itself.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("blank.pgm");
    let (w, h) = (600usize, 400usize);
    let mut pgm = format!("P5 {w} {h} 255\n").into_bytes();
    pgm.extend(std::iter::repeat_n(255u8, w * h));
    std::fs::write(&image, pgm).unwrap();
    let status = std::process::Command::new("tesseract")
        .arg(&image)
        .arg(dir.path().join("blank"))
        .arg("pdf")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let parsed = parse_file_with(&dir.path().join("blank.pdf"), &ParseOptions::default()).unwrap();
    assert_eq!(parsed.pages.len(), 1);
    assert!(parsed.pages[0].text.trim().is_empty());
    assert_eq!(
        parsed.warnings,
        vec!["page 1 has no text layer and OCR found no words on it".to_string()]
    );
    // Without OCR the same page is reported as needing it.
    let unread = parse_file_with(&dir.path().join("blank.pdf"), &no_ocr()).unwrap();
    assert_eq!(
        unread.warnings,
        vec!["page 1 has no text layer (needs OCR)".to_string()]
    );
}
