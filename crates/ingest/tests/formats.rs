//! Word, PowerPoint, spreadsheets, CSV, HTML, EPUB and source code, parsed
//! from the real evaluation documents and chunked with the real tokenizer.

mod common;

use std::io::{Read, Write};

use common::{check_invariants, chunker, doc};
use lectern_ingest::{
    parse_file, Chunk, ChunkConfig, Format, IngestError, Location, PageAnchor, ParsedDocument,
};

fn parse(name: &str, format: Format) -> ParsedDocument {
    let parsed = parse_file(&doc(name)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.format, format, "{name}");
    parsed
}

fn chunks_of(parsed: &ParsedDocument, config: ChunkConfig) -> Vec<Chunk> {
    let chunker = chunker(config);
    let chunks = chunker.chunk(parsed);
    assert!(!chunks.is_empty(), "{}: no chunks", parsed.path.display());
    check_invariants(parsed, &chunks, &chunker);
    chunks
}

fn small() -> ChunkConfig {
    ChunkConfig {
        max_tokens: 64,
        overlap_tokens: 8,
    }
}

fn containing<'a>(chunks: &'a [Chunk], needle: &str) -> &'a Chunk {
    chunks
        .iter()
        .find(|c| c.text.contains(needle))
        .unwrap_or_else(|| panic!("no chunk contains {needle:?}"))
}

#[test]
fn docx_headings_paragraphs_and_tables() {
    let parsed = parse("docx/usdoj-chapter13-trustee-handbook.docx", Format::Docx);
    assert_eq!(parsed.pages.len(), 1);
    assert_eq!(parsed.pages[0].anchor, PageAnchor::Document);
    assert!(parsed.pages[0].headings.len() > 50);
    let chunks = chunks_of(&parsed, ChunkConfig::default());
    let c = containing(
        &chunks,
        "If a debtor’s attorney fails to appear at the meeting",
    );
    assert_eq!(
        c.heading_path,
        [
            "CHAPTER 3 - ADMINISTRATION OF CHAPTER 13 CASES",
            "B. MEETING OF CREDITORS",
            "14. NON-ATTENDANCE BY ATTORNEYS"
        ]
    );
    assert_eq!(c.location, Location::Document);
    assert_eq!(
        c.location_label(),
        "CHAPTER 3 - ADMINISTRATION OF CHAPTER 13 CASES › B. MEETING OF CREDITORS › \
         14. NON-ATTENDANCE BY ATTORNEYS"
    );
    // Headings only ever open a chunk.
    let text = &parsed.pages[0].text;
    let bytes_at: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain([text.len()])
        .collect();
    let offsets: Vec<usize> = parsed.pages[0].headings.iter().map(|h| h.offset).collect();
    for chunk in &chunks {
        let (a, b) = (bytes_at[chunk.char_start], bytes_at[chunk.char_end]);
        let first_after = offsets.partition_point(|&o| o <= a);
        assert!(
            offsets.get(first_after).is_none_or(|&o| o >= b),
            "chunk {} crosses a heading",
            chunk.ordinal
        );
    }

    let tables = parse("docx/docx-tables.docx", Format::Docx);
    let text = &tables.pages[0].text;
    assert!(
        text.contains("Header Col 1 | Header Col 2\nLorem ipsum | A link example"),
        "{text}"
    );
    assert!(text.contains("a | >b< | c"), "{text}");

    let udhr = parse("docx/udhr-eng-spa.docx", Format::Docx);
    assert!(udhr.pages[0]
        .text
        .contains("Todos los seres humanos nacen libres"));
    chunks_of(&udhr, small());
}

#[test]
fn pptx_one_page_per_slide_with_numbers_and_titles() {
    let parsed = parse("pptx/sample-presentation.pptx", Format::Pptx);
    assert_eq!(parsed.pages.len(), 4);
    for (i, page) in parsed.pages.iter().enumerate() {
        assert_eq!(page.number, Some(i as u32 + 1));
    }
    assert_eq!(
        parsed.pages[1].anchor,
        PageAnchor::Slide {
            number: 2,
            title: Some("This is the first content slide".into())
        }
    );
    assert!(parsed.pages[3]
        .text
        .contains("Table | A | B | C\n1 | A1 | B1 | C1"));
    let chunks = chunks_of(&parsed, ChunkConfig::default());
    let c = containing(&chunks, "A2 | B2 | C2");
    assert_eq!(c.page, Some(4));
    assert_eq!(
        c.location_label(),
        "slide 4 — This is kinda backwards, huh?"
    );

    let nasa = parse("pptx/nasa-gsfc-science-exploration.pptx", Format::Pptx);
    assert_eq!(nasa.pages.len(), 1);
    assert!(nasa.pages[0].text.contains("Heliophysics Science Division"));
    let udhr = parse("pptx/udhr-eng-spa.pptx", Format::Pptx);
    assert_eq!(udhr.pages.len(), 6);
    chunks_of(&udhr, small());
}

/// Rewrites one entry of a zip file, keeping the others.
fn rewrite_zip(bytes: &[u8], entry: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        if name == entry {
            data = edit(String::from_utf8(data).unwrap()).into_bytes();
        }
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn pptx_speaker_notes_follow_their_slide() {
    let real = std::fs::read(doc("pptx/sample-presentation.pptx")).unwrap();
    let with_notes = rewrite_zip(&real, "ppt/notesSlides/notesSlide2.xml", |xml| {
        xml.replacen(
            "<a:t></a:t>",
            "<a:t>Remember to mention the quarterly numbers.</a:t>",
            1,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.pptx");
    std::fs::write(&path, with_notes).unwrap();
    let parsed = parse_file(&path).unwrap();
    let with_note: Vec<u32> = parsed
        .pages
        .iter()
        .filter(|p| p.text.contains("quarterly numbers"))
        .filter_map(|p| p.number)
        .collect();
    assert_eq!(with_note, [2], "the note belongs to slide 2 only");
    let page = &parsed.pages[1];
    assert!(page
        .text
        .ends_with("Speaker notes\n\nRemember to mention the quarterly numbers."));
    let chunks = chunks_of(
        &parsed,
        ChunkConfig {
            max_tokens: 32,
            overlap_tokens: 4,
        },
    );
    let c = containing(&chunks, "quarterly numbers");
    assert_eq!(c.heading_path, ["Speaker notes"]);
    assert_eq!(
        c.location_label(),
        "slide 2 — This is the first content slide · Speaker notes"
    );
    assert!(!containing(&chunks, "bulleted information")
        .text
        .contains("quarterly"));
}

#[test]
fn xlsx_sheets_rows_and_repeated_header() {
    let parsed = parse("xlsx/readxl-datasets.xlsx", Format::Spreadsheet);
    let names: Vec<&str> = parsed
        .pages
        .iter()
        .map(|p| match &p.anchor {
            PageAnchor::Sheet { name } => name.as_str(),
            other => panic!("not a sheet: {other:?}"),
        })
        .collect();
    assert_eq!(names, ["iris", "mtcars", "chickwts", "quakes"]);
    // `quakes` writes numbers with leading spaces, which calamine rejects;
    // the fallback reader takes the sheet instead of dropping it.
    assert!(parsed
        .warnings
        .iter()
        .any(|w| w.contains("\"quakes\"") && w.contains("fallback")));
    let iris = &parsed.pages[0].text;
    assert!(iris.starts_with("Sepal.Length | Sepal.Width | Petal.Length | Petal.Width | Species\n5.1 | 3.5 | 1.4 | 0.2 | setosa"), "{}", &iris[..200]);
    assert_eq!(parsed.pages[0].table.as_ref().unwrap().rows.len(), 151);

    let chunks = chunks_of(&parsed, small());
    let header = "Sepal.Length | Sepal.Width | Petal.Length | Petal.Width | Species\n";
    let iris_chunks: Vec<&Chunk> = chunks.iter().filter(|c| c.page_index == 0).collect();
    assert!(iris_chunks.len() > 5);
    let mut next_row = 1;
    for c in &iris_chunks {
        assert!(
            c.text.starts_with(header),
            "chunk {} lacks the header",
            c.ordinal
        );
        let Location::Sheet {
            name,
            first_row,
            last_row,
        } = &c.location
        else {
            panic!("{:?}", c.location)
        };
        assert_eq!(name, "iris");
        assert_eq!(*first_row, next_row, "rows are contiguous");
        assert!(last_row >= first_row);
        // Whole rows: the text has one line per row, plus the repeated header.
        let lines = c.text.lines().count() as u32;
        let repeated = u32::from(c.repeated_header_chars > 0);
        assert_eq!(lines, last_row - first_row + 1 + repeated);
        next_row = last_row + 1;
    }
    assert_eq!(next_row, 152);
    assert_eq!(iris_chunks[0].repeated_header_chars, 0);
    assert_eq!(iris_chunks[1].repeated_header_chars, header.chars().count());
    let label = iris_chunks[1].location_label();
    assert!(label.starts_with("iris rows "), "{label}");
    let quake = containing(&chunks, "-20.42 | 181.62 | 562 | 4.8 | 41");
    assert!(
        matches!(&quake.location, Location::Sheet { name, first_row: 1, .. } if name == "quakes"),
        "{:?}",
        quake.location
    );
}

#[test]
fn xlsx_with_missing_drawings_and_notes_above_the_header() {
    // This workbook references drawings that are not in the file.
    let parsed = parse("xlsx/openxlsx-loadExample.xlsx", Format::Spreadsheet);
    assert!(parsed.pages.len() >= 2);
    chunks_of(&parsed, small());

    let deaths = parse("xlsx/readxl-deaths.xlsx", Format::Spreadsheet);
    assert_eq!(deaths.pages.len(), 2);
    let table = deaths.pages[0].table.as_ref().unwrap();
    let header = table.header.unwrap();
    assert_eq!(header.row, 5, "four rows of notes sit above the header");
    assert!(deaths.pages[0].text[header.start..header.end].starts_with("Name | Profession"));
    let chunks = chunks_of(
        &deaths,
        ChunkConfig {
            max_tokens: 48,
            overlap_tokens: 4,
        },
    );
    let later = chunks
        .iter()
        .find(|c| c.page_index == 0 && c.repeated_header_chars > 0)
        .unwrap();
    assert!(later.text.starts_with("Name | Profession"));
}

#[test]
fn csv_rows_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    let mut csv = String::from("name,city,note\n");
    for i in 1..=60 {
        csv.push_str(&format!("Person {i},\"Berlin, DE\",likes row {i}\n"));
    }
    std::fs::write(&path, csv).unwrap();
    let parsed = parse_file(&path).unwrap();
    assert_eq!(parsed.format, Format::Csv);
    let chunks = chunks_of(&parsed, small());
    assert!(chunks.len() > 3);
    for c in &chunks[1..] {
        assert!(c.text.starts_with("name | city | note\n"));
    }
    assert_eq!(
        chunks[0].location_label().split_once('–').unwrap().0,
        "rows 1"
    );
    let last = chunks.last().unwrap();
    assert!(
        matches!(last.location, Location::Rows { last: 61, .. }),
        "{:?}",
        last.location
    );
    assert!(last.text.ends_with("Person 60 | Berlin, DE | likes row 60"));
}

#[test]
fn html_main_content_and_headings_in_three_languages() {
    for (name, title, heading) in [
        (
            "html/debian-reference-ch03.en.html",
            "Chapter 3. The system initialization",
            "3.4. The system message",
        ),
        (
            "html/debian-reference-ch03.de.html",
            "Kapitel 3. Die Systeminitialisierung",
            "3.5. Systemmanagement",
        ),
        (
            "html/debian-reference-ch03.ja.html",
            "第3章 システムの初期化",
            "3.1. ブートストラッププロセスの概要",
        ),
    ] {
        let parsed = parse(name, Format::Html);
        assert_eq!(parsed.title.as_deref(), Some(title), "{name}");
        let text = &parsed.pages[0].text;
        assert!(
            text.starts_with(title),
            "{name}: main content starts with the chapter title"
        );
        // Navigation header and footer are not content.
        assert!(!text.contains("Prev"), "{name}: navigation kept");
        let chunks = chunks_of(&parsed, ChunkConfig::default());
        assert!(
            chunks.iter().any(|c| c.heading_path == [title, heading]),
            "{name}: no chunk under {heading:?}"
        );
    }
    let parsed = parse("html/python-3.11-library-sqlite3.html", Format::Html);
    let text = &parsed.pages[0].text;
    assert!(!text.contains('¶'), "permalink marks are dropped");
    assert!(!text.contains("Navigation"), "sidebar dropped");
    let chunks = chunks_of(&parsed, small());
    let c = containing(&chunks, "con = sqlite3.connect(\"tutorial.db\")");
    assert_eq!(
        c.heading_path[0],
        "sqlite3 — DB-API 2.0 interface for SQLite databases"
    );
    for name in [
        "html/python-3.11-faq-general.html",
        "html/python-3.11-tutorial-datastructures.html",
    ] {
        chunks_of(&parse(name, Format::Html), small());
    }
}

#[test]
fn epub_one_page_per_chapter_with_titles() {
    let parsed = parse(
        "epub/gutenberg-60153-winter-sports-in-switzerland.epub",
        Format::Epub,
    );
    assert!(parsed.pages.len() >= 5);
    for (i, page) in parsed.pages.iter().enumerate() {
        match &page.anchor {
            PageAnchor::Chapter { number, .. } => assert_eq!(*number, i as u32 + 1),
            other => panic!("{other:?}"),
        }
    }
    let chunks = chunks_of(&parsed, ChunkConfig::default());
    let c = containing(&chunks, "ICE-HOCKEY");
    assert!(
        c.location_label().starts_with("ch. "),
        "{}",
        c.location_label()
    );

    let arabic = parse("epub/idpf-regime-anticancer-arabic.epub", Format::Epub);
    let all: String = arabic.pages.iter().map(|p| p.text.as_str()).collect();
    assert!(all.contains("السرطان"), "Arabic text is kept");
    let chunks = chunks_of(&arabic, small());
    assert!(chunks
        .iter()
        .any(|c| c.heading_path.iter().any(|h| h.contains("السرطان"))));

    chunks_of(
        &parse("epub/idpf-childrens-literature.epub", Format::Epub),
        small(),
    );
}

#[test]
fn source_code_chunks_end_between_items() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.rs");
    let mut code = String::from("//! A module.\n\nuse std::fmt;\n\n");
    for i in 0..12 {
        code.push_str(&format!(
            "/// Adds {i}.\npub fn add_{i}(x: u32) -> u32 {{\n    let y = x + {i};\n\n    y * 2 + {i}\n}}\n\n"
        ));
    }
    std::fs::write(&path, &code).unwrap();
    let parsed = parse_file(&path).unwrap();
    assert_eq!(parsed.format, Format::Code);
    let chunks = chunks_of(&parsed, small());
    assert!(chunks.len() > 2);
    for c in &chunks {
        assert!(
            c.text.starts_with("///") || c.text.starts_with("//!"),
            "chunk {} starts inside an item: {:?}",
            c.ordinal,
            c.text
        );
        assert!(
            c.text.ends_with('}') || c.text.ends_with(';'),
            "{:?}",
            c.text
        );
        assert!(matches!(c.location, Location::Lines { .. }));
    }
    assert_eq!(
        chunks[0].location_label().split_once('–').unwrap().0,
        "lines 1"
    );
}

fn expect_parse_error(name: &str, bytes: &[u8], format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    match parse_file(&path) {
        Err(e @ IngestError::Parse { .. }) => {
            assert!(matches!(e, IngestError::Parse { format: f, .. } if f == format));
            assert_eq!(e.path(), Some(path.as_path()));
            assert!(e.to_string().contains(name), "{e}");
        }
        Err(e @ IngestError::Panicked { .. }) => assert!(e.to_string().contains(name), "{e}"),
        other => panic!("{name}: expected a parse error, got {other:?}"),
    }
}

fn garbage(n: u32) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[test]
fn corrupt_office_and_epub_files_fail_alone_with_a_specific_error() {
    for (name, real, format) in [
        ("x.docx", "docx/udhr-eng-spa.docx", Format::Docx),
        ("x.pptx", "pptx/udhr-eng-spa.pptx", Format::Pptx),
        ("x.xlsx", "xlsx/readxl-deaths.xlsx", Format::Spreadsheet),
        (
            "x.epub",
            "epub/idpf-regime-anticancer-arabic.epub",
            Format::Epub,
        ),
    ] {
        expect_parse_error(name, &garbage(4096), format);
        expect_parse_error(name, b"", format);
        let bytes = std::fs::read(doc(real)).unwrap();
        // Cut off: the zip's central directory is gone.
        expect_parse_error(name, &bytes[..bytes.len() / 2], format);
        // A zip holding nothing of the format.
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        out.start_file("hello.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(b"hello").unwrap();
        expect_parse_error(name, &out.finish().unwrap().into_inner(), format);
    }
    // After all that, a good file still parses in the same process.
    assert!(parse_file(&doc("docx/udhr-eng-spa.docx")).is_ok());
}

#[test]
fn every_evaluation_document_parses() {
    let found = lectern_ingest::discover(&[common::docs_dir()]);
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert!(found.files.len() >= 39);
    for path in &found.files {
        if path.extension().is_some_and(|e| e == "pdf")
            && path.to_string_lossy().contains("scanned")
        {
            continue; // OCR is covered in tests/pdf.rs
        }
        let parsed = parse_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            parsed.char_count() > 20,
            "{}: almost no text",
            path.display()
        );
    }
}

#[test]
fn chunk_serde_defaults_keep_old_records_readable() {
    let old = r#"{"ordinal":3,"text":"x","page":2,"heading_path":[],"char_start":0,"char_end":1,"token_count":1}"#;
    let chunk: Chunk = serde_json::from_str(old).unwrap();
    assert_eq!(chunk.location, Location::Document);
    assert_eq!(chunk.format, Format::Text);
    assert!(!chunk.ocr);
    assert_eq!(chunk.repeated_header_chars, 0);
    let page: lectern_ingest::Page = serde_json::from_str(r#"{"number":null,"text":"t"}"#).unwrap();
    assert_eq!(page, lectern_ingest::Page::new(None, "t".into()));
}
