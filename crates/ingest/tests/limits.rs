//! Files beyond the size limits are refused before parsing, with an error
//! that names the file and the limit, and nothing else is affected.

mod common;

use std::io::Write;

use common::{doc, docs_dir};
use lectern_ingest::{parse_file_with, Format, IngestError, ParseOptions};

fn options() -> ParseOptions {
    ParseOptions {
        ocr: lectern_ingest::OcrMode::Off,
        ..ParseOptions::default()
    }
}

/// A one-entry zip holding `len` zeros, deflated.
fn zip_of_zeros(len: usize) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    out.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    out.write_all(&vec![b'0'; len]).unwrap();
    out.finish().unwrap().into_inner()
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_reading() {
    let path = doc("md/rust-book-ch08-02-strings.md");
    let size = std::fs::metadata(&path).unwrap().len();
    let mut opts = options();
    opts.max_file_bytes = size - 1;
    match parse_file_with(&path, &opts) {
        Err(e @ IngestError::TooLarge { .. }) => {
            let text = e.to_string();
            assert!(text.contains("rust-book-ch08-02-strings.md"), "{text}");
            assert!(text.contains("the file is"), "{text}");
            assert_eq!(e.path(), Some(path.as_path()));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    opts.max_file_bytes = size;
    let parsed = parse_file_with(&path, &opts).expect("at the limit it is read");
    assert_eq!(parsed.byte_len, size);
}

#[test]
fn archives_that_unpack_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.docx");
    std::fs::write(&path, zip_of_zeros(2 << 20)).unwrap();
    let mut opts = options();
    opts.max_unpacked_bytes = 1 << 20;
    match parse_file_with(&path, &opts) {
        Err(e @ IngestError::TooLarge { size, limit, .. }) => {
            assert_eq!(size, 2 << 20);
            assert_eq!(limit, 1 << 20);
            assert!(
                e.to_string()
                    .contains("unpacked contents is 2.0 MiB, over the 1.0 MiB limit"),
                "{e}"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Under the limit the same file reaches the Word parser (which then
    // finds no document in it).
    opts.max_unpacked_bytes = 4 << 20;
    match parse_file_with(&path, &opts) {
        Err(IngestError::Parse { format, .. }) => assert_eq!(format, Format::Docx),
        Err(IngestError::Panicked { .. }) | Ok(_) => {}
        Err(other) => panic!("limit applied below it: {other}"),
    }
}

#[test]
fn an_archive_declaring_a_huge_unpacked_size_is_a_likely_bomb() {
    let mut bytes = zip_of_zeros(1024);
    // Make the central directory claim 200 MiB for the entry: what a
    // decompression bomb looks like before anything is inflated.
    let at = bytes
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("central directory header");
    bytes[at + 24..at + 28].copy_from_slice(&(200u32 << 20).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.xlsx");
    std::fs::write(&path, &bytes).unwrap();
    match parse_file_with(&path, &options()) {
        Err(e @ IngestError::TooLarge { .. }) => {
            let text = e.to_string();
            assert!(text.contains("bomb.xlsx"), "{text}");
            assert!(text.contains("likely decompression bomb"), "{text}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn real_office_files_pass_the_default_limits() {
    for name in ["docx", "pptx", "xlsx", "epub"] {
        let folder = docs_dir().join(name);
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if let Err(e @ IngestError::TooLarge { .. }) = parse_file_with(&path, &options()) {
                panic!("{e}");
            }
        }
    }
}
