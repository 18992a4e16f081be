//! The key/value cache types against each other on the tiny random-weight
//! Qwen3: rounded caches (f16, bf16, 8-bit) against the exact f32 cache over
//! a prefill and a run of decode steps, the 8-bit cache batched against
//! token by token, and prefix reuse on the 8-bit cache against a fresh run.
//! Needs the tiny Qwen3 from `models/provision.sh`.

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use lectern_models::{KvDtype, Logits, Qwen3, Qwen3Options};

/// Prompt length of the long-run comparison.
const PROMPT: usize = 300;
/// Decode steps after it.
const STEPS: usize = 20;

fn st_path() -> PathBuf {
    common::models_dir_with(&["tiny-qwen3/model.safetensors"]).join("tiny-qwen3")
}

fn load(kind: KvDtype, context: usize) -> Qwen3 {
    let opts = Qwen3Options {
        kv_dtype: Some(kind),
        ..Qwen3Options::new(context)
    };
    let model = Qwen3::load_safetensors(&st_path(), &Device::Cpu, opts).unwrap();
    assert_eq!(model.kv_dtype(), kind);
    model
}

/// `n` ids from a fixed pseudo-random sequence inside the vocabulary.
fn tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            1000 + ((state >> 33) % 150_000) as u32
        })
        .collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Standard deviation of all logits: the scale errors are judged against.
fn spread(a: &[Vec<f32>]) -> f32 {
    let all: Vec<f32> = a.iter().flatten().copied().collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    (all.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / all.len() as f32).sqrt()
}

fn argmax(row: &[f32]) -> u32 {
    Qwen3::greedy(&Tensor::new(row, &Device::Cpu).unwrap()).unwrap()
}

/// Prefill then `STEPS` decode steps fed with `decode` (the f32 cache's
/// greedy choices, so every cache sees the same tokens): the last-token
/// logits after the prefill and after each step.
fn prefill_then_decode(model: &mut Qwen3, prompt: &[u32], decode: &[u32]) -> Vec<Vec<f32>> {
    let mut out = rows(&model.forward(prompt, Logits::Last).unwrap());
    for &t in decode {
        out.extend(rows(&model.forward(&[t], Logits::Last).unwrap()));
    }
    out
}

#[test]
fn rounded_caches_stay_close_to_the_f32_cache_over_prefill_and_decode() {
    let prompt = tokens(PROMPT, 7);
    let context = PROMPT + STEPS + 1;
    // The f32 run picks the decoded tokens greedily.
    let mut exact = load(KvDtype::F32, context);
    let mut want = rows(&exact.forward(&prompt, Logits::Last).unwrap());
    let mut decode = Vec::new();
    for _ in 0..STEPS {
        let next = argmax(want.last().unwrap());
        decode.push(next);
        want.extend(rows(&exact.forward(&[next], Logits::Last).unwrap()));
    }
    let scale = spread(&want);
    // Bounds relative to the logits' spread (std 0.16 here), about 2x what
    // each type measures (printed below: f16 0.00036, bf16 0.0028, q8
    // 0.0072). A cache that holds the wrong tokens moves them by about 1.0
    // (the last check), over 60x the q8 bound.
    for (kind, bound) in [
        (KvDtype::F16, 0.001),
        (KvDtype::Bf16, 0.006),
        (KvDtype::Q8, 0.015),
    ] {
        let mut model = load(kind, context);
        let got = prefill_then_decode(&mut model, &prompt, &decode);
        let rel = max_abs_diff(&want, &got) / scale;
        let same_greedy = want
            .iter()
            .zip(&got)
            .filter(|(w, g)| argmax(w) == argmax(g))
            .count();
        println!(
            "{kind} cache: max |Δlogit| / std(logits) = {rel:.5} (std {scale:.4}); greedy token same at {same_greedy}/{} steps",
            want.len()
        );
        assert!(rel > 0.0, "{kind}: no rounding at all?");
        assert!(rel < bound, "{kind}: relative error {rel} ≥ {bound}");
        assert_eq!(same_greedy, want.len(), "{kind}: greedy tokens differ");
    }
    // What a wrong cache does, for scale: the same decode on an 8-bit cache
    // that never saw the first 30 prompt tokens.
    let mut shifted = load(KvDtype::Q8, context);
    shifted.forward(&prompt[30..], Logits::Last).unwrap();
    let mut got = rows(
        &shifted
            .forward(&prompt[PROMPT - 1..], Logits::Last)
            .unwrap(),
    );
    for &t in &decode {
        got.extend(rows(&shifted.forward(&[t], Logits::Last).unwrap()));
    }
    let rel = max_abs_diff(&want, &got) / scale;
    println!("q8 cache without the first 30 prompt tokens: {rel:.5}");
    assert!(
        rel > 0.3,
        "a different context should move the logits: {rel}"
    );
}

#[test]
fn q8_batched_prefill_matches_token_by_token_decode() {
    let prompt = tokens(96, 11);
    let tail = tokens(8, 12);
    let context = 128;
    let mut batched = load(KvDtype::Q8, context);
    let mut want = rows(&batched.forward(&prompt, Logits::All).unwrap());
    for &t in &tail {
        want.extend(rows(&batched.forward(&[t], Logits::Last).unwrap()));
    }
    let mut single = load(KvDtype::Q8, context);
    let mut got = Vec::new();
    for &t in prompt.iter().chain(&tail) {
        got.extend(rows(&single.forward(&[t], Logits::Last).unwrap()));
    }
    let err = max_abs_diff(&want, &got);
    // The same for the exact cache: what batching alone changes.
    let mut exact_batched = load(KvDtype::F32, context);
    let mut exact_single = load(KvDtype::F32, context);
    let a = rows(&exact_batched.forward(&prompt, Logits::All).unwrap());
    let b: Vec<Vec<f32>> = prompt
        .iter()
        .flat_map(|&t| rows(&exact_single.forward(&[t], Logits::Last).unwrap()))
        .collect();
    let exact_err = max_abs_diff(&a, &b);
    println!("batched vs token by token: q8 {err:e}, f32 {exact_err:e}");
    // Each token's keys and values are quantized on their own, so the
    // batch size does not change the stored integers beyond the rare
    // rounding tie that batching's last-bit differences tip.
    assert!(err <= 1e-5, "q8 batched vs token by token: {err}");
}

#[test]
fn q8_prefix_reuse_matches_a_fresh_run() {
    let prefix = tokens(120, 21);
    let first = tokens(40, 22);
    let second = tokens(40, 23);
    let mut reused = load(KvDtype::Q8, 256);
    reused.forward(&prefix, Logits::Last).unwrap();
    reused.forward(&first, Logits::All).unwrap();
    assert_eq!(reused.cached_tokens(), 160);
    reused.truncate(prefix.len());
    let got = rows(&reused.forward(&second, Logits::All).unwrap());
    let mut fresh = load(KvDtype::Q8, 256);
    fresh.forward(&prefix, Logits::Last).unwrap();
    let want = rows(&fresh.forward(&second, Logits::All).unwrap());
    let err = max_abs_diff(&want, &got);
    // The kept prefix is never quantized again and the new tokens
    // overwrite the forgotten ones: the very same numbers.
    assert_eq!(err, 0.0, "reused q8 prefix vs fresh: {err}");
}
