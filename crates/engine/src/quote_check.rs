//! The quote check: after an answer is generated, each sentence that cites
//! sources (`[n]`) is compared with the text of every source it cites.
//!
//! Lexical evidence comes first: the share of the sentence's content words
//! (stop words dropped, light plural folding) found in the source, the
//! longest run of consecutive words shared with it, and whether every
//! number in the sentence appears in the source. Embedding similarity
//! between sentence and source can be added on top
//! ([`add_similarity`]); it rescues paraphrases that share few words.
//! A citation of a number the prompt never gave is flagged outright.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// How well a cited source supports the sentence that cites it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// The source contains the claim's words (or, by embedding
    /// similarity, its meaning).
    Supported,
    /// Some of the claim is in the source; some is not, or the sentence is
    /// too short to tell.
    Partial,
    /// The source does not back the claim (or a number in the claim is not in it).
    Unsupported,
    /// The answer cites a source number the prompt did not have.
    NoSuchSource,
}

impl Support {
    /// Whether a reader should be warned about this citation.
    pub fn is_flagged(self) -> bool {
        matches!(self, Support::Unsupported | Support::NoSuchSource)
    }
}

/// The check of one citation `[n]` in one sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CitationCheck {
    /// The cited source number.
    pub n: usize,
    /// Index of the sentence among the answer's sentences (0-based).
    pub sentence_index: usize,
    /// The sentence, citation markers removed.
    pub sentence: String,
    /// Byte offset where the sentence starts in the answer text.
    pub start: usize,
    /// Byte offset where the sentence ends (exclusive) in the answer text.
    pub end: usize,
    /// The verdict.
    pub support: Support,
    /// Whether the citation should be shown as unsupported.
    pub flagged: bool,
    /// Overall support in `0..=1` (the strongest of the evidence below).
    pub score: f32,
    /// Share of the sentence's content words found in the source.
    pub overlap: f32,
    /// Longest run of consecutive words shared by sentence and source.
    pub longest_run: usize,
    /// Cosine similarity of sentence and source embeddings, when computed.
    pub similarity: Option<f32>,
    /// Numbers in the sentence that the source does not contain.
    pub missing_numbers: Vec<String>,
    /// Why, in words.
    pub reason: String,
}

/// A sentence of an answer with the sources it cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitedSentence {
    /// Byte offset of the sentence in the answer.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// The sentence without citation markers, whitespace collapsed.
    pub claim: String,
    /// Cited numbers, in order of appearance, without duplicates.
    pub cites: Vec<usize>,
}

/// Score at or above which a citation counts as supported.
const SUPPORTED: f32 = 0.6;
/// Score at or above which a citation counts as partly supported.
const PARTIAL: f32 = 0.35;
/// A shared run of this many words counts as a full quotation.
const QUOTE_RUN: usize = 8;

const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "neither",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "own",
    "per",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "thus",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "via",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "within",
    "would",
    "yes",
    "you",
    "your",
    "according",
    "source",
    "sources",
    "document",
    "documents",
    "states",
    "stated",
    "says",
    "said",
    "mentions",
    "mentioned",
    "described",
    "describes",
    "given",
    "provided",
];

/// Citation markers in `text`: `[n]`, `[n, m]` and runs like `[1][2]`.
/// Returns each marker's byte range and the numbers it holds.
pub fn citation_markers(text: &str) -> Vec<(usize, usize, Vec<usize>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut nums = Vec::new();
        let mut ok = false;
        loop {
            let digits = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j == digits || j - digits > 6 {
                break;
            }
            if let Ok(n) = text[digits..j].parse::<usize>() {
                nums.push(n);
            }
            if j < bytes.len() && bytes[j] == b']' {
                ok = true;
                break;
            }
            if j < bytes.len() && bytes[j] == b',' {
                j += 1;
                while j < bytes.len() && bytes[j] == b' ' {
                    j += 1;
                }
                continue;
            }
            break;
        }
        if ok {
            out.push((i, j + 1, nums));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Numbers cited anywhere in `text`, in order, without duplicates.
pub fn cited_numbers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (_, _, nums) in citation_markers(text) {
        for n in nums {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// Byte ranges of the sentences of `text`: a sentence ends after `.`, `!`
/// or `?` followed by whitespace (citation markers right after the stop
/// stay with it), or at a line break.
fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        let end_here = match c {
            '\n' => Some(at),
            '.' | '!' | '?' => {
                let next = chars.get(k + 1).map(|&(_, c)| c);
                match next {
                    None => Some(at + 1),
                    Some(n) if n.is_whitespace() => Some(at + 1),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(end) = end_here {
            if !text[start..end].trim().is_empty() {
                spans.push((start, end));
            }
            start = end;
        }
        k += 1;
    }
    if !text[start..].trim().is_empty() {
        spans.push((start, text.len()));
    }
    spans
}

/// The sentences of `answer` that cite something. Markers standing before
/// any word of a sentence ("… owner. [1] Next …") belong to the sentence
/// before.
pub fn cited_sentences(answer: &str) -> Vec<CitedSentence> {
    let markers = citation_markers(answer);
    let mut out: Vec<CitedSentence> = Vec::new();
    for (s, e) in sentence_spans(answer) {
        let mut cites = Vec::new();
        let mut lead = Vec::new();
        let mut claim = String::new();
        let mut pos = s;
        let mut seen_word = false;
        for (ms, me, nums) in markers.iter().filter(|(ms, _, _)| *ms >= s && *ms < e) {
            let between = &answer[pos..*ms];
            if between.chars().any(char::is_alphanumeric) {
                seen_word = true;
            }
            claim.push_str(between);
            let target = if seen_word { &mut cites } else { &mut lead };
            for &n in nums {
                if !target.contains(&n) {
                    target.push(n);
                }
            }
            pos = (*me).min(e);
        }
        claim.push_str(&answer[pos..e]);
        let claim = claim.split_whitespace().collect::<Vec<_>>().join(" ");
        let has_words = claim.chars().any(char::is_alphanumeric);
        if !lead.is_empty() {
            match out.last_mut() {
                Some(prev) => {
                    for n in lead {
                        if !prev.cites.contains(&n) {
                            prev.cites.push(n);
                        }
                    }
                }
                None => {
                    for n in std::mem::take(&mut cites) {
                        if !lead.contains(&n) {
                            lead.push(n);
                        }
                    }
                    cites = lead;
                }
            }
        }
        if has_words {
            out.push(CitedSentence {
                start: s,
                end: e,
                claim,
                cites,
            });
        }
    }
    out.retain(|c| !c.cites.is_empty());
    out
}

/// Lower-cased word tokens; digits separated by `.` or `,` stay one number
/// ("3.5", "1,000" → "1000"); light plural folding.
fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if (c == '.' || c == ',')
            && cur.chars().last().is_some_and(|l| l.is_ascii_digit())
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())
        {
            if c == '.' {
                cur.push('.');
            }
        } else if !cur.is_empty() {
            out.push(fold(std::mem::take(&mut cur)));
        }
    }
    if !cur.is_empty() {
        out.push(fold(cur));
    }
    out
}

fn fold(w: String) -> String {
    let n = w.chars().count();
    if w.chars().any(|c| c.is_ascii_digit()) {
        return w.trim_end_matches('s').to_string();
    }
    if n > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if n > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        w[..w.len() - 1].to_string()
    } else {
        w
    }
}

fn is_number(w: &str) -> bool {
    w.chars().any(|c| c.is_ascii_digit())
}

fn is_content(w: &str) -> bool {
    (w.chars().count() >= 2 || is_number(w)) && !STOP_WORDS.contains(&w)
}

/// Longest run of consecutive equal tokens in `a` and `b`.
fn longest_common_run(a: &[String], b: &[String]) -> usize {
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { 0 };
            best = best.max(cur[j + 1]);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

/// Evidence for one (sentence, source) pair before any embedding.
struct Lexical {
    content: usize,
    found: usize,
    run: usize,
    missing_numbers: Vec<String>,
}

fn lexical(claim: &str, source: &str) -> Lexical {
    let cw = words(claim);
    let sw = words(source);
    let source_set: HashSet<&str> = sw.iter().map(String::as_str).collect();
    let content: HashSet<&str> = cw
        .iter()
        .map(String::as_str)
        .filter(|w| is_content(w))
        .collect();
    let found = content.iter().filter(|w| source_set.contains(*w)).count();
    let mut missing_numbers: Vec<String> = content
        .iter()
        .filter(|w| is_number(w) && !source_set.contains(*w))
        .map(|w| w.to_string())
        .collect();
    missing_numbers.sort();
    Lexical {
        content: content.len(),
        found,
        run: longest_common_run(&cw, &sw),
        missing_numbers,
    }
}

/// Maps a sentence-embedding cosine to a support score: 0.2 or less is
/// unrelated text, 0.7 or more a close paraphrase.
fn similarity_score(sim: f32) -> f32 {
    ((sim - 0.2) / 0.5).clamp(0.0, 1.0)
}

/// Sets verdict, score and reason of `c` from its evidence.
fn judge(c: &mut CitationCheck, content: usize, found: usize) {
    let run_score = (c.longest_run as f32 / QUOTE_RUN as f32).min(1.0);
    let sim_score = c.similarity.map(similarity_score).unwrap_or(0.0);
    c.score = c.overlap.max(run_score).max(sim_score);
    let mut why = if content == 0 {
        "the sentence has no content words to compare".to_string()
    } else {
        format!(
            "{found} of {content} content words ({:.0}%) are in source [{}]; longest shared run {} word{}",
            c.overlap * 100.0,
            c.n,
            c.longest_run,
            if c.longest_run == 1 { "" } else { "s" }
        )
    };
    if let Some(sim) = c.similarity {
        why.push_str(&format!("; embedding similarity {sim:.2}"));
    }
    c.support = if !c.missing_numbers.is_empty() {
        c.score = c.score.min(PARTIAL * 0.5);
        why = format!(
            "number{} {} not in source [{}]; {why}",
            if c.missing_numbers.len() == 1 {
                ""
            } else {
                "s"
            },
            c.missing_numbers.join(", "),
            c.n
        );
        Support::Unsupported
    } else if content == 0 {
        c.score = c.score.max(PARTIAL);
        Support::Partial
    } else if c.score >= SUPPORTED {
        Support::Supported
    } else if c.score >= PARTIAL {
        Support::Partial
    } else {
        Support::Unsupported
    };
    c.flagged = c.support.is_flagged();
    c.reason = why;
}

/// Checks every cited sentence of `answer` against the cited sources.
/// `sources` pairs each source number with its text.
pub fn check_citations(answer: &str, sources: &[(usize, &str)]) -> Vec<CitationCheck> {
    let mut out = Vec::new();
    for (si, s) in cited_sentences(answer).into_iter().enumerate() {
        for &n in &s.cites {
            let mut c = CitationCheck {
                n,
                sentence_index: si,
                sentence: s.claim.clone(),
                start: s.start,
                end: s.end,
                support: Support::NoSuchSource,
                flagged: true,
                score: 0.0,
                overlap: 0.0,
                longest_run: 0,
                similarity: None,
                missing_numbers: Vec::new(),
                reason: String::new(),
            };
            match sources.iter().find(|(m, _)| *m == n) {
                None => {
                    c.reason = if sources.is_empty() {
                        format!("there is no source [{n}]: the answer was given no sources")
                    } else {
                        format!(
                            "there is no source [{n}]: the sources are numbered 1 to {}",
                            sources.len()
                        )
                    };
                }
                Some((_, text)) => {
                    let lx = lexical(&s.claim, text);
                    c.overlap = if lx.content == 0 {
                        0.0
                    } else {
                        lx.found as f32 / lx.content as f32
                    };
                    c.longest_run = lx.run;
                    c.missing_numbers = lx.missing_numbers;
                    judge(&mut c, lx.content, lx.found);
                }
            }
            out.push(c);
        }
    }
    out
}

/// Adds embedding similarities (one per check, `None` where not computed)
/// and judges the checks again with them.
pub fn add_similarity(
    sources: &[(usize, &str)],
    checks: &mut [CitationCheck],
    sims: &[Option<f32>],
) {
    for (c, sim) in checks.iter_mut().zip(sims) {
        if c.support == Support::NoSuchSource || sim.is_none() {
            continue;
        }
        c.similarity = *sim;
        let Some((_, text)) = sources.iter().find(|(m, _)| *m == c.n) else {
            continue;
        };
        let lx = lexical(&c.sentence, text);
        judge(c, lx.content, lx.found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNERSHIP: &str =
        "Each value in Rust has an owner. There can only be one owner at a time. \
When the owner goes out of scope, the value will be dropped.";
    const COMPANY: &str =
        "The company was founded in 1998 in Menlo Park by two Stanford students, \
and its first office was a rented garage.";

    fn by_n(checks: &[CitationCheck], n: usize) -> Vec<&CitationCheck> {
        checks.iter().filter(|c| c.n == n).collect()
    }

    #[test]
    fn a_quoted_claim_is_supported_and_an_invented_one_is_flagged() {
        let answer =
            "In Rust each value has an owner, and there can only be one owner at a time [1]. \
The borrow checker was designed by a committee in Geneva in order to speed up compilation [1].";
        let checks = check_citations(answer, &[(1, OWNERSHIP)]);
        assert_eq!(checks.len(), 2, "{checks:#?}");
        assert_eq!(checks[0].support, Support::Supported, "{checks:#?}");
        assert!(!checks[0].flagged);
        assert!(checks[0].longest_run >= 7, "{}", checks[0].longest_run);
        assert_eq!(checks[1].support, Support::Unsupported, "{checks:#?}");
        assert!(checks[1].flagged);
        assert!(checks[1].score < PARTIAL);
        assert!(
            checks[1].reason.contains("content words"),
            "{}",
            checks[1].reason
        );
        // Offsets point at the sentences in the answer.
        assert!(answer[checks[1].start..checks[1].end].contains("committee in Geneva"));
        assert_eq!(checks[1].sentence_index, 1);
    }

    #[test]
    fn citing_a_number_that_was_not_given_is_flagged() {
        let checks = check_citations(
            "Values are dropped at scope end [3].",
            &[(1, OWNERSHIP), (2, COMPANY)],
        );
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].support, Support::NoSuchSource);
        assert!(checks[0].flagged);
        assert!(checks[0].reason.contains("1 to 2"), "{}", checks[0].reason);
    }

    #[test]
    fn a_changed_number_makes_a_close_sentence_unsupported() {
        let good = check_citations(
            "The company was founded in 1998 in Menlo Park [1].",
            &[(1, COMPANY)],
        );
        assert_eq!(good[0].support, Support::Supported, "{good:#?}");
        let bad = check_citations(
            "The company was founded in 2004 in Menlo Park [1].",
            &[(1, COMPANY)],
        );
        assert_eq!(bad[0].support, Support::Unsupported, "{bad:#?}");
        assert_eq!(bad[0].missing_numbers, vec!["2004".to_string()]);
        assert!(
            bad[0].reason.starts_with("number 2004 not in source [1]"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn each_of_several_citations_is_checked_on_its_own() {
        let answer =
            "It was founded in 1998 by two Stanford students [1][2]. Values have one owner [1, 2].";
        let checks = check_citations(answer, &[(1, OWNERSHIP), (2, COMPANY)]);
        assert_eq!(checks.len(), 4, "{checks:#?}");
        assert_eq!(by_n(&checks, 2)[0].support, Support::Supported);
        assert_eq!(by_n(&checks, 1)[0].support, Support::Unsupported);
        assert_eq!(by_n(&checks, 1)[1].support, Support::Supported);
        assert!(by_n(&checks, 2)[1].flagged, "{checks:#?}");
    }

    #[test]
    fn a_marker_after_the_full_stop_belongs_to_the_sentence_before() {
        let answer = "When the owner goes out of scope, the value is dropped. [1] Paris is the capital of Peru.\n\n- Only one owner at a time [1]";
        let s = cited_sentences(answer);
        assert_eq!(s.len(), 2, "{s:#?}");
        assert_eq!(
            s[0].claim,
            "When the owner goes out of scope, the value is dropped."
        );
        assert_eq!(s[0].cites, vec![1]);
        assert_eq!(s[1].claim, "- Only one owner at a time");
        let checks = check_citations(answer, &[(1, OWNERSHIP)]);
        assert!(
            checks.iter().all(|c| c.support == Support::Supported),
            "{checks:#?}"
        );
        assert!(!checks.iter().any(|c| c.sentence.contains("Paris")));
    }

    #[test]
    fn similarity_rescues_a_paraphrase_but_not_a_wrong_number() {
        let answer =
            "A variable is freed automatically once it leaves its block [1]. It began in 2004 [2].";
        let sources = [(1, OWNERSHIP), (2, COMPANY)];
        let mut checks = check_citations(answer, &sources);
        assert_eq!(checks[0].support, Support::Unsupported, "{checks:#?}");
        add_similarity(&sources, &mut checks, &[Some(0.78), Some(0.9)]);
        assert_eq!(checks[0].support, Support::Supported, "{checks:#?}");
        assert_eq!(checks[0].similarity, Some(0.78));
        assert!(checks[0].reason.contains("embedding similarity 0.78"));
        assert_eq!(
            checks[1].support,
            Support::Unsupported,
            "numbers still count"
        );
        // A low similarity does not lift an unsupported claim.
        let mut low = check_citations(answer, &sources);
        add_similarity(&sources, &mut low, &[Some(0.1), None]);
        assert_eq!(low[0].support, Support::Unsupported);
    }

    #[test]
    fn markers_and_numbers_parse_strictly() {
        assert_eq!(
            cited_numbers(
                "Rust is fast [2]. It is safe [1][2], see [x] and [ 3] or [10] and [4, 5]."
            ),
            vec![2, 1, 10, 4, 5]
        );
        assert!(cited_numbers("no citations [] here [").is_empty());
        assert_eq!(
            words("It cost 1,000 dollars in 3.5 years."),
            vec!["it", "cost", "1000", "dollar", "in", "3.5", "year"]
        );
    }
}
