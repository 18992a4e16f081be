//! Choosing the language model for the hardware: the largest variant that
//! fits with the requested context, and the context it can afford.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::units::format_bytes;
use crate::{KvBytes, MemoryEstimate, ModelFootprint};

/// Largest model, in parameters, recommended for CPU-only machines: on a
/// laptop CPU a 4B model prefills a 4K-token prompt in minutes, a 1.7B one
/// in well under one.
pub const CPU_PARAMETER_LIMIT: u64 = 2_000_000_000;

/// Smallest context worth recommending, in tokens.
pub const MIN_CONTEXT: u32 = 2048;

/// How a checkpoint's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// 32-bit floats.
    F32,
    /// bfloat16, as Qwen3 checkpoints are published.
    Bf16,
    /// GGUF Q8_0 (8.5 bits per weight).
    Q8_0,
    /// GGUF Q4_K_M (about 4.9 bits per weight on Qwen3).
    Q4KM,
}

impl WeightFormat {
    /// Every format, most precise first.
    pub const ALL: [WeightFormat; 4] = [Self::F32, Self::Bf16, Self::Q8_0, Self::Q4KM];

    /// The KV cache a load of these weights stores unless told otherwise:
    /// 16 bits a value on a GPU (bf16 for bf16 weights, f16 for GGUF
    /// files) and for GGUF files on a CPU; f32 for f32 or bf16 weights on
    /// a CPU, where the model computes in f32.
    pub fn default_kv(self, cpu: bool) -> KvBytes {
        if cpu && !self.is_quantized() {
            KvBytes::F32
        } else {
            KvBytes::SIXTEEN_BIT
        }
    }

    /// Average bits per weight, including block scales.
    pub fn bits_per_weight(self) -> f64 {
        match self {
            Self::F32 => 32.0,
            Self::Bf16 => 16.0,
            Self::Q8_0 => 8.5,
            Self::Q4KM => 4.9,
        }
    }

    /// Whether it is a GGUF quantization.
    pub fn is_quantized(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4KM)
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "Q8_0",
            Self::Q4KM => "Q4_K_M",
        })
    }
}

/// The shape of a Qwen3-style decoder, as its `config.json` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmShape {
    /// Hidden size.
    pub hidden_size: u32,
    /// Feed-forward size.
    pub intermediate_size: u32,
    /// Decoder layers.
    pub layers: u32,
    /// Attention (query) heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Elements per head.
    pub head_dim: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Whether the output projection shares the embedding matrix.
    pub tied_embeddings: bool,
    /// The longest context the model supports, in tokens.
    pub max_context: u32,
}

impl LlmShape {
    /// Number of weights (norms and biases, a tiny fraction, left out).
    pub fn parameters(&self) -> u64 {
        let h = u64::from(self.hidden_size);
        let q = u64::from(self.heads) * u64::from(self.head_dim);
        let kv = u64::from(self.kv_heads) * u64::from(self.head_dim);
        let per_layer = h * q * 2 + h * kv * 2 + 3 * h * u64::from(self.intermediate_size);
        let embeddings = u64::from(self.vocab_size) * h;
        let output = if self.tied_embeddings { 0 } else { embeddings };
        embeddings + output + per_layer * u64::from(self.layers)
    }

    /// The memory footprint in `format` for `context` tokens: weights, a
    /// 16-bit KV cache, and prefill activations for the whole context.
    pub fn footprint(&self, format: WeightFormat, context: u32) -> ModelFootprint {
        self.footprint_with_kv(format, context, KvBytes::SIXTEEN_BIT)
    }

    /// [`LlmShape::footprint`] with the KV cache stored as `kv` says.
    pub fn footprint_with_kv(
        &self,
        format: WeightFormat,
        context: u32,
        kv: KvBytes,
    ) -> ModelFootprint {
        let weights = (self.parameters() as f64 * format.bits_per_weight() / 8.0).ceil() as u64;
        let activation_bytes = u64::from(context)
            .saturating_mul(u64::from(self.hidden_size) + u64::from(self.intermediate_size))
            .saturating_mul(2)
            .saturating_add(u64::from(self.vocab_size) * 4);
        ModelFootprint {
            weights_bytes: weights,
            layers: self.layers,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            context,
            kv,
            activation_bytes,
        }
    }

    /// The longest context, in whole thousands of tokens (or exactly, below
    /// 1024), whose reservation in `format` fits in `budget`; `None` when
    /// not even [`MIN_CONTEXT`] fits.
    pub fn affordable_context(&self, format: WeightFormat, budget: u64) -> Option<u32> {
        self.affordable_context_with_kv(format, budget, KvBytes::SIXTEEN_BIT)
    }

    /// [`LlmShape::affordable_context`] with the KV cache stored as `kv`
    /// says.
    pub fn affordable_context_with_kv(
        &self,
        format: WeightFormat,
        budget: u64,
        kv: KvBytes,
    ) -> Option<u32> {
        let fits =
            |context: u32| self.footprint_with_kv(format, context, kv).estimate().total <= budget;
        let floor = MIN_CONTEXT.min(self.max_context);
        if !fits(floor) {
            return None;
        }
        let (mut lo, mut hi) = (floor, self.max_context);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(if lo >= 1024 && lo < self.max_context {
            lo / 1024 * 1024
        } else {
            lo
        })
    }
}

/// A model the recommendation may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmCandidate {
    /// Catalog id.
    pub model: String,
    /// Its shape.
    pub shape: LlmShape,
    /// Formats it can be run in.
    pub formats: Vec<WeightFormat>,
    /// Whether it is on disk.
    pub installed: bool,
}

/// The memory a recommendation plans with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "device", rename_all = "snake_case")]
pub enum MemoryBudget {
    /// GPU memory a reservation may take now.
    Gpu {
        /// Bytes.
        bytes: u64,
    },
    /// No usable GPU: system memory the model may take.
    Cpu {
        /// Bytes.
        bytes: u64,
    },
}

impl MemoryBudget {
    /// The bytes available.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Gpu { bytes } | Self::Cpu { bytes } => *bytes,
        }
    }
}

/// How one variant fares against the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantFit {
    /// Catalog id.
    pub model: String,
    /// Weight format.
    pub format: WeightFormat,
    /// Number of weights.
    pub parameters: u64,
    /// Whether the model is on disk.
    pub installed: bool,
    /// The reservation at the requested context.
    pub estimate: MemoryEstimate,
    /// Whether it fits at the requested context.
    pub fits: bool,
    /// The longest context that fits, if any does.
    pub max_context: Option<u32>,
    /// Why it is not eligible, when it is not (too big for a CPU-only
    /// machine, not a format the device runs well).
    pub excluded: Option<String>,
}

/// The recommendation and every variant weighed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The budget planned with.
    pub budget: MemoryBudget,
    /// The context asked for, in tokens.
    pub context: u32,
    /// The chosen variant, if any fits.
    pub choice: Option<VariantFit>,
    /// Why, phrased for a person.
    pub reason: String,
    /// Every variant, largest first.
    pub variants: Vec<VariantFit>,
}

/// Recommends the largest variant (most parameters, then most precise
/// weights) that fits in `budget` with `context` tokens, and the longest
/// context it can afford.
///
/// On a GPU budget every format is eligible. On a CPU budget only
/// quantized formats of models up to [`CPU_PARAMETER_LIMIT`] are, since a
/// CPU's speed, not its memory, is what limits larger ones. When nothing
/// fits at the requested context, the variant that affords the longest
/// context is chosen (the larger one on a tie), with that context.
///
/// Each variant's KV cache is counted in the type a load of it stores by
/// default ([`WeightFormat::default_kv`]); see [`recommend_llm_with_kv`]
/// for a chosen cache type.
pub fn recommend_llm(
    candidates: &[LlmCandidate],
    budget: MemoryBudget,
    context: u32,
) -> Recommendation {
    recommend(candidates, budget, context, None)
}

/// [`recommend_llm`] with the KV cache stored as `kv` says: estimates,
/// afforded contexts and the reason all count its bytes.
pub fn recommend_llm_with_kv(
    candidates: &[LlmCandidate],
    budget: MemoryBudget,
    context: u32,
    kv: KvBytes,
) -> Recommendation {
    recommend(candidates, budget, context, Some(kv))
}

fn recommend(
    candidates: &[LlmCandidate],
    budget: MemoryBudget,
    context: u32,
    chosen_kv: Option<KvBytes>,
) -> Recommendation {
    let cpu = matches!(budget, MemoryBudget::Cpu { .. });
    let mut variants: Vec<VariantFit> = candidates
        .iter()
        .flat_map(|c| {
            c.formats.iter().map(move |&format| {
                let kv = chosen_kv.unwrap_or(format.default_kv(cpu));
                let parameters = c.shape.parameters();
                let context = context.min(c.shape.max_context);
                let estimate = c.shape.footprint_with_kv(format, context, kv).estimate();
                let excluded = if cpu && parameters > CPU_PARAMETER_LIMIT {
                    Some(format!(
                        "{:.1}B parameters is too slow without a GPU",
                        parameters as f64 / 1e9
                    ))
                } else if cpu && !format.is_quantized() {
                    Some(format!(
                        "{format} runs slowly on a CPU; a quantized copy is faster"
                    ))
                } else {
                    None
                };
                VariantFit {
                    model: c.model.clone(),
                    format,
                    parameters,
                    installed: c.installed,
                    fits: estimate.total <= budget.bytes(),
                    max_context: c
                        .shape
                        .affordable_context_with_kv(format, budget.bytes(), kv),
                    estimate,
                    excluded,
                }
            })
        })
        .collect();
    variants.sort_by(|a, b| {
        b.parameters.cmp(&a.parameters).then(
            b.format
                .bits_per_weight()
                .total_cmp(&a.format.bits_per_weight()),
        )
    });
    let eligible = || variants.iter().filter(|v| v.excluded.is_none());
    let where_ = if cpu {
        "in system memory"
    } else {
        "on the GPU"
    };
    let (choice, reason) = if let Some(v) = eligible().find(|v| v.fits) {
        let reason = format!(
            "{} {} is the largest variant that fits {where_} with {context} tokens of context ({} of {}); it can afford up to {} tokens",
            v.model,
            v.format,
            format_bytes(v.estimate.total),
            format_bytes(budget.bytes()),
            v.max_context.unwrap_or(context)
        );
        (Some(v.clone()), reason)
    } else if let Some(v) = eligible()
        .filter(|v| v.max_context.is_some())
        .max_by_key(|v| (v.max_context, v.parameters))
    {
        let reason = format!(
            "nothing fits {where_} with {context} tokens in {}; {} {} fits with up to {} tokens",
            format_bytes(budget.bytes()),
            v.model,
            v.format,
            v.max_context.unwrap_or(0)
        );
        (Some(v.clone()), reason)
    } else {
        (
            None,
            format!(
                "no language model fits {where_} in {} even with {MIN_CONTEXT} tokens of context",
                format_bytes(budget.bytes())
            ),
        )
    };
    Recommendation {
        budget,
        context,
        choice,
        reason,
        variants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn qwen3(model: &str, hidden: u32, intermediate: u32, layers: u32, heads: u32) -> LlmCandidate {
        LlmCandidate {
            model: model.to_owned(),
            shape: LlmShape {
                hidden_size: hidden,
                intermediate_size: intermediate,
                layers,
                heads,
                kv_heads: 8,
                head_dim: 128,
                vocab_size: 151_936,
                tied_embeddings: true,
                max_context: 40_960,
            },
            formats: vec![WeightFormat::Bf16, WeightFormat::Q8_0, WeightFormat::Q4KM],
            installed: false,
        }
    }

    fn family() -> Vec<LlmCandidate> {
        vec![
            qwen3("qwen3-0.6b", 1024, 3072, 28, 16),
            qwen3("qwen3-1.7b", 2048, 6144, 28, 16),
            qwen3("qwen3-4b", 2560, 9728, 36, 32),
        ]
    }

    fn chosen(budget: MemoryBudget, context: u32) -> (String, WeightFormat, Option<u32>) {
        let r = recommend_llm(&family(), budget, context);
        let c = r.choice.expect(&r.reason);
        (c.model, c.format, c.max_context)
    }

    #[test]
    fn parameter_counts_match_the_published_models() {
        let params: Vec<f64> = family()
            .iter()
            .map(|c| c.shape.parameters() as f64 / 1e9)
            .collect();
        // Qwen3-0.6B, 1.7B and 4B: 0.60, 1.72 and 4.02 billion weights.
        assert!((params[0] - 0.60).abs() < 0.03, "{params:?}");
        assert!((params[1] - 1.72).abs() < 0.03, "{params:?}");
        assert!((params[2] - 4.02).abs() < 0.03, "{params:?}");
    }

    #[test]
    fn default_caches_are_counted_per_device() {
        let r = |budget| recommend_llm(&family(), budget, 8192);
        let gpu = r(MemoryBudget::Gpu { bytes: 64 * GIB });
        let cpu = r(MemoryBudget::Cpu { bytes: 64 * GIB });
        let kv = |rec: &Recommendation, format: WeightFormat| {
            let v = rec
                .variants
                .iter()
                .find(|v| v.model == "qwen3-0.6b" && v.format == format)
                .unwrap();
            v.estimate.kv_cache
        };
        // GGUF weights cache 16 bits a value on either device; bf16
        // weights on the CPU compute, and cache, in f32: twice 16 bits.
        assert_eq!(kv(&cpu, WeightFormat::Q4KM), kv(&gpu, WeightFormat::Q4KM));
        assert_eq!(
            kv(&cpu, WeightFormat::Bf16),
            2 * kv(&gpu, WeightFormat::Bf16)
        );
        let chosen = recommend_llm_with_kv(
            &family(),
            MemoryBudget::Cpu { bytes: 64 * GIB },
            8192,
            KvBytes::SIXTEEN_BIT,
        );
        assert_eq!(
            kv(&chosen, WeightFormat::Bf16),
            kv(&gpu, WeightFormat::Bf16)
        );
    }

    #[test]
    fn the_largest_variant_that_fits_is_chosen_for_each_machine() {
        // 16 GB card, 90 % plannable: 4B in bf16 with 8K of context.
        let (model, format, max) = chosen(
            MemoryBudget::Gpu {
                bytes: 16 * GIB * 9 / 10,
            },
            8192,
        );
        assert_eq!((model.as_str(), format), ("qwen3-4b", WeightFormat::Bf16));
        assert!(max.unwrap() > 8192, "{max:?}");
        // 8 GB card with 32K of context: only 4B at Q4_K_M.
        let (model, format, _) = chosen(
            MemoryBudget::Gpu {
                bytes: 8 * GIB * 9 / 10,
            },
            16_384,
        );
        assert_eq!((model.as_str(), format), ("qwen3-4b", WeightFormat::Q4KM));
        // CPU only: the 1.7B model, quantized, however much memory.
        let (model, format, _) = chosen(MemoryBudget::Cpu { bytes: 12 * GIB }, 8192);
        assert_eq!((model.as_str(), format), ("qwen3-1.7b", WeightFormat::Q8_0));
        // A small machine: 0.6B.
        let (model, _, _) = chosen(MemoryBudget::Cpu { bytes: GIB }, 4096);
        assert_eq!(model, "qwen3-0.6b");
    }

    #[test]
    fn too_little_memory_for_the_context_offers_a_shorter_one_or_nothing() {
        let budget = MemoryBudget::Gpu { bytes: 3 * GIB };
        let r = recommend_llm(&family(), budget, 40_960);
        let choice = r.choice.as_ref().expect("a shorter context fits");
        assert!(!choice.fits);
        let max = choice.max_context.unwrap();
        assert!((MIN_CONTEXT..40_960).contains(&max), "{max}");
        assert!(r.reason.contains("nothing fits"), "{}", r.reason);
        // The afforded context really fits, and 1K more does not.
        let shape = family()
            .into_iter()
            .find(|c| c.model == choice.model)
            .unwrap()
            .shape;
        assert!(shape.footprint(choice.format, max).estimate().total <= budget.bytes());
        assert!(shape.footprint(choice.format, max + 1024).estimate().total > budget.bytes());

        let none = recommend_llm(&family(), MemoryBudget::Gpu { bytes: 64 << 20 }, 4096);
        assert!(none.choice.is_none());
        assert!(
            none.reason.contains("no language model fits"),
            "{}",
            none.reason
        );
        assert_eq!(none.variants.len(), 9);
        assert_eq!(none.variants[0].model, "qwen3-4b");
    }

    #[test]
    fn an_8_bit_kv_cache_affords_about_twice_the_context() {
        let q8 = KvBytes {
            value_bytes: 1,
            scale_bytes: 4,
        };
        let budget = MemoryBudget::Gpu { bytes: 12 * GIB };
        let sixteen = recommend_llm(&family(), budget, 32_768);
        let eight = recommend_llm_with_kv(&family(), budget, 32_768, q8);
        let fit = |r: &Recommendation, model: &str, format| {
            r.variants
                .iter()
                .find(|v| v.model == model && v.format == format)
                .unwrap()
                .clone()
        };
        let a = fit(&sixteen, "qwen3-4b", WeightFormat::Bf16);
        let b = fit(&eight, "qwen3-4b", WeightFormat::Bf16);
        // 4B at 32K: the cache is 4.5 GiB in 16 bits, 2.32 GiB in 8.
        assert_eq!(a.estimate.kv_cache, 4_831_838_208);
        assert_eq!(b.estimate.kv_cache, 2_491_416_576);
        assert_eq!(a.estimate.weights, b.estimate.weights);
        // 4B bf16 does not fit 32K with a 16-bit cache on 12 GiB; with
        // the 8-bit one it does, and the reason says what it affords.
        assert!(!a.fits && b.fits, "{a:?} {b:?}");
        let (ma, mb) = (a.max_context.unwrap(), b.max_context.unwrap());
        assert!(mb > ma * 17 / 10, "{ma} vs {mb}");
        let choice = eight.choice.as_ref().unwrap();
        assert_eq!(
            (choice.model.as_str(), choice.format),
            ("qwen3-4b", WeightFormat::Bf16)
        );
        assert!(
            eight.reason.contains(&format!("afford up to {mb} tokens")),
            "{}",
            eight.reason
        );
        // Still what the 8-bit footprint says.
        let shape = family()[2].shape;
        assert!(
            shape
                .footprint_with_kv(WeightFormat::Bf16, mb, q8)
                .estimate()
                .total
                <= budget.bytes()
        );
    }
}
