//! Rotary position embeddings with f32 positions, computed per call for the
//! positions at hand (no table, so any position up to the model's limit is
//! exact), with optional YaRN scaling.

use candle_core::{DType, Device, Result, Tensor};

use super::config::{Qwen3Config, Yarn};

/// Inverse frequencies and the cos/sin scale of one model.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    inv_freq: Tensor,
    half: usize,
    scale: f64,
}

/// `theta^(-2i/d)` for `i` in `0..d/2`, in f32 as transformers computes it.
fn plain_inv_freq(theta: f64, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / dim as f32;
            1.0f32 / (theta as f32).powf(exponent)
        })
        .collect()
}

/// YaRN ("NTK-by-parts") frequencies: high frequencies kept, low ones
/// divided by the factor, a linear ramp between the correction bounds.
fn yarn_inv_freq(theta: f64, dim: usize, y: &Yarn) -> Vec<f32> {
    let correction_dim = |rotations: f64| {
        dim as f64
            * (y.original_max_position_embeddings as f64 / (rotations * 2.0 * std::f64::consts::PI))
                .ln()
            / (2.0 * theta.ln())
    };
    let low = correction_dim(y.beta_fast).floor().max(0.0);
    let high = correction_dim(y.beta_slow).ceil().min(dim as f64 - 1.0);
    let high = if low == high { high + 0.001 } else { high };
    let factor = y.factor as f32;
    (0..dim / 2)
        .map(|i| {
            let pos_freq = (theta as f32).powf((2 * i) as f32 / dim as f32);
            let extrapolation = 1.0f32 / pos_freq;
            let interpolation = 1.0f32 / (factor * pos_freq);
            let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
            let keep = 1.0 - ramp;
            interpolation * (1.0 - keep) + extrapolation * keep
        })
        .collect()
}

impl Rope {
    pub(crate) fn new(cfg: &Qwen3Config, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim;
        let (freqs, scale) = match &cfg.yarn {
            None => (plain_inv_freq(cfg.rope_theta, dim), 1.0),
            Some(y) => {
                let scale = y.attention_factor.unwrap_or(if y.factor <= 1.0 {
                    1.0
                } else {
                    0.1 * y.factor.ln() + 1.0
                });
                (yarn_inv_freq(cfg.rope_theta, dim, y), scale)
            }
        };
        let half = freqs.len();
        Ok(Self {
            inv_freq: Tensor::from_vec(freqs, (1, half), device)?,
            half,
            scale,
        })
    }

    /// cos and sin, shape `(n, head_dim / 2)`, f32, for positions
    /// `start .. start + n`.
    pub(crate) fn cos_sin(&self, start: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let positions: Vec<f32> = (start..start + n).map(|p| p as f32).collect();
        let positions = Tensor::from_vec(positions, (n, 1), self.inv_freq.device())?;
        let angles = positions.broadcast_mul(&self.inv_freq)?;
        let (mut cos, mut sin) = (angles.cos()?, angles.sin()?);
        if self.scale != 1.0 {
            cos = (cos * self.scale)?;
            sin = (sin * self.scale)?;
        }
        debug_assert_eq!(cos.dims(), &[n, self.half]);
        Ok((cos, sin))
    }

    /// Rotates `x` of shape `(1, heads, n, head_dim)` for positions starting
    /// at `start`; the rotation runs in f32 whatever `x`'s dtype.
    pub(crate) fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        candle_nn::rotary_emb::rope(&x32, cos, sin)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yarn_keeps_high_frequencies_and_divides_low_ones() {
        let plain = plain_inv_freq(1e6, 128);
        let y = yarn_inv_freq(1e6, 128, &Yarn::new(4.0, 32_768));
        assert_eq!(plain[0], y[0]);
        let last = plain.len() - 1;
        assert!((y[last] - plain[last] / 4.0).abs() <= plain[last] * 1e-6);
        assert!(y.iter().zip(&plain).all(|(a, b)| a <= b));
    }

    #[test]
    fn angles_at_large_positions_are_f32_exact() {
        let cfg = Qwen3Config {
            vocab_size: 8,
            hidden_size: 8,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            head_dim: 8,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 131_072,
            yarn: None,
            tie_word_embeddings: true,
        };
        let rope = Rope::new(&cfg, &Device::Cpu).unwrap();
        let (cos, _) = rope.cos_sin(131_071, 1).unwrap();
        let got = cos.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((got - 131_071f32.cos()).abs() < 1e-6, "{got}");
    }
}
