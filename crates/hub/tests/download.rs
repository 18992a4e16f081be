//! Downloads against a local server that speaks the hub's file protocol
//! (`/{repo}/resolve/{revision}/{file}` with ranged GETs, `etag` and
//! `x-repo-commit` headers), so the real `hf-hub` client code runs end to end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lectern_hub::{
    download, sha256_file, CatalogEntry, CatalogFile, DownloadEvent, DownloadOptions, HubError,
    InstallState, ModelKind,
};

struct Hub {
    url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
}

fn serve(stream: TcpStream, files: &Mutex<HashMap<String, Vec<u8>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range: Option<(usize, usize)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse().unwrap(), b.parse().unwrap_or(usize::MAX)));
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut out = stream;
    let body = files.lock().unwrap().get(path).cloned();
    let Some(body) = body else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let (a, b) = range.unwrap_or((0, body.len() - 1));
    let b = b.min(body.len() - 1);
    let part = &body[a..=b];
    let etag = &sha256_of(&body)[..32];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {a}-{b}/{}\r\netag: \"{etag}\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\nconnection: close\r\n\r\n",
        part.len(),
        body.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(part);
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    sha256_file(&p).unwrap()
}

fn start_hub() -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let (f, r) = (files.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            r.fetch_add(1, Ordering::Relaxed);
            let f = f.clone();
            std::thread::spawn(move || serve(stream, &f));
        }
    });
    Hub {
        url,
        files,
        requests,
    }
}

fn entry(files: &[(&str, &[u8])]) -> CatalogEntry {
    CatalogEntry {
        id: "tiny-embedder".into(),
        kind: ModelKind::Embedder,
        repo: Some("acme/tiny-embedder".into()),
        revision: Some("main".into()),
        source: None,
        local_path: None,
        files: files
            .iter()
            .map(|(p, b)| CatalogFile {
                path: p.to_string(),
                sha256: Some(sha256_of(b)),
                size: Some(b.len() as u64),
            })
            .collect(),
        params: serde_json::Value::Null,
        license: None,
    }
}

fn options(models: &std::path::Path, hub: &Hub) -> DownloadOptions {
    let mut o = DownloadOptions::new(models);
    o.endpoint = Some(hub.url.clone());
    o.token = None;
    o
}

fn recorder() -> (lectern_hub::DownloadFn, Arc<Mutex<Vec<DownloadEvent>>>) {
    let events: Arc<Mutex<Vec<DownloadEvent>>> = Arc::default();
    let e = events.clone();
    (Arc::new(move |ev| e.lock().unwrap().push(ev)), events)
}

#[tokio::test]
async fn downloads_verifies_and_installs_every_file() {
    let hub = start_hub();
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let config = br#"{"hidden_size": 8}"#.to_vec();
    for (p, b) in [("model.safetensors", &weights), ("config.json", &config)] {
        hub.files
            .lock()
            .unwrap()
            .insert(format!("/acme/tiny-embedder/resolve/main/{p}"), b.clone());
    }
    let e = entry(&[("model.safetensors", &weights), ("config.json", &config)]);
    let models = tempfile::tempdir().unwrap();
    let (sink, events) = recorder();
    let path = download(
        &e,
        &options(models.path(), &hub),
        sink,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("download succeeds");
    assert_eq!(path, models.path().join("tiny-embedder"));
    assert_eq!(
        std::fs::read(path.join("model.safetensors")).unwrap(),
        weights
    );
    assert_eq!(std::fs::read(path.join("config.json")).unwrap(), config);
    assert!(matches!(
        e.install_state(models.path()),
        InstallState::Installed { .. }
    ));

    let events = events.lock().unwrap().clone();
    let last_progress = events
        .iter()
        .filter_map(|ev| match ev {
            DownloadEvent::Progress { file, done, size } if file == "model.safetensors" => {
                Some((*done, *size))
            }
            _ => None,
        })
        .next_back()
        .expect("progress was reported");
    assert_eq!(last_progress, (weights.len() as u64, weights.len() as u64));
    assert_eq!(
        events
            .iter()
            .filter(|ev| matches!(
                ev,
                DownloadEvent::FileVerified {
                    digest_checked: true,
                    ..
                }
            ))
            .count(),
        2
    );
    assert!(matches!(
        events.last(),
        Some(DownloadEvent::Finished { .. })
    ));

    // A second run finds everything in place and fetches nothing.
    let before = hub.requests.load(Ordering::Relaxed);
    let (sink, events) = recorder();
    download(
        &e,
        &options(models.path(), &hub),
        sink,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert_eq!(hub.requests.load(Ordering::Relaxed), before);
    assert_eq!(
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|ev| matches!(ev, DownloadEvent::FileSkipped { .. }))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_corrupt_file_is_refused_and_never_installed() {
    let hub = start_hub();
    let good = b"the real weights".to_vec();
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    hub.files.lock().unwrap().insert(
        "/acme/tiny-embedder/resolve/main/model.safetensors".into(),
        bad,
    );
    let e = entry(&[("model.safetensors", &good)]);
    let models = tempfile::tempdir().unwrap();
    let (sink, _) = recorder();
    let err = download(
        &e,
        &options(models.path(), &hub),
        sink,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HubError::Verification { .. }), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    assert!(!models
        .path()
        .join("tiny-embedder/model.safetensors")
        .exists());
    assert_eq!(e.install_state(models.path()), InstallState::Absent);

    // Once the server has the right bytes, the next attempt succeeds.
    hub.files.lock().unwrap().insert(
        "/acme/tiny-embedder/resolve/main/model.safetensors".into(),
        good.clone(),
    );
    let (sink, _) = recorder();
    download(
        &e,
        &options(models.path(), &hub),
        sink,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("retry succeeds");
    assert_eq!(
        std::fs::read(models.path().join("tiny-embedder/model.safetensors")).unwrap(),
        good
    );
}

#[tokio::test]
async fn missing_files_and_local_only_models_fail_clearly() {
    let hub = start_hub();
    let e = entry(&[("model.safetensors", b"abc")]);
    let models = tempfile::tempdir().unwrap();
    let (sink, _) = recorder();
    let err = download(
        &e,
        &options(models.path(), &hub),
        sink.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, HubError::Download { file, .. } if file == "model.safetensors"),
        "{err}"
    );

    let mut local = e.clone();
    local.repo = None;
    let err = download(
        &local,
        &options(models.path(), &hub),
        sink,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HubError::NotDownloadable(_)), "{err}");
}
