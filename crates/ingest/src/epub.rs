//! EPUB e-books, read with `rbook` (Apache-2.0): one page per chapter, a
//! chapter being a document of the book's spine, in reading order, with the
//! title its table of contents gives it.

use std::collections::HashMap;
use std::io::Cursor;

use rbook::Epub;

use crate::html;
use crate::parse::{collapse_whitespace, Extracted, Page, PageAnchor};

/// Reads an `.epub` file. Spine documents without text (covers, image
/// pages, the navigation document) are left out; chapters are numbered
/// from 1 among the rest. A chapter that cannot be read costs a warning.
pub(crate) fn parse(bytes: &[u8]) -> Result<Extracted, String> {
    let epub =
        Epub::read(Cursor::new(bytes.to_vec())).map_err(|e| format!("not a readable EPUB: {e}"))?;

    // The first table-of-contents label pointing at each document.
    let mut labels: HashMap<String, String> = HashMap::new();
    if let Some(contents) = epub.toc().contents() {
        for entry in contents.flatten() {
            let label = collapse_whitespace(entry.label());
            if let (Some(item), false) = (entry.manifest_entry(), label.is_empty()) {
                labels.entry(item.id().to_string()).or_insert(label);
            }
        }
    }

    let mut pages = Vec::new();
    let mut warnings = Vec::new();
    let spine = epub.spine();
    for entry in spine.iter() {
        let Some(item) = entry.manifest_entry() else {
            warnings.push(format!(
                "spine item \"{}\" is missing from the manifest",
                entry.idref()
            ));
            continue;
        };
        if !item.media_type().contains("html") {
            continue;
        }
        let source = match item.read_str() {
            Ok(source) => source,
            Err(e) => {
                warnings.push(format!("chapter {} could not be read: {e}", item.href()));
                continue;
            }
        };
        let chapter = html::extract(&source);
        if chapter.text.is_empty() {
            continue;
        }
        let number = u32::try_from(pages.len() + 1).unwrap_or(u32::MAX);
        let title = labels
            .get(item.id())
            .cloned()
            .or_else(|| chapter.headings.first().map(|h| h.text.clone()))
            .or(chapter.title);
        pages.push(Page {
            number: None,
            text: chapter.text,
            anchor: PageAnchor::Chapter { number, title },
            headings: chapter.headings,
            ..Page::default()
        });
    }
    if pages.is_empty() && !spine.is_empty() && !warnings.is_empty() {
        return Err(warnings.join("; "));
    }
    let title = epub
        .metadata()
        .title()
        .map(|t| collapse_whitespace(t.as_meta().value()))
        .filter(|t| !t.is_empty());
    Ok(Extracted {
        pages,
        title,
        warnings,
    })
}
