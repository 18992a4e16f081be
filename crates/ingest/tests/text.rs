//! Text and Markdown parsing, headings, and discovery.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{check_invariants, chunker, doc};
use lectern_ingest::{discover, parse_file, ChunkConfig, Format};

#[test]
fn markdown_chunks_carry_their_heading_path() {
    let path = doc("md/rust-book-ch03-02-data-types.md");
    let parsed = parse_file(&path).unwrap();
    assert_eq!(parsed.format, Format::Markdown);
    assert_eq!(parsed.pages.len(), 1);
    assert_eq!(parsed.pages[0].number, None);
    // The chapter has no level-1 heading, so the file name is the title.
    assert_eq!(
        parsed.title.as_deref(),
        Some("rust-book-ch03-02-data-types")
    );

    let chunker = chunker(ChunkConfig::default());
    let chunks = chunker.chunk(&parsed);
    check_invariants(&parsed, &chunks, &chunker);

    let path_of = |needle: &str| {
        chunks
            .iter()
            .find(|c| c.text.contains(needle))
            .unwrap_or_else(|| panic!("no chunk contains {needle:?}"))
            .heading_path
            .clone()
    };
    assert_eq!(
        path_of("Rust is a _statically typed_ language"),
        ["Data Types"]
    );
    assert_eq!(
        path_of("A _scalar_ type represents a single value"),
        ["Data Types", "Scalar Types"]
    );
    assert_eq!(
        path_of("| 128-bit | `i128`  | `u128`   |"),
        ["Data Types", "Scalar Types", "Integer Types"]
    );
    assert_eq!(
        path_of("Rust’s `char` type is the language’s most primitive alphabetic type"),
        ["Data Types", "Scalar Types", "The Character Type"]
    );
    assert_eq!(
        path_of("A _tuple_ is a general way of grouping"),
        ["Data Types", "Compound Types", "The Tuple Type"]
    );
    // `#### Invalid Array Element Access` is a sibling of `#### The Array Type`.
    assert_eq!(
        path_of("index out of bounds: the len is 5 but the index is 10"),
        [
            "Data Types",
            "Compound Types",
            "Invalid Array Element Access"
        ]
    );

    // No chunk crosses a heading: headings only ever open a chunk.
    for chunk in &chunks {
        for line in chunk.text.lines().skip(1) {
            assert!(
                !line.starts_with('#'),
                "chunk {} crosses heading {line:?}",
                chunk.ordinal
            );
        }
    }
    // Each of the 12 headings opens exactly one chunk.
    let opened = chunks.iter().filter(|c| c.text.starts_with('#')).count();
    assert_eq!(opened, 12);
}

#[test]
fn markdown_title_is_the_first_level_one_heading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.MD");
    fs::write(
        &path,
        "Intro line\n\n```\n# not a title\n```\n\n# Real Title #\n\ntext\n",
    )
    .unwrap();
    let parsed = parse_file(&path).unwrap();
    assert_eq!(parsed.format, Format::Markdown);
    assert_eq!(parsed.title.as_deref(), Some("Real Title"));
}

#[test]
fn invalid_utf8_is_decoded_lossily_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    fs::write(&path, b"Gr\xfc\xdfe aus K\xf6ln\n").unwrap();
    let parsed = parse_file(&path).unwrap();
    assert_eq!(parsed.pages.len(), 1);
    assert_eq!(
        parsed.pages[0].text,
        "Gr\u{FFFD}\u{FFFD}e aus K\u{FFFD}ln\n"
    );
    assert_eq!(parsed.warnings.len(), 1);
    assert!(
        parsed.warnings[0].contains("not valid UTF-8"),
        "{:?}",
        parsed.warnings
    );
    assert_eq!(parsed.title.as_deref(), Some("latin1"));
}

#[test]
fn whitespace_only_text_has_no_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.txt");
    fs::write(&path, " \n\t\n  \r\n").unwrap();
    let parsed = parse_file(&path).unwrap();
    assert!(chunker(ChunkConfig::default()).chunk(&parsed).is_empty());
}

#[test]
fn discover_keeps_supported_files_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
        p
    };
    let a = write("docs/a.md");
    let b = write("docs/b.TXT");
    let c = write("docs/sub/deeper/c.pdf");
    let log = write("docs/sub/server.log");
    let docx = write("docs/report.docx");
    let jpg = write("docs/photo.jpg");
    let noext = write("docs/Makefile");
    write("docs/.hidden.md");
    write("docs/.git/HEAD.md");
    write("docs/sub/.cache/x.txt");
    let loose_pdf = write("elsewhere/paper.Pdf");
    let loose_xlsx = write("elsewhere/sheet.xlsx");
    let code = write("docs/src/main.rs");
    let hidden_direct = write("elsewhere/.notes.md");
    let missing = root.join("elsewhere/missing.md");

    let found = discover(&[
        root.join("docs"),
        loose_xlsx.clone(),
        loose_pdf.clone(),
        a.clone(), // also inside docs/: listed once
        missing.clone(),
        hidden_direct.clone(), // hidden, but picked by name: kept
    ]);

    let mut expected = vec![
        a,
        b,
        c,
        log,
        docx,
        code,
        loose_pdf,
        loose_xlsx,
        hidden_direct,
    ];
    expected.sort();
    assert_eq!(found.files, expected);

    let skipped: Vec<&PathBuf> = found.skipped.iter().map(|(p, _)| p).collect();
    let mut expected_skipped = vec![&jpg, &noext, &missing];
    expected_skipped.sort();
    assert_eq!(skipped, expected_skipped);
    let reason = |p: &PathBuf| &found.skipped.iter().find(|(q, _)| q == p).unwrap().1;
    assert!(reason(&jpg).contains(".jpg"), "{}", reason(&jpg));
    assert!(
        reason(&noext).contains("no file extension"),
        "{}",
        reason(&noext)
    );
    assert!(
        reason(&missing).contains("cannot read"),
        "{}",
        reason(&missing)
    );
}
