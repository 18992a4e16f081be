//! Chat: answering questions with streamed tokens, and the conversations
//! the engine keeps on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use lectern_engine::{
    AskEvent, AskRequest, ConversationError, ConversationStore, ConversationSummary, Message,
};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::view::{
    title_from_question, AnswerUpdate, AnswerView, ConversationSummaryView, ConversationView,
    Question, Source,
};

impl From<ConversationError> for CommandError {
    fn from(err: ConversationError) -> Self {
        let code = match &err {
            ConversationError::NotFound(_) => "not_found",
            ConversationError::InvalidId(_) | ConversationError::InvalidInput(_) => "invalid_input",
            ConversationError::Corrupt { .. } => "corrupt",
            ConversationError::Io { .. } => "io",
            ConversationError::Export { .. } => "export_failed",
        };
        CommandError {
            code: code.to_owned(),
            message: err.to_string(),
            retryable: matches!(err, ConversationError::Io { .. }),
        }
    }
}

/// Runs `f` on the conversation store on a blocking thread: the store does
/// synchronous file I/O.
async fn with_store<T, F>(state: &AppState, f: F) -> CommandResult<T>
where
    T: Send + 'static,
    F: FnOnce(&ConversationStore) -> Result<T, ConversationError> + Send + 'static,
{
    let store = state.engine().await?.conversations();
    tauri::async_runtime::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| CommandError::internal(e.to_string()))?
        .map_err(CommandError::from)
}

// ---------------------------------------------------------------- ask

/// Answers a question from the library, streaming the answer as it is
/// written; the result lists the numbered sources and which ones it cites.
/// With a conversation id, the question and the answer are added to it.
#[tauri::command]
#[specta::specta]
pub async fn ask(
    state: State<'_, AppState>,
    request: Question,
    on_event: Channel<AnswerUpdate>,
) -> CommandResult<AnswerView> {
    let question = request.question.trim().to_owned();
    if question.is_empty() {
        return Err(CommandError::invalid_input("the question is empty"));
    }
    let engine = state.engine().await?;
    // A conversation answers from its own collection; a lone question
    // from the one it names.
    let collection = match &request.conversation_id {
        Some(id) => {
            // Fail before any work when the conversation is gone.
            let id = id.clone();
            with_store(&state, move |s| s.get(&id)).await?.collection
        }
        None => request.collection.clone(),
    };
    if let Some(name) = &collection {
        // An unknown collection fails before any work, even in an empty library.
        engine.collection(name).await?;
    }
    let started = Instant::now();

    // Kept with the stored answer: the conversation's scope may change later.
    let scope = collection.clone();
    let (view, sources, checks) = if engine.stats().await?.documents == 0 {
        // An empty library cannot support any answer: say so without
        // asking the model.
        let _ = on_event.send(AnswerUpdate::Sources {
            sources: Vec::new(),
            prompt_tokens: 0,
        });
        let took = started.elapsed().as_secs_f64() * 1000.0;
        (AnswerView::empty_library(took), Vec::new(), Vec::new())
    } else {
        let mut ask = AskRequest::new(question.clone());
        ask.mode = request.mode.into();
        ask.collection = collection;
        engine.set_rerank_mode(request.rerank.into());
        ask.generation.enable_thinking = request.think;
        let stop = state.begin_answer();
        let events: Arc<dyn Fn(AskEvent) + Send + Sync> = {
            let stop = stop.clone();
            Arc::new(move |event: AskEvent| {
                let update = match event {
                    AskEvent::Sources {
                        sources,
                        prompt_tokens,
                    } => {
                        if sources.is_empty() {
                            // Nothing matched: an answer would be invented.
                            stop.store(true, Ordering::Relaxed);
                        }
                        AnswerUpdate::Sources {
                            sources: sources.iter().map(Source::from).collect(),
                            prompt_tokens,
                        }
                    }
                    AskEvent::Token { .. } if stop.load(Ordering::Relaxed) => return,
                    AskEvent::Token { text } => AnswerUpdate::Token { text },
                    AskEvent::Thinking { .. } if stop.load(Ordering::Relaxed) => return,
                    AskEvent::Thinking { text } => AnswerUpdate::Thinking { text },
                    AskEvent::Restarted { reason } => AnswerUpdate::Restarted { reason },
                    _ => return,
                };
                if on_event.send(update).is_err() {
                    // Nobody is reading any more: stop generating.
                    stop.store(true, Ordering::Relaxed);
                }
            })
        };
        let result = engine.ask(ask, events, stop.clone()).await;
        state.end_answer(&stop);
        let answer = result?;
        let sources = answer.sources.clone();
        let checks = answer.checks.clone();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        (
            AnswerView::new(answer, stop.load(Ordering::Relaxed), took),
            sources,
            checks,
        )
    };

    let Some(id) = request.conversation_id else {
        return Ok(view);
    };
    let answer = Message::assistant(view.answer.clone(), sources, view.stopped)
        .with_checks(checks)
        .with_thinking(view.thinking.clone())
        .with_scope(scope);
    let stored = with_store(&state, move |s| {
        s.append(&id, Message::user(question))?;
        s.append(&id, answer)
    })
    .await?;
    Ok(AnswerView {
        conversation: Some(ConversationSummaryView::from(&ConversationSummary::from(
            &stored,
        ))),
        ..view
    })
}

/// Stops the answer being written; the text so far is kept.
#[tauri::command]
#[specta::specta]
pub async fn stop_answer(state: State<'_, AppState>) -> CommandResult<bool> {
    Ok(state.stop_answer())
}

// ---------------------------------------------------------------- conversations

/// Every conversation, most recently changed first.
#[tauri::command]
#[specta::specta]
pub async fn list_conversations(
    state: State<'_, AppState>,
) -> CommandResult<Vec<ConversationSummaryView>> {
    with_store(&state, |s| s.list())
        .await
        .map(|list| list.iter().map(ConversationSummaryView::from).collect())
}

/// Starts a conversation; without a title it is named from `question`, or
/// "New conversation".
#[tauri::command]
#[specta::specta]
pub async fn create_conversation(
    state: State<'_, AppState>,
    title: Option<String>,
    question: Option<String>,
) -> CommandResult<ConversationView> {
    let title = new_title(title.as_deref(), question.as_deref());
    with_store(&state, move |s| s.create(&title))
        .await
        .map(|c| ConversationView::from(&c))
}

/// The title a new conversation gets.
fn new_title(title: Option<&str>, question: Option<&str>) -> String {
    let given = title.map(str::trim).filter(|t| !t.is_empty());
    let from_question = question.map(title_from_question).filter(|t| !t.is_empty());
    given
        .map(str::to_owned)
        .or(from_question)
        .unwrap_or_else(|| "New conversation".to_owned())
}

/// A conversation with its messages and their sources.
#[tauri::command]
#[specta::specta]
pub async fn get_conversation(
    state: State<'_, AppState>,
    id: String,
) -> CommandResult<ConversationView> {
    with_store(&state, move |s| s.get(&id))
        .await
        .map(|c| ConversationView::from(&c))
}

/// Gives a conversation a new title.
#[tauri::command]
#[specta::specta]
pub async fn rename_conversation(
    state: State<'_, AppState>,
    id: String,
    title: String,
) -> CommandResult<ConversationSummaryView> {
    with_store(&state, move |s| s.rename(&id, &title))
        .await
        .map(|c| ConversationSummaryView::from(&ConversationSummary::from(&c)))
}

/// Deletes a conversation; false when it was already gone.
#[tauri::command]
#[specta::specta]
pub async fn delete_conversation(state: State<'_, AppState>, id: String) -> CommandResult<bool> {
    with_store(&state, move |s| s.delete(&id)).await
}

/// Saves a conversation as Markdown, with the passages it cites, at `path`
/// (absolute, as a save dialog returns it); returns the path written.
#[tauri::command]
#[specta::specta]
pub async fn export_conversation(
    state: State<'_, AppState>,
    id: String,
    path: String,
) -> CommandResult<String> {
    with_store(&state, move |s| {
        s.export_markdown(&id, std::path::Path::new(&path))
    })
    .await
    .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_conversations_are_named_from_the_title_or_the_question() {
        assert_eq!(new_title(Some("  Papers "), Some("q")), "Papers");
        assert_eq!(
            new_title(Some("  "), Some("How fast\nis DPR?")),
            "How fast is DPR?"
        );
        assert_eq!(new_title(None, None), "New conversation");
        assert_eq!(new_title(None, Some("   ")), "New conversation");
        let long = "What does the paper say about the run-time efficiency of dense passage retrieval compared to BM25?";
        let title = new_title(None, Some(long));
        assert!(title.ends_with('…'), "{title}");
        assert!(title.chars().count() <= 61, "{title}");
        assert!(long.starts_with(title.trim_end_matches('…')));
    }

    #[test]
    fn conversation_errors_keep_a_stable_code() {
        let cases = [
            (
                ConversationError::NotFound("0123456789abcdef".into()),
                "not_found",
                false,
            ),
            (
                ConversationError::InvalidId("../x".into()),
                "invalid_input",
                false,
            ),
            (
                ConversationError::InvalidInput("empty".into()),
                "invalid_input",
                false,
            ),
            (
                ConversationError::Io {
                    path: "/x".into(),
                    source: Arc::new(std::io::Error::other("disk full")),
                },
                "io",
                true,
            ),
        ];
        for (err, code, retryable) in cases {
            let message = err.to_string();
            let cmd = CommandError::from(err);
            assert_eq!(cmd.code, code);
            assert_eq!(cmd.retryable, retryable);
            assert_eq!(cmd.message, message);
        }
    }
}
