//! What every fuzz target does: hand the bytes to
//! `lectern_ingest::parse_bytes`, the entry point ingestion uses, as a file
//! of one format.
//!
//! What counts as a failure is anything that would take the app down or
//! stall it: a crash, a stack overflow, running out of memory, or a parse
//! that runs past libFuzzer's `-timeout`. Panics inside a parser are
//! contained by `parse_bytes` and reported as that file's error, so they
//! are not failures here; set `LECTERN_FUZZ_PANICS=1` to count them too.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use lectern_ingest::{parse_bytes, OcrMode, ParseOptions};

static HOOK: Once = Once::new();

/// Parses `data` as a file called `name` (the extension picks the parser).
pub fn run(name: &str, data: &[u8]) {
    HOOK.call_once(|| {
        if std::env::var_os("LECTERN_FUZZ_PANICS").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
    });
    let options = ParseOptions {
        ocr: OcrMode::Off,
        // libFuzzer's own -timeout judges slowness.
        parse_time_limit: Duration::from_secs(3600),
        ..ParseOptions::default()
    };
    let _ = parse_bytes(Path::new(name), data.to_vec(), &options, &|_| {});
}
