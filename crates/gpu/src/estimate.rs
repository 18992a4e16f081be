//! How much GPU memory a model needs: weights, KV cache, activations and a
//! safety margin.

use serde::{Deserialize, Serialize};

/// The fraction added on top of a model's computed needs.
pub const SAFETY_MARGIN: f64 = 0.10;

/// What a KV cache stores for one head's key (or value) vector of one
/// token: `head_dim` values of `value_bytes` each, plus `scale_bytes` once
/// (an 8-bit cache's scale). Kept as whole bytes, so a fractional cost per
/// value, such as 1 + 4/128 bytes for 8 bits with an f32 scale per vector
/// of 128, is counted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvBytes {
    /// Bytes per value (4 for f32, 2 for f16/bf16, 1 for 8 bits).
    pub value_bytes: u32,
    /// Bytes per vector on top of its values (0 for float caches).
    pub scale_bytes: u32,
}

impl KvBytes {
    /// A 32-bit float cache.
    pub const F32: Self = Self {
        value_bytes: 4,
        scale_bytes: 0,
    };

    /// A 16-bit float cache (f16 or bf16).
    pub const SIXTEEN_BIT: Self = Self {
        value_bytes: 2,
        scale_bytes: 0,
    };

    /// Bytes of one vector of `head_dim` values, scales included.
    pub fn per_vector(self, head_dim: u32) -> u64 {
        u64::from(head_dim) * u64::from(self.value_bytes) + u64::from(self.scale_bytes)
    }
}

/// The numbers a memory estimate is computed from.
///
/// `weights_bytes` is the sum of the checkpoint's tensor sizes in the dtype
/// they will be loaded in. The KV cache holds a key and a value vector for
/// each of `kv_heads` heads of `head_dim` elements, stored as `kv` says,
/// per layer, per token of context. `activation_bytes` is the peak working
/// memory of one forward pass (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFootprint {
    /// Bytes of weights.
    pub weights_bytes: u64,
    /// Transformer layers (0 for models without a KV cache).
    pub layers: u32,
    /// Key/value heads per layer.
    pub kv_heads: u32,
    /// Elements per head.
    pub head_dim: u32,
    /// Tokens of context to provision for.
    pub context: u32,
    /// How each key or value vector is stored.
    pub kv: KvBytes,
    /// Peak activation memory, in bytes.
    pub activation_bytes: u64,
}

/// A reservation size and what it is made of, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Weights.
    pub weights: u64,
    /// KV cache for the requested context.
    pub kv_cache: u64,
    /// Activations.
    pub activations: u64,
    /// The safety margin ([`SAFETY_MARGIN`] of the three above).
    pub margin: u64,
    /// Everything together: what to reserve.
    pub total: u64,
}

impl ModelFootprint {
    /// KV cache bytes per token of context.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers) * u64::from(self.kv_heads) * self.kv.per_vector(self.head_dim)
    }

    /// KV cache bytes for the whole context.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.kv_bytes_per_token()
            .saturating_mul(u64::from(self.context))
    }

    /// The reservation this model needs, with its parts.
    pub fn estimate(&self) -> MemoryEstimate {
        let kv_cache = self.kv_cache_bytes();
        let base = self
            .weights_bytes
            .saturating_add(kv_cache)
            .saturating_add(self.activation_bytes);
        let margin = (base as f64 * SAFETY_MARGIN).ceil() as u64;
        MemoryEstimate {
            weights: self.weights_bytes,
            kv_cache,
            activations: self.activation_bytes,
            margin,
            total: base.saturating_add(margin),
        }
    }

    /// The longest context whose estimate fits in `available` bytes, or
    /// `None` when not even the weights and activations fit. Models without
    /// a KV cache get `u32::MAX` when they fit.
    pub fn max_context(&self, available: u64) -> Option<u32> {
        let fixed = Self {
            context: 0,
            ..*self
        }
        .estimate()
        .total;
        if fixed > available {
            return None;
        }
        let per_token = self.kv_bytes_per_token() as f64 * (1.0 + SAFETY_MARGIN);
        if per_token == 0.0 {
            return Some(u32::MAX);
        }
        let mut context = ((available - fixed) as f64 / per_token)
            .floor()
            .min(f64::from(u32::MAX)) as u32;
        // Rounding in the margin can put the floor one token over.
        let fits = |context: u32| Self { context, ..*self }.estimate().total <= available;
        while context > 0 && !fits(context) {
            context -= 1;
        }
        Some(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// Qwen3-4B's shape: 36 layers, 8 KV heads of 128.
    fn qwen3_4b(context: u32) -> ModelFootprint {
        ModelFootprint {
            weights_bytes: 8 * GIB,
            layers: 36,
            kv_heads: 8,
            head_dim: 128,
            context,
            kv: KvBytes::SIXTEEN_BIT,
            activation_bytes: GIB / 2,
        }
    }

    /// 8 bits per value and an f32 scale per vector of 128.
    const Q8: KvBytes = KvBytes {
        value_bytes: 1,
        scale_bytes: 4,
    };

    #[test]
    fn kv_cache_is_keys_and_values_per_layer_per_token() {
        let model = qwen3_4b(32_768);
        // 2 × 36 × 8 × 128 × 2 bytes = 144 KiB per token.
        assert_eq!(model.kv_bytes_per_token(), 147_456);
        assert_eq!(model.kv_cache_bytes(), 147_456 * 32_768);
        assert_eq!(model.kv_cache_bytes(), 9 * GIB / 2);
    }

    #[test]
    fn an_8_bit_cache_counts_its_scales_exactly_at_128k_tokens() {
        let f16 = qwen3_4b(131_072);
        let q8 = ModelFootprint { kv: Q8, ..f16 };
        // 2 × 36 × 8 × 128 × 2 bytes = 144 KiB per token: 18 GiB at 128K.
        assert_eq!(f16.kv_bytes_per_token(), 147_456);
        assert_eq!(f16.kv_cache_bytes(), 18 * GIB);
        // 2 × 36 × 8 × (128 + 4) bytes = 74.25 KiB per token (1.03125 bytes
        // per value): 9.28 GiB at 128K, 51.6 % of the 16-bit cache.
        assert_eq!(q8.kv_bytes_per_token(), 76_032);
        assert_eq!(q8.kv_cache_bytes(), 9_965_666_304);
        assert_eq!(q8.kv_cache_bytes() * 128, f16.kv_cache_bytes() * 66);
        // On a 16 GiB budget the 16-bit cache of an 8 GiB model affords
        // about 44K tokens, the 8-bit one about 85K.
        let budget = 16 * GIB;
        let f16_fits = f16.max_context(budget).unwrap();
        let q8_fits = q8.max_context(budget).unwrap();
        assert_eq!((f16_fits, q8_fits), (44_021, 85_375));
        assert!(
            ModelFootprint {
                context: q8_fits,
                ..q8
            }
            .estimate()
            .total
                <= budget
        );
        assert!(
            ModelFootprint {
                context: q8_fits + 1,
                ..q8
            }
            .estimate()
            .total
                > budget
        );
    }

    #[test]
    fn estimate_adds_ten_percent() {
        let estimate = qwen3_4b(32_768).estimate();
        let base = 8 * GIB + 9 * GIB / 2 + GIB / 2;
        assert_eq!(estimate.weights, 8 * GIB);
        assert_eq!(estimate.kv_cache, 9 * GIB / 2);
        assert_eq!(estimate.activations, GIB / 2);
        assert_eq!(estimate.margin, (base as f64 * 0.1).ceil() as u64);
        assert_eq!(estimate.total, base + estimate.margin);
        assert_eq!(estimate.total, 15_354_508_084);
    }

    #[test]
    fn max_context_is_the_longest_that_fits() {
        let model = qwen3_4b(0);
        let available = 12 * GIB;
        let context = model.max_context(available).unwrap();
        assert!(qwen3_4b(context).estimate().total <= available);
        assert!(qwen3_4b(context + 1).estimate().total > available);
        assert_eq!(model.max_context(8 * GIB), None);
        let embedder = ModelFootprint {
            weights_bytes: 90 << 20,
            layers: 0,
            kv_heads: 0,
            head_dim: 0,
            context: 0,
            kv: KvBytes::SIXTEEN_BIT,
            activation_bytes: 0,
        };
        assert_eq!(embedder.max_context(GIB), Some(u32::MAX));
    }
}
