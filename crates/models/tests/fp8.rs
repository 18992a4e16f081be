//! Block-scaled FP8 checkpoints (Qwen's `-FP8` releases) load by
//! dequantizing each weight with its block scales. Needs
//! `tiny-qwen3-fp8` and `tiny-qwen3-fp8-dequantized` from
//! `models/provision.sh` (`models/make_tiny_qwen3_fp8.py`): the tiny random
//! Qwen3 with every linear weight stored as float8 e4m3 in 32×32 blocks,
//! and the exact values that FP8 file stands for, in f32.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use lectern_models::{Logits, ModelError, Qwen3, Qwen3Options};

fn models_dir() -> PathBuf {
    common::models_dir_with(&["tiny-qwen3-fp8/model.safetensors"])
}

fn load(path: &Path) -> Result<Qwen3, ModelError> {
    Qwen3::load_safetensors(path, &Device::Cpu, Qwen3Options::new(256))
}

fn logits(path: &Path) -> Vec<Vec<f32>> {
    let mut model = load(path).unwrap();
    let tokens: Vec<u32> = (0..24u32).map(|i| 300 + (i * 7919) % 150_000).collect();
    model
        .forward(&tokens, Logits::All)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn fp8_weights_are_their_blocks_times_their_scales() {
    let dir = models_dir();
    let fp8 = logits(&dir.join("tiny-qwen3-fp8"));
    let exact = logits(&dir.join("tiny-qwen3-fp8-dequantized"));
    // Same f32 weights either way: only summation order may differ.
    let err = worst(&fp8, &exact);
    assert!(
        err <= 1e-5,
        "FP8 load differs from its dequantized weights by {err}"
    );
    // And the FP8 model is the original one up to FP8 rounding (about 6 %
    // of each weight at most): close, but not equal (measured: 0.036, for
    // logits of scale 0.16; 0 against the dequantized weights).
    let original = logits(&dir.join("tiny-qwen3"));
    let rounding = worst(&fp8, &original);
    assert!(
        rounding > 1e-4 && rounding < 0.1,
        "FP8 rounding moved logits by {rounding}"
    );
}

/// A copy of the FP8 model whose `quantization_config` is replaced.
fn with_quantization(json: serde_json::Value) -> tempfile::TempDir {
    let src = models_dir().join("tiny-qwen3-fp8");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_file() && name != "config.json" {
            std::os::unix::fs::symlink(&path, dir.path().join(name)).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["quantization_config"] = json;
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn wrong_block_sizes_and_other_quantizations_are_refused_by_name() {
    let wrong = with_quantization(serde_json::json!({
        "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [16, 16]
    }));
    let err = load(wrong.path()).unwrap_err().to_string();
    assert!(err.contains("FP8 scales have shape"), "{err}");

    let awq = with_quantization(serde_json::json!({ "quant_method": "awq", "bits": 4 }));
    let err = load(awq.path()).unwrap_err().to_string();
    assert!(err.contains("\"awq\" is not supported"), "{err}");
}
