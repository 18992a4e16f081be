//! Cross-encoder rerankers: a query and a passage read together by one
//! encoder, scored by a classification head.
//!
//! Two checkpoint families load from a Hugging Face folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`):
//!
//! * BERT (`BertForSequenceClassification`, e.g.
//!   `cross-encoder/ms-marco-MiniLM-L-6-v2`): the passage is token type 1,
//!   positions count from 0, the score is `classifier(tanh(pooler([CLS])))`.
//! * XLM-RoBERTa (`XLMRobertaForSequenceClassification`, e.g.
//!   `BAAI/bge-reranker-base`): one token type, positions count from
//!   `pad_token_id + 1` as RoBERTa numbers them, the score is
//!   `out_proj(tanh(dense(<s>)))`.
//!
//! On the CPU the encoder is Lectern's fused one (`bert/`, the same code the
//! embedder runs), fed packed pairs without padding; on other devices it is
//! candle-transformers' `BertModel` or `XLMRobertaForSequenceClassification`
//! on padded, masked batches.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use candle_transformers::models::xlm_roberta::{
    Config as XlmRobertaConfig, XLMRobertaForSequenceClassification,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::{EncodeInput, Encoding, Tokenizer, TruncationParams, TruncationStrategy};

use crate::bert::{self, BertEncoder};
use crate::{error::tok_err, ModelError};

/// Tokens in one packed pass of the CPU encoder at most: small enough that
/// the allocator reuses a pass's activations instead of mapping fresh
/// pages, large enough to keep the matrix products efficient.
pub const TOKENS_PER_PASS: usize = 1024;

/// Settings for a reranker loaded from a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankerConfig {
    /// Folder holding `config.json`, `model.safetensors` and `tokenizer.json`.
    pub dir: PathBuf,
    /// Longest (query, passage) pair in tokens; longer pairs are cut, the
    /// longer of the two first (as transformers' `truncation=True`). Capped
    /// at what the model's position table allows.
    pub max_tokens: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

impl RerankerConfig {
    /// Defaults for a folder: 512-token pairs, batches of 16.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_tokens: 512,
            batch_size: 16,
        }
    }
}

/// Which cross-encoder family a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RerankerFamily {
    /// BERT with a pooler and a linear classifier.
    Bert,
    /// XLM-RoBERTa with a dense + out_proj classification head.
    XlmRoberta,
}

/// The network behind a [`Reranker`].
enum Network {
    /// Lectern's fused encoder on packed pairs (CPU) and the head below.
    Fused(BertEncoder),
    /// candle-transformers' BERT on padded batches and the head below.
    Bert(BertModel),
    /// candle-transformers' XLM-RoBERTa classifier (its own head).
    XlmRoberta(XLMRobertaForSequenceClassification),
}

/// `out(tanh(dense(cls)))`: BERT's pooler + classifier, or RoBERTa's
/// classification head. Weights are row-major `(out, in)`.
struct Head {
    dense_w: Vec<f32>,
    dense_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: f32,
}

impl Head {
    fn load(dense: VarBuilder, out: VarBuilder, h: usize) -> candle_core::Result<Self> {
        let v = |t: Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        Ok(Self {
            dense_w: v(dense.get((h, h), "weight")?)?,
            dense_b: v(dense.get(h, "bias")?)?,
            out_w: v(out.get((1, h), "weight")?)?,
            out_b: v(out.get(1, "bias")?)?[0],
        })
    }

    fn score(&self, cls: &[f32]) -> f32 {
        let h = cls.len();
        let mut acc = self.out_b;
        for (row, (b, o)) in self
            .dense_w
            .chunks_exact(h)
            .zip(self.dense_b.iter().zip(&self.out_w))
        {
            let z: f32 = row.iter().zip(cls).map(|(w, x)| w * x).sum::<f32>() + b;
            acc += o * z.tanh();
        }
        acc
    }
}

/// A cross-encoder that scores how well passages answer a query.
///
/// Scores are the model's logit (higher is more relevant); [`sigmoid`]
/// maps one to `(0, 1)`. The model is immutable after loading, so one
/// reranker may score from several threads at once.
pub struct Reranker {
    network: Network,
    head: Option<Head>,
    tokenizer: Tokenizer,
    family: RerankerFamily,
    pad_id: u32,
    type_vocab: usize,
    max_tokens: usize,
    hidden: usize,
    device: Device,
    config: RerankerConfig,
}

impl std::fmt::Debug for Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranker")
            .field("dir", &self.config.dir)
            .field("family", &self.family)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// The logistic function: a reranker logit as a probability-like score.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

fn require(path: PathBuf, what: &'static str) -> Result<PathBuf, ModelError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile { path, what })
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// What the reranker needs from `config.json` beyond the encoder's shape.
#[derive(Deserialize)]
struct HeadConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

impl HeadConfig {
    fn family(&self) -> RerankerFamily {
        let roberta = self
            .architectures
            .iter()
            .any(|a| a.to_ascii_lowercase().contains("roberta"))
            || self
                .model_type
                .as_deref()
                .is_some_and(|t| t.contains("roberta"));
        if roberta {
            RerankerFamily::XlmRoberta
        } else {
            RerankerFamily::Bert
        }
    }

    fn labels(&self) -> usize {
        self.id2label
            .as_ref()
            .map(|m| m.len())
            .or(self.num_labels)
            .unwrap_or(1)
    }
}

impl Reranker {
    /// Loads the cross-encoder in `config.dir` onto `device`.
    pub fn load(config: RerankerConfig, device: &Device) -> Result<Self, ModelError> {
        Self::load_with(config, device, false)
    }

    fn load_with(
        config: RerankerConfig,
        device: &Device,
        force_reference: bool,
    ) -> Result<Self, ModelError> {
        let dir = &config.dir;
        let cfg_path = require(dir.join("config.json"), "reranker config.json")?;
        let weights = require(dir.join("model.safetensors"), "reranker weights")?;
        let tok_path = require(dir.join("tokenizer.json"), "reranker tokenizer.json")?;
        let cfg_bytes = std::fs::read(&cfg_path).map_err(|e| invalid(&cfg_path, e))?;
        let head_cfg: HeadConfig =
            serde_json::from_slice(&cfg_bytes).map_err(|e| invalid(&cfg_path, e))?;
        let bert_cfg: BertConfig =
            serde_json::from_slice(&cfg_bytes).map_err(|e| invalid(&cfg_path, e))?;
        if head_cfg.labels() != 1 {
            return Err(invalid(
                &cfg_path,
                format!(
                    "the classifier has {} labels; a reranker needs a single relevance logit",
                    head_cfg.labels()
                ),
            ));
        }
        let family = head_cfg.family();
        let pad_id = u32::try_from(bert_cfg.pad_token_id).map_err(|e| invalid(&cfg_path, e))?;
        // RoBERTa numbers positions from pad_token_id + 1.
        let first_position = match family {
            RerankerFamily::Bert => 0,
            RerankerFamily::XlmRoberta => bert_cfg.pad_token_id + 1,
        };
        let max_tokens = config.max_tokens.min(
            bert_cfg
                .max_position_embeddings
                .saturating_sub(first_position),
        );
        if max_tokens < 4 {
            return Err(invalid(
                &cfg_path,
                format!("pairs of at most {max_tokens} tokens cannot hold a query and a passage"),
            ));
        }
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| invalid(&tok_path, e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(tok_err)?;
        tokenizer.with_padding(None);

        let data = std::fs::read(&weights).map_err(|e| invalid(&weights, e))?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, device)
            .map_err(|e| invalid(&weights, e))?;
        let h = bert_cfg.hidden_size;
        let bad = |e: candle_core::Error| invalid(&weights, e);
        let head = |vb: &VarBuilder| -> Result<Head, ModelError> {
            match family {
                RerankerFamily::Bert => {
                    let prefix = ["bert", bert_cfg.model_type.as_deref().unwrap_or("bert")]
                        .into_iter()
                        .find(|p| vb.contains_tensor(&format!("{p}.pooler.dense.weight")))
                        .unwrap_or("bert");
                    Head::load(
                        vb.pp(prefix).pp("pooler").pp("dense"),
                        vb.pp("classifier"),
                        h,
                    )
                    .map_err(bad)
                }
                RerankerFamily::XlmRoberta => Head::load(
                    vb.pp("classifier").pp("dense"),
                    vb.pp("classifier").pp("out_proj"),
                    h,
                )
                .map_err(bad),
            }
        };
        let why_not_fused = if force_reference {
            Some("reference requested".to_string())
        } else {
            bert::unsupported(&bert_cfg, device)
        };
        let (network, head) = match (why_not_fused, family) {
            (None, _) => {
                let head = head(&vb)?;
                (
                    Network::Fused(BertEncoder::load(vb, &bert_cfg).map_err(bad)?),
                    Some(head),
                )
            }
            (Some(why), RerankerFamily::Bert) => {
                tracing::debug!("reranker uses candle's BERT: {why}");
                let head = head(&vb)?;
                (
                    Network::Bert(BertModel::load(vb, &bert_cfg).map_err(bad)?),
                    Some(head),
                )
            }
            (Some(why), RerankerFamily::XlmRoberta) => {
                tracing::debug!("reranker uses candle's XLM-RoBERTa: {why}");
                let xcfg: XlmRobertaConfig =
                    serde_json::from_slice(&cfg_bytes).map_err(|e| invalid(&cfg_path, e))?;
                (
                    Network::XlmRoberta(
                        XLMRobertaForSequenceClassification::new(1, &xcfg, vb).map_err(bad)?,
                    ),
                    None,
                )
            }
        };
        Ok(Self {
            network,
            head,
            tokenizer,
            family,
            pad_id,
            type_vocab: bert_cfg.type_vocab_size.max(1),
            max_tokens,
            hidden: h,
            device: device.clone(),
            config,
        })
    }

    /// The checkpoint family.
    pub fn family(&self) -> RerankerFamily {
        self.family
    }

    /// The folder the model came from.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Longest pair in tokens after the cap from the model's positions.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Pairs per forward pass.
    pub fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    /// The tokenizer, with pair truncation set.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Scores each passage against `query`: one logit per passage, in order.
    pub fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, ModelError> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        self.score_pairs(&pairs)
    }

    /// Scores (query, passage) pairs: one logit per pair, in order. Pairs
    /// are sorted by length and run at most `batch_size` at a time; on the
    /// CPU a pass also holds at most [`TOKENS_PER_PASS`] tokens (a longer
    /// pair goes alone) and passes run side by side on the rayon pool.
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>, ModelError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<EncodeInput> = pairs.iter().map(|&(q, p)| (q, p).into()).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(tok_err)?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
        let max_pairs = self.config.batch_size.max(1);
        let batches: Vec<&[usize]> = match self.network {
            Network::Fused(_) => {
                let mut batches = Vec::new();
                let (mut start, mut tokens) = (0, 0);
                for (pos, &i) in order.iter().enumerate() {
                    let len = encodings[i].get_ids().len();
                    if pos > start && (pos - start >= max_pairs || tokens + len > TOKENS_PER_PASS) {
                        batches.push(&order[start..pos]);
                        (start, tokens) = (pos, 0);
                    }
                    tokens += len;
                }
                batches.push(&order[start..]);
                batches
            }
            _ => order.chunks(max_pairs).collect(),
        };
        let run = |batch: &&[usize]| {
            let encs: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            self.forward(&encs)
        };
        let results: Vec<Vec<f32>> = match self.network {
            Network::Fused(_) => batches.par_iter().map(run).collect::<Result<_, _>>()?,
            _ => batches.iter().map(run).collect::<Result<_, _>>()?,
        };
        let mut scores = vec![0f32; pairs.len()];
        for (batch, got) in batches.iter().zip(results) {
            for (&i, s) in batch.iter().zip(got) {
                scores[i] = s;
            }
        }
        Ok(scores)
    }

    /// Token type ids the model takes for an encoding (all 0 for models
    /// with one type).
    fn type_ids(&self, e: &Encoding) -> Vec<u32> {
        if self.type_vocab <= 1 {
            vec![0; e.get_ids().len()]
        } else {
            e.get_type_ids().to_vec()
        }
    }

    /// Position ids as RoBERTa computes them: counting non-padding tokens
    /// from `pad_id + 1`; padding sits at `pad_id`.
    fn roberta_positions(&self, ids: &[u32]) -> Vec<u32> {
        let mut n = self.pad_id;
        ids.iter()
            .map(|&id| {
                if id == self.pad_id {
                    self.pad_id
                } else {
                    n += 1;
                    n
                }
            })
            .collect()
    }

    fn forward(&self, batch: &[&Encoding]) -> Result<Vec<f32>, ModelError> {
        match &self.network {
            Network::Fused(enc) => {
                let ids: Vec<&[u32]> = batch.iter().map(|e| e.get_ids()).collect();
                let types: Vec<Vec<u32>> = batch.iter().map(|e| self.type_ids(e)).collect();
                let types: Vec<&[u32]> = types.iter().map(Vec::as_slice).collect();
                let positions: Option<Vec<Vec<u32>>> = (self.family == RerankerFamily::XlmRoberta)
                    .then(|| ids.iter().map(|s| self.roberta_positions(s)).collect());
                let positions: Option<Vec<&[u32]>> = positions
                    .as_ref()
                    .map(|p| p.iter().map(Vec::as_slice).collect());
                let hidden = enc.forward_with(&ids, Some(&types), positions.as_deref())?;
                let head = self
                    .head
                    .as_ref()
                    .ok_or_else(|| ModelError::Compute("reranker head missing".into()))?;
                let h = enc.hidden();
                let mut start = 0;
                Ok(ids
                    .iter()
                    .map(|s| {
                        let score = head.score(&hidden[start * h..(start + 1) * h]);
                        start += s.len();
                        score
                    })
                    .collect())
            }
            Network::Bert(model) => {
                let (ids, types, mask) = self.padded(batch, 0)?;
                let out = model.forward(&ids, &types, Some(&mask))?;
                let cls: Vec<Vec<f32>> = out.narrow(1, 0, 1)?.squeeze(1)?.to_vec2()?;
                let head = self
                    .head
                    .as_ref()
                    .ok_or_else(|| ModelError::Compute("reranker head missing".into()))?;
                debug_assert!(cls.iter().all(|c| c.len() == self.hidden));
                Ok(cls.iter().map(|c| head.score(c)).collect())
            }
            Network::XlmRoberta(model) => {
                let (ids, types, mask) = self.padded(batch, self.pad_id)?;
                let logits = model.forward(&ids, &mask, &types)?;
                Ok(logits.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?)
            }
        }
    }

    /// A padded `(batch, longest)` batch: ids (padded with `pad`), token
    /// types and the attention mask.
    fn padded(
        &self,
        batch: &[&Encoding],
        pad: u32,
    ) -> Result<(Tensor, Tensor, Tensor), ModelError> {
        let longest = batch.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let n = batch.len();
        let mut ids = vec![pad; n * longest];
        let mut types = vec![0u32; n * longest];
        let mut mask = vec![0u32; n * longest];
        for (r, e) in batch.iter().enumerate() {
            let len = e.get_ids().len();
            let row = r * longest;
            ids[row..row + len].copy_from_slice(e.get_ids());
            types[row..row + len].copy_from_slice(&self.type_ids(e));
            mask[row..row + len].fill(1);
        }
        let t = |v: Vec<u32>| Tensor::from_vec(v, (n, longest), &self.device);
        Ok((t(ids)?, t(types)?, t(mask)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(name: &str) -> PathBuf {
        let models = std::env::var_os("LECTERN_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
            });
        let dir = models.join(name);
        assert!(
            dir.join("model.safetensors").is_file(),
            "{name} missing in {}: run models/provision.sh",
            models.display()
        );
        dir
    }

    /// The fused CPU path (Lectern's encoder + head) and the path other
    /// devices take (candle-transformers' `BertModel` + head, and its whole
    /// `XLMRobertaForSequenceClassification`) give the same scores on
    /// padded batches of pairs of different lengths.
    #[test]
    fn fused_path_matches_candle_reference_models() {
        let passages = [
            "short",
            "A passage of moderate length about mitochondria and ageing muscles.",
            &"a long passage that needs to be truncated by the tokenizer ".repeat(30),
        ];
        for name in ["tiny-reranker", "tiny-reranker-xlmr"] {
            let mut cfg = RerankerConfig::new(tiny(name));
            cfg.max_tokens = 96;
            let fused = Reranker::load(cfg.clone(), &Device::Cpu).unwrap();
            assert!(matches!(fused.network, Network::Fused(_)));
            let reference = Reranker::load_with(cfg, &Device::Cpu, true).unwrap();
            let a = fused.score("what ages muscle?", &passages).unwrap();
            let b = reference.score("what ages muscle?", &passages).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-4,
                    "{name}: fused {a:?} vs reference {b:?}"
                );
            }
            // The scores differ between passages, so the comparison means something.
            assert!((a[0] - a[1]).abs() > 1e-3, "{name}: {a:?}");
        }
    }

    #[test]
    fn roberta_positions_skip_padding() {
        let r = Reranker::load(
            RerankerConfig::new(tiny("tiny-reranker-xlmr")),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(r.pad_id, 1);
        assert_eq!(
            r.roberta_positions(&[0, 5, 9, 2, 1, 1]),
            vec![2, 3, 4, 5, 1, 1]
        );
        // 514 positions less the offset of 2 leave 512 tokens.
        assert_eq!(r.max_tokens(), 512);
    }
}
