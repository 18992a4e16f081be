//! Supported document formats and their detection.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A document format Lectern can ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Plain text (`.txt`, `.text`, `.log`). The whole file is one page.
    #[default]
    Text,
    /// Markdown (`.md`, `.markdown`). The whole file is one page, split into
    /// sections at its ATX headings when chunked.
    Markdown,
    /// PDF (`.pdf`), read page by page from its text layer, with OCR for
    /// scanned pages when Tesseract is installed.
    Pdf,
    /// Word document (`.docx`): paragraphs, headings and tables, one page.
    Docx,
    /// PowerPoint presentation (`.pptx`): one page per slide, with its
    /// speaker notes.
    Pptx,
    /// Spreadsheet workbook (`.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`): one
    /// page per sheet, rendered as table text.
    Spreadsheet,
    /// Comma- or tab-separated values (`.csv`, `.tsv`): one page of table text.
    Csv,
    /// Web page (`.html`, `.htm`, `.xhtml`): its main content, one page.
    Html,
    /// EPUB e-book (`.epub`): one page per chapter.
    Epub,
    /// Source code, recognised by extension (see [`code_language`]); one page.
    Code,
}

impl Format {
    /// The lowercase name used in serialized form and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Pptx => "pptx",
            Format::Spreadsheet => "spreadsheet",
            Format::Csv => "csv",
            Format::Html => "html",
            Format::Epub => "epub",
            Format::Code => "code",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Document extensions and their formats, lowercase, without the dot.
const DOCUMENT_EXTENSIONS: &[(&str, Format)] = &[
    ("txt", Format::Text),
    ("text", Format::Text),
    ("log", Format::Text),
    ("md", Format::Markdown),
    ("markdown", Format::Markdown),
    ("pdf", Format::Pdf),
    ("docx", Format::Docx),
    ("pptx", Format::Pptx),
    ("xlsx", Format::Spreadsheet),
    ("xlsm", Format::Spreadsheet),
    ("xlsb", Format::Spreadsheet),
    ("xls", Format::Spreadsheet),
    ("ods", Format::Spreadsheet),
    ("csv", Format::Csv),
    ("tsv", Format::Csv),
    ("html", Format::Html),
    ("htm", Format::Html),
    ("xhtml", Format::Html),
    ("epub", Format::Epub),
];

/// Source-code extensions and the language each stands for.
const CODE_EXTENSIONS: &[(&str, &str)] = &[
    ("rs", "rust"),
    ("py", "python"),
    ("pyi", "python"),
    ("js", "javascript"),
    ("mjs", "javascript"),
    ("cjs", "javascript"),
    ("jsx", "javascript"),
    ("ts", "typescript"),
    ("tsx", "typescript"),
    ("go", "go"),
    ("java", "java"),
    ("kt", "kotlin"),
    ("kts", "kotlin"),
    ("scala", "scala"),
    ("c", "c"),
    ("h", "c"),
    ("cc", "cpp"),
    ("cpp", "cpp"),
    ("cxx", "cpp"),
    ("hpp", "cpp"),
    ("hh", "cpp"),
    ("cs", "csharp"),
    ("swift", "swift"),
    ("rb", "ruby"),
    ("php", "php"),
    ("lua", "lua"),
    ("pl", "perl"),
    ("pm", "perl"),
    ("r", "r"),
    ("jl", "julia"),
    ("hs", "haskell"),
    ("ml", "ocaml"),
    ("mli", "ocaml"),
    ("ex", "elixir"),
    ("exs", "elixir"),
    ("erl", "erlang"),
    ("clj", "clojure"),
    ("dart", "dart"),
    ("zig", "zig"),
    ("sh", "shell"),
    ("bash", "shell"),
    ("zsh", "shell"),
    ("sql", "sql"),
    ("css", "css"),
    ("scss", "css"),
    ("vue", "vue"),
    ("svelte", "svelte"),
];

fn extension(path: &Path) -> Option<String> {
    Some(path.extension()?.to_str()?.to_ascii_lowercase())
}

/// Detects a file's format from its extension, ignoring case.
///
/// `txt`, `text` and `log` are [`Format::Text`]; `md` and `markdown` are
/// [`Format::Markdown`]; `pdf` is [`Format::Pdf`]; `docx` and `pptx` are
/// [`Format::Docx`] and [`Format::Pptx`]; `xlsx`, `xlsm`, `xlsb`, `xls` and
/// `ods` are [`Format::Spreadsheet`]; `csv` and `tsv` are [`Format::Csv`];
/// `html`, `htm` and `xhtml` are [`Format::Html`]; `epub` is
/// [`Format::Epub`]; the source-code extensions of [`code_language`] are
/// [`Format::Code`]. Anything else, including a file without an extension,
/// is `None`.
pub fn detect_format(path: &Path) -> Option<Format> {
    let ext = extension(path)?;
    DOCUMENT_EXTENSIONS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|&(_, f)| f)
        .or_else(|| code_language(path).map(|_| Format::Code))
}

/// The programming language of a source file, from its extension: for
/// example `"rust"` for `.rs` and `"python"` for `.py`. `None` for anything
/// that is not recognised as source code.
pub fn code_language(path: &Path) -> Option<&'static str> {
    let ext = extension(path)?;
    CODE_EXTENSIONS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|&(_, lang)| lang)
}

/// A one-line summary of the supported extensions, for messages.
pub(crate) fn supported_summary() -> String {
    let docs: Vec<String> = DOCUMENT_EXTENSIONS
        .iter()
        .map(|(e, _)| format!(".{e}"))
        .collect();
    format!(
        "supported: {}, and source code such as .rs, .py, .js, .ts, .go, .java, .c, .cpp",
        docs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension_ignoring_case() {
        assert_eq!(detect_format(Path::new("a/notes.TXT")), Some(Format::Text));
        assert_eq!(detect_format(Path::new("server.log")), Some(Format::Text));
        assert_eq!(detect_format(Path::new("x.text")), Some(Format::Text));
        assert_eq!(
            detect_format(Path::new("README.Md")),
            Some(Format::Markdown)
        );
        assert_eq!(
            detect_format(Path::new("b.markdown")),
            Some(Format::Markdown)
        );
        assert_eq!(detect_format(Path::new("paper.PDF")), Some(Format::Pdf));
        assert_eq!(
            detect_format(Path::new("sheet.xlsx")),
            Some(Format::Spreadsheet)
        );
        assert_eq!(
            detect_format(Path::new("old.XLS")),
            Some(Format::Spreadsheet)
        );
        assert_eq!(
            detect_format(Path::new("calc.ods")),
            Some(Format::Spreadsheet)
        );
        assert_eq!(detect_format(Path::new("d.tsv")), Some(Format::Csv));
        assert_eq!(detect_format(Path::new("r.docx")), Some(Format::Docx));
        assert_eq!(detect_format(Path::new("s.pptx")), Some(Format::Pptx));
        assert_eq!(detect_format(Path::new("p.htm")), Some(Format::Html));
        assert_eq!(detect_format(Path::new("b.epub")), Some(Format::Epub));
        assert_eq!(detect_format(Path::new("main.rs")), Some(Format::Code));
        assert_eq!(code_language(Path::new("x/y.PY")), Some("python"));
        assert_eq!(code_language(Path::new("notes.txt")), None);
        assert_eq!(detect_format(Path::new("Makefile")), None);
        assert_eq!(detect_format(Path::new("photo.jpg")), None);
        assert_eq!(detect_format(Path::new(".md")), None);
    }

    #[test]
    fn display_and_serde_are_lowercase() {
        assert_eq!(Format::Markdown.to_string(), "markdown");
        assert_eq!(serde_json::to_string(&Format::Pdf).unwrap(), "\"pdf\"");
        let f: Format = serde_json::from_str("\"text\"").unwrap();
        assert_eq!(f, Format::Text);
        let f: Format = serde_json::from_str("\"spreadsheet\"").unwrap();
        assert_eq!(f, Format::Spreadsheet);
        assert_eq!(Format::default(), Format::Text);
    }
}
