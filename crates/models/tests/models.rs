//! Real models, really run: all-MiniLM-L6-v2 and tiny random-weight Qwen3
//! checkpoints provisioned by `models/provision.sh`.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use lectern_models::{
    ChatMessage, Embedder, EmbedderConfig, GenerationParams, Llm, Pooling, Role, StopReason,
    TokenStream,
};

fn models_dir() -> PathBuf {
    common::models_dir_with(&["tiny-qwen3"])
}

fn embedder() -> Embedder {
    Embedder::load(
        EmbedderConfig::new(models_dir().join("all-MiniLM-L6-v2")),
        &Device::Cpu,
    )
    .expect("MiniLM loads")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_vectors_are_normalised_and_meaningful() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.pooling(), Pooling::Mean);
    let v = e
        .embed(&[
            "A cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Quarterly revenue grew by eight percent.",
        ])
        .unwrap();
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let related = cos(&v[0], &v[1]);
    let unrelated = cos(&v[0], &v[2]);
    assert!(related > 0.5, "related {related}");
    assert!(
        related > unrelated + 0.3,
        "related {related} unrelated {unrelated}"
    );
}

#[test]
fn padding_and_batch_order_do_not_change_embeddings() {
    let e = embedder();
    let long = "Retrieval augmented generation grounds answers in documents. ".repeat(8);
    let alone = e.embed(&["short text"]).unwrap().remove(0);
    let batched = e
        .embed(&[long.as_str(), "short text", "another one"])
        .unwrap();
    // "short text" was padded to the long text's length in the batch.
    let c = cos(&alone, &batched[1]);
    assert!(c > 0.9999, "cosine {c}");
    assert_eq!(batched.len(), 3);
}

#[test]
fn chat_template_from_tokenizer_config_renders_chatml() {
    let llm = Llm::load(&models_dir().join("tiny-qwen3"), &Device::Cpu, 4096).unwrap();
    let text = llm
        .render_chat(&[
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hello?"),
        ])
        .unwrap();
    assert!(
        text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\n"),
        "{text:?}"
    );
}

#[test]
fn token_stream_never_splits_utf8() {
    let llm = Llm::load(&models_dir().join("tiny-qwen3"), &Device::Cpu, 4096).unwrap();
    let text = "Grüße aus Zürich — 東京の天気は晴れ 🌤️, مرحبا";
    let ids = llm
        .tokenizer()
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let mut stream = TokenStream::new(llm.tokenizer());
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = stream.push(id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "split character in {piece:?}");
            out.push_str(&piece);
        }
    }
    if let Some(rest) = stream.flush().unwrap() {
        out.push_str(&rest);
    }
    assert_eq!(out, text);
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        temperature: 0.0,
        repeat_penalty: 1.0,
        ..Default::default()
    }
}

fn generate(path: PathBuf, params: &GenerationParams) -> (String, Vec<String>, StopReason, usize) {
    let mut llm = Llm::load(&path, &Device::Cpu, 4096).unwrap();
    let prompt = llm
        .render_chat(&[ChatMessage::new(Role::User, "Name three colours.")])
        .unwrap();
    let mut pieces = Vec::new();
    let stats = llm
        .generate(&prompt, params, &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap();
    (
        stats.text,
        pieces,
        stats.stop_reason,
        stats.generated_tokens,
    )
}

#[test]
fn safetensors_and_gguf_generate_the_same_greedy_tokens() {
    let dir = models_dir();
    let (a, pieces, stop, n) = generate(dir.join("tiny-qwen3"), &greedy(8));
    assert_eq!(stop, StopReason::MaxTokens);
    assert_eq!(n, 8);
    assert_eq!(pieces.concat(), a);
    // The Q8_0 export of the same weights makes the same greedy choices.
    let (b, _, _, _) = generate(dir.join("tiny-qwen3.gguf"), &greedy(8));
    assert_eq!(a, b);
}

#[test]
fn a_fixed_seed_gives_the_same_sample_and_cancel_stops_at_once() {
    let dir = models_dir().join("tiny-qwen3");
    let params = GenerationParams {
        max_tokens: 10,
        temperature: 1.5,
        top_p: None,
        top_k: None,
        seed: 7,
        ..Default::default()
    };
    let (a, ..) = generate(dir.clone(), &params);
    let (b, ..) = generate(dir.clone(), &params);
    assert_eq!(a, b);

    let mut llm = Llm::load(&dir, &Device::Cpu, 4096).unwrap();
    let mut calls = 0;
    let stats = llm
        .generate("<|im_start|>user\nhi<|im_end|>\n", &params, &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(stats.stop_reason, StopReason::Cancelled);
    assert_eq!(calls, 1);
}

#[test]
fn a_prompt_that_does_not_fit_is_refused_with_what_fits() {
    let mut llm = Llm::load(&models_dir().join("tiny-qwen3"), &Device::Cpu, 64).unwrap();
    let prompt = "word ".repeat(200);
    let err = llm
        .generate(&prompt, &greedy(16), &mut |_| true)
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("does not fit"), "{msg}");
    assert!(msg.contains("48"), "says how much fits: {msg}");
}
