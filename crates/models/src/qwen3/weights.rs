//! One way to fetch Qwen3 weights from either a Hugging Face safetensors
//! folder or a GGUF file: dense matrices become plain tensors, quantized
//! GGUF matrices stay quantized behind [`QMatMul`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

/// A weight matrix `(out, in)` applied as `x W^T`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    inner: QMatMul,
}

impl Linear {
    /// The quantized matrix, when it is one.
    pub(crate) fn quantized(&self) -> Option<&QTensor> {
        match &self.inner {
            QMatMul::QTensor(q) => Some(q.as_ref()),
            _ => None,
        }
    }

    /// Applies several matrices to the same `x`. For one f32 token on the
    /// CPU, quantized matrices of one type go through a fused kernel: `x`
    /// is quantized once and all of them run in one parallel region (one
    /// thread rendezvous instead of one per matrix). Anything else takes
    /// the ordinary path, matrix by matrix.
    pub(crate) fn forward_many(ws: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        let single_token = x.dims().iter().rev().skip(1).product::<usize>() == 1;
        if !(single_token && x.dtype() == DType::F32 && x.device().is_cpu()) {
            return ws.iter().map(|w| w.forward(x)).collect();
        }
        let x = x.contiguous()?;
        let mut out: Vec<Option<Tensor>> = vec![None; ws.len()];
        for i in 0..ws.len() {
            if out[i].is_some() {
                continue;
            }
            let Some(qi) = ws[i].quantized() else {
                out[i] = Some(ws[i].forward(&x)?);
                continue;
            };
            // Every later matrix of the same quantized type joins this group.
            let group: Vec<usize> = (i..ws.len())
                .filter(|&j| {
                    out[j].is_none() && ws[j].quantized().is_some_and(|q| q.dtype() == qi.dtype())
                })
                .collect();
            let qs: Vec<&QTensor> = group.iter().filter_map(|&j| ws[j].quantized()).collect();
            let fused = if qs.len() > 1 {
                QTensor::gemv_fused_shared_lhs(&qs, &x)?
            } else {
                None
            };
            match fused {
                Some(ys) => {
                    for (j, y) in group.into_iter().zip(ys) {
                        out[j] = Some(y);
                    }
                }
                None => {
                    for j in group {
                        out[j] = Some(ws[j].forward(&x)?);
                    }
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.inner {
            QMatMul::QTensor(_) => {
                // Quantized kernels take f32 activations.
                let dtype = x.dtype();
                self.inner
                    .forward(&x.to_dtype(DType::F32)?)?
                    .to_dtype(dtype)
            }
            QMatMul::Tensor(w) if w.dtype() != x.dtype() => {
                let dtype = x.dtype();
                self.inner.forward(&x.to_dtype(w.dtype())?)?.to_dtype(dtype)
            }
            _ => self.inner.forward(x),
        }
    }
}

/// The token embedding table. A quantized GGUF table stays quantized: rows
/// are dequantized as tokens are looked up, and a tied output head shares it.
#[derive(Debug, Clone)]
pub(crate) enum Embedding {
    /// A plain `(vocab, hidden)` tensor.
    Dense(Tensor),
    /// A quantized `(vocab, hidden)` matrix.
    Quantized(Arc<QTensor>),
}

impl Embedding {
    /// `(vocab, hidden)`.
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Self::Dense(t) => t.dims().to_vec(),
            Self::Quantized(q) => q.shape().dims().to_vec(),
        }
    }

    /// Rows for `ids` (a 1-D u32 tensor), shape `(ids, hidden)`, in `dtype`.
    pub(crate) fn lookup(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        match self {
            Self::Dense(t) => t.index_select(ids, 0)?.to_dtype(dtype),
            Self::Quantized(q) => q.embedding(ids)?.to_dtype(dtype),
        }
    }

    /// The same table as an output projection (tied embeddings), sharing memory.
    pub(crate) fn as_linear(&self) -> Result<Linear> {
        let inner = match self {
            Self::Dense(t) => QMatMul::Tensor(t.clone()),
            Self::Quantized(q) => QMatMul::from_arc(q.clone())?,
        };
        Ok(Linear { inner })
    }
}

/// Which part of the model a tensor belongs to, independent of file naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Embed,
    FinalNorm,
    LmHead,
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    QNorm(usize),
    KNorm(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
    AttnNorm(usize),
    FfnNorm(usize),
}

impl Part {
    fn hf_name(self) -> String {
        let layer = |i: usize, s: &str| format!("model.layers.{i}.{s}.weight");
        match self {
            Part::Embed => "model.embed_tokens.weight".into(),
            Part::FinalNorm => "model.norm.weight".into(),
            Part::LmHead => "lm_head.weight".into(),
            Part::Q(i) => layer(i, "self_attn.q_proj"),
            Part::K(i) => layer(i, "self_attn.k_proj"),
            Part::V(i) => layer(i, "self_attn.v_proj"),
            Part::O(i) => layer(i, "self_attn.o_proj"),
            Part::QNorm(i) => layer(i, "self_attn.q_norm"),
            Part::KNorm(i) => layer(i, "self_attn.k_norm"),
            Part::Gate(i) => layer(i, "mlp.gate_proj"),
            Part::Up(i) => layer(i, "mlp.up_proj"),
            Part::Down(i) => layer(i, "mlp.down_proj"),
            Part::AttnNorm(i) => layer(i, "input_layernorm"),
            Part::FfnNorm(i) => layer(i, "post_attention_layernorm"),
        }
    }

    fn gguf_name(self) -> String {
        let layer = |i: usize, s: &str| format!("blk.{i}.{s}.weight");
        match self {
            Part::Embed => "token_embd.weight".into(),
            Part::FinalNorm => "output_norm.weight".into(),
            Part::LmHead => "output.weight".into(),
            Part::Q(i) => layer(i, "attn_q"),
            Part::K(i) => layer(i, "attn_k"),
            Part::V(i) => layer(i, "attn_v"),
            Part::O(i) => layer(i, "attn_output"),
            Part::QNorm(i) => layer(i, "attn_q_norm"),
            Part::KNorm(i) => layer(i, "attn_k_norm"),
            Part::Gate(i) => layer(i, "ffn_gate"),
            Part::Up(i) => layer(i, "ffn_up"),
            Part::Down(i) => layer(i, "ffn_down"),
            Part::AttnNorm(i) => layer(i, "attn_norm"),
            Part::FfnNorm(i) => layer(i, "ffn_norm"),
        }
    }
}

/// The real values of a block-scaled FP8 weight `(rows, cols)`: each
/// `block` of it times its entry of `scale_inv`, shape
/// `(ceil(rows / block.0), ceil(cols / block.1))`. In f32.
pub(crate) fn dequantize_fp8(
    weight: &Tensor,
    scale_inv: &Tensor,
    block: (usize, usize),
) -> Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    let (br, bc) = (rows.div_ceil(block.0), cols.div_ceil(block.1));
    if scale_inv.dims() != [br, bc] {
        return Err(candle_core::Error::msg(format!(
            "FP8 scales have shape {:?}; a {rows}x{cols} weight in {}x{} blocks needs [{br}, {bc}]",
            scale_inv.dims(),
            block.0,
            block.1
        )));
    }
    let scale = scale_inv
        .to_dtype(DType::F32)?
        .reshape((br, 1, bc, 1))?
        .broadcast_as((br, block.0, bc, block.1))?
        .reshape((br * block.0, bc * block.1))?
        .narrow(0, 0, rows)?
        .narrow(1, 0, cols)?;
    weight.to_dtype(DType::F32)?.mul(&scale)
}

/// Where the weights come from.
pub(crate) enum WeightSource {
    /// Every tensor of a safetensors folder, converted to `dtype` on use.
    Safetensors {
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        /// Block size of FP8 weights' scales, for a block-scaled FP8
        /// checkpoint.
        fp8_block: Option<(usize, usize)>,
    },
    /// A GGUF file, read tensor by tensor.
    Gguf {
        content: gguf_file::Content,
        reader: BufReader<File>,
        dtype: DType,
        device: Device,
        path: PathBuf,
    },
}

impl WeightSource {
    /// Reads every safetensors file into memory on `device`.
    pub(crate) fn safetensors(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            let part = candle_core::safetensors::load(file, device)
                .map_err(|e| candle_core::Error::msg(format!("{}: {e}", file.display())))?;
            tensors.extend(part);
        }
        // Qwen3-Embedding checkpoints store the backbone alone, without the
        // `model.` prefix of the causal-LM layout.
        if !tensors.contains_key("model.embed_tokens.weight")
            && tensors.contains_key("embed_tokens.weight")
        {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (format!("model.{k}"), v))
                .collect();
        }
        Ok(Self::Safetensors {
            tensors,
            dtype,
            fp8_block: None,
        })
    }

    /// Declares the block size of a block-scaled FP8 checkpoint's weight
    /// scales: its FP8 weights are dequantized when they are read.
    pub(crate) fn with_fp8_block(mut self, block: Option<(usize, usize)>) -> Self {
        if let Self::Safetensors { fp8_block, .. } = &mut self {
            *fp8_block = block;
        }
        self
    }

    /// Opens a GGUF file whose header was already read.
    pub(crate) fn gguf(
        path: &Path,
        content: gguf_file::Content,
        reader: BufReader<File>,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self::Gguf {
            content,
            reader,
            dtype,
            device: device.clone(),
            path: path.to_path_buf(),
        }
    }

    /// The dtype activations run in.
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Self::Safetensors { dtype, .. } | Self::Gguf { dtype, .. } => *dtype,
        }
    }

    /// Whether the source holds this tensor.
    pub(crate) fn has(&self, part: Part) -> bool {
        match self {
            Self::Safetensors { tensors, .. } => tensors.contains_key(&part.hf_name()),
            Self::Gguf { content, .. } => content.tensor_infos.contains_key(&part.gguf_name()),
        }
    }

    fn missing(&self, part: Part) -> candle_core::Error {
        let name = match self {
            Self::Safetensors { .. } => part.hf_name(),
            Self::Gguf { path, .. } => format!("{} in {}", part.gguf_name(), path.display()),
        };
        candle_core::Error::msg(format!("missing tensor {name}"))
    }

    /// A tensor fully in `dtype` (norm weights, embeddings).
    pub(crate) fn dense(&mut self, part: Part) -> Result<Tensor> {
        if !self.has(part) {
            return Err(self.missing(part));
        }
        match self {
            Self::Safetensors {
                tensors,
                dtype,
                fp8_block,
            } => {
                let name = part.hf_name();
                let t = &tensors[&name];
                if t.dtype() != DType::F8E4M3 {
                    return t.to_dtype(*dtype);
                }
                let scale = tensors.get(&format!("{name}_scale_inv")).ok_or_else(|| {
                    candle_core::Error::msg(format!(
                        "FP8 tensor {name} has no {name}_scale_inv to dequantize it with"
                    ))
                })?;
                dequantize_fp8(t, scale, fp8_block.unwrap_or((128, 128)))?.to_dtype(*dtype)
            }
            Self::Gguf {
                content,
                reader,
                dtype,
                device,
                ..
            } => content
                .tensor(reader, &part.gguf_name(), device)?
                .dequantize(device)?
                .to_dtype(*dtype),
        }
    }

    /// The token embedding table; a quantized GGUF table stays quantized.
    pub(crate) fn embedding(&mut self) -> Result<Embedding> {
        let part = Part::Embed;
        if !self.has(part) {
            return Err(self.missing(part));
        }
        match self {
            Self::Safetensors { .. } => Ok(Embedding::Dense(self.dense(part)?)),
            Self::Gguf {
                content,
                reader,
                dtype,
                device,
                ..
            } => {
                let q = content.tensor(reader, &part.gguf_name(), device)?;
                match q.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        Ok(Embedding::Dense(q.dequantize(device)?.to_dtype(*dtype)?))
                    }
                    _ => Ok(Embedding::Quantized(Arc::new(q))),
                }
            }
        }
    }

    /// A matrix `(out, in)` to multiply with; quantized GGUF matrices stay quantized.
    pub(crate) fn linear(&mut self, part: Part, shape: (usize, usize)) -> Result<Linear> {
        if !self.has(part) {
            return Err(self.missing(part));
        }
        let inner = match self {
            Self::Safetensors { .. } => QMatMul::Tensor(self.dense(part)?),
            Self::Gguf {
                content,
                reader,
                dtype,
                device,
                ..
            } => {
                let q = content.tensor(reader, &part.gguf_name(), device)?;
                match q.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        QMatMul::Tensor(q.dequantize(device)?.to_dtype(*dtype)?)
                    }
                    _ => QMatMul::from_qtensor(q)?,
                }
            }
        };
        let dims = match &inner {
            QMatMul::QTensor(q) => q.shape().dims().to_vec(),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims().to_vec(),
        };
        if dims != [shape.0, shape.1] {
            return Err(candle_core::Error::msg(format!(
                "tensor {} has shape {dims:?}, expected [{}, {}]",
                part.hf_name(),
                shape.0,
                shape.1
            )));
        }
        Ok(Linear { inner })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn quantized(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> Linear {
        let dev = Device::Cpu;
        let mut state = seed;
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &dev).unwrap();
        Linear {
            inner: QMatMul::from_qtensor(QTensor::quantize(&t, dtype).unwrap()).unwrap(),
        }
    }

    /// Largest absolute difference between two tensors of one shape.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn fused_projections_match_one_by_one() {
        let k = 1024;
        // q and k share a type and fuse; v has another type, as in Q4_K_M files.
        let ws = [
            quantized(2048, k, GgmlDType::Q4K, 1),
            quantized(1024, k, GgmlDType::Q4K, 2),
            quantized(1024, k, GgmlDType::Q6K, 3),
        ];
        let refs: Vec<&Linear> = ws.iter().collect();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512vnni") {
            // Where the fused kernel exists, the same-type pair really takes it.
            let x = Tensor::randn(0f32, 1.0, (1, 1, k), &Device::Cpu).unwrap();
            let qs: Vec<&QTensor> = ws[..2].iter().filter_map(Linear::quantized).collect();
            assert!(QTensor::gemv_fused_shared_lhs(&qs, &x).unwrap().is_some());
        }
        for n in [1, 3] {
            let x = Tensor::randn(0f32, 1.0, (1, n, k), &Device::Cpu).unwrap();
            let many = Linear::forward_many(&refs, &x).unwrap();
            assert_eq!(many.len(), 3);
            for (w, y) in ws.iter().zip(&many) {
                let one = w.forward(&x).unwrap();
                assert_eq!(one.dims(), y.dims());
                let d = max_diff(&one, y);
                assert!(d <= 1e-4, "n = {n}: fused differs by {d}");
            }
        }
    }
}
