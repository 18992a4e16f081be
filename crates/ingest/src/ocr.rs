//! OCR of scanned PDF pages with the Tesseract command-line program.
//!
//! A page is rendered to a grayscale PNG at 300 dpi with `pdftoppm`
//! (poppler-utils) and recognised with `tesseract` (Debian `tesseract-ocr`
//! plus language packs such as `tesseract-ocr-eng`). Both run as child
//! processes with a time limit, so a slow or stuck page is killed and
//! reported rather than holding up the ingest.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Resolution pages are rendered at for recognition.
const DPI: &str = "300";

/// Languages used when none are asked for, in order of preference.
const DEFAULT_LANGUAGES: &[&str] = &["eng", "deu"];

/// A ready OCR engine: the programs are there and the languages installed.
#[derive(Debug, Clone)]
pub(crate) struct Ocr {
    languages: String,
    timeout: Duration,
}

/// The languages `tesseract --list-langs` reports, once per process; `None`
/// when `tesseract` or `pdftoppm` cannot be run.
fn installed_languages() -> Option<&'static [String]> {
    static LANGS: OnceLock<Option<Vec<String>>> = OnceLock::new();
    LANGS
        .get_or_init(|| {
            let timeout = Duration::from_secs(20);
            run(Command::new("pdftoppm").arg("-v"), timeout).ok()?;
            let out = run(Command::new("tesseract").arg("--list-langs"), timeout).ok()?;
            let langs: Vec<String> = String::from_utf8_lossy(&out)
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != "osd" && *l != "equ")
                .map(str::to_string)
                .collect();
            if langs.is_empty() {
                tracing::warn!("tesseract has no language data installed; OCR is off");
                None
            } else {
                tracing::debug!(?langs, "tesseract found");
                Some(langs)
            }
        })
        .as_deref()
}

impl Ocr {
    /// An OCR engine for `languages` (Tesseract codes joined by `+`), or the
    /// default languages that are installed; `None` when Tesseract or
    /// `pdftoppm` is missing or none of the languages is installed.
    pub(crate) fn find(languages: Option<&str>, timeout: Duration) -> Option<Ocr> {
        let installed = installed_languages()?;
        let wanted: Vec<&str> = match languages {
            Some(list) => list.split('+').map(str::trim).collect(),
            None => DEFAULT_LANGUAGES.to_vec(),
        };
        let mut usable: Vec<&str> = wanted
            .into_iter()
            .filter(|l| installed.iter().any(|i| i == l))
            .collect();
        if usable.is_empty() && languages.is_none() {
            usable.push(installed[0].as_str());
        }
        if usable.is_empty() {
            tracing::warn!(?languages, "none of the OCR languages is installed");
            return None;
        }
        Some(Ocr {
            languages: usable.join("+"),
            timeout,
        })
    }

    /// The languages this engine recognises, joined by `+`.
    pub(crate) fn languages(&self) -> &str {
        &self.languages
    }

    /// Recognises the text of page `number` (1-based) of the PDF at `pdf`.
    pub(crate) fn page_text(&self, pdf: &Path, number: usize) -> Result<String, String> {
        let started = Instant::now();
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
        let prefix = dir.path().join("page");
        let n = number.to_string();
        run(
            Command::new("pdftoppm")
                .args([
                    "-f",
                    &n,
                    "-l",
                    &n,
                    "-r",
                    DPI,
                    "-gray",
                    "-png",
                    "-singlefile",
                ])
                .arg(pdf)
                .arg(&prefix),
            self.timeout,
        )
        .map_err(|e| format!("pdftoppm failed: {e}"))?;
        let image = prefix.with_extension("png");
        let left = self.timeout.saturating_sub(started.elapsed());
        let out = run(
            Command::new("tesseract")
                .arg(&image)
                .arg("stdout")
                .args(["-l", &self.languages])
                // One thread per process: ingest already runs files in parallel.
                .env("OMP_THREAD_LIMIT", "1"),
            left,
        )
        .map_err(|e| format!("tesseract failed: {e}"))?;
        tracing::debug!(
            page = number,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "OCR page"
        );
        Ok(tidy(&String::from_utf8_lossy(&out)))
    }
}

/// Drops the form feed Tesseract ends its output with and trailing spaces.
fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_end_matches(|c: char| c.is_whitespace() || c == '\u{c}'))
        .collect();
    lines.join("\n").trim().to_string()
}

/// Runs a command with no input, returning its standard output, or an error
/// saying why it failed, including when it ran past `timeout` (it is
/// killed then).
fn run(command: &mut Command, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let err = String::from_utf8_lossy(&err);
        Err(format!("{status}: {}", err.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_drops_form_feed_and_trailing_space() {
        assert_eq!(tidy("Hello  \nworld\n\n\u{c}"), "Hello\nworld");
    }

    #[test]
    fn run_reports_failure_and_timeout() {
        let err = run(
            Command::new("sh").args(["-c", "echo bad >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.contains("bad"), "{err}");
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("10"), Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let out = run(Command::new("echo").arg("hi"), Duration::from_secs(5)).unwrap();
        assert_eq!(out, b"hi\n");
        assert!(run(
            &mut Command::new("no-such-program-here"),
            Duration::from_secs(1)
        )
        .is_err());
    }
}
