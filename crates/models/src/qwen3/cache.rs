//! A key/value cache allocated once for the whole context budget and written
//! in place.

use candle_core::{DType, Device, Result, Tensor};

/// Keys and values of every layer, `(1, kv_heads, capacity, head_dim)` each.
#[derive(Debug)]
pub(crate) struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
    dtype: DType,
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (1, kv_heads, capacity, head_dim);
        let mut keys = Vec::with_capacity(layers);
        let mut values = Vec::with_capacity(layers);
        for _ in 0..layers {
            keys.push(Tensor::zeros(shape, dtype, device)?);
            values.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(Self {
            keys,
            values,
            len: 0,
            capacity,
            dtype,
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

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
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
    /// current end, then returns everything held for that layer including
    /// them, in `dtype`.
    pub(crate) fn append(
        &self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        dtype: DType,
    ) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        if self.len + n > self.capacity {
            candle_core::bail!(
                "KV cache full: {} + {n} tokens exceed its {} slots",
                self.len,
                self.capacity
            );
        }
        let k = k.to_dtype(self.dtype)?.contiguous()?;
        let v = v.to_dtype(self.dtype)?.contiguous()?;
        self.keys[layer].slice_set(&k, 2, self.len)?;
        self.values[layer].slice_set(&v, 2, self.len)?;
        let total = self.len + n;
        let k = self.keys[layer].narrow(2, 0, total)?.to_dtype(dtype)?;
        let v = self.values[layer].narrow(2, 0, total)?.to_dtype(dtype)?;
        Ok((k, v))
    }
}
