#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

//! Lectern's desktop shell: a window with the web UI in `ui/` and thin
//! commands over `lectern-engine`.

mod bindings;
mod chat;
mod collections;
mod commands;
mod error;
mod files;
mod folders;
mod models;
mod state;
mod telemetry;
mod view;

use tauri::Manager;
use tracing_subscriber::EnvFilter;

use crate::error::CommandError;
use crate::state::AppState;

/// Tensor work allocates and frees large buffers at a high rate; mimalloc
/// reuses them where the system allocator maps and zeroes fresh pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before any other thread exists: it sets an environment variable.
    lectern_engine::prefer_own_cpu_threads();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,lectern_engine=info,lectern_app=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = lectern_engine::EngineConfig::from_env(None).map_err(CommandError::from);
    match &config {
        Ok(c) => tracing::info!(data_dir = %c.data_dir.display(), "library folder"),
        Err(e) => tracing::error!(error = %e, "no usable configuration"),
    }

    let bindings = bindings::builder();
    let invoke_handler = bindings.invoke_handler();
    let app = tauri::Builder::default()
        // First: a second launch hands over to the running window instead of
        // opening the library a second time (the library allows one writer).
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_dialog::init())
        .manage(AppState::new(config))
        .manage(folders::Watches::default())
        .setup(move |app| {
            bindings.mount_events(app);
            // Open the library and load the embedder while the window paints;
            // commands that arrive first wait for it. Then broadcast GPU
            // readings and restart the folder watches.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                match handle.state::<AppState>().engine().await {
                    Ok(engine) => {
                        telemetry::start_broadcast(handle.clone(), engine.clone());
                        folders::restart_all(&handle, engine);
                    }
                    Err(e) => tracing::error!(error = %e, "the library did not open"),
                }
            });
            Ok(())
        })
        .invoke_handler(invoke_handler)
        .run(tauri::generate_context!());

    if let Err(e) = app {
        eprintln!("Lectern could not start: {e}");
        std::process::exit(1);
    }
}
