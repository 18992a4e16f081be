//! Word documents and PowerPoint presentations, read with `office_oxide`.
//!
//! `office_oxide` is the Office reader of the same pure-Rust family as the
//! PDF parser (which already depends on it), so it adds no parser to the
//! build. Its format-neutral intermediate representation gives headings
//! with their levels, paragraphs, lists, tables with their rows, slides in
//! presentation order with their titles, and speaker notes.

use std::io::Cursor;

use office_oxide::ir::{inline_to_text, Element, List, Table};
use office_oxide::{Document, DocumentFormat, DocumentIR};

use crate::parse::{collapse_whitespace, Extracted, Page, PageAnchor, TextBuilder};

/// The heading above a slide's speaker notes.
pub(crate) const NOTES_HEADING: &str = "Speaker notes";

fn open(bytes: &[u8], format: DocumentFormat) -> Result<(DocumentIR, Vec<String>), String> {
    let doc = Document::from_reader(Cursor::new(bytes.to_vec()), format)
        .map_err(|e| format!("not a readable {} file: {e}", format.extension()))?;
    let warnings = doc
        .damage()
        .iter()
        .filter(|d| d.is_loss())
        .take(10)
        .map(|d| format!("part of the file could not be read: {d}"))
        .collect();
    Ok((doc.to_ir(), warnings))
}

/// Reads a `.docx` file into one page: paragraphs as blocks, headings
/// recorded for the heading path, table rows one per line with cells
/// separated by ` | `, list items one per line.
/// The document's title from its properties, if it has a non-blank one.
fn metadata_title(ir: &DocumentIR) -> Option<String> {
    ir.metadata
        .title
        .as_deref()
        .map(collapse_whitespace)
        .filter(|t| !t.is_empty())
}

pub(crate) fn parse_docx(bytes: &[u8]) -> Result<Extracted, String> {
    let (ir, warnings) = open(bytes, DocumentFormat::Docx)?;
    let mut b = TextBuilder::default();
    for section in &ir.sections {
        render(&section.elements, &mut b);
    }
    let (text, headings) = b.finish();
    let title = metadata_title(&ir).or_else(|| headings.first().map(|h| h.text.clone()));
    Ok(Extracted {
        pages: vec![Page {
            text,
            headings,
            ..Page::default()
        }],
        title,
        warnings,
    })
}

/// Reads a `.pptx` file into one page per slide, numbered from 1 in
/// presentation order, each followed by its speaker notes under a
/// "Speaker notes" heading.
pub(crate) fn parse_pptx(bytes: &[u8]) -> Result<Extracted, String> {
    let (ir, warnings) = open(bytes, DocumentFormat::Pptx)?;
    let mut pages = Vec::with_capacity(ir.sections.len());
    for (i, section) in ir.sections.iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let title = section
            .title
            .as_deref()
            .map(collapse_whitespace)
            .filter(|t| !t.is_empty());
        let mut b = TextBuilder::default();
        render(&section.elements, &mut b);
        if let Some(notes) = &section.speaker_notes {
            let mut n = TextBuilder::default();
            render(notes, &mut n);
            let (notes_text, _) = n.finish();
            if !notes_text.is_empty() {
                b.heading(1, NOTES_HEADING);
                b.paragraph(&notes_text);
            }
        }
        let (text, headings) = b.finish();
        pages.push(Page {
            number: Some(number),
            text,
            anchor: PageAnchor::Slide { number, title },
            headings,
            ..Page::default()
        });
    }
    let title = metadata_title(&ir).or_else(|| pages.iter().find_map(slide_title));
    Ok(Extracted {
        pages,
        title,
        warnings,
    })
}

fn slide_title(page: &Page) -> Option<String> {
    match &page.anchor {
        PageAnchor::Slide { title, .. } => title.clone(),
        _ => None,
    }
}

/// Renders block elements into `b`.
fn render(elements: &[Element], b: &mut TextBuilder) {
    for element in elements {
        match element {
            Element::Heading(h) => b.heading(h.clamped_level(), &inline_to_text(&h.content)),
            Element::Paragraph(p) => b.paragraph(&inline_to_text(&p.content)),
            Element::Table(t) => table(t, b),
            Element::List(l) => {
                b.end_block();
                list(l, 0, b);
                b.end_block();
            }
            Element::TextBox(tb) => render(&tb.content, b),
            Element::Footnote(note) | Element::Endnote(note) => render(&note.content, b),
            Element::CodeBlock(code) => b.paragraph(&code.content),
            Element::Image(image) => {
                if let Some(alt) = image.alt_text.as_deref().filter(|a| !a.trim().is_empty()) {
                    b.paragraph(alt);
                }
            }
            _ => {}
        }
    }
}

/// One line per row, cells separated by ` | `; empty rows are left out.
fn table(t: &Table, b: &mut TextBuilder) {
    b.end_block();
    for row in &t.rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|c| collapse_whitespace(&flat_text(&c.content)))
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            b.line(&cells.join(" | "));
        }
    }
    b.end_block();
}

fn list(l: &List, depth: usize, b: &mut TextBuilder) {
    let start = l.start_number.unwrap_or(1);
    for (i, item) in l.items.iter().enumerate() {
        let text = collapse_whitespace(&flat_text(&item.content));
        if !text.is_empty() {
            let marker = if l.ordered {
                format!("{}.", start as usize + i)
            } else {
                "-".to_string()
            };
            b.line(&format!("{}{marker} {text}", "  ".repeat(depth)));
        }
        if let Some(nested) = &item.nested {
            list(nested, depth + 1, b);
        }
    }
}

/// All the text of some elements, blocks separated by spaces.
fn flat_text(elements: &[Element]) -> String {
    let mut b = TextBuilder::default();
    render(elements, &mut b);
    b.finish().0
}
