//! Collections from the command line: group real documents, scope search
//! and answers to a collection, and keep collections right as documents
//! and collections change.

mod common;

use common::{lectern_command, models_dir, ok, shared_docs};

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

fn lectern(data: &Path, args: &[&str]) -> Output {
    lectern_command(data, args).output().expect("lectern runs")
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn hit_files(hits: &serde_json::Value) -> Vec<String> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let path = h["chunk"]["path"].as_str().unwrap();
            Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn collections_scope_search_and_answers() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let md = shared_docs().join("md");
    ok(&lectern(d, &["ingest", md.to_str().unwrap()]));
    let strings = md.join("rust-book-ch08-02-strings.md");
    let docs = json(&ok(&lectern(d, &["docs", "--json"])));
    let types_id = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|doc| {
            doc["path"]
                .as_str()
                .unwrap()
                .ends_with("ch03-02-data-types.md")
        })
        .map(|doc| doc["doc_id"].as_str().unwrap().to_owned())
        .expect("data types document indexed");

    // Across the whole library, ownership questions find the ownership chapter.
    let query =
        "ownership rules: each value has an owner, dropped when the owner goes out of scope";
    let all = hit_files(&json(&ok(&lectern(
        d,
        &["search", query, "--json", "--top-k", "3", "--rerank", "off"],
    ))));
    assert!(
        all.iter()
            .all(|f| !f.ends_with("ch08-02-strings.md") && !f.ends_with("ch03-02-data-types.md")),
        "{all:?}"
    );

    ok(&lectern(d, &["collections", "create", " Rust basics "]));
    let err = failure(&lectern(d, &["collections", "create", "rust BASICS"]));
    assert!(
        err.contains("a collection named `Rust basics` already exists"),
        "{err}"
    );
    let long = "x".repeat(65);
    let err = failure(&lectern(d, &["collections", "create", &long]));
    assert!(err.contains("at most 64 characters"), "{err}");
    // One document by path, one by id.
    let out = ok(&lectern(
        d,
        &[
            "collections",
            "add",
            "rust basics",
            strings.to_str().unwrap(),
            &types_id,
        ],
    ));
    assert!(out.contains("Rust basics now holds 2 document(s)"), "{out}");
    let err = failure(&lectern(
        d,
        &["collections", "add", "Rust basics", "/no/such/file.md"],
    ));
    assert!(
        err.contains("no indexed document has the id or path /no/such/file.md"),
        "{err}"
    );

    // Scoped, every mode fills the top 3 from the collection's documents,
    // though none of them ranks near the top across the library.
    let allowed: HashSet<&str> = [
        "rust-book-ch08-02-strings.md",
        "rust-book-ch03-02-data-types.md",
    ]
    .into_iter()
    .collect();
    for mode in ["hybrid", "bm25", "dense"] {
        let hits = hit_files(&json(&ok(&lectern(
            d,
            &[
                "search",
                query,
                "--json",
                "--top-k",
                "3",
                "--mode",
                mode,
                "--rerank",
                "off",
                "--collection",
                "RUST BASICS",
            ],
        ))));
        assert_eq!(hits.len(), 3, "{mode}: {hits:?}");
        assert!(
            hits.iter().all(|f| allowed.contains(f.as_str())),
            "{mode}: {hits:?}"
        );
    }

    let err = failure(&lectern(d, &["search", query, "--collection", "Nope"]));
    assert!(err.contains("there is no collection named `Nope`"), "{err}");

    // An empty collection: no hits, and an answer with no sources.
    ok(&lectern(d, &["collections", "create", "Empty"]));
    let hits = json(&ok(&lectern(
        d,
        &["search", query, "--json", "--collection", "Empty"],
    )));
    assert_eq!(hits.as_array().unwrap().len(), 0);
    let model = models_dir().join("tiny-qwen3");
    let out = ok(&lectern(
        d,
        &[
            "ask",
            "Who owns a value?",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--collection",
            "Empty",
        ],
    ));
    assert!(
        out.contains("(no passages were found in your documents)"),
        "{out}"
    );
    let out = ok(&lectern(
        d,
        &[
            "ask",
            "What is a String?",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--top-k",
            "3",
            "--json",
            "--collection",
            "Rust basics",
        ],
    ));
    let answer = json(&out);
    let sources = answer["sources"].as_array().unwrap();
    assert!(!sources.is_empty(), "{out}");
    for s in sources {
        let file = Path::new(s["path"].as_str().unwrap()).file_name().unwrap();
        assert!(allowed.contains(file.to_str().unwrap()), "{out}");
    }

    // Deleting a document takes it out of the collection; renaming keeps
    // the documents; deleting the collection keeps them in the library.
    ok(&lectern(d, &["delete", &types_id]));
    ok(&lectern(
        d,
        &["collections", "rename", "rust basics", "Strings"],
    ));
    let list = json(&ok(&lectern(d, &["collections", "list", "--json"])));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Empty", "Strings"]);
    assert_eq!(list[1]["doc_ids"].as_array().unwrap().len(), 1);
    let out = ok(&lectern(
        d,
        &[
            "collections",
            "remove",
            "Strings",
            strings.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("Strings now holds 0 document(s)"), "{out}");
    let out = ok(&lectern(d, &["collections", "list"]));
    assert!(out.contains("2 collection(s)"), "{out}");
    ok(&lectern(d, &["collections", "delete", "strings"]));
    ok(&lectern(d, &["collections", "delete", "EMPTY"]));
    let out = ok(&lectern(d, &["collections", "list"]));
    assert!(out.contains("0 collection(s)"), "{out}");
    let docs = json(&ok(&lectern(d, &["docs", "--json"])));
    assert_eq!(docs.as_array().unwrap().len(), 4);
    let err = failure(&lectern(d, &["collections", "delete", "strings"]));
    assert!(
        err.contains("there is no collection named `strings`"),
        "{err}"
    );
}
