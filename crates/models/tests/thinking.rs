//! Qwen3 thinking mode end to end with the tiny random-weight checkpoint:
//! the template's `enable_thinking` switch, and a `<think>` block kept out
//! of the answer text while it streams on its own channel.

use std::path::PathBuf;

use candle_core::Device;
use lectern_models::{ChatMessage, GenerationParams, Llm, Piece, Role};

fn tiny_qwen3() -> PathBuf {
    let dir = std::env::var_os("LECTERN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
        });
    let path = dir.join("tiny-qwen3");
    assert!(
        path.is_dir(),
        "test models missing in {}: run models/provision.sh",
        dir.display()
    );
    path
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
fn enable_thinking_reaches_the_chat_template() {
    let llm = Llm::load(&tiny_qwen3(), &Device::Cpu, 4096).unwrap();
    let turns = [ChatMessage::new(Role::User, "Why is the sky blue?")];
    let off = llm.render_chat_with(&turns, false).unwrap();
    let on = llm.render_chat_with(&turns, true).unwrap();
    assert!(
        off.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{off:?}"
    );
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");
    assert_eq!(
        llm.render_chat(&turns).unwrap(),
        off,
        "thinking is off by default"
    );
}

#[test]
fn a_think_block_streams_apart_from_the_answer() {
    let mut llm = Llm::load(&tiny_qwen3(), &Device::Cpu, 4096).unwrap();
    // A prompt that opens the reasoning block for the model: everything
    // the model writes until `</think>` is thinking.
    let base = llm
        .render_chat_with(&[ChatMessage::new(Role::User, "Name three colours.")], true)
        .unwrap();
    let prompt = format!("{base}<think>\n");
    let (mut thinking, mut answer) = (String::new(), String::new());
    let stats = llm
        .generate_pieces(&prompt, &greedy(12), &mut |piece| {
            match piece {
                Piece::Thinking(t) => thinking.push_str(t),
                Piece::Answer(a) => answer.push_str(a),
            }
            true
        })
        .unwrap();
    assert!(stats.generated_tokens >= 1);
    assert_eq!(stats.thinking, thinking, "streamed thinking adds up");
    assert_eq!(stats.text, answer, "streamed answer adds up");
    // The random-weight model does not close the block in 12 tokens, so
    // nothing it wrote is answer text.
    assert!(!stats.thinking.is_empty(), "{stats:?}");
    assert!(stats.text.is_empty(), "{stats:?}");
    assert!(!stats.text.contains("<think>") && !stats.text.contains("</think>"));

    // The same generation through `generate` hands the caller answer text only.
    let mut pieces = Vec::new();
    let again = llm
        .generate(&prompt, &greedy(12), &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap();
    assert_eq!(again.thinking, stats.thinking, "greedy is deterministic");
    assert_eq!(pieces.concat(), again.text);
}

#[test]
fn cancelling_during_thinking_stops_at_once() {
    let mut llm = Llm::load(&tiny_qwen3(), &Device::Cpu, 4096).unwrap();
    let prompt = format!(
        "{}<think>\n",
        llm.render_chat_with(&[ChatMessage::new(Role::User, "Hi")], true)
            .unwrap()
    );
    let mut calls = 0;
    let stats = llm
        .generate_pieces(&prompt, &greedy(20), &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(stats.stop_reason, lectern_models::StopReason::Cancelled);
    assert_eq!(calls, 1);
    assert!(stats.generated_tokens < 20);
}
