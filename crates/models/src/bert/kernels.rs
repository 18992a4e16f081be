//! Fused CPU kernels for the BERT encoder: bias (+ GELU), bias + residual +
//! LayerNorm, and softmax (also a candle op, for the decoder's prefill).
//!
//! Each kernel works on contiguous f32 rows. The transcendental functions
//! are branch-free polynomial approximations (relative error about 1e-7) so
//! the loops vectorise.

use candle_core::{CpuStorage, InplaceOp1, Layout};
use rayon::prelude::*;

/// Rows handed to one rayon task at least; smaller splits cost more than they save.
const MIN_ELEMS_PER_TASK: usize = 16 * 1024;

fn rows_per_task(cols: usize) -> usize {
    (MIN_ELEMS_PER_TASK / cols.max(1)).max(1)
}

/// `e^x`, branch-free: Cody–Waite range reduction and a degree-6 polynomial.
/// Relative error below 2e-7 on the clamped range; inputs below -87 give ~1e-38.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `t` is `ROUND + n` exactly, so its bits are those of `ROUND` plus `n`
    // (|n| <= 127): the exponent field `n + 127` comes out in integer
    // arithmetic, which vectorises, where a saturating `n as i32` does not.
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// The error function, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form, as BERT's `"gelu"` activation.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Sum of a slice with eight independent accumulators (vectorises without
/// reassociation flags).
#[inline(always)]
fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for &x in rest {
        s += x;
    }
    s
}

#[inline(always)]
fn max8(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in rest {
        m = m.max(x);
    }
    m
}

/// LayerNorm of one row in place (two-pass mean and variance).
#[inline(always)]
pub(crate) fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum8(row) / n;
    for x in row.iter_mut() {
        *x -= mean;
    }
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    let mut ss = acc.iter().sum::<f32>();
    for &x in rest {
        ss += x * x;
    }
    let inv = 1.0 / (ss / n + eps).sqrt();
    for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = *x * inv * g + b;
    }
}

/// Softmax of one row in place.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let m = max8(row);
    for x in row.iter_mut() {
        *x = exp(*x - m);
    }
    let inv = 1.0 / sum8(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// Runs `f` compiled for the best instruction set this CPU has (AVX2/FMA
/// where present), so the loops inlined into it vectorise at full width.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(candle_core::Error::Msg(format!("{op}: input is not f32")));
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => Err(candle_core::Error::Msg(format!(
            "{op}: input is not contiguous"
        ))),
    }
}

fn last_dim(layout: &Layout, op: &str) -> candle_core::Result<usize> {
    layout
        .dims()
        .last()
        .copied()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: scalar input")))
}

/// `x + bias` for each row of `x` (as wide as `bias`), in place, through
/// GELU when `gelu` is set. Rows are shared out over rayon's threads.
pub(crate) fn add_bias(x: &mut [f32], bias: &[f32], gelu: bool) {
    let cols = bias.len();
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "{} values are not rows of {cols}",
        x.len()
    );
    x.par_chunks_mut(rows_per_task(cols) * cols).for_each(|x| {
        simd(
            #[inline(always)]
            || {
                for x in x.chunks_exact_mut(cols) {
                    if gelu {
                        for (x, &b) in x.iter_mut().zip(bias) {
                            *x = self::gelu(*x + b);
                        }
                    } else {
                        for (x, &b) in x.iter_mut().zip(bias) {
                            *x += b;
                        }
                    }
                }
            },
        )
    });
}

/// LayerNorm parameters of one layer.
pub(crate) struct Norm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// `LayerNorm(x + bias + residual)` for each row of `x`, in place. Rows are
/// shared out over rayon's threads.
pub(crate) fn bias_residual_norm(x: &mut [f32], residual: &[f32], bias: &[f32], norm: &Norm<'_>) {
    let cols = bias.len();
    assert!(
        cols > 0
            && x.len() == residual.len()
            && x.len().is_multiple_of(cols)
            && norm.gamma.len() == cols
            && norm.beta.len() == cols,
        "bias-residual-layernorm: {} and {} values with {cols} parameters",
        x.len(),
        residual.len()
    );
    let rpt = rows_per_task(cols);
    x.par_chunks_mut(rpt * cols)
        .zip(residual.par_chunks(rpt * cols))
        .for_each(|(x, r)| {
            simd(
                #[inline(always)]
                || {
                    for (x, r) in x.chunks_exact_mut(cols).zip(r.chunks_exact(cols)) {
                        for ((x, &r), &b) in x.iter_mut().zip(r).zip(bias) {
                            *x += b + r;
                        }
                        layer_norm_row(x, norm.gamma, norm.beta, norm.eps);
                    }
                },
            )
        });
}

/// Softmax of each row of `x` (rows of `cols`), in place, on the calling
/// thread.
pub(crate) fn softmax_rows(x: &mut [f32], cols: usize) {
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(cols.max(1)) {
                softmax_row(row);
            }
        },
    )
}

/// Softmax over the last dimension, in place; a row of `-inf` entries
/// but one gives those entries about 1e-38.
pub(crate) struct Softmax {
    /// Whether rows are shared out over rayon's threads, or all run on
    /// the calling thread.
    pub parallel: bool,
}

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let cols = last_dim(l, self.name())?;
        let x = contiguous_f32_mut(s, l, self.name())?;
        let rows = |o: &mut [f32]| softmax_rows(o, cols);
        if self.parallel {
            x.par_chunks_mut(rows_per_task(cols) * cols).for_each(rows);
        } else {
            rows(x);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst_exp = 0f32;
        let mut worst_erf = 0f32;
        let mut worst_gelu = 0f32;
        for i in -40_000..40_000 {
            let x = i as f32 * 0.002;
            let e = exp(x);
            let r = x.exp();
            worst_exp = worst_exp.max(((e - r) / r).abs());
            let x2 = x * 0.1;
            worst_erf = worst_erf.max((erf(x2) - erf_ref(x2)).abs());
            let g = 0.5 * x2 * (1.0 + erf_ref(x2 / std::f32::consts::SQRT_2));
            worst_gelu = worst_gelu.max((gelu(x2) - g).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 1e-6, "erf error {worst_erf}");
        assert!(worst_gelu < 2e-6, "gelu error {worst_gelu}");
        assert!(exp(-200.0) < 1e-37);
        assert!(exp(200.0).is_finite());
    }

    /// erf in f64 by its Taylor series (accurate to ~1e-10 for |x| <= 4;
    /// beyond 4, erf is ±1 to f32 precision).
    fn erf_ref(x: f32) -> f32 {
        let x = x as f64;
        if x.abs() > 4.0 {
            return x.signum() as f32;
        }
        // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = x;
        let mut sum = x;
        let mut n = 0f64;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
    }

    #[test]
    fn layer_norm_row_normalises() {
        let mut row: Vec<f32> = (0..384)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let gamma = vec![1.0; 384];
        let beta = vec![0.0; 384];
        layer_norm_row(&mut row, &gamma, &beta, 1e-12);
        let mean = row.iter().sum::<f32>() / 384.0;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 384.0;
        assert!(mean.abs() < 1e-5, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-4, "var {var}");
    }
}
