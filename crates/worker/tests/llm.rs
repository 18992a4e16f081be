//! Language model answers through the real worker process: the same
//! greedy answer as in process, tokens streamed one frame at a time,
//! cancel, one model at a time, prefix reuse, and the engine's answer
//! surviving a worker that crashes or hangs mid-answer.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lectern_engine::gpu::DeviceKind;
use lectern_engine::worker::{
    FinishReason, LlmSpec, PromptMessage, WorkerError, WorkerPiece, WorkerProcess,
};
use lectern_engine::{
    AskEvent, AskRequest, DevicePreference, Engine, EngineConfig, GpuEvent, RecoveryStep,
    WorkerConfig,
};
use lectern_models::{ChatMessage, GenerationParams, Llm, Piece, Role, StopReason};

/// Context the tests load models with.
const CONTEXT: usize = 2048;

fn tiny_qwen3() -> PathBuf {
    let dir = models_dir().join("tiny-qwen3");
    assert!(
        dir.join("model.safetensors").is_file(),
        "test model missing in {}: run models/provision.sh",
        dir.display()
    );
    dir
}

fn tiny_qwen3_gguf() -> PathBuf {
    let file = models_dir().join("tiny-qwen3.gguf");
    assert!(
        file.is_file(),
        "test model missing at {}: run models/provision.sh",
        file.display()
    );
    file
}

fn spec(path: &Path) -> LlmSpec {
    LlmSpec {
        path: path.to_path_buf(),
        context: CONTEXT,
        kv_dtype: None,
    }
}

/// Greedy decoding of `max_tokens` tokens. The random-weight test model
/// left to itself repeats a token that decodes to no text; a strong
/// repeat penalty makes its greedy choices differ, so nearly every token
/// is a piece of text.
fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        temperature: 0.0,
        repeat_penalty: 3.0,
        repeat_last_n: 64,
        ..GenerationParams::default()
    }
}

fn messages(question: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "Answer from the sources."),
        ChatMessage::new(Role::User, question),
    ]
}

fn prompt_messages(messages: &[ChatMessage]) -> Vec<PromptMessage> {
    messages
        .iter()
        .map(|m| PromptMessage {
            role: match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            }
            .into(),
            content: m.content.clone(),
        })
        .collect()
}

fn start(faults: &str) -> WorkerProcess {
    let mut config = worker_config(faults);
    config.request_timeout = Duration::from_secs(20);
    WorkerProcess::start(&config).expect("worker starts")
}

/// Pieces as `(thinking, text)`.
type Pieces = Vec<(bool, String)>;

fn in_process(
    path: &Path,
    prompt_of: &[ChatMessage],
    params: &GenerationParams,
) -> (String, usize, Pieces, lectern_models::GenerationStats) {
    let cpu = lectern_models::candle_device(&DeviceKind::Cpu).unwrap();
    let mut llm = Llm::load(path, &cpu, CONTEXT).unwrap();
    let prompt = llm.render_chat(prompt_of).unwrap();
    let tokens = llm.count_tokens(&prompt).unwrap();
    let mut pieces = Vec::new();
    let stats = llm
        .generate_pieces(&prompt, params, &mut |piece| {
            pieces.push(match piece {
                Piece::Answer(t) => (false, t.to_owned()),
                Piece::Thinking(t) => (true, t.to_owned()),
            });
            true
        })
        .unwrap();
    (prompt, tokens, pieces, stats)
}

fn collect(pieces: &mut Pieces) -> impl FnMut(WorkerPiece<'_>) -> bool + '_ {
    |piece| {
        pieces.push(match piece {
            WorkerPiece::Answer(t) => (false, t.to_owned()),
            WorkerPiece::Thinking(t) => (true, t.to_owned()),
        });
        true
    }
}

fn greedy_equals_in_process(path: &Path) {
    let conversation = messages("What does the corpus say about tiny models?");
    let params = greedy(40);
    let (prompt, tokens, expected, stats) = in_process(path, &conversation, &params);
    assert!(!expected.is_empty());

    let mut worker = start("");
    let loaded = worker.load_llm(&spec(path), DevicePreference::Cpu).unwrap();
    assert_eq!(loaded.device, DeviceKind::Cpu);
    assert_eq!(loaded.context, CONTEXT);
    assert_eq!(loaded.unloaded, None);
    let (rendered, counted) = worker
        .render_prompt(&prompt_messages(&conversation), false)
        .unwrap();
    assert_eq!((rendered.as_str(), counted), (prompt.as_str(), tokens));

    let mut pieces = Vec::new();
    let params_json = serde_json::to_value(&params).unwrap();
    let generation = worker
        .generate(
            &rendered,
            params_json,
            true,
            &AtomicBool::new(false),
            &mut collect(&mut pieces),
        )
        .unwrap();
    assert_eq!(pieces, expected, "the same pieces, in the same frames");
    assert_eq!(generation.text, stats.text);
    assert_eq!(generation.generated_tokens, stats.generated_tokens);
    assert_eq!(generation.prompt_tokens, stats.prompt_tokens);
    let reason = match stats.stop_reason {
        StopReason::EndOfTurn => FinishReason::EndOfTurn,
        StopReason::MaxTokens => FinishReason::MaxTokens,
        StopReason::StopString => FinishReason::StopString,
        StopReason::Cancelled => FinishReason::Cancelled,
    };
    assert_eq!(generation.reason, reason);
    assert!(generation.first_token_ms > 0.0 && generation.prefill_ms > 0.0);
    let status = worker.shutdown().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn greedy_answers_in_the_worker_equal_in_process_ones_safetensors() {
    greedy_equals_in_process(&tiny_qwen3());
}

#[test]
fn greedy_answers_in_the_worker_equal_in_process_ones_gguf() {
    greedy_equals_in_process(&tiny_qwen3_gguf());
}

#[test]
fn tokens_are_streamed_as_they_are_generated_not_at_the_end() {
    // The worker stops answering when it reaches its third piece: the two
    // before it must already have arrived, each in a frame of its own.
    let mut config = worker_config("hang-at-token:3");
    config.request_timeout = Duration::from_secs(3);
    let mut worker = WorkerProcess::start(&config).unwrap();
    let pid = worker.pid();
    worker
        .load_llm(&spec(&tiny_qwen3()), DevicePreference::Cpu)
        .unwrap();
    let (prompt, _) = worker
        .render_prompt(&prompt_messages(&messages("Stream, please.")), false)
        .unwrap();
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let error = worker
        .generate(
            &prompt,
            serde_json::to_value(greedy(64)).unwrap(),
            true,
            &AtomicBool::new(false),
            &mut |piece| {
                arrivals.push((started.elapsed(), format!("{piece:?}")));
                true
            },
        )
        .unwrap_err();
    assert!(matches!(error, WorkerError::Hung { .. }), "{error}");
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert!(
        arrivals[1].0 + Duration::from_secs(2) < started.elapsed(),
        "the pieces came before the worker stalled, not with its end: {arrivals:?}"
    );
    assert!(process_gone(pid), "the hung worker is killed and reaped");
}

#[test]
fn cancel_stops_the_generation_and_the_worker_serves_the_next_request() {
    let mut worker = start("");
    worker
        .load_llm(&spec(&tiny_qwen3_gguf()), DevicePreference::Cpu)
        .unwrap();
    let (prompt, _) = worker
        .render_prompt(&prompt_messages(&messages("A long answer, please.")), false)
        .unwrap();
    let params = GenerationParams {
        // No end of turn in a random model's first 2,000 tokens to speak of.
        max_tokens: 1500,
        ..greedy(0)
    };
    let mut seen = 0;
    let generation = worker
        .generate(
            &prompt,
            serde_json::to_value(&params).unwrap(),
            true,
            &AtomicBool::new(false),
            &mut |_| {
                seen += 1;
                seen < 5
            },
        )
        .unwrap();
    assert_eq!(generation.reason, FinishReason::Cancelled);
    // The worker checks for the cancel after every piece; the pieces
    // produced while the cancel was on its way are the only extra ones.
    assert!(
        generation.generated_tokens < 100,
        "stopped after {} tokens",
        generation.generated_tokens
    );
    assert_eq!(seen, generation.generated_tokens.min(seen));

    // The cancel flag works the same way. Set before the start, the
    // cancel reaches the worker while it runs the prompt, so the
    // generation stops at its first piece.
    let cancel = AtomicBool::new(true);
    let mut pieces = Vec::new();
    let generation = worker
        .generate(
            &prompt,
            serde_json::to_value(&params).unwrap(),
            true,
            &cancel,
            &mut collect(&mut pieces),
        )
        .unwrap();
    assert_eq!(generation.reason, FinishReason::Cancelled);
    assert_eq!(pieces.len(), 1, "{pieces:?}");
    assert!(generation.generated_tokens <= 3, "{generation:?}");

    // Still alive: a complete answer follows.
    let mut pieces = Vec::new();
    let generation = worker
        .generate(
            &prompt,
            serde_json::to_value(greedy(12)).unwrap(),
            true,
            &AtomicBool::new(false),
            &mut collect(&mut pieces),
        )
        .unwrap();
    assert_eq!(generation.reason, FinishReason::MaxTokens);
    assert_eq!(generation.generated_tokens, 12);
    assert!(worker.shutdown().unwrap().success());
}

#[test]
fn loading_a_second_model_unloads_the_first() {
    let mut worker = start("");
    let first = worker
        .load_llm(&spec(&tiny_qwen3()), DevicePreference::Cpu)
        .unwrap();
    assert_eq!(
        (first.model.as_str(), first.format.as_str()),
        ("tiny-qwen3", "safetensors")
    );
    assert_eq!(first.unloaded, None);
    let second = worker
        .load_llm(&spec(&tiny_qwen3_gguf()), DevicePreference::Cpu)
        .unwrap();
    assert_eq!(second.format, "gguf");
    assert_eq!(second.unloaded.as_deref(), Some("tiny-qwen3"));
    worker.unload_llm().unwrap();
    // Nothing is loaded now: a prompt is refused with a typed error.
    match worker.render_prompt(&prompt_messages(&messages("hi")), false) {
        Err(WorkerError::Remote { kind, .. }) => {
            assert_eq!(kind, lectern_engine::worker::ErrorKind::NotLoaded)
        }
        other => panic!("{other:?}"),
    }
    let third = worker
        .load_llm(&spec(&tiny_qwen3()), DevicePreference::Cpu)
        .unwrap();
    assert_eq!(third.unloaded, None);
    // A bad path is a load failure, and the worker goes on.
    match worker.load_llm(
        &spec(Path::new("/nonexistent/model.gguf")),
        DevicePreference::Cpu,
    ) {
        Err(WorkerError::Remote { kind, message }) => {
            assert_eq!(
                kind,
                lectern_engine::worker::ErrorKind::LoadFailed,
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(worker.shutdown().unwrap().success());
}

#[test]
fn a_follow_up_sharing_the_prefix_runs_only_the_new_tokens() {
    let mut worker = start("");
    worker
        .load_llm(&spec(&tiny_qwen3()), DevicePreference::Cpu)
        .unwrap();
    let first_turn = messages("What is a lectern?");
    let (prompt, _) = worker
        .render_prompt(&prompt_messages(&first_turn), false)
        .unwrap();
    let run = |worker: &mut WorkerProcess, prompt: &str, reuse: bool| {
        worker
            .generate(
                prompt,
                serde_json::to_value(greedy(8)).unwrap(),
                reuse,
                &AtomicBool::new(false),
                &mut |_| true,
            )
            .unwrap()
    };
    let first = run(&mut worker, &prompt, true);
    assert_eq!(first.reused_prompt_tokens, 0);

    let mut follow_up = first_turn.clone();
    follow_up.push(ChatMessage::new(Role::Assistant, first.text.clone()));
    follow_up.push(ChatMessage::new(Role::User, "And who uses one?"));
    let (longer, tokens) = worker
        .render_prompt(&prompt_messages(&follow_up), false)
        .unwrap();
    assert!(longer.starts_with(&prompt[..prompt.len() - 20]));
    let second = run(&mut worker, &longer, true);
    assert_eq!(second.prompt_tokens, tokens);
    assert!(
        second.reused_prompt_tokens > 10 && second.reused_prompt_tokens < tokens,
        "reused {} of {tokens}",
        second.reused_prompt_tokens
    );
    // Without reuse the whole prompt runs, and the answer is the same.
    let again = run(&mut worker, &longer, false);
    assert_eq!(again.reused_prompt_tokens, 0);
    assert_eq!(again.text, second.text);
    assert!(worker.shutdown().unwrap().success());
}

async fn open_engine(data: &Path, worker: Option<WorkerConfig>) -> Engine {
    let mut config = EngineConfig::from_env(Some(data.to_path_buf())).unwrap();
    config.models_dir = models_dir();
    config.embedder_dir = minilm();
    config.embedder_explicit = true;
    config.llm_path = Some(tiny_qwen3_gguf());
    config.max_context = CONTEXT;
    config.reranker = None;
    config.device = DevicePreference::Cpu;
    config.worker = worker;
    Engine::open(config).await.expect("engine opens")
}

/// What an answer streamed: each event in order, as text.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Token(String),
    Restarted(String),
    Other,
}

async fn ask(engine: &Engine, cancel: Arc<AtomicBool>) -> (lectern_engine::Answer, Vec<Seen>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let on_event = Arc::new(move |event: AskEvent| {
        sink.lock().unwrap().push(match event {
            AskEvent::Token { text } => Seen::Token(text),
            AskEvent::Restarted { reason } => Seen::Restarted(reason),
            _ => Seen::Other,
        })
    });
    let mut req = AskRequest::new("What do the documents say about lecterns?");
    req.generation = greedy(24);
    let answer = engine.ask(req, on_event, cancel).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    (answer, seen)
}

/// The text of the tokens after the last restart (all of them if none).
fn final_text(seen: &[Seen]) -> String {
    let start = seen
        .iter()
        .rposition(|s| matches!(s, Seen::Restarted(_)))
        .map_or(0, |i| i + 1);
    seen[start..]
        .iter()
        .filter_map(|s| match s {
            Seen::Token(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn recovery_steps(events: &std::sync::mpsc::Receiver<GpuEvent>) -> Vec<GpuEvent> {
    events
        .try_iter()
        .filter(|e| matches!(e, GpuEvent::Recovery { .. } | GpuEvent::CpuFallback { .. }))
        .collect()
}

/// The answer of an engine without a worker.
async fn undisturbed_answer() -> String {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), None).await;
    let (answer, seen) = ask(&engine, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(final_text(&seen), answer.text);
    assert!(!answer.text.is_empty());
    answer.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_through_the_worker_equal_in_process_ones() {
    let expected = undisturbed_answer().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), Some(worker_config(""))).await;
    let events = engine.subscribe_gpu_events();
    let (answer, seen) = ask(&engine, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(answer.text, expected);
    assert_eq!(final_text(&seen), expected);
    assert!(!seen.iter().any(|s| matches!(s, Seen::Restarted(_))));
    assert!(recovery_steps(&events).is_empty());
    let status = engine.worker_status().unwrap();
    let llm = status.llm.expect("the worker holds the language model");
    assert_eq!(llm.model, "tiny-qwen3.gguf");
    assert_eq!((status.starts, status.lost), (1, 0));

    // The same question again reuses the whole prompt but its last token.
    let (again, _) = ask(&engine, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(again.text, expected);
    assert_eq!(
        again.stats.reused_prompt_tokens,
        again.stats.prompt_tokens - 1
    );

    // A cancelled answer ends as cancelled, and the worker stays.
    let (cancelled, _) = ask(&engine, Arc::new(AtomicBool::new(true))).await;
    assert_eq!(cancelled.stats.stop_reason, StopReason::Cancelled);
    assert!(cancelled.stats.generated_tokens < 24);
    assert_eq!(engine.worker_status().unwrap().lost, 0);
}

async fn answer_survives(fault: &str, request_timeout: Duration, expect_in_reason: &str) {
    let expected = undisturbed_answer().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = worker_config(fault);
    config.request_timeout = request_timeout;
    let engine = open_engine(dir.path(), Some(config)).await;
    let events = engine.subscribe_gpu_events();
    let (answer, seen) = ask(&engine, Arc::new(AtomicBool::new(false))).await;

    // Some pieces came from the worker, then the restart, then the whole
    // answer again from the CPU: never half of one glued to the other.
    let restart = seen
        .iter()
        .position(|s| matches!(s, Seen::Restarted(_)))
        .expect("a restart event");
    let before = seen[..restart]
        .iter()
        .filter(|s| matches!(s, Seen::Token(_)))
        .count();
    assert_eq!(before, 2, "{seen:?}");
    let Seen::Restarted(reason) = &seen[restart] else {
        unreachable!()
    };
    assert!(reason.contains(expect_in_reason), "{reason}");
    assert_eq!(answer.text, expected);
    assert_eq!(final_text(&seen), expected);

    let steps = recovery_steps(&events);
    assert!(
        matches!(
            steps.as_slice(),
            [GpuEvent::Recovery { step: RecoveryStep::MovedToCpu { reason } }] if reason.contains(expect_in_reason)
        ),
        "{steps:?}"
    );
    let status = engine.worker_status().unwrap();
    assert_eq!((status.starts, status.lost, status.pid), (1, 1, None));
    assert!(
        process_gone(status.last_pid.unwrap()),
        "the lost worker is reaped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crash_mid_answer_restarts_the_answer_on_the_cpu() {
    answer_survives(
        "crash-at-token:3",
        Duration::from_secs(60),
        "model worker died during generating an answer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hang_mid_answer_restarts_the_answer_on_the_cpu() {
    answer_survives(
        "hang-at-token:3",
        Duration::from_secs(3),
        "did not finish generating an answer within 3000 ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_at_load_answers_on_the_cpu_with_the_reason() {
    let expected = undisturbed_answer().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), Some(worker_config("oom-at-llm-load"))).await;
    let events = engine.subscribe_gpu_events();
    let (answer, seen) = ask(&engine, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(answer.text, expected);
    assert!(!seen.iter().any(|s| matches!(s, Seen::Restarted(_))));
    let steps = recovery_steps(&events);
    match steps.as_slice() {
        [GpuEvent::CpuFallback { model, reason }] => {
            assert_eq!(model, "tiny-qwen3.gguf");
            assert!(reason.contains("out of memory"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The worker answered with an error frame: it is still running.
    let status = engine.worker_status().unwrap();
    assert_eq!(status.lost, 0);
    assert!(status.pid.is_some());
}

/// Greedy decoding speed of the tiny model in process and through the
/// worker, several runs each, interleaved. Prints tokens/s.
///
/// `cargo test -p lectern-worker --test llm -- --ignored --nocapture decode_overhead`
#[test]
#[ignore = "a measurement, not a check"]
fn decode_overhead() {
    const TOKENS: usize = 256;
    const RUNS: usize = 5;
    let path = tiny_qwen3_gguf();
    let conversation = messages("Measure the decoding speed.");
    let params = greedy(TOKENS);
    let cpu = lectern_models::candle_device(&DeviceKind::Cpu).unwrap();
    let mut llm = Llm::load(&path, &cpu, CONTEXT).unwrap();
    let prompt = llm.render_chat(&conversation).unwrap();
    let mut worker = start("");
    worker
        .load_llm(&spec(&path), DevicePreference::Cpu)
        .unwrap();
    let json = serde_json::to_value(&params).unwrap();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Both sides run the whole prompt each time.
        let _ = llm.model_mut();
        let started = Instant::now();
        let stats = llm.generate(&prompt, &params, &mut |_| true).unwrap();
        let local_wall = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let generation = worker
            .generate(
                &prompt,
                json.clone(),
                false,
                &AtomicBool::new(false),
                &mut |_| true,
            )
            .unwrap();
        let remote_wall = started.elapsed().as_secs_f64();
        assert_eq!(generation.generated_tokens, stats.generated_tokens);
        let local_rate = stats.generated_tokens as f64 / local_wall;
        let remote_rate = generation.generated_tokens as f64 / remote_wall;
        println!(
            "run {run}: in process {local_rate:.0} tok/s (decode {:.0}), worker {remote_rate:.0} tok/s (decode {:.0} in the worker), {} tokens",
            stats.decode_tokens_per_s(),
            generation.decode_tok_s,
            stats.generated_tokens,
        );
        local.push(local_rate);
        remote.push(remote_rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median: in process {:.0} tok/s, through the worker {:.0} tok/s",
        median(&mut local),
        median(&mut remote)
    );
}
