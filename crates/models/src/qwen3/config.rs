//! Qwen3 hyper-parameters, read from `config.json` or from GGUF metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use serde::Deserialize;

/// YaRN scaling of rotary position embeddings (context extension beyond the
/// length the model was trained on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// How much longer than the original context the model may run.
    pub factor: f64,
    /// The context length the model was trained with.
    pub original_max_position_embeddings: usize,
    /// Rotations above which a frequency is left unscaled (default 32).
    pub beta_fast: f64,
    /// Rotations below which a frequency is fully interpolated (default 1).
    pub beta_slow: f64,
    /// Scale on cos/sin; `None` means `0.1 ln(factor) + 1`.
    pub attention_factor: Option<f64>,
}

impl Yarn {
    /// YaRN with the given factor and original context, other values default.
    pub fn new(factor: f64, original_max_position_embeddings: usize) -> Self {
        Self {
            factor,
            original_max_position_embeddings,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: None,
        }
    }
}

/// The shape and constants of a Qwen3 model.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Config {
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Longest position the model supports.
    pub max_position_embeddings: usize,
    /// YaRN scaling, when the checkpoint asks for it.
    pub yarn: Option<Yarn>,
    /// Whether the output projection reuses the embedding matrix.
    pub tie_word_embeddings: bool,
}

#[derive(Debug, Deserialize)]
struct RopeScalingJson {
    #[serde(default, alias = "type")]
    rope_type: Option<String>,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    beta_fast: Option<f64>,
    #[serde(default)]
    beta_slow: Option<f64>,
    #[serde(default)]
    attention_factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    rope_scaling: Option<RopeScalingJson>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
}

fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    40_960
}

fn yarn_from_parts(
    kind: Option<&str>,
    factor: Option<f64>,
    original: Option<usize>,
) -> Result<Option<(f64, usize)>, String> {
    match kind {
        None | Some("default") | Some("none") | Some("") => Ok(None),
        Some("yarn") => {
            let factor = factor.ok_or("rope scaling \"yarn\" without a factor")?;
            let original =
                original.ok_or("rope scaling \"yarn\" without original_max_position_embeddings")?;
            if !(factor.is_finite() && factor >= 1.0) || original == 0 {
                return Err(format!(
                    "invalid yarn scaling: factor {factor}, original context {original}"
                ));
            }
            Ok(Some((factor, original)))
        }
        Some(other) => Err(format!(
            "rope scaling type {other:?} is not supported (only yarn)"
        )),
    }
}

/// The weight block size of a block-scaled FP8 checkpoint (Qwen's `-FP8`
/// releases: `quantization_config.quant_method = "fp8"`), from its
/// `config.json`; `None` for a checkpoint that is not quantized. Other
/// quantization methods are refused by name.
pub(crate) fn fp8_block_size(config_json: &[u8]) -> Result<Option<(usize, usize)>, String> {
    #[derive(Deserialize)]
    struct Quantization {
        #[serde(default)]
        quant_method: Option<String>,
        #[serde(default)]
        fmt: Option<String>,
        #[serde(default)]
        weight_block_size: Option<Vec<usize>>,
    }
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        quantization_config: Option<Quantization>,
    }
    let outer: Outer = serde_json::from_slice(config_json).map_err(|e| e.to_string())?;
    let Some(q) = outer.quantization_config else {
        return Ok(None);
    };
    match q.quant_method.as_deref() {
        Some("fp8") => {}
        Some(other) => {
            return Err(format!(
                "quantization method {other:?} is not supported; use the unquantized, FP8 or GGUF release of the model"
            ))
        }
        None => return Err("quantization_config without a quant_method".into()),
    }
    if let Some(fmt) = q.fmt.as_deref().filter(|f| *f != "e4m3") {
        return Err(format!("FP8 format {fmt:?} is not supported (only e4m3)"));
    }
    match q.weight_block_size.as_deref() {
        None => Ok(Some((128, 128))),
        Some(&[rows, cols]) if rows > 0 && cols > 0 => Ok(Some((rows, cols))),
        Some(other) => Err(format!("invalid FP8 weight_block_size {other:?}")),
    }
}

impl Qwen3Config {
    /// Parses a Hugging Face `config.json` of a Qwen3 checkpoint.
    pub fn from_hf_json(bytes: &[u8]) -> Result<Self, String> {
        let c: ConfigJson = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if c.attention_bias {
            return Err("attention_bias = true is not a Qwen3 layout".into());
        }
        let yarn = match &c.rope_scaling {
            None => None,
            Some(r) => yarn_from_parts(
                r.rope_type.as_deref(),
                r.factor,
                r.original_max_position_embeddings,
            )?
            .map(|(factor, original)| Yarn {
                beta_fast: r.beta_fast.unwrap_or(32.0),
                beta_slow: r.beta_slow.unwrap_or(1.0),
                attention_factor: r.attention_factor,
                ..Yarn::new(factor, original)
            }),
        };
        let cfg = Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c
                .head_dim
                .unwrap_or(c.hidden_size / c.num_attention_heads.max(1)),
            rope_theta: c.rope_theta,
            rms_norm_eps: c.rms_norm_eps,
            max_position_embeddings: c.max_position_embeddings,
            yarn,
            tie_word_embeddings: c.tie_word_embeddings,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads the `qwen3.*` metadata of a GGUF file. `vocab_size` comes from
    /// the embedding matrix's shape.
    pub fn from_gguf(
        metadata: &HashMap<String, gguf_file::Value>,
        vocab_size: usize,
    ) -> Result<Self, String> {
        let arch = match metadata.get("general.architecture") {
            Some(gguf_file::Value::String(s)) => s.clone(),
            _ => "qwen3".to_string(),
        };
        if arch != "qwen3" {
            return Err(format!(
                "architecture {arch:?} is not qwen3; only Qwen3 models are supported"
            ));
        }
        let get = |key: &str| metadata.get(&format!("qwen3.{key}"));
        let int = |key: &str| -> Result<usize, String> {
            get(key)
                .ok_or_else(|| format!("missing metadata qwen3.{key}"))?
                .to_u64()
                .map(|v| v as usize)
                .map_err(|e| format!("qwen3.{key}: {e}"))
        };
        let opt_int = |key: &str| get(key).and_then(|v| v.to_u64().ok()).map(|v| v as usize);
        let opt_float = |key: &str| {
            get(key).and_then(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok())
        };
        let hidden_size = int("embedding_length")?;
        let num_attention_heads = int("attention.head_count")?;
        let kind = match get("rope.scaling.type") {
            Some(gguf_file::Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let yarn = yarn_from_parts(
            kind,
            opt_float("rope.scaling.factor"),
            opt_int("rope.scaling.original_context_length"),
        )?
        .map(|(factor, original)| Yarn {
            beta_fast: opt_float("rope.scaling.yarn_beta_fast").unwrap_or(32.0),
            beta_slow: opt_float("rope.scaling.yarn_beta_slow").unwrap_or(1.0),
            ..Yarn::new(factor, original)
        });
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads,
            num_key_value_heads: opt_int("attention.head_count_kv").unwrap_or(num_attention_heads),
            head_dim: opt_int("attention.key_length")
                .unwrap_or(hidden_size / num_attention_heads.max(1)),
            rope_theta: opt_float("rope.freq_base").unwrap_or_else(default_rope_theta),
            rms_norm_eps: opt_float("attention.layer_norm_rms_epsilon").unwrap_or_else(default_eps),
            max_position_embeddings: opt_int("context_length")
                .unwrap_or_else(default_max_positions),
            yarn,
            tie_word_embeddings: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let dims = [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
            self.max_position_embeddings,
        ];
        if dims.contains(&0) {
            return Err(format!("a model dimension is zero: {self:?}"));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{} query heads are not a multiple of {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd", self.head_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(format!("invalid rope_theta {}", self.rope_theta));
        }
        Ok(())
    }

    /// Highest position (exclusive) this model can address: its
    /// `max_position_embeddings`, or the YaRN-extended length when larger.
    pub fn position_limit(&self) -> usize {
        let extended = self
            .yarn
            .map(|y| (y.factor * y.original_max_position_embeddings as f64) as usize)
            .unwrap_or(0);
        self.max_position_embeddings.max(extended)
    }
}
