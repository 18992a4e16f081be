//! Attention of one new token over the key/value cache, on the CPU, read
//! straight from the cache's storage.
//!
//! Decoding attends one query per head over every held token. Doing that
//! with tensor ops costs a strided batched product, a softmax and a second
//! product per layer, each with its own allocation and dispatch, and for a
//! 16-bit or 8-bit cache a conversion of the whole held context to the
//! compute type on every step. Here each key/value head is one task: its
//! stored rows are read in place (converted a row at a time when the cache
//! is not f32), scored against the query heads that share it, softmaxed
//! and summed into the output. Long contexts are shared out over the
//! matrix-product threads, one task per key/value head.

use std::sync::Arc;

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use half::{bf16, f16};

use super::cache::Store;
use super::qdot::f16_row;
use super::split;
use crate::bert::kernels::{simd, softmax_row};

/// Score-and-sum work (query heads × tokens × head_dim) below which one
/// thread attends every head: a shared job costs more than it saves.
const SPLIT_WORK: usize = 1 << 18;

/// The shapes of one attention step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Key/value heads.
    pub(crate) kv_heads: usize,
    /// Query heads per key/value head.
    pub(crate) group: usize,
    /// Values per head vector.
    pub(crate) head_dim: usize,
    /// Token slots the cache holds (the stride between heads).
    pub(crate) capacity: usize,
    /// Tokens to attend over, the new one included.
    pub(crate) tokens: usize,
}

/// One layer's stored keys and values, as [`one`] reads them.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) keys: Store,
    pub(crate) values: Store,
}

/// Attention output of one token: `q` holds every query head (`kv_heads ×
/// group × head_dim` values, head `h × group + g` shares key/value head
/// `h`, already scaled by `1/√head_dim`); the result has the same layout.
pub(crate) fn one(q: Vec<f32>, held: &Held, shape: Shape) -> Result<Vec<f32>> {
    let per_head = shape.group * shape.head_dim;
    if q.len() != shape.kv_heads * per_head {
        candle_core::bail!(
            "attention query has {} values, expected {}",
            q.len(),
            shape.kv_heads * per_head
        );
    }
    if shape.tokens == 0 || shape.tokens > shape.capacity {
        candle_core::bail!(
            "attention over {} tokens of a {}-slot cache",
            shape.tokens,
            shape.capacity
        );
    }
    let work = shape.kv_heads * per_head * shape.tokens;
    if work < SPLIT_WORK || shape.kv_heads == 1 {
        let mut out = vec![0f32; q.len()];
        for h in 0..shape.kv_heads {
            let range = h * per_head..(h + 1) * per_head;
            head(held, shape, h, &q[range.clone()], &mut out[range])?;
        }
        return Ok(out);
    }
    let q = Arc::new(q);
    let tasks: Vec<split::Task> = (0..shape.kv_heads)
        .map(|h| {
            let (q, held) = (Arc::clone(&q), held.clone());
            Box::new(move || {
                let mut out = vec![0f32; per_head];
                head(
                    &held,
                    shape,
                    h,
                    &q[h * per_head..(h + 1) * per_head],
                    &mut out,
                )?;
                Tensor::from_vec(out, per_head, &Device::Cpu)
            }) as split::Task
        })
        .collect();
    let mut out = Vec::with_capacity(q.len());
    for part in split::run(tasks)? {
        out.extend(part.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Stored rows of one store, borrowed from its CPU storage.
enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
    Q8 { values: &'a [u8], scales: &'a [f32] },
}

impl Rows<'_> {
    /// Row `index` (`head × capacity + token`) as f32: borrowed when stored
    /// as f32, otherwise converted into `buf`.
    #[inline(always)]
    fn row<'b>(&'b self, index: usize, dim: usize, buf: &'b mut [f32]) -> &'b [f32] {
        let span = index * dim..(index + 1) * dim;
        match self {
            Rows::F32(v) => &v[span],
            // Whole rows at a time: `to_f32` checks the CPU for a
            // conversion instruction on every value.
            Rows::F16(v) => {
                f16_row(&v[span], buf);
                buf
            }
            Rows::Bf16(v) => {
                for (o, x) in buf.iter_mut().zip(&v[span]) {
                    *o = f32::from_bits((x.to_bits() as u32) << 16);
                }
                buf
            }
            Rows::Q8 { values, scales } => {
                let s = scales[index];
                for (o, &x) in buf.iter_mut().zip(&values[span]) {
                    *o = (x as f32 - 128.0) * s;
                }
                buf
            }
        }
    }
}

/// Runs `f` on the rows of `store`, read in place.
fn with_rows<R>(store: &Store, f: impl FnOnce(Rows<'_>) -> R) -> Result<R> {
    let wrong = |t: &Tensor| {
        candle_core::Error::msg(format!(
            "no CPU attention over a {:?} key/value store{}",
            t.dtype(),
            if t.is_contiguous() {
                ""
            } else {
                " laid out with gaps"
            }
        ))
    };
    match store {
        Store::Float(t) => {
            let (storage, layout) = t.storage_and_layout();
            let off = layout.start_offset();
            match &*storage {
                _ if !t.is_contiguous() => Err(wrong(t)),
                Storage::Cpu(CpuStorage::F32(v)) => Ok(f(Rows::F32(&v[off..]))),
                Storage::Cpu(CpuStorage::F16(v)) => Ok(f(Rows::F16(&v[off..]))),
                Storage::Cpu(CpuStorage::BF16(v)) => Ok(f(Rows::Bf16(&v[off..]))),
                _ => Err(wrong(t)),
            }
        }
        Store::Q8 { values, scales } => {
            let (vs, vl) = values.storage_and_layout();
            let (ss, sl) = scales.storage_and_layout();
            match (&*vs, &*ss) {
                _ if !values.is_contiguous() || !scales.is_contiguous() => Err(wrong(values)),
                (Storage::Cpu(CpuStorage::U8(v)), Storage::Cpu(CpuStorage::F32(s))) => {
                    Ok(f(Rows::Q8 {
                        values: &v[vl.start_offset()..],
                        scales: &s[sl.start_offset()..],
                    }))
                }
                _ => Err(wrong(values)),
            }
        }
    }
}

/// Attention of the `group` query heads that share key/value head `h`.
fn head(held: &Held, shape: Shape, h: usize, q: &[f32], out: &mut [f32]) -> Result<()> {
    let Shape {
        group,
        head_dim: dim,
        capacity,
        tokens,
        ..
    } = shape;
    let mut scores = vec![0f32; group * tokens];
    let mut buf = vec![0f32; dim];
    with_rows(&held.keys, |keys| {
        pulp::Arch::new().dispatch(Scores {
            keys: &keys,
            base: h * capacity,
            dim,
            q,
            scores: &mut scores,
            buf: &mut buf,
        })
    })?;
    simd(
        #[inline(always)]
        || {
            for s in scores.chunks_exact_mut(tokens) {
                softmax_row(s);
            }
        },
    );
    out.fill(0.0);
    with_rows(&held.values, |values| {
        pulp::Arch::new().dispatch(Sums {
            values: &values,
            base: h * capacity,
            dim,
            probs: &scores,
            out,
            buf: &mut buf,
        })
    })?;
    Ok(())
}

/// `scores[g × tokens + t] = q_g · k_t`.
struct Scores<'a, 'b> {
    keys: &'a Rows<'b>,
    base: usize,
    dim: usize,
    q: &'a [f32],
    scores: &'a mut [f32],
    buf: &'a mut [f32],
}

impl pulp::WithSimd for Scores<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self {
            keys,
            base,
            dim,
            q,
            scores,
            buf,
        } = self;
        let group = q.len() / dim;
        let tokens = scores.len() / group;
        for t in 0..tokens {
            let k = keys.row(base + t, dim, buf);
            for (g, qg) in q.chunks_exact(dim).enumerate() {
                scores[g * tokens + t] = dot(simd, qg, k);
            }
        }
    }
}

/// `out_g = Σ_t probs[g × tokens + t] · v_t`.
struct Sums<'a, 'b> {
    values: &'a Rows<'b>,
    base: usize,
    dim: usize,
    probs: &'a [f32],
    out: &'a mut [f32],
    buf: &'a mut [f32],
}

impl pulp::WithSimd for Sums<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            values,
            base,
            dim,
            probs,
            out,
            buf,
        } = self;
        let group = out.len() / dim;
        let tokens = probs.len() / group;
        for t in 0..tokens {
            let v = values.row(base + t, dim, buf);
            for (g, og) in out.chunks_exact_mut(dim).enumerate() {
                axpy(probs[g * tokens + t], v, og);
            }
        }
    }
}

/// `a · b` with four vector accumulators, so that consecutive
/// multiply-adds do not wait on each other.
#[inline(always)]
fn dot<S: pulp::Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (a, a_tail) = S::as_simd_f32s(a);
    let (b, b_tail) = S::as_simd_f32s(b);
    let mut acc = [simd.splat_f32s(0.0); 4];
    let ((a4, a_rest), (b4, b_rest)) = (a.as_chunks::<4>(), b.as_chunks::<4>());
    for (x, y) in a4.iter().zip(b4) {
        for k in 0..4 {
            acc[k] = simd.mul_add_e_f32s(x[k], y[k], acc[k]);
        }
    }
    for (&x, &y) in a_rest.iter().zip(b_rest) {
        acc[0] = simd.mul_add_e_f32s(x, y, acc[0]);
    }
    let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    simd.reduce_sum_f32s(sum) + tail
}

#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::KvDtype;
    use super::*;
    use candle_core::DType;

    /// The same attention with tensor ops over the dequantized store.
    fn reference(q: &[f32], held: &Held, shape: Shape) -> Vec<f32> {
        let read = |s: &Store| s.read(shape.tokens, DType::F32).unwrap();
        let (k, v) = (read(&held.keys), read(&held.values));
        let q = Tensor::from_vec(
            q.to_vec(),
            (1, shape.kv_heads, shape.group, shape.head_dim),
            &Device::Cpu,
        )
        .unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn matches_tensor_attention_for_every_store_type() {
        let (kv_heads, group, head_dim, capacity) = (4, 3, 64, 700);
        for kind in KvDtype::ALL {
            for tokens in [1, 37, 650] {
                let store =
                    || Store::new(kind, kv_heads, capacity, head_dim, &Device::Cpu).unwrap();
                let held = Held {
                    keys: store(),
                    values: store(),
                };
                let fill = |s: &Store, seed: f64| {
                    let x = Tensor::randn(seed, 1.0, (1, kv_heads, tokens, head_dim), &Device::Cpu)
                        .unwrap();
                    s.write(&x, 0).unwrap();
                };
                fill(&held.keys, 0.1);
                fill(&held.values, -0.2);
                let q: Vec<f32> = (0..kv_heads * group * head_dim)
                    .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.4)
                    .collect();
                let shape = Shape {
                    kv_heads,
                    group,
                    head_dim,
                    capacity,
                    tokens,
                };
                let want = reference(&q, &held, shape);
                let got = one(q, &held, shape).unwrap();
                let diff = want
                    .iter()
                    .zip(&got)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff <= 1e-5, "{kind:?} over {tokens} tokens: off by {diff}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let store = || Store::new(KvDtype::F32, 2, 8, 16, &Device::Cpu).unwrap();
        let held = Held {
            keys: store(),
            values: store(),
        };
        let shape = Shape {
            kv_heads: 2,
            group: 2,
            head_dim: 16,
            capacity: 8,
            tokens: 9,
        };
        assert!(one(vec![0.0; 64], &held, shape).is_err());
        assert!(one(vec![0.0; 63], &held, Shape { tokens: 3, ..shape }).is_err());
    }
}
