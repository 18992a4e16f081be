//! Lectern's Qwen3 decoder, written with candle ops.
//!
//! One model definition serves both weight sources (a Hugging Face
//! safetensors folder or a GGUF file, quantized matrices kept quantized).
//! Rotary angles are computed in f32 for the positions at hand, with YaRN
//! when the checkpoint asks for it; the key/value cache is allocated once for
//! the granted context and written in place, as f32, f16, bf16 or 8-bit
//! integers with a scale per head vector ([`KvDtype`]); a batch of new
//! tokens after any number of cached ones gets a proper causal mask.

mod attend;
mod cache;
mod config;
mod hidden;
mod qdot;
mod rope;
mod split;
mod weights;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};

pub use cache::{KvDtype, ParseKvDtypeError};
pub use config::{Qwen3Config, Yarn};

use crate::bert::kernels::Softmax;
use cache::KvCache;
use rope::Rope;
use split::RowSplit;
use weights::{Embedding, Linear, Part, WeightSource};

use crate::{LlmFormat, ModelError};

/// How a model is loaded and how much context it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qwen3Options {
    /// Tokens the key/value cache holds: the granted context budget. It is
    /// capped at the model's own position limit.
    pub context: usize,
    /// Dtype of dense weights and activations; `None` picks f32 on CPU and
    /// for GGUF files, bf16 for safetensors on a GPU.
    pub dtype: Option<DType>,
    /// Storage type of the key/value cache; `None` stores it in the
    /// activation dtype ([`Qwen3Options::activation_dtype`]: bf16 for
    /// safetensors on a GPU, f32 otherwise), except that GGUF files keep an
    /// f16 cache: half the memory (on a GPU attention then runs in f16
    /// over it; on the CPU each row is widened as it is read).
    pub kv_dtype: Option<KvDtype>,
}

impl Qwen3Options {
    /// Defaults for a context budget of `context` tokens.
    pub fn new(context: usize) -> Self {
        Self {
            context,
            dtype: None,
            kv_dtype: None,
        }
    }

    /// The activation dtype a load of weights in `format` uses, on a CPU
    /// when `cpu` (on a GPU otherwise).
    pub fn activation_dtype(&self, format: LlmFormat, cpu: bool) -> DType {
        self.dtype.unwrap_or(match format {
            LlmFormat::Safetensors if !cpu => DType::BF16,
            LlmFormat::Safetensors | LlmFormat::Gguf => DType::F32,
        })
    }

    /// The KV cache type such a load stores: `kv_dtype`, or the one of
    /// the activation dtype.
    pub fn cache_type(&self, format: LlmFormat, cpu: bool) -> Result<KvDtype, ModelError> {
        let gguf = format == LlmFormat::Gguf;
        kv_dtype_for(self.kv_dtype, self.activation_dtype(format, cpu), cpu, gguf)
            .map_err(ModelError::Device)
    }
}

/// Which positions [`Qwen3::forward`] returns logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (what generation needs).
    Last,
    /// Every token's.
    All,
}

/// A weight matrix: a quantized CPU matrix split by rows for shared
/// multi-threaded products, anything else whole.
#[derive(Debug)]
enum Proj {
    Whole(Linear),
    Split(Arc<RowSplit>),
}

impl Proj {
    fn new(linear: Linear, split: bool) -> candle_core::Result<Self> {
        if split && linear.quantized().is_some_and(|q| q.device().is_cpu()) {
            if let Some(s) = RowSplit::new(linear.clone())? {
                return Ok(Self::Split(Arc::new(s)));
            }
        }
        Ok(Self::Whole(linear))
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Whole(l) => l.forward(x),
            Self::Split(s) => s.forward(x),
        }
    }

    /// Runs a two-token product once so that candle lays out the tiles
    /// its CPU kernels use for several tokens now, as part of the load,
    /// rather than in the first prompt's prefill. Does nothing for
    /// matrices that are not quantized on the CPU.
    fn prepare_prefill(&self) -> candle_core::Result<()> {
        let linear = match self {
            Self::Whole(l) => l,
            Self::Split(s) => s.linear(),
        };
        let Some(q) = linear.quantized().filter(|q| q.device().is_cpu()) else {
            return Ok(());
        };
        let cols = q.shape().dims2()?.1;
        let x = Tensor::zeros((1, 2, cols), DType::F32, &Device::Cpu)?;
        linear.forward(&x).map(drop)
    }

    /// Several matrices applied to the same `x`, as one job where possible.
    fn forward_many(ws: &[&Proj], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let split: Vec<&RowSplit> = ws
            .iter()
            .filter_map(|w| match w {
                Self::Split(s) => Some(s.as_ref()),
                Self::Whole(_) => None,
            })
            .collect();
        if split.len() == ws.len() {
            return RowSplit::forward_many(&split, x);
        }
        let whole: Vec<&Linear> = ws
            .iter()
            .filter_map(|w| match w {
                Self::Whole(l) => Some(l),
                Self::Split(_) => None,
            })
            .collect();
        if whole.len() == ws.len() {
            return Linear::forward_many(&whole, x);
        }
        ws.iter().map(|w| w.forward(x)).collect()
    }
}

/// The token embedding table: its own, or the rows of a split (tied) output
/// head.
#[derive(Debug)]
enum TokenTable {
    Own(Embedding),
    Head(Arc<RowSplit>),
}

impl TokenTable {
    /// Rows for `ids` (a 1-D u32 tensor), shape `(ids, hidden)`, in `dtype`.
    fn lookup(&self, ids: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        match self {
            Self::Own(e) => e.lookup(ids, dtype),
            Self::Head(s) => s.lookup(ids, dtype),
        }
    }
}

#[derive(Debug)]
struct Layer {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    q_norm: Tensor,
    k_norm: Tensor,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// A loaded Qwen3 model with its own key/value cache.
#[derive(Debug)]
pub struct Qwen3 {
    cfg: Qwen3Config,
    embed: TokenTable,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Proj,
    rope: Rope,
    cache: KvCache,
    dtype: DType,
    device: Device,
    first_position: usize,
    path: PathBuf,
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The safetensors files of a Hugging Face folder: `model.safetensors`, or
/// the shards named by `model.safetensors.index.json`.
pub(crate) fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|e| invalid(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| invalid(&index, "no weight_map"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(ModelError::MissingFile {
                path: missing.clone(),
                what: "safetensors shard named in model.safetensors.index.json",
            });
        }
        return Ok(files);
    }
    Err(ModelError::MissingFile {
        path: single,
        what: "model weights (model.safetensors or model.safetensors.index.json)",
    })
}

/// The hyper-parameters in a GGUF header: its metadata, the vocabulary
/// from the token table's shape, and tied embeddings when there is no
/// separate output matrix.
fn gguf_config(path: &Path, content: &gguf_file::Content) -> Result<Qwen3Config, ModelError> {
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| invalid(path, "no token_embd.weight tensor"))?
        .shape
        .dims()
        .first()
        .copied()
        .unwrap_or(0);
    let mut cfg = Qwen3Config::from_gguf(&content.metadata, vocab).map_err(|e| invalid(path, e))?;
    cfg.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    Ok(cfg)
}

/// The cache type `requested`, or the one matching the activation dtype,
/// except that f32 activations keep a 16-bit cache on a GPU and, for GGUF
/// weights, on the CPU too: half the memory of f32 at the same decoding
/// speed (a cached row is widened as attention reads it).
fn kv_dtype_for(
    requested: Option<KvDtype>,
    dtype: DType,
    cpu: bool,
    gguf: bool,
) -> Result<KvDtype, String> {
    match requested {
        Some(kind) => Ok(kind),
        None if dtype == DType::F32 && (!cpu || gguf) => Ok(KvDtype::F16),
        None => KvDtype::from_dtype(dtype).ok_or_else(|| {
            format!(
                "no KV cache type matches activations in {dtype:?}; choose f32, f16, bf16 or q8"
            )
        }),
    }
}

impl Qwen3 {
    /// Asks candle to run its CPU kernels on the calling thread so that
    /// quantized models loaded afterwards share their matrix products over
    /// Lectern's own threads, a split that never stalls on a thread the
    /// operating system has not scheduled (a busy desktop). It sets
    /// `CANDLE_NUM_THREADS=1` unless that is already set, and only works
    /// before candle first runs a CPU kernel: call it at start-up, before
    /// other threads read the environment. Returns whether quantized CPU
    /// models will use the split.
    pub fn prefer_own_cpu_threads() -> bool {
        split::prefer_own_cpu_threads()
    }

    /// Loads a Hugging Face style folder: `config.json` and
    /// `model.safetensors` or shards listed in `model.safetensors.index.json`.
    pub fn load_safetensors(
        dir: &Path,
        device: &Device,
        opts: Qwen3Options,
    ) -> Result<Self, ModelError> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(ModelError::MissingFile {
                path: cfg_path,
                what: "model config.json",
            });
        }
        let bytes = std::fs::read(&cfg_path).map_err(|e| invalid(&cfg_path, e))?;
        let cfg = Qwen3Config::from_hf_json(&bytes).map_err(|e| invalid(&cfg_path, e))?;
        let dtype = opts.activation_dtype(LlmFormat::Safetensors, device.is_cpu());
        let files = safetensor_files(dir)?;
        let fp8_block = config::fp8_block_size(&bytes).map_err(|e| invalid(&cfg_path, e))?;
        let source = WeightSource::safetensors(&files, dtype, device)
            .map_err(|e| invalid(dir, e))?
            .with_fp8_block(fp8_block);
        Self::build(cfg, source, device, opts, dir)
    }

    /// Loads a GGUF file (`qwen3` architecture).
    pub fn load_gguf(path: &Path, device: &Device, opts: Qwen3Options) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| invalid(path, e))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| invalid(path, e))?;
        Self::from_gguf_content(path, content, reader, device, opts)
    }

    /// Reads a GGUF file's hyper-parameters from its header, without
    /// loading any weights.
    pub fn read_gguf_config(path: &Path) -> Result<Qwen3Config, ModelError> {
        let mut file = BufReader::new(File::open(path).map_err(|e| invalid(path, e))?);
        let content = gguf_file::Content::read(&mut file).map_err(|e| invalid(path, e))?;
        gguf_config(path, &content)
    }

    /// Builds the model from a GGUF file whose header has been read.
    pub(crate) fn from_gguf_content(
        path: &Path,
        content: gguf_file::Content,
        reader: BufReader<File>,
        device: &Device,
        opts: Qwen3Options,
    ) -> Result<Self, ModelError> {
        let cfg = gguf_config(path, &content)?;
        let dtype = opts.activation_dtype(LlmFormat::Gguf, device.is_cpu());
        let source = WeightSource::gguf(path, content, reader, dtype, device);
        Self::build(cfg, source, device, opts, path)
    }

    fn build(
        cfg: Qwen3Config,
        mut w: WeightSource,
        device: &Device,
        opts: Qwen3Options,
        path: &Path,
    ) -> Result<Self, ModelError> {
        let err = |e: candle_core::Error| invalid(path, e);
        let dtype = w.dtype();
        let gguf = matches!(w, WeightSource::Gguf { .. });
        let kv_dtype = kv_dtype_for(opts.kv_dtype, dtype, device.is_cpu(), gguf)
            .map_err(ModelError::Device)?;
        let h = cfg.hidden_size;
        let qd = cfg.num_attention_heads * cfg.head_dim;
        let kvd = cfg.num_key_value_heads * cfg.head_dim;
        let inter = cfg.intermediate_size;
        let embed = w.embedding().map_err(err)?;
        if embed.dims() != [cfg.vocab_size, h] {
            return Err(invalid(
                path,
                format!(
                    "embedding has shape {:?}, expected [{}, {h}]",
                    embed.dims(),
                    cfg.vocab_size
                ),
            ));
        }
        let split = device.is_cpu() && split::enabled();
        // Layer matrices also run prefill, whose CPU tiles are made now.
        let proj = |w: &mut WeightSource, part: Part, shape: (usize, usize)| {
            let p = Proj::new(w.linear(part, shape).map_err(err)?, split).map_err(err)?;
            p.prepare_prefill().map_err(err)?;
            Ok::<_, ModelError>(p)
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let (q, k, v, o) = (
                proj(&mut w, Part::Q(i), (qd, h))?,
                proj(&mut w, Part::K(i), (kvd, h))?,
                proj(&mut w, Part::V(i), (kvd, h))?,
                proj(&mut w, Part::O(i), (h, qd))?,
            );
            let (gate, up, down) = (
                proj(&mut w, Part::Gate(i), (inter, h))?,
                proj(&mut w, Part::Up(i), (inter, h))?,
                proj(&mut w, Part::Down(i), (h, inter))?,
            );
            layers.push(Layer {
                q,
                k,
                v,
                o,
                q_norm: w.dense(Part::QNorm(i)).map_err(err)?,
                k_norm: w.dense(Part::KNorm(i)).map_err(err)?,
                attn_norm: w.dense(Part::AttnNorm(i)).map_err(err)?,
                ffn_norm: w.dense(Part::FfnNorm(i)).map_err(err)?,
                gate,
                up,
                down,
            });
        }
        let norm = w.dense(Part::FinalNorm).map_err(err)?;
        let (lm_head, embed) = if w.has(Part::LmHead) {
            let head = Proj::new(
                w.linear(Part::LmHead, (cfg.vocab_size, h)).map_err(err)?,
                split,
            )
            .map_err(err)?;
            (head, TokenTable::Own(embed))
        } else {
            // Tied: a split head also serves as the token table, so the
            // matrix is held once.
            match Proj::new(embed.as_linear().map_err(err)?, split).map_err(err)? {
                Proj::Split(s) => (Proj::Split(s.clone()), TokenTable::Head(s)),
                whole => (whole, TokenTable::Own(embed)),
            }
        };
        let rope = Rope::new(&cfg, device).map_err(err)?;
        let capacity = opts.context.min(cfg.position_limit());
        if capacity == 0 {
            return Err(invalid(path, "a context budget of 0 tokens"));
        }
        let cache = KvCache::new(
            cfg.num_hidden_layers,
            cfg.num_key_value_heads,
            cfg.head_dim,
            capacity,
            kv_dtype,
            device,
        )
        .map_err(err)?;
        tracing::debug!(
            path = %path.display(),
            layers = cfg.num_hidden_layers,
            hidden = h,
            context = capacity,
            ?dtype,
            %kv_dtype,
            yarn = cfg.yarn.is_some(),
            split_products = split,
            "qwen3 loaded"
        );
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            cache,
            dtype,
            device: device.clone(),
            first_position: 0,
            path: path.to_path_buf(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    /// Tokens the key/value cache can hold (the granted context).
    pub fn context(&self) -> usize {
        self.cache.capacity()
    }

    /// Tokens currently held in the key/value cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Storage type of the key/value cache.
    pub fn kv_dtype(&self) -> KvDtype {
        self.cache.kind()
    }

    /// Dtype of activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Empties the cache; the next token is at position 0.
    pub fn reset(&mut self) {
        self.cache.truncate(0);
        self.first_position = 0;
    }

    /// Empties the cache and places the next token at `position` (as if
    /// `position` tokens had come before it, without attending to them).
    pub fn reset_at(&mut self, position: usize) {
        self.cache.truncate(0);
        self.first_position = position;
    }

    /// Keeps only the first `len` cached tokens, so the next token continues
    /// from there.
    pub fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }

    /// Runs `tokens` after the cached ones and caches them. Returns f32
    /// logits of shape `(1, vocab)` for [`Logits::Last`] or
    /// `(tokens.len(), vocab)` for [`Logits::All`].
    ///
    /// Tokens that do not fit the cache are refused before any work.
    pub fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Tensor, ModelError> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Compute("no tokens to run".into()));
        }
        let start = self.cache.len();
        let capacity = self.cache.capacity();
        if start + n > capacity {
            return Err(ModelError::ContextOverflow {
                prompt_tokens: start + n,
                context: capacity,
                reserved: 0,
                fits: capacity,
            });
        }
        let position = self.first_position + start;
        let limit = self.cfg.position_limit();
        if position + n > limit {
            return Err(ModelError::PositionOutOfRange {
                last: position + n - 1,
                limit,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Compute(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        Ok(self.run(tokens, start, position, which)?)
    }

    fn run(
        &mut self,
        tokens: &[u32],
        start: usize,
        position: usize,
        which: Logits,
    ) -> candle_core::Result<Tensor> {
        let n = tokens.len();
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.lookup(&ids, self.dtype)?.unsqueeze(0)?;
        let (cos, sin) = self.rope.cos_sin(position, n)?;
        let mask = if n > 1 {
            Some(causal_mask(n, start, &self.device)?)
        } else {
            None
        };
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &cos, &sin, mask.as_ref())?;
        }
        self.cache.advance(n);
        let x = match which {
            Logits::Last => x.narrow(1, n - 1, 1)?,
            Logits::All => x,
        };
        let x =
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head.forward(&x)?.squeeze(0)?.to_dtype(DType::F32)
    }

    fn layer(
        &self,
        i: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let l = &self.layers[i];
        let eps = self.cfg.rms_norm_eps as f32;
        let n = x.dim(1)?;
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let h = candle_nn::ops::rms_norm(x, &l.attn_norm, eps)?;
        let heads = |t: Tensor, count: usize| -> candle_core::Result<Tensor> {
            t.reshape((1, n, count, hd))?.transpose(1, 2)?.contiguous()
        };
        let [q, k, v]: [Tensor; 3] = Proj::forward_many(&[&l.q, &l.k, &l.v], &h)?
            .try_into()
            .map_err(|_| candle_core::Error::msg("q/k/v projection count"))?;
        let q = heads(q, nh)?;
        let k = heads(k, nkv)?;
        let v = heads(v, nkv)?;
        let q = candle_nn::ops::rms_norm(&q, &l.q_norm, eps)?;
        let k = candle_nn::ops::rms_norm(&k, &l.k_norm, eps)?;
        let q = self.rope.apply(&q, cos, sin)?;
        let k = self.rope.apply(&k, cos, sin)?;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        if n == 1 && self.device.is_cpu() {
            // Decoding: one query per head, attended in place over the cache.
            let q = (q * scale)?
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1()?;
            let attn = self.cache.append_attend_one(i, &k, &v, q, group)?;
            let attn =
                Tensor::from_vec(attn, (1, 1, nh * hd), &self.device)?.to_dtype(self.dtype)?;
            let x = (x + l.o.forward(&attn)?)?;
            return self.mlp(l, x);
        }
        // On a GPU a float cache is attended in its own type, so that the
        // held context is never converted; on the CPU in the activations'.
        let att = match self.cache.float_dtype() {
            Some(dtype) if !self.device.is_cpu() => dtype,
            _ => self.dtype,
        };
        let (k, v) = self.cache.append(i, &k, &v, att)?;
        let total = k.dim(2)?;

        // Grouped-query attention without copying keys: the query heads that
        // share a key/value head are stacked along the row axis.
        let q = (q * scale)?
            .to_dtype(att)?
            .reshape((1, nkv, group * n, hd))?;
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((1, nkv, group, n, total))?
                .broadcast_add(mask)?
                .reshape((1, nkv, group * n, total))?,
            None => scores,
        };
        let probs = if self.device.is_cpu() && scores.is_contiguous() {
            // In place with the vectorized exponential, on this thread.
            scores.inplace_op1(&Softmax { parallel: false })?;
            scores.to_dtype(att)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(att)?
        };
        let attn = probs
            .matmul(&v)?
            .to_dtype(self.dtype)?
            .reshape((1, nh, n, hd))?
            .transpose(1, 2)?
            .reshape((1, n, nh * hd))?;
        let x = (x + l.o.forward(&attn)?)?;
        self.mlp(l, x)
    }

    /// The feed-forward half of a layer, with its residual.
    fn mlp(&self, l: &Layer, x: Tensor) -> candle_core::Result<Tensor> {
        let h = candle_nn::ops::rms_norm(&x, &l.ffn_norm, self.cfg.rms_norm_eps as f32)?;
        let [gate, up]: [Tensor; 2] = Proj::forward_many(&[&l.gate, &l.up], &h)?
            .try_into()
            .map_err(|_| candle_core::Error::msg("gate/up projection count"))?;
        let mlp = l.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
        x + mlp
    }

    /// The most likely next token in `logits` (as [`Qwen3::forward`]
    /// returns them for [`Logits::Last`]): greedy decoding. Ties go to the
    /// lowest token id.
    pub fn greedy(logits: &Tensor) -> Result<u32, ModelError> {
        let v: Vec<f32> = logits
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| ModelError::Compute(format!("reading logits: {e}")))?;
        let (best, _) = v
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            });
        Ok(best as u32)
    }

    /// The file or folder the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `(n, start + n)` additive mask: query `i` (at cache slot `start + i`)
/// sees keys `0 ..= start + i`.
fn causal_mask(n: usize, start: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = start + n;
    let keys = Tensor::arange(0u32, total as u32, device)?.reshape((1, total))?;
    let queries = Tensor::arange(start as u32, total as u32, device)?.reshape((n, 1))?;
    let hidden = keys.broadcast_gt(&queries)?;
    let blocked = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as((n, total))?;
    let open = Tensor::zeros((n, total), DType::F32, device)?;
    hidden.where_cond(&blocked, &open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cache_types_follow_the_device_and_format() {
        let opts = Qwen3Options::new(1024);
        let kind = |format, cpu| opts.cache_type(format, cpu).unwrap();
        assert_eq!(kind(LlmFormat::Gguf, true), KvDtype::F16);
        assert_eq!(kind(LlmFormat::Safetensors, true), KvDtype::F32);
        assert_eq!(kind(LlmFormat::Gguf, false), KvDtype::F16);
        assert_eq!(kind(LlmFormat::Safetensors, false), KvDtype::Bf16);
        let chosen = Qwen3Options {
            kv_dtype: Some(KvDtype::Q8),
            ..opts
        };
        assert_eq!(
            chosen.cache_type(LlmFormat::Gguf, false).unwrap(),
            KvDtype::Q8
        );
    }
}
