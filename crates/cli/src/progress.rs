//! Terminal progress for ingest runs (hidden when stderr is not a terminal).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lectern_engine::{IngestEvent, ProgressFn};

pub struct IngestProgress {
    bar: ProgressBar,
    state: Arc<Mutex<Option<String>>>,
}

impl IngestProgress {
    pub fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files {prefix}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            state: Arc::new(Mutex::new(None)),
        }
    }

    pub fn sink(&self) -> ProgressFn {
        let bar = self.bar.clone();
        let state = self.state.clone();
        Arc::new(move |ev: IngestEvent| {
            let name = |p: &std::path::Path| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            match ev {
                IngestEvent::Discovered { files, skipped } => {
                    bar.set_length(files as u64);
                    for (p, why) in skipped {
                        bar.println(format!("skipped {}: {why}", p.display()));
                    }
                }
                IngestEvent::FileStarted { path, .. } => {
                    let n = name(&path);
                    bar.set_message(format!("{n}: parsing"));
                    if let Ok(mut s) = state.lock() {
                        *s = Some(n);
                    }
                }
                IngestEvent::Embedded { path, done, total } => {
                    if total > 0 && path.to_string_lossy() == "corpus" {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    } else {
                        bar.set_message(format!("{}: embedded {done}/{total} chunks", name(&path)));
                    }
                }
                IngestEvent::FileIndexed { path, warnings, .. } => {
                    for w in warnings {
                        bar.println(format!("{}: {w}", path.display()));
                    }
                    bar.inc(1);
                }
                IngestEvent::Stage { path, stage } => {
                    bar.set_message(format!("{}: {}", name(&path), stage.verb()));
                }
                IngestEvent::OcrPage {
                    path,
                    page,
                    done,
                    total,
                } => {
                    bar.set_message(format!(
                        "{}: OCR page {page} ({}/{total})",
                        name(&path),
                        done + 1
                    ));
                }
                IngestEvent::Overall(p) => {
                    let eta = p
                        .eta_seconds
                        .map(|s| {
                            format!("about {} left", HumanDuration(Duration::from_secs_f64(s)))
                        })
                        .unwrap_or_default();
                    bar.set_prefix(eta);
                }
                IngestEvent::FileUnchanged { .. } => bar.inc(1),
                IngestEvent::FileFailed { path, error } => {
                    bar.println(format!("failed {}: {error}", path.display()));
                    bar.inc(1);
                }
            }
        })
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
