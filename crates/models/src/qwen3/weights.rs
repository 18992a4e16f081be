//! One way to fetch Qwen3 weights from either a Hugging Face safetensors
//! folder or a GGUF file: dense matrices become plain tensors, quantized
//! GGUF matrices stay quantized behind [`QMatMul`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor};

/// A weight matrix `(out, in)` applied as `x W^T`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    inner: QMatMul,
}

impl Linear {
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

/// Where the weights come from.
pub(crate) enum WeightSource {
    /// Every tensor of a safetensors folder, converted to `dtype` on use.
    Safetensors {
        tensors: HashMap<String, Tensor>,
        dtype: DType,
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
        Ok(Self::Safetensors { tensors, dtype })
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
            Self::Safetensors { tensors, dtype, .. } => tensors[&part.hf_name()].to_dtype(*dtype),
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
