//! Just enough Markdown structure for chunking: ATX headings outside fenced
//! code blocks, and the sections they open.

/// A run of a Markdown page that sits under one heading path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    /// Byte offset where the section starts (the start of its heading line).
    pub start: usize,
    /// Byte offset just past the section's last byte.
    pub end: usize,
    /// The headings in force, outermost first.
    pub heading_path: Vec<String>,
}

/// An ATX heading: its level (1 to 6) and its text without the `#` markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heading {
    pub level: usize,
    pub text: String,
}

/// The text of the first level-1 heading outside code blocks, if any.
pub(crate) fn title(text: &str) -> Option<String> {
    headings(text)
        .into_iter()
        .find(|(_, h)| h.level == 1 && !h.text.is_empty())
        .map(|(_, h)| h.text)
}

/// Splits `text` into sections so that every heading starts a new section.
///
/// The sections are contiguous and cover `text` completely; text before the
/// first heading forms a section with an empty heading path. Empty sections
/// are left out.
pub(crate) fn sections(text: &str) -> Vec<Section> {
    sections_from_headings(
        text.len(),
        headings(text)
            .into_iter()
            .map(|(offset, h)| (offset, h.level, h.text)),
    )
}

/// Sections of a text of `len` bytes whose headings are given as
/// `(byte offset of the heading line, level, text)`, in order. A heading
/// closes every open heading of its level or deeper; blank headings close
/// but open nothing.
pub(crate) fn sections_from_headings(
    len: usize,
    headings: impl IntoIterator<Item = (usize, usize, String)>,
) -> Vec<Section> {
    let mut out = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut start = 0;
    for (offset, level, text) in headings {
        if offset < start || offset > len {
            continue;
        }
        if offset > start {
            out.push(Section {
                start,
                end: offset,
                heading_path: path.iter().map(|(_, t)| t.clone()).collect(),
            });
        }
        while path.last().is_some_and(|(l, _)| *l >= level) {
            path.pop();
        }
        if !text.is_empty() {
            path.push((level, text));
        }
        start = offset;
    }
    if len > start {
        out.push(Section {
            start,
            end: len,
            heading_path: path.into_iter().map(|(_, t)| t).collect(),
        });
    }
    out
}

/// Every ATX heading outside fenced code blocks, with the byte offset of its line.
fn headings(text: &str) -> Vec<(usize, Heading)> {
    let mut out = Vec::new();
    let mut open_fence: Option<(char, usize)> = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        match open_fence {
            Some((ch, len)) => {
                if let Some((c, n, rest)) = fence(line) {
                    if c == ch && n >= len && rest.trim().is_empty() {
                        open_fence = None;
                    }
                }
            }
            None => {
                if let Some((c, n, rest)) = fence(line) {
                    if c == '~' || !rest.contains('`') {
                        open_fence = Some((c, n));
                    }
                } else if let Some(h) = atx_heading(line) {
                    out.push((offset, h));
                }
            }
        }
        offset += raw.len();
    }
    out
}

/// Up to three spaces of indentation, as CommonMark allows before block markers.
fn strip_indent(line: &str) -> Option<&str> {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    (spaces <= 3).then(|| &line[spaces..])
}

/// A code fence line: its character, the length of the run, and what follows it.
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let rest = strip_indent(line)?;
    let ch = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = rest.len() - rest.trim_start_matches(ch).len();
    (n >= 3).then(|| (ch, n, &rest[n..]))
}

fn atx_heading(line: &str) -> Option<Heading> {
    let rest = strip_indent(line)?;
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &rest[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut text = rest.trim();
    // An optional closing run of `#` counts only when separated by a space.
    let without_closing = text.trim_end_matches('#');
    if without_closing.is_empty() {
        text = "";
    } else if without_closing.ends_with([' ', '\t']) {
        text = without_closing.trim_end();
    }
    Some(Heading {
        level,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<(String, Vec<String>)> {
        sections(text)
            .into_iter()
            .map(|s| (text[s.start..s.end].to_string(), s.heading_path))
            .collect()
    }

    #[test]
    fn headings_nest_and_pop() {
        let text = "intro\n# A\na\n## B\nb\n### C\nc\n## D\nd\n# E\ne\n";
        let got = paths(text);
        let expect: Vec<(&str, Vec<&str>)> = vec![
            ("intro\n", vec![]),
            ("# A\na\n", vec!["A"]),
            ("## B\nb\n", vec!["A", "B"]),
            ("### C\nc\n", vec!["A", "B", "C"]),
            ("## D\nd\n", vec!["A", "D"]),
            ("# E\ne\n", vec!["E"]),
        ];
        assert_eq!(got.len(), expect.len());
        for ((t, p), (et, ep)) in got.iter().zip(expect) {
            assert_eq!(t, et);
            assert_eq!(p, &ep);
        }
    }

    #[test]
    fn hashes_in_fenced_code_are_not_headings() {
        let text =
            "# Top\n````sh\n# a comment\n```\n## still code\n`````\n## Real\n~~~\n# x\n```\n~~~\n";
        let got = paths(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, vec!["Top"]);
        assert!(got[0].0.contains("# a comment"));
        assert!(got[0].0.contains("## still code"));
        assert_eq!(got[1].1, vec!["Top", "Real"]);
        assert!(got[1].0.contains("# x"));
    }

    #[test]
    fn atx_rules() {
        assert_eq!(atx_heading("#NoSpace"), None);
        assert_eq!(atx_heading("    # indented code"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("   ## Ok ##").unwrap().text, "Ok");
        assert_eq!(atx_heading("## C# ##").unwrap().text, "C#");
        assert_eq!(atx_heading("# C#").unwrap().text, "C#");
        assert_eq!(atx_heading("#").unwrap().text, "");
        assert_eq!(atx_heading("### Three\r").map(|h| h.level), Some(3));
    }

    #[test]
    fn title_is_first_level_one_heading() {
        assert_eq!(title("## Sub\n# Main\n# Other\n"), Some("Main".to_string()));
        assert_eq!(title("```\n# not\n```\ntext\n"), None);
    }
}
