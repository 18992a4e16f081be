//! Web pages and e-book chapters: the main content as text, with headings.
//!
//! Parsed with `dom_query` (an html5ever DOM, the parser the desktop shell
//! already ships through its webview crates). The main content is picked
//! by markup rather than by readability scoring: the page's `<main>` or
//! `role="main"` element, else its only `<article>`, else its body; then
//! navigation, headers and footers, sidebars, scripts, forms and tables of
//! contents are dropped. Readability-style scoring (as in `dom_smoothie`)
//! is tuned for news articles and tends to drop exactly what matters in
//! documentation and books (tables, code listings, short sections); the
//! semantic containers above are what documentation generators, book
//! formats and modern sites emit.
//!
//! Headings `<h1>`–`<h6>` become [`HeadingMark`](crate::HeadingMark)s;
//! paragraphs and other blocks are separated by blank lines; list items and
//! table rows take one line each, table cells separated by ` | `; `<pre>`
//! keeps its line breaks.

use dom_query::{Document, NodeRef};

use crate::parse::{collapse_whitespace, decode_text, Extracted, HeadingMark, Page, TextBuilder};

/// Elements that are never main content.
const BOILERPLATE: &str = "script, style, noscript, template, svg, canvas, iframe, object, \
     nav, aside, footer, form, button, select, input, textarea, \
     [role=navigation], [role=banner], [role=contentinfo], [role=complementary], \
     [role=search], [hidden], [aria-hidden=true], \
     .navheader, .navfooter, .toc, .sphinxsidebar, .related, .headerlink, .skip-link";

/// A page's main content as text.
#[derive(Debug, Default)]
pub(crate) struct HtmlText {
    pub text: String,
    pub headings: Vec<HeadingMark>,
    /// The first `<h1>` of the main content, else the `<title>`.
    pub title: Option<String>,
}

/// Reads an HTML file into one page.
pub(crate) fn parse(bytes: &[u8]) -> Result<Extracted, String> {
    let mut warnings = Vec::new();
    let source = decode_text(bytes.to_vec(), &mut warnings);
    let html = extract(&source);
    if html.text.is_empty() && !source.trim().is_empty() && !looks_like_html(&source) {
        return Err("no HTML markup found".to_string());
    }
    Ok(Extracted {
        pages: vec![Page {
            text: html.text,
            headings: html.headings,
            ..Page::default()
        }],
        title: html.title,
        warnings,
    })
}

fn looks_like_html(source: &str) -> bool {
    let head: String = source.chars().take(4096).collect::<String>().to_lowercase();
    head.contains("<html") || head.contains("<body") || head.contains("<!doctype")
}

/// Extracts the main content of an HTML or XHTML document.
pub(crate) fn extract(source: &str) -> HtmlText {
    let doc = Document::from(source);
    let page_title = doc
        .select("head title")
        .nodes()
        .first()
        .map(|n| collapse_whitespace(&n.text()))
        .filter(|t| !t.is_empty());

    let root = main_root(&doc);
    let Some(root) = root else {
        return HtmlText {
            title: page_title,
            ..HtmlText::default()
        };
    };
    // Site headers are boilerplate only outside an article or main element.
    let mut junk = BOILERPLATE.to_string();
    if root.has_name("body") {
        junk.push_str(", body > header, body > div > header");
    }
    for node in doc.select(&junk).nodes() {
        node.remove_from_parent();
    }

    let mut walker = Walker::default();
    walker.walk(&root);
    walker.flush(false);
    let (text, headings) = walker.b.finish();
    let title = headings
        .iter()
        .find(|h| h.level == 1)
        .map(|h| h.text.clone())
        .or(page_title);
    HtmlText {
        text,
        headings,
        title,
    }
}

/// The element holding the main content.
fn main_root(doc: &Document) -> Option<NodeRef<'_>> {
    if let Some(node) = doc.select("main, [role=main]").nodes().first() {
        return Some(*node);
    }
    let articles = doc.select("article");
    if articles.nodes().len() == 1 {
        return articles.nodes().first().cloned();
    }
    doc.body().or_else(|| Some(doc.root()))
}

#[derive(Default)]
struct Walker {
    b: TextBuilder,
    /// Inline text of the block being read.
    inline: String,
}

impl Walker {
    /// Ends the inline run: as a line of its own when `line`, else as a
    /// paragraph.
    fn flush(&mut self, line: bool) {
        let text = collapse_whitespace(&self.inline);
        self.inline.clear();
        if text.is_empty() || text == "-" {
            return;
        }
        if line {
            self.b.line(&text);
        } else {
            self.b.paragraph(&text);
        }
    }

    fn walk(&mut self, node: &NodeRef) {
        for child in node.children_it(false) {
            if child.is_text() {
                self.inline.push_str(&child.text());
            } else if child.is_element() {
                self.element(&child);
            }
        }
    }

    fn element(&mut self, node: &NodeRef) {
        let name = node.node_name().map(|n| n.to_ascii_lowercase());
        let name = name.as_deref().unwrap_or("");
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush(false);
                let level = name[1..].parse().unwrap_or(1);
                self.b.heading(level, &node.text());
            }
            "pre" => {
                self.flush(false);
                let text = node.text();
                let text = text.trim_end();
                let text = text.trim_start_matches(['\n', '\r']);
                if !text.trim().is_empty() {
                    self.b.end_block();
                    self.b.line(text);
                    self.b.end_block();
                }
            }
            "table" => {
                self.flush(false);
                self.b.end_block();
                for row in node.descendants_it().filter(|n| n.has_name("tr")) {
                    let cells: Vec<String> = row
                        .element_children()
                        .iter()
                        .filter(|c| c.has_name("td") || c.has_name("th"))
                        .map(|c| collapse_whitespace(&c.text()))
                        .collect();
                    if cells.iter().any(|c| !c.is_empty()) {
                        self.b.line(&cells.join(" | "));
                    }
                }
                self.b.end_block();
            }
            "ul" | "ol" | "dl" => {
                self.flush(false);
                self.b.end_block();
                let ordered = name == "ol";
                let mut n = 0;
                for child in node.children_it(false) {
                    if child.has_name("li") {
                        n += 1;
                        self.flush(true);
                        self.inline.push_str(&if ordered {
                            format!("{n}. ")
                        } else {
                            "- ".into()
                        });
                        self.walk(&child);
                        self.flush(true);
                    } else if child.is_element() {
                        self.element(&child);
                    } else if child.is_text() {
                        self.inline.push_str(&child.text());
                    }
                }
                self.flush(true);
                self.b.end_block();
            }
            "li" | "dt" | "dd" | "tr" | "caption" | "figcaption" => {
                self.flush(true);
                self.walk(node);
                self.flush(true);
            }
            "br" => self.flush(true),
            "hr" => self.flush(false),
            "img" => {
                if let Some(alt) = node.attr("alt").filter(|a| !a.trim().is_empty()) {
                    self.inline.push(' ');
                    self.inline.push_str(&alt);
                    self.inline.push(' ');
                }
            }
            "script" | "style" | "noscript" | "template" | "head" | "title" | "meta" | "link" => {}
            "p" | "div" | "section" | "article" | "main" | "header" | "blockquote" | "figure"
            | "address" | "details" | "summary" | "center" | "body" | "html" | "fieldset"
            | "legend" | "dir" | "menu" => {
                self.flush(false);
                self.walk(node);
                self.flush(false);
            }
            _ => self.walk(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_content_headings_lists_tables() {
        let html = r##"<!DOCTYPE html><html><head><title>Page T</title>
            <script>var x = 1;</script></head><body>
            <header>Site banner</header>
            <nav><a href="/">Home</a></nav>
            <main>
              <h1>Guide <a class="headerlink" href="#g">¶</a></h1>
              <p>Intro   text
                 with <em>inline</em> markup.</p>
              <h2>Install</h2>
              <ul><li>first</li><li>second <b>item</b></li></ul>
              <pre>$ cargo build
  --release</pre>
              <table><tr><th>Name</th><th>Size</th></tr>
                     <tr><td>a</td><td>1</td></tr></table>
            </main>
            <footer>© someone</footer></body></html>"##;
        let got = extract(html);
        assert_eq!(
            got.text,
            "Guide\n\nIntro text with inline markup.\n\nInstall\n\n- first\n- second item\n\n\
             $ cargo build\n  --release\n\nName | Size\na | 1"
        );
        let heads: Vec<(u8, &str)> = got
            .headings
            .iter()
            .map(|h| (h.level, h.text.as_str()))
            .collect();
        assert_eq!(heads, vec![(1, "Guide"), (2, "Install")]);
        assert_eq!(&got.text[got.headings[1].offset..][..7], "Install");
        assert_eq!(got.title.as_deref(), Some("Guide"));
    }

    #[test]
    fn body_without_main_drops_page_header_and_uses_title() {
        let html = "<html><head><title> The  Title </title></head><body>\
                    <header><p>Menu</p></header><div><p>Body text.</p></div></body></html>";
        let got = extract(html);
        assert_eq!(got.text, "Body text.");
        assert_eq!(got.title.as_deref(), Some("The Title"));
    }
}
