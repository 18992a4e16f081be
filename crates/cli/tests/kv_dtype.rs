//! Choosing the language model's key/value cache type from the command
//! line and the environment.

#[allow(dead_code)]
mod common;

use common::{lectern_command, models_dir, ok};

#[test]
fn an_unknown_kv_cache_type_is_refused_with_the_choices() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        &["ask", "anything", "--kv-dtype", "q4"][..],
        &["bench", "llm", "--model", "x.gguf", "--kv-dtype", "int8"][..],
    ] {
        let out = lectern_command(data.path(), args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--kv-dtype"), "{err}");
        assert!(
            err.contains("expected one of f32, f16, bf16, q8"),
            "{args:?}: {err}"
        );
    }
    let out = lectern_command(data.path(), &["ask", "anything"])
        .env("LECTERN_KV_DTYPE", "fp8")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "LECTERN_KV_DTYPE: unknown KV cache type \"fp8\": expected one of f32, f16, bf16, q8"
        ),
        "{err}"
    );
}

#[test]
fn bench_llm_runs_with_the_chosen_kv_cache_type() {
    let data = tempfile::tempdir().unwrap();
    let model = models_dir().join("tiny-qwen3");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut args = vec![
            "bench",
            "llm",
            "--model",
            model.to_str().unwrap(),
            "--prompt-tokens",
            "40",
            "--gen-tokens",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        let mut c = lectern_command(data.path(), &args);
        match env {
            Some(v) => c.env("LECTERN_KV_DTYPE", v),
            None => c.env_remove("LECTERN_KV_DTYPE"),
        };
        let out = ok(&c.output().unwrap());
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["lectern"]["kv_dtype"].as_str().unwrap().to_string()
    };
    // The CPU default is the f32 activations' own type.
    assert_eq!(run(&[], None), "f32");
    assert_eq!(run(&["--kv-dtype", "q8"], None), "q8");
    assert_eq!(run(&[], Some("bf16")), "bf16");
    // The flag wins over the environment.
    assert_eq!(run(&["--kv-dtype", "f16"], Some("q8")), "f16");
}
