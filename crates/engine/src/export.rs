//! A conversation as a Markdown file: every question and answer, and under
//! each answer the passages it cites, with document, location and path, so
//! the export stands on its own outside Lectern.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Local, TimeZone as _};

use crate::{now_secs, Conversation, ConversationError, ConversationStore, MessageRole, SourceRef};

/// Longest passage excerpt quoted under an answer, in characters.
const EXCERPT_CHARS: usize = 400;

impl Conversation {
    /// Renders the conversation as Markdown. Citation markers `[n]` stay in
    /// the answers; each answer is followed by the sources it cites (or, when
    /// it cites none, a note saying so).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let questions = self
            .messages
            .iter()
            .filter(|m| m.role == MessageRole::User)
            .count();
        let _ = writeln!(out, "# {}\n", one_line(&self.title));
        let _ = writeln!(
            out,
            "*Exported from Lectern on {} · {} {}*\n",
            when(now_secs()),
            questions,
            if questions == 1 {
                "question"
            } else {
                "questions"
            }
        );
        for message in &self.messages {
            match message.role {
                MessageRole::User => {
                    let _ = writeln!(out, "## {}\n", one_line(&message.text));
                    let _ = writeln!(out, "*Asked {}*\n", when(message.created_at));
                }
                MessageRole::Assistant => {
                    let thinking = message.thinking.trim();
                    if !thinking.is_empty() {
                        let _ = writeln!(
                            out,
                            "<details><summary>Thinking</summary>\n\n{thinking}\n\n</details>\n"
                        );
                    }
                    let text = message.text.trim();
                    if text.is_empty() {
                        out.push_str("*No answer: nothing in the library matched.*\n\n");
                    } else {
                        let _ = writeln!(out, "{text}\n");
                    }
                    if message.stopped {
                        out.push_str("*The answer was stopped before it finished.*\n\n");
                    }
                    write_sources(&mut out, &message.sources);
                }
            }
        }
        out
    }
}

impl ConversationStore {
    /// Writes conversation `id` as Markdown to `dest` (an absolute path; `.md`
    /// is added when it has no extension) and returns the path written. The
    /// file appears whole or not at all: it is written next to `dest` and
    /// renamed into place.
    pub fn export_markdown(&self, id: &str, dest: &Path) -> Result<PathBuf, ConversationError> {
        if !dest.is_absolute() {
            return Err(ConversationError::InvalidInput(format!(
                "export path {} is not absolute",
                dest.display()
            )));
        }
        let conversation = self.get(id)?;
        let mut dest = dest.to_path_buf();
        if dest.extension().is_none() {
            dest.set_extension("md");
        }
        let fail = |source: std::io::Error| ConversationError::Export {
            path: dest.clone(),
            source: Arc::new(source),
        };
        let dir = dest
            .parent()
            .ok_or_else(|| fail(std::io::Error::other("the path has no folder")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
        tmp.write_all(conversation.to_markdown().as_bytes())
            .map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        tmp.persist(&dest).map_err(|e| fail(e.error))?;
        Ok(dest)
    }
}

fn write_sources(out: &mut String, sources: &[SourceRef]) {
    let cited: Vec<&SourceRef> = sources.iter().filter(|s| s.cited).collect();
    if cited.is_empty() {
        if !sources.is_empty() {
            out.push_str("*The answer cites none of the passages it was given.*\n\n");
        }
        return;
    }
    out.push_str("**Sources**\n\n");
    for s in cited {
        let mut head = format!("[{}] **{}**", s.n, one_line(&s.title));
        let place = if !s.location.is_empty() {
            Some(s.location.clone())
        } else {
            s.page.map(|p| format!("p. {p}"))
        };
        if let Some(place) = place {
            let _ = write!(head, ", {place}");
        }
        if !s.heading_path.is_empty() {
            let _ = write!(head, " — {}", one_line(&s.heading_path.join(" › ")));
        }
        let _ = writeln!(out, "- {head}  ");
        let _ = writeln!(out, "  `{}`", s.path.replace('`', "'"));
        let excerpt = excerpt(&s.text);
        if !excerpt.is_empty() {
            let _ = writeln!(out, "\n  > {excerpt}");
        }
        out.push('\n');
    }
}

/// Collapses whitespace so a title or heading stays on its Markdown line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The passage on one quoted line, cut at a word boundary.
fn excerpt(text: &str) -> String {
    let flat = one_line(text);
    if flat.chars().count() <= EXCERPT_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(EXCERPT_CHARS).collect();
    let end = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", &cut[..end])
}

fn when(secs: u64) -> String {
    match Local.timestamp_opt(secs as i64, 0).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => "an unknown date".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn source(n: usize, cited: bool, text: &str) -> SourceRef {
        SourceRef {
            n,
            title: format!("Doc {n}\nsubtitle"),
            path: format!("/docs/doc{n}.pdf"),
            page: Some(n as u32 + 1),
            chunk_id: format!("c{n}"),
            char_start: 0,
            char_end: text.len() as u64,
            location: if n == 2 {
                "slide 4 — Plan".into()
            } else {
                String::new()
            },
            heading_path: vec!["Results".into(), "Boiling".into()],
            text: text.into(),
            score: 0.1,
            bm25_rank: Some(1),
            bm25_score: Some(3.0),
            dense_rank: None,
            dense_distance: None,
            rerank_score: None,
            cited,
        }
    }

    fn conversation() -> Conversation {
        let long = "word ".repeat(200);
        Conversation {
            id: "0123456789abcdef".into(),
            title: "Water\nfacts".into(),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_100,
            messages: vec![
                Message::user("When does water boil?"),
                Message::assistant(
                    "At 100 °C at sea level [1], per the plan [2].",
                    vec![
                        source(1, true, "Water boils at 100 °C\nat sea level."),
                        source(2, true, &long),
                        source(3, false, "Unused passage that must not appear."),
                    ],
                    false,
                ),
                Message::user("And on Everest?"),
                Message::assistant("It boils at about 70 °C", vec![source(1, false, "x")], true)
                    .with_thinking("Air pressure is lower up there."),
            ],
            collection: None,
        }
    }

    #[test]
    fn markdown_keeps_questions_answers_and_only_cited_sources() {
        let md = conversation().to_markdown();
        assert!(md.starts_with("# Water facts\n"), "{md}");
        assert!(md.contains("· 2 questions*"), "{md}");
        assert!(md.contains("## When does water boil?\n"));
        assert!(md.contains("At 100 °C at sea level [1], per the plan [2]."));
        assert!(
            md.contains("- [1] **Doc 1 subtitle**, p. 2 — Results › Boiling  \n  `/docs/doc1.pdf`")
        );
        assert!(md.contains("> Water boils at 100 °C at sea level."));
        assert!(md.contains("- [2] **Doc 2 subtitle**, slide 4 — Plan"));
        assert!(!md.contains("Unused passage"));
        // The second answer cites nothing and was stopped.
        assert!(md.contains("*The answer cites none of the passages it was given.*"));
        assert!(md.contains("*The answer was stopped before it finished.*"));
        let q1 = md.find("## When does water boil?").unwrap();
        let q2 = md.find("## And on Everest?").unwrap();
        assert!(q1 < q2);
        // Reasoning comes folded, before its answer, and only where there was some.
        let thought = md
            .find("<details><summary>Thinking</summary>\n\nAir pressure is lower up there.\n\n</details>")
            .expect("the second answer's thinking");
        assert!(q2 < thought && thought < md.find("It boils at about 70 °C").unwrap());
        assert_eq!(md.matches("<details>").count(), 1);
    }

    #[test]
    fn export_writes_the_file_and_refuses_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path().join("conversations"));
        let c = store.create("Boiling").unwrap();
        store
            .append(&c.id, Message::user("When does water boil?"))
            .unwrap();
        let written = store
            .export_markdown(&c.id, &dir.path().join("out"))
            .unwrap();
        assert_eq!(written, dir.path().join("out.md"));
        let text = std::fs::read_to_string(&written).unwrap();
        assert!(text.starts_with("# Boiling\n"), "{text}");
        assert!(text.contains("## When does water boil?"));
        assert!(matches!(
            store.export_markdown(&c.id, Path::new("relative.md")),
            Err(ConversationError::InvalidInput(_))
        ));
        assert!(matches!(
            store.export_markdown(&c.id, &dir.path().join("missing-folder/x.md")),
            Err(ConversationError::Export { .. })
        ));
        assert!(matches!(
            store.export_markdown("0000000000000000", &dir.path().join("y.md")),
            Err(ConversationError::NotFound(_))
        ));
    }

    #[test]
    fn long_passages_are_cut_at_a_word_boundary() {
        let md = conversation().to_markdown();
        let line = md.lines().find(|l| l.starts_with("  > word")).unwrap();
        assert!(line.ends_with("word…"), "{line}");
        assert!(line.chars().count() <= EXCERPT_CHARS + 5);
    }
}
