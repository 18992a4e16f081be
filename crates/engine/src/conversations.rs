//! Conversations kept on disk: one JSON file per conversation under the
//! engine's data folder (`<data_dir>/conversations/<id>.json`).
//!
//! Every change rewrites the conversation's file through a temporary file,
//! an fsync and a rename, so a crash leaves either the old or the new
//! version, never a torn one. Changes within one process are serialised so
//! two appends to the same conversation cannot lose each other. The store is
//! synchronous file I/O: async callers run it on a blocking thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::now_secs;
use crate::{EngineError, SourceRef};

/// Longest title kept, in characters; longer ones are cut.
pub const MAX_TITLE_CHARS: usize = 200;

/// Serialises every change made through any store in this process.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Makes ids unique within one process even when the clock does not move.
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What can go wrong with a conversation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConversationError {
    /// No conversation has this id.
    #[error("no conversation with id {0}")]
    NotFound(String),
    /// The id is not one the store hands out (it must be 16 lowercase hex digits).
    #[error("`{0}` is not a conversation id")]
    InvalidId(String),
    /// The request is wrong (for example an empty title or message).
    #[error("{0}")]
    InvalidInput(String),
    /// A conversation file exists but cannot be read as one.
    #[error("conversation file {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON reader said.
        reason: String,
    },
    /// Reading or writing the folder failed.
    #[error("conversation storage at {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
    /// Writing an exported conversation failed.
    #[error("could not write {path}: {source}")]
    Export {
        /// The file asked for.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
}

impl ConversationError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ConversationError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

impl From<ConversationError> for EngineError {
    fn from(err: ConversationError) -> Self {
        match err {
            ConversationError::NotFound(_)
            | ConversationError::InvalidId(_)
            | ConversationError::InvalidInput(_) => EngineError::InvalidInput(err.to_string()),
            ConversationError::Corrupt { .. }
            | ConversationError::Io { .. }
            | ConversationError::Export { .. } => EngineError::Internal(err.to_string()),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// The person asking.
    User,
    /// The model's answer.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: MessageRole,
    /// The text (Markdown for answers).
    pub text: String,
    /// The numbered sources the answer was given, `cited` set on those it cites.
    #[serde(default)]
    pub sources: Vec<SourceRef>,
    /// Whether the answer was stopped before it finished.
    #[serde(default)]
    pub stopped: bool,
    /// The quote check of each cited sentence of an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::CitationCheck>,
    /// The model's reasoning before an answer (its `<think>` block), when
    /// it was asked to think first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub thinking: String,
    /// For an answer, the documents it was retrieved from. `None` on
    /// questions and on answers stored before the scope was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AnswerScope>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The documents an answer was retrieved from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerScope {
    /// The collection, by the name it had when the answer was written;
    /// `None` is the whole library.
    #[serde(default)]
    pub collection: Option<String>,
}

impl Message {
    /// A question from the user.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: MessageRole::User,
            text: text.into(),
            sources: Vec::new(),
            stopped: false,
            checks: Vec::new(),
            thinking: String::new(),
            scope: None,
            created_at: now_secs(),
        }
    }

    /// An answer with the sources it was given.
    pub fn assistant(text: impl Into<String>, sources: Vec<SourceRef>, stopped: bool) -> Self {
        Self {
            role: MessageRole::Assistant,
            text: text.into(),
            sources,
            stopped,
            checks: Vec::new(),
            thinking: String::new(),
            scope: None,
            created_at: now_secs(),
        }
    }
}

impl Message {
    /// The answer with the quote check of its citations.
    pub fn with_checks(mut self, checks: Vec<crate::CitationCheck>) -> Self {
        self.checks = checks;
        self
    }

    /// The same message with the reasoning that preceded it.
    pub fn with_thinking(mut self, thinking: impl Into<String>) -> Self {
        self.thinking = thinking.into();
        self
    }

    /// The same answer, recording that it was retrieved from `collection`
    /// (`None`: the whole library).
    pub fn with_scope(mut self, collection: Option<String>) -> Self {
        self.scope = Some(AnswerScope { collection });
        self
    }
}

/// A whole conversation, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    /// Stable id (16 lowercase hex digits).
    pub id: String,
    /// Title shown in lists.
    pub title: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// When a message was last added or the title changed.
    pub updated_at: u64,
    /// Messages, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The collection its questions are answered from; `None` is the whole
    /// library.
    #[serde(default)]
    pub collection: Option<String>,
}

/// A conversation without its messages, for lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    /// Stable id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// How many messages it holds.
    pub messages: usize,
}

impl From<&Conversation> for ConversationSummary {
    fn from(c: &Conversation) -> Self {
        Self {
            id: c.id.clone(),
            title: c.title.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            messages: c.messages.len(),
        }
    }
}

/// The conversations in one folder.
#[derive(Debug, Clone)]
pub struct ConversationStore {
    dir: PathBuf,
}

fn new_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{nanos}:{count}:{}", std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_string()
}

/// Only ids the store itself makes are accepted, so an id can never name a
/// file outside the folder.
fn check_id(id: &str) -> Result<(), ConversationError> {
    let ok = id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConversationError::InvalidId(id.chars().take(40).collect()))
    }
}

/// Trims a title, folds it onto one line and cuts it to `MAX_TITLE_CHARS`.
fn clean_title(raw: &str) -> Result<String, ConversationError> {
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return Err(ConversationError::InvalidInput(
            "a conversation title cannot be empty".into(),
        ));
    }
    Ok(one_line.chars().take(MAX_TITLE_CHARS).collect())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
    WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConversationStore {
    /// A store in `dir`; the folder is created on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder holding the conversation files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(&self, id: &str) -> Result<Conversation, ConversationError> {
        check_id(id)?;
        let path = self.file(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConversationError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(ConversationError::io(&path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| ConversationError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `c` atomically: temporary file, fsync, rename.
    fn write(&self, c: &Conversation) -> Result<(), ConversationError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ConversationError::io(&self.dir, e))?;
        let path = self.file(&c.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", c.id));
        let json = serde_json::to_vec_pretty(c).map_err(|e| ConversationError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(ConversationError::io(&path, e));
        }
        Ok(())
    }

    /// Starts an empty conversation.
    pub fn create(&self, title: &str) -> Result<Conversation, ConversationError> {
        let title = clean_title(title)?;
        let _guard = lock();
        let now = now_secs();
        let mut id = new_id();
        while self.file(&id).exists() {
            id = new_id();
        }
        let c = Conversation {
            id,
            title,
            created_at: now,
            updated_at: now,
            messages: Vec::new(),
            collection: None,
        };
        self.write(&c)?;
        Ok(c)
    }

    /// A conversation with all its messages.
    pub fn get(&self, id: &str) -> Result<Conversation, ConversationError> {
        self.read(id)
    }

    /// Every conversation, most recently changed first. Files that cannot be
    /// read are left out (and logged) so one damaged file hides nothing else.
    pub fn list(&self) -> Result<Vec<ConversationSummary>, ConversationError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ConversationError::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ConversationError::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if check_id(id).is_err() {
                continue;
            }
            match self.read(id) {
                Ok(c) => out.push(ConversationSummary::from(&c)),
                Err(e) => tracing::warn!(error = %e, "skipping a conversation file"),
            }
        }
        out.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| b.created_at.cmp(&a.created_at))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Gives a conversation a new title.
    pub fn rename(&self, id: &str, title: &str) -> Result<Conversation, ConversationError> {
        let title = clean_title(title)?;
        let _guard = lock();
        let mut c = self.read(id)?;
        c.title = title;
        c.updated_at = now_secs();
        self.write(&c)?;
        Ok(c)
    }

    /// Deletes a conversation; false when there was none with that id.
    pub fn delete(&self, id: &str) -> Result<bool, ConversationError> {
        check_id(id)?;
        let _guard = lock();
        let path = self.file(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ConversationError::io(&path, e)),
        }
    }

    /// Scopes a conversation to a collection (by name; `None` for the whole
    /// library) and returns it as stored. The name is kept as given: the
    /// engine checks that the collection exists
    /// ([`crate::Engine::set_conversation_collection`]).
    pub fn set_collection(
        &self,
        id: &str,
        collection: Option<&str>,
    ) -> Result<Conversation, ConversationError> {
        let collection = collection.map(str::trim).filter(|c| !c.is_empty());
        let _guard = lock();
        let mut c = self.read(id)?;
        c.collection = collection.map(str::to_owned);
        self.write(&c)?;
        Ok(c)
    }

    /// Moves every conversation scoped to the collection `from` (compared
    /// case-insensitively) to `to` (`None`: the whole library), as when a
    /// collection is renamed or deleted. Returns how many changed.
    pub fn rescope(&self, from: &str, to: Option<&str>) -> Result<usize, ConversationError> {
        let key = from.trim().to_lowercase();
        let mut changed = 0;
        for summary in self.list()? {
            let _guard = lock();
            let mut c = match self.read(&summary.id) {
                Ok(c) => c,
                Err(ConversationError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if c.collection
                .as_deref()
                .is_some_and(|n| n.to_lowercase() == key)
            {
                c.collection = to.map(str::to_owned);
                self.write(&c)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Adds a message at the end of a conversation and returns the
    /// conversation as stored.
    pub fn append(&self, id: &str, message: Message) -> Result<Conversation, ConversationError> {
        if message.role == MessageRole::User && message.text.trim().is_empty() {
            return Err(ConversationError::InvalidInput(
                "a question cannot be empty".into(),
            ));
        }
        let _guard = lock();
        let mut c = self.read(id)?;
        c.updated_at = now_secs().max(c.updated_at);
        c.messages.push(message);
        self.write(&c)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, text: &str) -> SourceRef {
        SourceRef {
            n,
            title: "Notes".into(),
            path: "/docs/notes.md".into(),
            page: Some(2),
            chunk_id: format!("abc:{n}"),
            char_start: 10,
            char_end: 10 + text.chars().count() as u64,
            location: "p. 2".into(),
            heading_path: vec!["Intro".into()],
            text: text.into(),
            score: 0.03,
            bm25_rank: Some(1),
            bm25_score: Some(4.5),
            dense_rank: None,
            dense_distance: None,
            rerank_score: None,
            cited: true,
        }
    }

    #[test]
    fn thinking_is_stored_with_its_answer_and_old_files_read_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        let c = store.create("Why?").unwrap();
        store.append(&c.id, Message::user("Why?")).unwrap();
        store
            .append(
                &c.id,
                Message::assistant("Because [1].", Vec::new(), false).with_thinking("Let me see."),
            )
            .unwrap();
        let back = ConversationStore::new(dir.path()).get(&c.id).unwrap();
        assert_eq!(back.messages[1].thinking, "Let me see.");
        assert_eq!(back.messages[0].thinking, "");
        // A question has no reasoning, and none is written for it.
        let raw = std::fs::read_to_string(dir.path().join(format!("{}.json", c.id))).unwrap();
        assert_eq!(raw.matches("\"thinking\"").count(), 1, "{raw}");
    }

    #[test]
    fn a_conversation_keeps_its_collection_and_follows_renames() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        let a = store.create("Papers only").unwrap();
        let b = store.create("Everything").unwrap();
        assert_eq!(a.collection, None);
        let a = store.set_collection(&a.id, Some(" Papers ")).unwrap();
        assert_eq!(a.collection.as_deref(), Some("Papers"));
        assert_eq!(
            ConversationStore::new(dir.path())
                .get(&a.id)
                .unwrap()
                .collection
                .as_deref(),
            Some("Papers")
        );
        // A rename of the collection (matched without regard to case) moves
        // only the conversations scoped to it; a deletion unscopes them.
        assert_eq!(store.rescope("PAPERS", Some("Reading")).unwrap(), 1);
        assert_eq!(
            store.get(&a.id).unwrap().collection.as_deref(),
            Some("Reading")
        );
        assert_eq!(store.get(&b.id).unwrap().collection, None);
        assert_eq!(store.rescope("Reading", None).unwrap(), 1);
        assert_eq!(store.get(&a.id).unwrap().collection, None);
        assert_eq!(store.rescope("Reading", None).unwrap(), 0);
        // A file written before conversations had a scope still reads.
        let old = r#"{"id":"00000000000000aa","title":"Old","created_at":1,"updated_at":2,"messages":[]}"#;
        std::fs::write(dir.path().join("00000000000000aa.json"), old).unwrap();
        let c = store.get("00000000000000aa").unwrap();
        assert_eq!((c.title.as_str(), c.collection), ("Old", None));
        assert!(matches!(
            store.set_collection("00000000000000bb", Some("x")),
            Err(ConversationError::NotFound(_))
        ));
    }

    #[test]
    fn an_answer_keeps_the_scope_it_was_retrieved_from() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        let c = store.create("Scoped").unwrap();
        store.set_collection(&c.id, Some("Papers")).unwrap();
        store.append(&c.id, Message::user("What?")).unwrap();
        let scoped = Message::assistant("This [1].", vec![source(1, "This.")], false)
            .with_scope(Some("Papers".into()));
        store.append(&c.id, scoped).unwrap();
        store
            .append(
                &c.id,
                Message::assistant("That.", Vec::new(), false).with_scope(None),
            )
            .unwrap();
        // Renaming the collection moves the conversation, not what its
        // answers were retrieved from.
        store.rescope("Papers", Some("Reading")).unwrap();
        let back = ConversationStore::new(dir.path()).get(&c.id).unwrap();
        assert_eq!(back.collection.as_deref(), Some("Reading"));
        assert_eq!(back.messages[0].scope, None);
        assert_eq!(
            back.messages[1].scope,
            Some(AnswerScope {
                collection: Some("Papers".into())
            })
        );
        assert_eq!(
            back.messages[2].scope,
            Some(AnswerScope { collection: None })
        );
        // The whole library is written as such, and a question has no scope.
        let raw = std::fs::read_to_string(dir.path().join(format!("{}.json", c.id))).unwrap();
        assert_eq!(raw.matches("\"scope\"").count(), 2, "{raw}");
        let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            value["messages"][2]["scope"],
            serde_json::json!({ "collection": null })
        );

        // A file written before answers kept their scope still reads, with
        // the scope unknown rather than taken for the whole library.
        let old = r#"{"id":"00000000000000ab","title":"Old","created_at":1,"updated_at":2,
            "messages":[{"role":"user","text":"Why?","created_at":1},
                        {"role":"assistant","text":"Because.","sources":[],"stopped":false,"created_at":2}],
            "collection":"Papers"}"#;
        std::fs::write(dir.path().join("00000000000000ab.json"), old).unwrap();
        let old = store.get("00000000000000ab").unwrap();
        assert_eq!(old.messages.len(), 2);
        assert!(old.messages.iter().all(|m| m.scope.is_none()));
        assert_eq!(old.messages[1].text, "Because.");
    }

    #[test]
    fn an_answer_keeps_its_quote_check_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path().join("conversations"));
        let c = store.create("Checks").unwrap();
        let text = "Rust is fast [1]. Rust was released in 1850 [1].";
        let checks = crate::quote_check::check_citations(
            text,
            &[(1, "Rust is fast and was first released in 2015.")],
        );
        assert!(checks.iter().any(|c| c.flagged), "{checks:?}");
        store
            .append(
                &c.id,
                Message::assistant(text, vec![source(1, "Rust is fast.")], false)
                    .with_checks(checks.clone()),
            )
            .unwrap();
        let back = ConversationStore::new(dir.path().join("conversations"))
            .get(&c.id)
            .unwrap();
        let stored = &back.messages[0].checks;
        assert_eq!(stored.len(), checks.len());
        assert_eq!(
            stored.iter().map(|c| c.flagged).collect::<Vec<_>>(),
            checks.iter().map(|c| c.flagged).collect::<Vec<_>>()
        );
        assert_eq!(stored[0].reason, checks[0].reason);
    }

    #[test]
    fn conversations_round_trip_through_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path().join("conversations"));
        assert!(
            store.list().unwrap().is_empty(),
            "no folder yet, no conversations"
        );

        let c = store.create("  What is\n  Rust?  ").unwrap();
        assert_eq!(c.title, "What is Rust?");
        check_id(&c.id).unwrap();
        store.append(&c.id, Message::user("Is Rust fast?")).unwrap();
        store
            .append(
                &c.id,
                Message::assistant("Yes [1].", vec![source(1, "Rust is fast.")], false),
            )
            .unwrap();

        let reopened = ConversationStore::new(dir.path().join("conversations"));
        let back = reopened.get(&c.id).unwrap();
        assert_eq!(back.messages.len(), 2);
        assert_eq!(back.messages[0].role, MessageRole::User);
        assert_eq!(back.messages[1].text, "Yes [1].");
        assert_eq!(back.messages[1].sources[0].text, "Rust is fast.");
        assert_eq!(back.messages[1].sources[0].bm25_rank, Some(1));
        let list = reopened.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].messages, 2);
        assert_eq!(list[0].title, "What is Rust?");
    }

    #[test]
    fn conversations_rename_delete_and_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        let a = store.create("first").unwrap();
        let b = store.create("second").unwrap();
        assert_ne!(a.id, b.id);

        // Make `a` the most recently changed regardless of clock resolution.
        let mut older = store.get(&b.id).unwrap();
        older.updated_at = 1;
        store.write(&older).unwrap();
        let renamed = store.rename(&a.id, "renamed").unwrap();
        assert_eq!(renamed.title, "renamed");
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![a.id.clone(), b.id.clone()]);

        assert!(store.delete(&a.id).unwrap());
        assert!(!store.delete(&a.id).unwrap(), "second delete finds nothing");
        assert!(matches!(
            store.get(&a.id),
            Err(ConversationError::NotFound(_))
        ));
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(matches!(
            store.append(&a.id, Message::user("hello")),
            Err(ConversationError::NotFound(_))
        ));
    }

    #[test]
    fn conversations_reject_bad_ids_titles_and_questions() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        for bad in [
            "../../etc/passwd",
            "",
            "ABCDEF0123456789",
            "0123456789abcdeg",
        ] {
            assert!(
                matches!(store.get(bad), Err(ConversationError::InvalidId(_))),
                "{bad:?} accepted"
            );
            assert!(matches!(
                store.delete(bad),
                Err(ConversationError::InvalidId(_))
            ));
        }
        assert!(matches!(
            store.create(" \n\t "),
            Err(ConversationError::InvalidInput(_))
        ));
        let c = store.create(&"x".repeat(500)).unwrap();
        assert_eq!(c.title.chars().count(), MAX_TITLE_CHARS);
        assert!(matches!(
            store.rename(&c.id, ""),
            Err(ConversationError::InvalidInput(_))
        ));
        assert!(matches!(
            store.append(&c.id, Message::user("   ")),
            Err(ConversationError::InvalidInput(_))
        ));
        let err: EngineError = ConversationError::NotFound(c.id.clone()).into();
        assert_eq!(err.info().code, "invalid_input");
    }

    #[test]
    fn conversations_skip_damaged_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::new(dir.path());
        let good = store.create("good").unwrap();
        store.append(&good.id, Message::user("q")).unwrap();
        std::fs::write(dir.path().join("00000000000000aa.json"), b"{ not json").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"unrelated").unwrap();

        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, good.id);
        assert!(matches!(
            store.get("00000000000000aa"),
            Err(ConversationError::Corrupt { .. })
        ));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
