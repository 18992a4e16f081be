//! A key/value cache allocated once for the whole context budget and written
//! in place, in one of several storage types ([`KvDtype`]).
//!
//! The 8-bit type stores each key or value vector of one head for one token
//! (`head_dim` values) as symmetric 8-bit integers with one f32 scale:
//! `x ≈ scale × q`, `q = round(x / scale)` in `-127..=127`,
//! `scale = max |x| / 127`. The integers are kept as `u8` with an offset of
//! 128. New tokens are quantized once, when appended; what is held is
//! dequantized to the compute dtype on the way out, so attention sees the
//! same shapes and dtype whatever the cache stores.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::attend;

/// Storage type of the key/value cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// Symmetric 8-bit integers with one f32 scale per head vector (per
    /// token, per key/value head): `head_dim + 4` bytes a vector.
    Q8,
}

/// Bytes of the scale stored with each 8-bit head vector.
const Q8_SCALE_BYTES: usize = 4;
/// The offset that stores `-127..=127` as `u8`.
const Q8_OFFSET: f64 = 128.0;
/// The largest stored magnitude.
const Q8_MAX: f64 = 127.0;

impl KvDtype {
    /// Every type, most precise first.
    pub const ALL: [KvDtype; 4] = [Self::F32, Self::F16, Self::Bf16, Self::Q8];

    /// The name used on command lines and in configuration: `f32`, `f16`,
    /// `bf16` or `q8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
        }
    }

    /// The floating-point type with the same name, if `dtype` is one the
    /// cache can store.
    pub fn from_dtype(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Self::F32),
            DType::F16 => Some(Self::F16),
            DType::BF16 => Some(Self::Bf16),
            _ => None,
        }
    }

    /// Bytes of each stored value, scales left out: 4, 2, 2 or 1.
    pub fn value_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q8 => 1,
        }
    }

    /// Bytes stored once per head vector on top of its values: the q8
    /// scale (4), nothing for the float types.
    pub fn scale_bytes(self) -> usize {
        match self {
            Self::Q8 => Q8_SCALE_BYTES,
            Self::F32 | Self::F16 | Self::Bf16 => 0,
        }
    }

    /// Bytes of one key (or value) vector of one head for one token,
    /// scales included: exact.
    pub fn bytes_per_vector(self, head_dim: usize) -> usize {
        head_dim * self.value_bytes() + self.scale_bytes()
    }

    /// Average bytes per cached value for heads of `head_dim` values,
    /// scales included: 4, 2, 2, or `1 + 4 / head_dim` for q8 (1.03125 at
    /// Qwen3's 128).
    pub fn bytes_per_value(self, head_dim: usize) -> f64 {
        if head_dim == 0 {
            return self.value_bytes() as f64;
        }
        self.bytes_per_vector(head_dim) as f64 / head_dim as f64
    }

    /// The same costs as the GPU memory estimate counts them.
    pub fn kv_bytes(self) -> lectern_gpu::KvBytes {
        lectern_gpu::KvBytes {
            value_bytes: self.value_bytes() as u32,
            scale_bytes: self.scale_bytes() as u32,
        }
    }

    /// Bytes of the whole cache: keys and values of `kv_heads` heads of
    /// `head_dim` values, in each of `layers` layers, for `tokens` tokens.
    pub fn cache_bytes(
        self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        tokens: usize,
    ) -> u64 {
        2 * layers as u64 * kv_heads as u64 * self.bytes_per_vector(head_dim) as u64 * tokens as u64
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A KV cache type name that is not one of [`KvDtype::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown KV cache type {given:?}: expected one of f32, f16, bf16, q8")]
pub struct ParseKvDtypeError {
    /// What was given.
    pub given: String,
}

impl FromStr for KvDtype {
    type Err = ParseKvDtypeError;

    /// Parses `f32`, `f16`, `bf16` or `q8` (any case, surrounding spaces
    /// ignored).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let name = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| ParseKvDtypeError {
                given: s.to_string(),
            })
    }
}

/// One layer's keys or values.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// `(1, kv_heads, capacity, head_dim)` in a float dtype.
    Float(Tensor),
    /// `(1, kv_heads, capacity, head_dim)` u8 (offset 128) and
    /// `(1, kv_heads, capacity, 1)` f32 scales.
    Q8 { values: Tensor, scales: Tensor },
}

impl Store {
    pub(crate) fn new(
        kind: KvDtype,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &Device,
    ) -> Result<Self> {
        let shape = (1, kv_heads, capacity, head_dim);
        Ok(match kind {
            KvDtype::F32 => Self::Float(Tensor::zeros(shape, DType::F32, device)?),
            KvDtype::F16 => Self::Float(Tensor::zeros(shape, DType::F16, device)?),
            KvDtype::Bf16 => Self::Float(Tensor::zeros(shape, DType::BF16, device)?),
            KvDtype::Q8 => Self::Q8 {
                values: Tensor::zeros(shape, DType::U8, device)?,
                scales: Tensor::zeros((1, kv_heads, capacity, 1), DType::F32, device)?,
            },
        })
    }

    /// Writes `x` (`(1, kv_heads, n, head_dim)`) at slot `at`.
    pub(crate) fn write(&self, x: &Tensor, at: usize) -> Result<()> {
        match self {
            Self::Float(store) => store.slice_set(&x.to_dtype(store.dtype())?.contiguous()?, 2, at),
            Self::Q8 { values, scales } => {
                let (q, scale) = quantize(x)?;
                values.slice_set(&q, 2, at)?;
                scales.slice_set(&scale, 2, at)
            }
        }
    }

    /// The first `len` slots in `dtype`.
    pub(crate) fn read(&self, len: usize, dtype: DType) -> Result<Tensor> {
        match self {
            Self::Float(store) => store.narrow(2, 0, len)?.to_dtype(dtype),
            Self::Q8 { values, scales } => {
                let q = values
                    .narrow(2, 0, len)?
                    .to_dtype(dtype)?
                    .affine(1.0, -Q8_OFFSET)?;
                q.broadcast_mul(&scales.narrow(2, 0, len)?.to_dtype(dtype)?)
            }
        }
    }
}

/// Symmetric 8-bit quantization of each vector along the last axis: the
/// integers (offset by 128, as u8) and one f32 scale per vector.
fn quantize(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let x = x.to_dtype(DType::F32)?;
    let scale = (x.abs()?.max_keepdim(candle_core::D::Minus1)? / Q8_MAX)?;
    // An all-zero vector has scale 0: divide by 1 instead, giving zeros.
    let divisor = scale.maximum(f32::MIN_POSITIVE)?;
    let q = x
        .broadcast_div(&divisor)?
        .round()?
        .clamp(-Q8_MAX, Q8_MAX)?
        .affine(1.0, Q8_OFFSET)?
        .to_dtype(DType::U8)?;
    Ok((q.contiguous()?, scale.contiguous()?))
}

/// Keys and values of every layer, `(1, kv_heads, capacity, head_dim)` each.
#[derive(Debug)]
pub(crate) struct KvCache {
    keys: Vec<Store>,
    values: Vec<Store>,
    len: usize,
    capacity: usize,
    kind: KvDtype,
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        kind: KvDtype,
        device: &Device,
    ) -> Result<Self> {
        let mut keys = Vec::with_capacity(layers);
        let mut values = Vec::with_capacity(layers);
        for _ in 0..layers {
            keys.push(Store::new(kind, kv_heads, capacity, head_dim, device)?);
            values.push(Store::new(kind, kv_heads, capacity, head_dim, device)?);
        }
        Ok(Self {
            keys,
            values,
            len: 0,
            capacity,
            kind,
        })
    }

    /// Tokens held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Tokens it can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// What it stores.
    pub(crate) fn kind(&self) -> KvDtype {
        self.kind
    }

    /// The dtype it stores, when that is a float type attention can read
    /// as it is.
    pub(crate) fn float_dtype(&self) -> Option<DType> {
        match self.kind {
            KvDtype::F32 => Some(DType::F32),
            KvDtype::F16 => Some(DType::F16),
            KvDtype::Bf16 => Some(DType::BF16),
            KvDtype::Q8 => None,
        }
    }

    /// Forgets everything past the first `len` tokens.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Marks `n` more tokens as held, once every layer has written them.
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.capacity);
        self.len += n;
    }

    /// Writes `k` and `v` (`(1, kv_heads, n, head_dim)`) of `layer` at the
    /// current end; returns how many tokens the layer then holds.
    fn write(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<usize> {
        let n = k.dim(2)?;
        if self.len + n > self.capacity {
            candle_core::bail!(
                "KV cache full: {} + {n} tokens exceed its {} slots",
                self.len,
                self.capacity
            );
        }
        self.keys[layer].write(k, self.len)?;
        self.values[layer].write(v, self.len)?;
        Ok(self.len + n)
    }

    /// Writes `k` and `v` (`(1, kv_heads, n, head_dim)`) of `layer` at the
    /// current end, then returns everything held for that layer including
    /// them, in `dtype`.
    pub(crate) fn append(
        &self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        dtype: DType,
    ) -> Result<(Tensor, Tensor)> {
        let total = self.write(layer, k, v)?;
        let k = self.keys[layer].read(total, dtype)?;
        let v = self.values[layer].read(total, dtype)?;
        Ok((k, v))
    }

    /// Writes one token's `k` and `v` (`(1, kv_heads, 1, head_dim)`) of
    /// `layer` at the current end, then attends `q` (every query head,
    /// scaled, as [`attend::one`] takes it) over everything held for that
    /// layer, on the CPU, reading the stored type in place.
    pub(crate) fn append_attend_one(
        &self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        q: Vec<f32>,
        group: usize,
    ) -> Result<Vec<f32>> {
        let (_, kv_heads, n, head_dim) = k.dims4()?;
        if n != 1 {
            candle_core::bail!("one-token attention got {n} tokens");
        }
        self.write(layer, k, v)?;
        let held = attend::Held {
            keys: self.keys[layer].clone(),
            values: self.values[layer].clone(),
        };
        let shape = attend::Shape {
            kv_heads,
            group,
            head_dim,
            capacity: self.capacity,
            tokens: self.len + 1,
        };
        attend::one(q, &held, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::super::weights::tests::max_diff;
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_choices() {
        for t in KvDtype::ALL {
            assert_eq!(t.to_string().parse::<KvDtype>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<KvDtype>(&json).unwrap(), t);
        }
        assert_eq!(" BF16 ".parse::<KvDtype>().unwrap(), KvDtype::Bf16);
        let err = "q4".parse::<KvDtype>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown KV cache type \"q4\": expected one of f32, f16, bf16, q8"
        );
        assert!(serde_json::from_str::<KvDtype>("\"q4\"").is_err());
    }

    #[test]
    fn bytes_count_scales_exactly() {
        assert_eq!(KvDtype::F32.bytes_per_vector(128), 512);
        assert_eq!(KvDtype::F16.bytes_per_vector(128), 256);
        assert_eq!(KvDtype::Bf16.bytes_per_vector(128), 256);
        assert_eq!(KvDtype::Q8.bytes_per_vector(128), 132);
        assert_eq!(KvDtype::Q8.bytes_per_value(128), 1.03125);
        assert_eq!(KvDtype::F16.bytes_per_value(128), 2.0);
        // Qwen3-4B at 128K tokens: 36 layers, 8 KV heads of 128.
        let f16 = KvDtype::F16.cache_bytes(36, 8, 128, 131_072);
        let q8 = KvDtype::Q8.cache_bytes(36, 8, 128, 131_072);
        assert_eq!(f16, 19_327_352_832); // 18 GiB
        assert_eq!(q8, 9_965_666_304); // 9.28 GiB
        for t in KvDtype::ALL {
            assert_eq!(t.kv_bytes().per_vector(128), t.bytes_per_vector(128) as u64);
        }
    }

    fn stored(kind: KvDtype, x: &Tensor) -> Tensor {
        let (_, heads, n, dim) = x.dims4().unwrap();
        let store = Store::new(kind, heads, n + 3, dim, &Device::Cpu).unwrap();
        // Written in two parts at their slots, read back whole.
        store.write(&x.narrow(2, 0, 2).unwrap(), 0).unwrap();
        store.write(&x.narrow(2, 2, n - 2).unwrap(), 2).unwrap();
        store.read(n, DType::F32).unwrap()
    }

    #[test]
    fn q8_round_trip_error_is_within_half_a_step_of_each_vector() {
        let x = Tensor::randn(0f32, 3.0, (1, 2, 5, 16), &Device::Cpu).unwrap();
        // A vector of zeros and one with a single large value.
        let zeros = Tensor::zeros((1, 2, 1, 16), DType::F32, &Device::Cpu).unwrap();
        let x = Tensor::cat(&[&x, &zeros], 2).unwrap();
        let back = stored(KvDtype::Q8, &x);
        assert_eq!(back.dims(), x.dims());
        let step = (x.abs().unwrap().max_keepdim(3).unwrap() / 127.0).unwrap();
        let err = (&back - &x).unwrap().abs().unwrap();
        let over = err
            .broadcast_sub(&step.affine(0.5, 1e-6).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(over <= 0.0, "error beyond half a step by {over}");
        // The largest magnitude of each vector is kept exactly (up to f32).
        let peak = |t: &Tensor| t.abs().unwrap().max_keepdim(3).unwrap();
        let peak_err = max_diff(&peak(&back), &peak(&x));
        assert!(peak_err < 1e-5, "{peak_err}");
        let zero_back = back.narrow(2, 5, 1).unwrap();
        assert_eq!(
            zero_back
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn float_stores_keep_what_their_dtype_holds() {
        let x = Tensor::randn(0f32, 1.0, (1, 2, 4, 8), &Device::Cpu).unwrap();
        let exact = stored(KvDtype::F32, &x);
        let diff = (&exact - &x).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let half = stored(KvDtype::F16, &x);
        let want = x
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let diff = (&half - &want).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
