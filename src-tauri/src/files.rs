//! Serving a library document's own file to the source panel, so it can
//! draw a cited PDF page. Only files that are documents in the library are
//! served, looked up by document id: the web UI never names a path.

use std::path::PathBuf;

use base64::Engine as _;
use lectern_engine::DocumentEntry;
use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// Larger files are not sent to the window.
pub const MAX_PDF_BYTES: u64 = 128 << 20;

/// A PDF document's bytes, base64-encoded.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PdfFile {
    pub id: String,
    pub file_name: String,
    pub base64: String,
}

/// The file of document `id` when it is a PDF in `docs`, small enough and
/// still on disk.
pub(crate) fn pdf_path(docs: &[DocumentEntry], id: &str) -> CommandResult<PathBuf> {
    let doc = docs
        .iter()
        .find(|d| d.doc_id == id)
        .ok_or_else(|| CommandError::new("not_found", "that document is not in the library"))?;
    let path = PathBuf::from(&doc.path);
    let is_pdf = doc.format.eq_ignore_ascii_case("pdf")
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"));
    if !is_pdf {
        return Err(CommandError::invalid_input(format!(
            "{} is not a PDF",
            crate::view::file_name(&path)
        )));
    }
    let meta = std::fs::metadata(&path).map_err(|_| {
        CommandError::new(
            "not_found",
            format!("{} is no longer there", path.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(CommandError::new(
            "not_found",
            format!("{} is not a file", path.display()),
        ));
    }
    if meta.len() > MAX_PDF_BYTES {
        return Err(CommandError::invalid_input(format!(
            "{} is too large to show ({} MiB)",
            crate::view::file_name(&path),
            meta.len() >> 20
        )));
    }
    Ok(path)
}

/// The PDF file of a library document, for drawing its pages. Refused for
/// ids that are not in the library, documents that are not PDFs and files
/// that are gone.
#[tauri::command]
#[specta::specta]
pub async fn document_pdf(state: State<'_, AppState>, id: String) -> CommandResult<PdfFile> {
    let id = crate::commands::check_document_id(&id)?.to_owned();
    let engine = state.engine().await?;
    let path = pdf_path(&engine.documents().await, &id)?;
    let file_name = crate::view::file_name(&path);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| CommandError::new("not_found", format!("{}: {e}", path.display())))?;
    let base64 = tauri::async_runtime::spawn_blocking(move || {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })
    .await
    .map_err(|e| CommandError::internal(e.to_string()))?;
    Ok(PdfFile {
        id,
        file_name,
        base64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, path: &std::path::Path, format: &str) -> DocumentEntry {
        DocumentEntry {
            doc_id: id.into(),
            path: path.display().to_string(),
            title: String::new(),
            format: format.into(),
            content_hash: "h".into(),
            bytes: 4,
            pages: 1,
            chunks: 1,
            indexed_at: 0,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn only_pdf_documents_of_the_library_that_still_exist_are_served() {
        let dir = std::env::temp_dir().join(format!("lectern-app-pdf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pdf = dir.join("paper.pdf");
        let notes = dir.join("notes.md");
        std::fs::write(&pdf, b"%PDF").unwrap();
        std::fs::write(&notes, b"# x").unwrap();
        let docs = vec![
            entry("p1", &pdf, "pdf"),
            entry("m1", &notes, "markdown"),
            entry("g1", &dir.join("gone.pdf"), "pdf"),
        ];
        assert_eq!(pdf_path(&docs, "p1").unwrap(), pdf);
        let err = pdf_path(&docs, "zz").unwrap_err();
        assert_eq!(err.code, "not_found");
        let err = pdf_path(&docs, "m1").unwrap_err();
        assert_eq!(err.code, "invalid_input");
        assert!(err.message.contains("not a PDF"), "{}", err.message);
        let err = pdf_path(&docs, "g1").unwrap_err();
        assert_eq!(err.code, "not_found");
        assert!(err.message.contains("no longer there"), "{}", err.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
