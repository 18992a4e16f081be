//! Supported document formats and their detection.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A document format Lectern can ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Plain text (`.txt`, `.text`, `.log`). The whole file is one page.
    Text,
    /// Markdown (`.md`, `.markdown`). The whole file is one page, split into
    /// sections at its ATX headings when chunked.
    Markdown,
    /// PDF (`.pdf`), read page by page from its text layer.
    Pdf,
}

impl Format {
    /// The lowercase name used in serialized form and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Pdf => "pdf",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detects a file's format from its extension, ignoring case.
///
/// `txt`, `text` and `log` are [`Format::Text`]; `md` and `markdown` are
/// [`Format::Markdown`]; `pdf` is [`Format::Pdf`]. Anything else, including a
/// file without an extension, is `None`.
pub fn detect_format(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" | "log" => Some(Format::Text),
        "md" | "markdown" => Some(Format::Markdown),
        "pdf" => Some(Format::Pdf),
        _ => None,
    }
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
        assert_eq!(detect_format(Path::new("sheet.xlsx")), None);
        assert_eq!(detect_format(Path::new("Makefile")), None);
        assert_eq!(detect_format(Path::new(".md")), None);
    }

    #[test]
    fn display_and_serde_are_lowercase() {
        assert_eq!(Format::Markdown.to_string(), "markdown");
        assert_eq!(serde_json::to_string(&Format::Pdf).unwrap(), "\"pdf\"");
        let f: Format = serde_json::from_str("\"text\"").unwrap();
        assert_eq!(f, Format::Text);
    }
}
