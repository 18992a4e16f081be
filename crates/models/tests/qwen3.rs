//! Lectern's Qwen3 against Hugging Face transformers, and against itself:
//! reference logits at positions up to 100,000 (with and without YaRN),
//! batched prefill against token-by-token decode, cache reuse against a
//! fresh prefill. Needs the tiny random-weight Qwen3 from
//! `models/provision.sh`; the reference comes from `models/golden_qwen3.py`.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use lectern_models::{
    ChatMessage, GenerationParams, KvDtype, Llm, Logits, ModelError, Qwen3, Qwen3Options, Role,
};

/// Max abs logit error against transformers for the f32 safetensors model.
const F32_TOL: f32 = 1e-3;
/// Max abs logit error against transformers for the Q8_0 GGUF export.
/// Measured: 0.0103 at every offset (0.0099 to 0.0108 with YaRN). Of that,
/// 0.0088 is the weights' Q8_0 rounding alone (the same run with
/// `CANDLE_DEQUANTIZE_ALL=1`, f32 matmuls on the rounded weights); the rest is
/// the Q8 rounding of activations in the quantized matmul. The logits here
/// are |x| < 1 with std 0.16, so that is about 1 % of their scale. The bound
/// leaves 2x headroom and still catches real faults: a wrong position, shift
/// or mask moves these logits by 0.6 to 0.95.
const Q8_TOL: f32 = 0.02;
/// Batched against one-at-a-time, same weights, same dtype.
const SAME_MODEL_TOL: f32 = 1e-4;

fn models_dir() -> PathBuf {
    common::models_dir_with(&["tiny-qwen3/model.safetensors", "tiny-qwen3.gguf"])
}

fn st_path() -> PathBuf {
    models_dir().join("tiny-qwen3")
}

fn gguf_path() -> PathBuf {
    models_dir().join("tiny-qwen3.gguf")
}

fn load(path: &Path, context: usize) -> Qwen3 {
    let opts = Qwen3Options::new(context);
    if path.is_dir() {
        Qwen3::load_safetensors(path, &Device::Cpu, opts).unwrap()
    } else {
        Qwen3::load_gguf(path, &Device::Cpu, opts).unwrap()
    }
}

struct Golden {
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny_qwen3_golden.safetensors");
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        Self { tensors }
    }

    fn ids(&self, name: &str) -> Vec<u32> {
        self.tensors[name]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    }

    fn tokens(&self) -> Vec<u32> {
        self.ids("tokens")
    }

    /// Runs `case` (e.g. `rope_100000`) and returns the worst error on the
    /// stored vocabulary slice and on the full-vocabulary maximum.
    fn check(&self, model: &mut Qwen3, case: &str) -> f32 {
        let offset: usize = case.split('_').nth(1).unwrap().parse().unwrap();
        let tokens = self.tokens();
        model.reset_at(offset);
        let logits = model.forward(&tokens, Logits::All).unwrap();
        assert_eq!(logits.dims(), &[tokens.len(), model.config().vocab_size]);
        let vocab_ids = Tensor::new(self.ids("vocab_ids").as_slice(), &Device::Cpu).unwrap();
        let slice = logits.index_select(&vocab_ids, 1).unwrap();
        let want = &self.tensors[&format!("{case}.logits")];
        let slice_err = max_abs(&slice, want);
        let max = logits.max(1).unwrap();
        let max_err = max_abs(&max, &self.tensors[&format!("{case}.max")]);
        // The reference's best token scores within the error of our best.
        let argmax = self.ids(&format!("{case}.argmax"));
        let rows = logits.to_vec2::<f32>().unwrap();
        let best = max.to_vec1::<f32>().unwrap();
        for (i, &id) in argmax.iter().enumerate() {
            let gap = best[i] - rows[i][id as usize];
            assert!(
                gap <= 2.0 * slice_err.max(max_err) + 1e-6,
                "{case} row {i}: argmax gap {gap}"
            );
        }
        slice_err.max(max_err)
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

const ROPE_CASES: [&str; 4] = ["rope_0", "rope_2047", "rope_4096", "rope_100000"];
const YARN_CASES: [&str; 2] = ["yarn_0", "yarn_100000"];

/// A copy of the tiny safetensors model whose config.json asks for YaRN.
fn yarn_safetensors_dir() -> PathBuf {
    let src = st_path();
    let dir = std::env::temp_dir().join(format!("lectern-yarn-qwen3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["rope_scaling"] = serde_json::json!({
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        std::fs::hard_link(src.join("model.safetensors"), &weights)
            .or_else(|_| std::fs::copy(src.join("model.safetensors"), &weights).map(|_| ()))
            .unwrap();
    }
    dir
}

/// A copy of the tiny GGUF with llama.cpp's YaRN metadata keys added.
fn yarn_gguf_file() -> PathBuf {
    let src = gguf_path();
    let mut reader = BufReader::new(File::open(&src).unwrap());
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push((
        "qwen3.rope.scaling.type".into(),
        gguf_file::Value::String("yarn".into()),
    ));
    metadata.push((
        "qwen3.rope.scaling.factor".into(),
        gguf_file::Value::F32(4.0),
    ));
    metadata.push((
        "qwen3.rope.scaling.original_context_length".into(),
        gguf_file::Value::U32(32768),
    ));
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<_> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                content.tensor(&mut reader, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let path = std::env::temp_dir().join(format!("lectern-yarn-qwen3-{}.gguf", std::process::id()));
    let mut out = std::io::BufWriter::new(File::create(&path).unwrap());
    let meta: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tens: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut out, &meta, &tens).unwrap();
    drop(out);
    path
}

#[test]
fn safetensors_logits_match_transformers_up_to_position_100000() {
    let golden = Golden::load();
    let mut model = load(&st_path(), 64);
    assert!(model.config().yarn.is_none());
    for case in ROPE_CASES {
        let err = golden.check(&mut model, case);
        println!("safetensors {case}: max abs error {err:e}");
        assert!(err <= F32_TOL, "{case}: max abs error {err} > {F32_TOL}");
    }
    // Without YaRN the YaRN reference is far off: the check can tell them apart.
    let err = golden.check(&mut model, "yarn_100000");
    assert!(
        err > 10.0 * F32_TOL,
        "plain RoPE matched the YaRN reference ({err})"
    );
}

#[test]
fn safetensors_yarn_matches_transformers() {
    let golden = Golden::load();
    let dir = yarn_safetensors_dir();
    let mut model = load(&dir, 64);
    let yarn = model
        .config()
        .yarn
        .expect("config.json rope_scaling is read");
    assert_eq!(yarn.factor, 4.0);
    assert_eq!(yarn.original_max_position_embeddings, 32768);
    for case in YARN_CASES {
        let err = golden.check(&mut model, case);
        println!("safetensors {case}: max abs error {err:e}");
        assert!(err <= F32_TOL, "{case}: max abs error {err} > {F32_TOL}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gguf_q8_logits_match_transformers_within_quantization_error() {
    let golden = Golden::load();
    let mut model = load(&gguf_path(), 64);
    assert!(model.config().tie_word_embeddings);
    for case in ROPE_CASES {
        let err = golden.check(&mut model, case);
        println!("gguf q8_0 {case}: max abs error {err:e}");
        assert!(err <= Q8_TOL, "{case}: max abs error {err} > {Q8_TOL}");
    }
    let path = yarn_gguf_file();
    let mut model = load(&path, 64);
    assert!(
        model.config().yarn.is_some(),
        "qwen3.rope.scaling.* keys are read"
    );
    for case in YARN_CASES {
        let err = golden.check(&mut model, case);
        println!("gguf q8_0 {case}: max abs error {err:e}");
        assert!(err <= Q8_TOL, "{case}: max abs error {err} > {Q8_TOL}");
    }
    std::fs::remove_file(&path).ok();
}

/// Token ids of some ordinary text, enough for a few prefill chunks.
fn some_tokens(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| 200 + (i * 7919) % 150_000).collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn batched_equals_one_by_one(path: &Path) {
    let tokens = some_tokens(24);
    let mut model = load(path, 256);
    // One batch of everything.
    model.reset();
    let all = rows(&model.forward(&tokens, Logits::All).unwrap());
    // One token at a time.
    model.reset();
    let mut single = Vec::new();
    for t in &tokens {
        single.extend(rows(&model.forward(&[*t], Logits::Last).unwrap()));
    }
    let err = worst(&all, &single);
    assert!(err <= SAME_MODEL_TOL, "batched vs one-by-one: {err}");
    // Batches after a cache of 5, then 11 tokens: the mask at an offset.
    model.reset();
    let mut chunked = rows(&model.forward(&tokens[..5], Logits::All).unwrap());
    chunked.extend(rows(&model.forward(&tokens[5..16], Logits::All).unwrap()));
    chunked.extend(rows(&model.forward(&tokens[16..], Logits::All).unwrap()));
    assert_eq!(model.cached_tokens(), tokens.len());
    let err = worst(&all, &chunked);
    assert!(err <= SAME_MODEL_TOL, "chunked prefill vs one batch: {err}");
    // Last-position logits are the last row.
    model.reset();
    let last = rows(&model.forward(&tokens, Logits::Last).unwrap());
    let err = worst(&last, &all[all.len() - 1..]);
    assert!(err <= SAME_MODEL_TOL, "last row: {err}");
}

#[test]
fn batched_prefill_equals_token_by_token_safetensors() {
    batched_equals_one_by_one(&st_path());
}

#[test]
fn batched_prefill_equals_token_by_token_gguf() {
    batched_equals_one_by_one(&gguf_path());
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0 as u32
}

fn reuse_after_generated_tokens(path: &Path) {
    let prompt = some_tokens(9);
    let mut model = load(path, 128);
    let mut seq = prompt.clone();
    let mut logits = rows(&model.forward(&prompt, Logits::Last).unwrap());
    // Six greedy decode steps.
    for _ in 0..6 {
        let next = argmax(&logits[0]);
        seq.push(next);
        logits = rows(&model.forward(&[next], Logits::Last).unwrap());
    }
    // Continue the conversation after the fourth generated token: drop the
    // rest from the cache and run a follow-up batch.
    let keep = prompt.len() + 4;
    model.truncate(keep);
    assert_eq!(model.cached_tokens(), keep);
    let follow_up = [151_645, 198, 151_644, 872, 198, 9707, 30];
    let continued = rows(&model.forward(&follow_up, Logits::All).unwrap());

    let mut full = seq[..keep].to_vec();
    full.extend_from_slice(&follow_up);
    let mut fresh = load(path, 128);
    let all = rows(&fresh.forward(&full, Logits::All).unwrap());
    let err = worst(&continued, &all[keep..]);
    assert!(
        err <= SAME_MODEL_TOL,
        "reused cache vs fresh prefill: {err}"
    );
}

#[test]
fn cache_reuse_after_generated_tokens_matches_fresh_prefill_safetensors() {
    reuse_after_generated_tokens(&st_path());
}

#[test]
fn cache_reuse_after_generated_tokens_matches_fresh_prefill_gguf() {
    reuse_after_generated_tokens(&gguf_path());
}

#[test]
fn kv_cache_dtypes_are_configurable() {
    let tokens = some_tokens(12);
    let mut reference = load(&st_path(), 32);
    let want = rows(&reference.forward(&tokens, Logits::All).unwrap());
    assert_eq!(reference.kv_dtype(), KvDtype::F32);
    for kind in [KvDtype::F16, KvDtype::Bf16, KvDtype::Q8] {
        let opts = Qwen3Options {
            kv_dtype: Some(kind),
            ..Qwen3Options::new(32)
        };
        let mut model = Qwen3::load_safetensors(&st_path(), &Device::Cpu, opts).unwrap();
        assert_eq!(model.kv_dtype(), kind);
        assert_eq!(model.dtype(), DType::F32);
        let got = rows(&model.forward(&tokens, Logits::All).unwrap());
        let err = worst(&want, &got);
        // Rounded keys and values move the logits a little, not a lot.
        assert!(err > 0.0 && err < 0.02, "{kind} KV cache: {err}");
    }
}

#[test]
fn what_does_not_fit_is_refused_before_any_work() {
    let mut model = load(&st_path(), 16);
    assert_eq!(model.context(), 16);
    model.forward(&some_tokens(10), Logits::Last).unwrap();
    let err = model.forward(&some_tokens(7), Logits::Last).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ContextOverflow {
                prompt_tokens: 17,
                context: 16,
                fits: 16,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at most 16"), "{err}");
    // Nothing was written: the cache still continues where it was.
    assert_eq!(model.cached_tokens(), 10);
    model.forward(&some_tokens(6), Logits::Last).unwrap();
    assert_eq!(model.cached_tokens(), 16);

    // Positions past the model's limit (131,072 for the tiny model).
    model.reset_at(131_070);
    let err = model.forward(&some_tokens(3), Logits::Last).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::PositionOutOfRange {
                last: 131_072,
                limit: 131_072
            }
        ),
        "{err}"
    );
    model.forward(&some_tokens(2), Logits::Last).unwrap();
    model.reset();
    let err = model.forward(&[u32::MAX], Logits::Last).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..Default::default()
    }
}

#[test]
fn a_follow_up_question_reuses_the_cached_conversation() {
    let path = st_path();
    let mut llm = Llm::load(&path, &Device::Cpu, 1024).unwrap();
    let mut turns = vec![
        ChatMessage::new(Role::System, "Answer from the sources only."),
        ChatMessage::new(Role::User, "Name three colours."),
    ];
    let first = llm
        .generate(&llm.render_chat(&turns).unwrap(), &greedy(6), &mut |_| true)
        .unwrap();
    assert_eq!(first.reused_prompt_tokens, 0);
    turns.push(ChatMessage::new(Role::Assistant, first.text.clone()));
    turns.push(ChatMessage::new(Role::User, "And three more?"));
    let follow_up = llm.render_chat(&turns).unwrap();
    let second = llm.generate(&follow_up, &greedy(6), &mut |_| true).unwrap();
    assert!(
        second.reused_prompt_tokens >= first.prompt_tokens / 2,
        "reused {} of a {}-token first prompt",
        second.reused_prompt_tokens,
        first.prompt_tokens
    );
    // The same answer as a cold start on the whole conversation.
    let mut cold = Llm::load(&path, &Device::Cpu, 1024).unwrap();
    let fresh = cold
        .generate(&follow_up, &greedy(6), &mut |_| true)
        .unwrap();
    assert_eq!(fresh.reused_prompt_tokens, 0);
    assert_eq!(second.text, fresh.text);
    assert_eq!(second.generated_tokens, fresh.generated_tokens);
}
