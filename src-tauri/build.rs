//! Declares the app's commands so that each gets an `allow-<command>`
//! permission: a window may call only the commands its capability lists
//! (see `capabilities/default.json`).

const COMMANDS: &[&str] = &[
    "ingest",
    "cancel_ingest",
    "documents",
    "delete_document",
    "reindex_document",
    "search",
    "ask",
    "stop_answer",
    "list_conversations",
    "create_conversation",
    "get_conversation",
    "rename_conversation",
    "delete_conversation",
    "export_conversation",
    "gpu_status",
    "library_stats",
    "models_status",
    "model_catalog",
    "download_model",
    "cancel_download",
    "gpu_panel",
    "watched_folders",
    "add_watched_folder",
    "remove_watched_folder",
    "document_pdf",
    "list_collections",
    "create_collection",
    "rename_collection",
    "delete_collection",
    "add_to_collection",
    "remove_from_collection",
    "set_conversation_collection",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("the Tauri build step failed");
}
