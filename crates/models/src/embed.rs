use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::bert::{self, BertEncoder};
use crate::{error::tok_err, ModelError};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors under the attention mask (MiniLM, mpnet).
    Mean,
    /// The first (`[CLS]`) token's vector (bge).
    Cls,
}

/// Settings for an embedder loaded from a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedderConfig {
    /// Folder holding `config.json`, `model.safetensors` and `tokenizer.json`.
    pub dir: PathBuf,
    /// Pooling; `None` reads sentence-transformers' `1_Pooling/config.json`
    /// when present and falls back to mean pooling.
    pub pooling: Option<Pooling>,
    /// Longest input in tokens; longer inputs are truncated.
    pub max_tokens: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Prefix put before queries (some models are trained with one).
    pub query_prefix: String,
    /// Prefix put before passages.
    pub passage_prefix: String,
}

impl EmbedderConfig {
    /// Defaults for a folder: 256-token cap (all-MiniLM-L6-v2's own limit), batches of 32.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            pooling: None,
            max_tokens: 256,
            batch_size: 32,
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }
}

/// The network behind an [`Embedder`].
enum Encoder {
    /// Lectern's fused encoder on packed sequences (CPU).
    Fused(BertEncoder),
    /// candle-transformers' BERT on padded batches (other devices).
    Reference(BertModel),
}

/// A BERT-family sentence embedder.
///
/// On the CPU the forward pass is Lectern's fused encoder (`bert/`), which
/// packs each batch without padding; on other devices it is
/// candle-transformers' `BertModel`.
pub struct Embedder {
    model: Encoder,
    tokenizer: Tokenizer,
    device: Device,
    pooling: Pooling,
    dim: usize,
    config: EmbedderConfig,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.config.dir)
            .field("pooling", &self.pooling)
            .field("dim", &self.dim)
            .finish()
    }
}

fn require(path: PathBuf, what: &'static str) -> Result<PathBuf, ModelError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile { path, what })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn detect_pooling(dir: &Path) -> Pooling {
    #[derive(Deserialize)]
    struct StPooling {
        #[serde(default)]
        pooling_mode_cls_token: bool,
    }
    match read_json::<StPooling>(&dir.join("1_Pooling").join("config.json")) {
        Ok(p) if p.pooling_mode_cls_token => Pooling::Cls,
        _ => Pooling::Mean,
    }
}

impl Embedder {
    /// Loads the model in `config.dir` onto `device`.
    pub fn load(config: EmbedderConfig, device: &Device) -> Result<Self, ModelError> {
        let dir = &config.dir;
        let cfg_path = require(dir.join("config.json"), "embedder config.json")?;
        let weights = require(dir.join("model.safetensors"), "embedder weights")?;
        let tok_path = require(dir.join("tokenizer.json"), "embedder tokenizer.json")?;
        let bert_cfg: BertConfig = read_json(&cfg_path)?;
        let mut tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| ModelError::InvalidFile {
                path: tok_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..Default::default()
            }))
            .map_err(tok_err)?;
        // Batches are padded by hand after sorting by length.
        tokenizer.with_padding(None);
        let data = std::fs::read(&weights).map_err(|e| ModelError::InvalidFile {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, device)?;
        let invalid = |e: candle_core::Error| ModelError::InvalidFile {
            path: weights.clone(),
            message: e.to_string(),
        };
        let model = match bert::unsupported(&bert_cfg, device) {
            None => Encoder::Fused(BertEncoder::load(vb, &bert_cfg).map_err(invalid)?),
            Some(why) => {
                tracing::debug!("embedder uses candle's BERT: {why}");
                Encoder::Reference(BertModel::load(vb, &bert_cfg).map_err(invalid)?)
            }
        };
        let pooling = config.pooling.unwrap_or_else(|| detect_pooling(dir));
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            pooling,
            dim: bert_cfg.hidden_size,
            config,
        })
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The tokenizer (with truncation set for embedding).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The folder the model came from.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    /// Embeds passages (documents) with the model's passage prefix.
    pub fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed_with_prefix(texts, &self.config.passage_prefix)
    }

    /// Embeds one query with the model's query prefix.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let mut v = self.embed_with_prefix(&[text], &self.config.query_prefix)?;
        v.pop()
            .ok_or_else(|| ModelError::Compute("empty embedding batch".into()))
    }

    fn embed_with_prefix(&self, texts: &[&str], prefix: &str) -> Result<Vec<Vec<f32>>, ModelError> {
        if prefix.is_empty() {
            return self.embed(texts);
        }
        let owned: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        self.embed(&refs)
    }

    /// Embeds texts as they are; returns one L2-normalised vector per text, in input order.
    ///
    /// Texts are tokenised once, sorted by length and cut into batches so
    /// that each batch pads to a similar length.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(tok_err)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let batches: Vec<&[usize]> = match &self.model {
            Encoder::Fused(_) => packed_batches(
                &order,
                &encodings,
                self.config.batch_size,
                TOKENS_PER_FORWARD,
            ),
            Encoder::Reference(_) => order.chunks(self.config.batch_size.max(1)).collect(),
        };
        let results: Vec<Vec<Vec<f32>>> = match &self.model {
            // Batches run side by side on the rayon pool; the kernels and
            // products inside a batch split further only when a thread is idle.
            Encoder::Fused(enc) => batches
                .par_iter()
                .map(|batch| self.forward_fused(enc, &encodings, batch))
                .collect::<Result<_, _>>()?,
            Encoder::Reference(model) => batches
                .iter()
                .map(|batch| self.forward_reference(model, &encodings, batch))
                .collect::<Result<_, _>>()?,
        };
        for (rows, batch) in results.into_iter().zip(batches) {
            for (row, &i) in rows.into_iter().zip(batch) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// Pooled, normalised vectors for `batch` (indices into `encodings`) through the fused encoder.
    fn forward_fused(
        &self,
        enc: &BertEncoder,
        encodings: &[Encoding],
        batch: &[usize],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let dim = enc.hidden();
        let seqs: Vec<&[u32]> = batch
            .iter()
            .map(|&i| encodings[i].get_ids())
            .filter(|ids| !ids.is_empty())
            .collect();
        let hidden = enc.forward(&seqs)?;
        let mut offset = 0usize;
        let mut rows = Vec::with_capacity(batch.len());
        for &i in batch {
            let len = encodings[i].len();
            if len == 0 {
                rows.push(vec![0.0; dim]);
                continue;
            }
            let states = &hidden[offset * dim..(offset + len) * dim];
            offset += len;
            rows.push(pool(states, dim, self.pooling));
        }
        Ok(rows)
    }

    /// Pooled, normalised vectors for `batch` through candle's BERT on a padded batch.
    fn forward_reference(
        &self,
        model: &BertModel,
        encodings: &[Encoding],
        batch: &[usize],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let max_len = batch
            .iter()
            .map(|&i| encodings[i].len())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = batch.len();
        let mut ids = vec![0u32; n * max_len];
        let mut mask = vec![0u32; n * max_len];
        for (row, &i) in batch.iter().enumerate() {
            for (col, &id) in encodings[i].get_ids().iter().enumerate() {
                ids[row * max_len + col] = id;
                mask[row * max_len + col] = 1;
            }
        }
        let ids = Tensor::from_vec(ids, (n, max_len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, max_len), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2()?)
    }

    /// Counts tokens the way the embedder sees them (with special tokens, before truncation).
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        let mut plain = self.tokenizer.clone();
        plain.with_truncation(None).map_err(tok_err)?;
        Ok(plain.encode(text, true).map_err(tok_err)?.len())
    }
}

/// Tokens in one forward pass of the packed encoder at most (a single
/// longer text still goes alone). Small enough that the activations of a
/// pass are reused by the allocator instead of being mapped afresh, large
/// enough to keep the matrix products efficient.
const TOKENS_PER_FORWARD: usize = 1024;

/// Cuts `order` (indices sorted by decreasing length) into runs of at most
/// `max_texts` texts and `max_tokens` tokens.
fn packed_batches<'a>(
    order: &'a [usize],
    encodings: &[Encoding],
    max_texts: usize,
    max_tokens: usize,
) -> Vec<&'a [usize]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (pos, &i) in order.iter().enumerate() {
        let len = encodings[i].len();
        if pos > start && (pos - start >= max_texts.max(1) || tokens + len > max_tokens) {
            batches.push(&order[start..pos]);
            start = pos;
            tokens = 0;
        }
        tokens += len;
    }
    if start < order.len() {
        batches.push(&order[start..]);
    }
    batches
}

/// Pools the hidden states of one sequence (`len * dim` values) into one
/// L2-normalised vector.
fn pool(states: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let len = states.len() / dim;
    let mut v = match pooling {
        Pooling::Cls => states[..dim].to_vec(),
        Pooling::Mean => {
            let mut acc = vec![0f32; dim];
            for row in states.chunks_exact(dim) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += x;
                }
            }
            let inv = 1.0 / len.max(1) as f32;
            acc.iter_mut().for_each(|a| *a *= inv);
            acc
        }
    };
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
