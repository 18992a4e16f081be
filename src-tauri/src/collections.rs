//! Collections: named sets of documents that scope a search or a
//! conversation. Each command forwards to one engine method.

use lectern_engine::Collection;
use serde::Serialize;
use tauri::State;

use crate::commands::check_document_id;
use crate::error::CommandResult;
use crate::state::AppState;
use crate::view::ConversationView;

/// A collection as the library screen shows it.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CollectionView {
    pub name: String,
    /// Ids of its documents that are in the library.
    pub document_ids: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

impl From<Collection> for CollectionView {
    fn from(c: Collection) -> Self {
        CollectionView {
            name: c.name,
            document_ids: c.doc_ids,
            created_at: c.created_at,
        }
    }
}

fn checked_ids(ids: &[String]) -> CommandResult<Vec<String>> {
    ids.iter()
        .map(|id| check_document_id(id).map(str::to_owned))
        .collect()
}

/// Every collection, by name.
#[tauri::command]
#[specta::specta]
pub async fn list_collections(state: State<'_, AppState>) -> CommandResult<Vec<CollectionView>> {
    let engine = state.engine().await?;
    Ok(engine
        .collections()
        .await?
        .into_iter()
        .map(CollectionView::from)
        .collect())
}

/// Makes an empty collection; names are unique without regard to case.
#[tauri::command]
#[specta::specta]
pub async fn create_collection(
    state: State<'_, AppState>,
    name: String,
) -> CommandResult<CollectionView> {
    let engine = state.engine().await?;
    Ok(engine.create_collection(&name).await?.into())
}

/// Gives a collection a new name; conversations scoped to it follow.
#[tauri::command]
#[specta::specta]
pub async fn rename_collection(
    state: State<'_, AppState>,
    name: String,
    new_name: String,
) -> CommandResult<CollectionView> {
    let engine = state.engine().await?;
    Ok(engine.rename_collection(&name, &new_name).await?.into())
}

/// Deletes a collection; its documents stay in the library.
#[tauri::command]
#[specta::specta]
pub async fn delete_collection(
    state: State<'_, AppState>,
    name: String,
) -> CommandResult<CollectionView> {
    let engine = state.engine().await?;
    Ok(engine.delete_collection(&name).await?.into())
}

/// Adds documents (by id) to a collection.
#[tauri::command]
#[specta::specta]
pub async fn add_to_collection(
    state: State<'_, AppState>,
    name: String,
    document_ids: Vec<String>,
) -> CommandResult<CollectionView> {
    let ids = checked_ids(&document_ids)?;
    let engine = state.engine().await?;
    Ok(engine.add_to_collection(&name, &ids).await?.into())
}

/// Takes documents (by id) out of a collection; they stay in the library.
#[tauri::command]
#[specta::specta]
pub async fn remove_from_collection(
    state: State<'_, AppState>,
    name: String,
    document_ids: Vec<String>,
) -> CommandResult<CollectionView> {
    let ids = checked_ids(&document_ids)?;
    let engine = state.engine().await?;
    Ok(engine.remove_from_collection(&name, &ids).await?.into())
}

/// Scopes a conversation to a collection, or to the whole library when
/// `collection` is null.
#[tauri::command]
#[specta::specta]
pub async fn set_conversation_collection(
    state: State<'_, AppState>,
    id: String,
    collection: Option<String>,
) -> CommandResult<ConversationView> {
    let engine = state.engine().await?;
    let c = engine
        .set_conversation_collection(&id, collection.as_deref())
        .await?;
    Ok(ConversationView::from(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_checked_before_they_reach_the_engine() {
        let ok = checked_ids(&["0123456789abcdef".into(), " ffff ".into()]).unwrap();
        assert_eq!(ok, ["0123456789abcdef", "ffff"]);
        let err = checked_ids(&["ffff".into(), "../etc".into()]).unwrap_err();
        assert_eq!(err.code, "invalid_input");
        assert!(
            err.message.contains("is not a document id"),
            "{}",
            err.message
        );
    }

    #[test]
    fn collections_cross_with_their_document_ids() {
        let view = CollectionView::from(Collection {
            name: "Papers".into(),
            doc_ids: vec!["aa".into(), "bb".into()],
            created_at: 7,
        });
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "Papers", "documentIds": ["aa", "bb"], "createdAt": 7})
        );
    }
}
