//! Where a chunk is in its document, for citations.

use serde::{Deserialize, Serialize};

/// The place a chunk cites: a page, a slide, a sheet's rows, a chapter or
/// a line range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// Somewhere in a document that has no finer anchor (a Word document or
    /// web page; its heading path says where).
    #[default]
    Document,
    /// Lines of a text, Markdown or source file, numbered from 1, inclusive.
    Lines {
        /// The line the chunk starts on.
        first: u32,
        /// The line the chunk ends on.
        last: u32,
    },
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
    /// Rows of a spreadsheet sheet, numbered as the spreadsheet shows them,
    /// inclusive.
    Sheet {
        /// The sheet's name.
        name: String,
        /// The first row in the chunk.
        first_row: u32,
        /// The last row in the chunk.
        last_row: u32,
    },
    /// Rows of a CSV file, numbered from 1 (the first record), inclusive.
    Rows {
        /// The first row in the chunk.
        first: u32,
        /// The last row in the chunk.
        last: u32,
    },
    /// An e-book chapter, numbered from 1.
    Chapter {
        /// The 1-based chapter number.
        number: u32,
        /// The chapter's title, when known.
        title: Option<String>,
    },
}

impl Location {
    /// The location alone, for example `"p. 3"`, `"slide 4 — Title"`,
    /// `"Sheet1 rows 2–41"`, `"rows 5–9"`, `"ch. 2 — Title"`,
    /// `"lines 10–42"`; empty for [`Location::Document`]. See
    /// [`Chunk::location_label`](crate::Chunk::location_label) for the full
    /// label with the heading path.
    pub fn label(&self) -> String {
        let span = |noun: &str, plural: &str, a: u32, b: u32| {
            if a == b {
                format!("{noun} {a}")
            } else {
                format!("{plural} {a}–{b}")
            }
        };
        let titled = |base: String, title: &Option<String>| match title {
            Some(t) if !t.is_empty() => format!("{base} — {t}"),
            _ => base,
        };
        match self {
            Location::Document => String::new(),
            Location::Lines { first, last } => span("line", "lines", *first, *last),
            Location::Page { number } => format!("p. {number}"),
            Location::Slide { number, title } => titled(format!("slide {number}"), title),
            Location::Sheet {
                name,
                first_row,
                last_row,
            } => format!("{name} {}", span("row", "rows", *first_row, *last_row)),
            Location::Rows { first, last } => span("row", "rows", *first, *last),
            Location::Chapter { number, title } => titled(format!("ch. {number}"), title),
        }
    }

    /// The slide's or chapter's title, if any.
    pub fn title(&self) -> Option<&str> {
        match self {
            Location::Slide { title, .. } | Location::Chapter { title, .. } => title.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(Location::Page { number: 3 }.label(), "p. 3");
        assert_eq!(
            Location::Slide {
                number: 4,
                title: Some("Plan".into())
            }
            .label(),
            "slide 4 — Plan"
        );
        assert_eq!(
            Location::Sheet {
                name: "Sheet1".into(),
                first_row: 2,
                last_row: 41
            }
            .label(),
            "Sheet1 rows 2–41"
        );
        assert_eq!(Location::Rows { first: 7, last: 7 }.label(), "row 7");
        assert_eq!(
            Location::Chapter {
                number: 2,
                title: None
            }
            .label(),
            "ch. 2"
        );
        assert_eq!(Location::Lines { first: 1, last: 9 }.label(), "lines 1–9");
        assert_eq!(Location::Document.label(), "");
    }

    #[test]
    fn serde_is_tagged_and_defaults_to_document() {
        let json = serde_json::to_string(&Location::Page { number: 2 }).unwrap();
        assert_eq!(json, r#"{"kind":"page","number":2}"#);
        let back: Location = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Location::Page { number: 2 });
        assert_eq!(Location::default(), Location::Document);
    }
}
