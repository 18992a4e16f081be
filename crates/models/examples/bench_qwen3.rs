//! Prefill and decode speed of Lectern's Qwen3 on one model file.
//!
//! ```sh
//! cargo run -p lectern-models --example bench_qwen3 -- MODEL [PROMPT_TOKENS] [GEN_TOKENS]
//! ```
//!
//! MODEL is a `.gguf` file or a safetensors folder. Prints prefill and
//! decode tokens per second and the time to the first token as one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use lectern_models::{Logits, Qwen3, Qwen3Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: bench_qwen3 MODEL [PROMPT] [GEN]")?,
    );
    let prompt: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(512);
    let gen: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(128);
    let opts = Qwen3Options::new(prompt + gen);
    let loaded = Instant::now();
    let mut model = if path.is_dir() {
        Qwen3::load_safetensors(&path, &Device::Cpu, opts)?
    } else {
        Qwen3::load_gguf(&path, &Device::Cpu, opts)?
    };
    let load_s = loaded.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size as u32;
    let tokens: Vec<u32> = (0..prompt as u32)
        .map(|i| 1000 + (i * 7919) % (vocab - 1000))
        .collect();

    let started = Instant::now();
    let mut logits = None;
    for chunk in tokens.chunks(512) {
        logits = Some(model.forward(chunk, Logits::Last)?);
    }
    let first = logits
        .ok_or("empty prompt")?
        .flatten_all()?
        .argmax(0)?
        .to_scalar::<u32>()?;
    let prefill_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut next = first;
    for _ in 1..gen {
        let logits = model.forward(&[next], Logits::Last)?;
        next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
    }
    let decode_s = started.elapsed().as_secs_f64();
    println!(
        "{{\"model\":{:?},\"prompt_tokens\":{prompt},\"gen_tokens\":{gen},\"load_s\":{load_s:.2},\"ttft_s\":{prefill_s:.3},\"prefill_tok_s\":{:.2},\"decode_tok_s\":{:.2}}}",
        path.display().to_string(),
        prompt as f64 / prefill_s,
        (gen.saturating_sub(1)) as f64 / decode_s,
    );
    Ok(())
}
