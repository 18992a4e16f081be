//! The typed contract between the commands and the web UI: tauri-specta
//! collects every command with its argument and result types and writes
//! them to `ui/src/bindings.ts`, which `ui/src/api.ts` builds on. A test
//! fails when the committed file no longer matches the Rust side.

use tauri_specta::{collect_commands, collect_events, Builder};

use crate::{chat, collections, commands, files, folders, models, telemetry};

/// Every command the window may invoke and every event it may listen to,
/// with their types.
pub fn builder() -> Builder<tauri::Wry> {
    // Counts, offsets, sizes and Unix times cross as plain numbers: none of
    // them comes near 2^53.
    Builder::<tauri::Wry>::new()
        .dangerously_cast_bigints_to_number()
        .disable_serde_phases()
        .commands(collect_commands![
            commands::ingest,
            commands::cancel_ingest,
            commands::documents,
            commands::delete_document,
            commands::reindex_document,
            commands::search,
            chat::ask,
            chat::stop_answer,
            chat::list_conversations,
            chat::create_conversation,
            chat::get_conversation,
            chat::rename_conversation,
            chat::delete_conversation,
            chat::export_conversation,
            commands::gpu_status,
            commands::library_stats,
            commands::models_status,
            models::model_catalog,
            models::download_model,
            models::cancel_download,
            telemetry::gpu_panel,
            folders::watched_folders,
            folders::add_watched_folder,
            folders::remove_watched_folder,
            files::document_pdf,
            collections::list_collections,
            collections::create_collection,
            collections::rename_collection,
            collections::delete_collection,
            collections::add_to_collection,
            collections::remove_from_collection,
            collections::set_conversation_collection,
        ])
        .events(collect_events![
            telemetry::GpuTick,
            telemetry::GpuAlert,
            folders::FolderStatus,
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use specta_typescript::Typescript;

    /// How the bindings are written.
    pub fn typescript() -> Typescript {
        Typescript::default().header("// Generated from the Rust commands (src-tauri/src/bindings.rs); do not edit.\n// Regenerate: LECTERN_WRITE_BINDINGS=1 cargo test -p lectern-app bindings\n")
    }

    #[test]
    fn committed_typescript_bindings_are_current() {
        let committed_path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/src/bindings.ts");
        let dir = std::env::temp_dir().join(format!("lectern-bindings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fresh_path = dir.join("bindings.ts");
        builder()
            .export(typescript(), &fresh_path)
            .expect("bindings export");
        let fresh = std::fs::read_to_string(&fresh_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        if std::env::var_os("LECTERN_WRITE_BINDINGS").is_some() {
            std::fs::write(&committed_path, &fresh).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{} is out of date with the Rust commands; regenerate it with \
             `LECTERN_WRITE_BINDINGS=1 cargo test -p lectern-app bindings` and adapt ui/src/api.ts",
            committed_path.display()
        );
        for command in ["ingest", "ask", "exportConversation", "modelsStatus"] {
            assert!(
                fresh.contains(&format!("\t{command}: (")),
                "{command} missing"
            );
        }
    }
}
