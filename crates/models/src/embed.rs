use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::bert::{self, BertEncoder};
use crate::embed_qwen3::DecoderEmbedder;
use crate::{error::tok_err, ModelError};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors under the attention mask (MiniLM, mpnet).
    Mean,
    /// The first (`[CLS]`) token's vector (bge).
    Cls,
    /// The last token's vector (decoder embedders such as Qwen3-Embedding,
    /// whose inputs end with an end-of-text token).
    Last,
}

/// The network family of an embedding model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderArchitecture {
    /// A BERT-style encoder (MiniLM, bge, e5, …).
    #[default]
    Bert,
    /// A Qwen3 decoder run for its hidden states (Qwen3-Embedding); every
    /// input gets the tokenizer's `<|endoftext|>` token appended.
    Qwen3,
}

/// Query instruction format of instruction-tuned embedders (Qwen3-Embedding,
/// e5-instruct): `Instruct: {task}\nQuery:` followed by the query.
pub fn instruction_prefix(task: &str) -> String {
    format!("Instruct: {task}\nQuery:")
}

/// Settings for an embedder loaded from a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedderConfig {
    /// Folder holding `config.json`, `model.safetensors` and `tokenizer.json`.
    pub dir: PathBuf,
    /// The network family.
    #[serde(default)]
    pub architecture: EmbedderArchitecture,
    /// Pooling; `None` reads sentence-transformers' `1_Pooling/config.json`
    /// when present and falls back to mean pooling (last-token pooling for
    /// a Qwen3 decoder).
    pub pooling: Option<Pooling>,
    /// Whether vectors are L2-normalised (cosine search expects it).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Longest input in tokens; longer inputs are truncated.
    pub max_tokens: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Prefix put before queries (some models are trained with one).
    pub query_prefix: String,
    /// Prefix put before passages.
    pub passage_prefix: String,
}

fn yes() -> bool {
    true
}

/// The embedder settings a model catalog entry's `params` carries.
#[derive(Debug, Default, Deserialize)]
struct CatalogParams {
    architecture: Option<String>,
    pooling: Option<Pooling>,
    normalize: Option<bool>,
    max_tokens: Option<usize>,
    query_prefix: Option<String>,
    passage_prefix: Option<String>,
    /// Task description for instruction-tuned models; becomes the query
    /// prefix through [`instruction_prefix`].
    instruction: Option<String>,
}

impl EmbedderConfig {
    /// Defaults for a folder: BERT, 256-token cap (all-MiniLM-L6-v2's own
    /// limit), batches of 32, no prefixes, pooling read from the folder.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            architecture: EmbedderArchitecture::Bert,
            pooling: None,
            normalize: true,
            max_tokens: 256,
            batch_size: 32,
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }

    /// Settings for a folder that no catalog describes, read from the
    /// files sentence-transformers saves beside the model: pooling from
    /// `1_Pooling/config.json`, query and passage prompts from
    /// `config_sentence_transformers.json` (`prompts.query`, and
    /// `prompts.passage` or `prompts.document`). A folder whose
    /// `config.json` names a Qwen3 model is a Qwen3 decoder embedder with
    /// last-token pooling.
    pub fn from_folder(dir: impl Into<PathBuf>) -> Self {
        let mut cfg = Self::new(dir);
        #[derive(Deserialize)]
        struct ModelType {
            #[serde(default)]
            model_type: String,
        }
        if let Ok(m) = read_json::<ModelType>(&cfg.dir.join("config.json")) {
            if m.model_type == "qwen3" {
                cfg.architecture = EmbedderArchitecture::Qwen3;
                cfg.pooling = Some(Pooling::Last);
                cfg.max_tokens = 8192;
                cfg.batch_size = 8;
            }
        }
        if let Some(p) = st_pooling(&cfg.dir) {
            cfg.pooling = Some(p);
        }
        #[derive(Deserialize)]
        struct StConfig {
            #[serde(default)]
            prompts: std::collections::BTreeMap<String, String>,
        }
        if let Ok(st) = read_json::<StConfig>(&cfg.dir.join("config_sentence_transformers.json")) {
            if let Some(q) = st.prompts.get("query") {
                cfg.query_prefix = q.clone();
            }
            if let Some(p) = st.prompts.get("passage").or(st.prompts.get("document")) {
                cfg.passage_prefix = p.clone();
            }
        }
        cfg
    }

    /// Settings from a model catalog entry's `params` for the model in
    /// `dir`: `architecture` (`bert` or `qwen3`), `pooling` (`mean`, `cls`
    /// or `last`), `normalize`, `max_tokens`, `query_prefix`,
    /// `passage_prefix`, and `instruction` (a task description that becomes
    /// the query prefix `Instruct: {task}\nQuery:`). Absent keys keep the
    /// defaults of [`EmbedderConfig::new`] (last-token pooling for Qwen3).
    pub fn from_catalog_params(
        dir: impl Into<PathBuf>,
        params: &serde_json::Value,
    ) -> Result<Self, ModelError> {
        let mut cfg = Self::new(dir);
        let bad = |message: String| ModelError::InvalidFile {
            path: cfg.dir.clone(),
            message: format!("catalog parameters of this embedder: {message}"),
        };
        let p: CatalogParams = if params.is_null() {
            CatalogParams::default()
        } else {
            serde_json::from_value(params.clone()).map_err(|e| bad(e.to_string()))?
        };
        match p.architecture.as_deref() {
            None | Some("bert") => {}
            Some("qwen3") => {
                cfg.architecture = EmbedderArchitecture::Qwen3;
                cfg.pooling = Some(Pooling::Last);
                cfg.max_tokens = 8192;
                cfg.batch_size = 8;
            }
            Some(other) => {
                return Err(bad(format!(
                    "architecture `{other}` is not an embedder Lectern can run (bert or qwen3)"
                )))
            }
        }
        if let Some(pooling) = p.pooling {
            cfg.pooling = Some(pooling);
        }
        if let Some(n) = p.normalize {
            cfg.normalize = n;
        }
        if let Some(m) = p.max_tokens {
            if m == 0 {
                return Err(bad("max_tokens must be positive".into()));
            }
            cfg.max_tokens = m;
        }
        if let Some(q) = p.query_prefix {
            cfg.query_prefix = q;
        }
        if let Some(task) = p.instruction {
            cfg.query_prefix = instruction_prefix(&task);
        }
        if let Some(pp) = p.passage_prefix {
            cfg.passage_prefix = pp;
        }
        Ok(cfg)
    }
}

/// The network behind an [`Embedder`].
enum Encoder {
    /// Lectern's fused encoder on packed sequences (CPU).
    Fused(BertEncoder),
    /// candle-transformers' BERT on padded batches (other devices).
    Reference(BertModel),
    /// A Qwen3 decoder, one text per forward pass (no padding).
    Decoder(DecoderEmbedder),
}

/// A sentence embedder: BERT family or a Qwen3 decoder.
///
/// For BERT on the CPU the forward pass is Lectern's fused encoder
/// (`bert/`), which packs each batch without padding; on other devices it
/// is candle-transformers' `BertModel`. A Qwen3 embedder runs Lectern's
/// Qwen3 (`qwen3/`) for its final hidden states.
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

/// The pooling sentence-transformers' `1_Pooling/config.json` asks for, if
/// the file is there.
/// The folder's `tokenizer.json`, cutting inputs at `max_length` tokens and
/// padding nothing (batches are padded by hand after sorting by length).
fn truncating_tokenizer(dir: &Path, max_length: usize) -> Result<Tokenizer, ModelError> {
    let tok_path = require(dir.join("tokenizer.json"), "embedder tokenizer.json")?;
    let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| ModelError::InvalidFile {
        path: tok_path.clone(),
        message: e.to_string(),
    })?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            ..Default::default()
        }))
        .map_err(tok_err)?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

fn st_pooling(dir: &Path) -> Option<Pooling> {
    #[derive(Deserialize)]
    struct StPooling {
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_lasttoken: bool,
    }
    let p = read_json::<StPooling>(&dir.join("1_Pooling").join("config.json")).ok()?;
    Some(if p.pooling_mode_cls_token {
        Pooling::Cls
    } else if p.pooling_mode_lasttoken {
        Pooling::Last
    } else {
        Pooling::Mean
    })
}

impl Embedder {
    /// Loads the model in `config.dir` onto `device`.
    pub fn load(config: EmbedderConfig, device: &Device) -> Result<Self, ModelError> {
        if config.architecture == EmbedderArchitecture::Qwen3 {
            return Self::load_decoder(config, device);
        }
        let dir = &config.dir;
        let cfg_path = require(dir.join("config.json"), "embedder config.json")?;
        let weights = require(dir.join("model.safetensors"), "embedder weights")?;
        let bert_cfg: BertConfig = read_json(&cfg_path)?;
        let tokenizer = truncating_tokenizer(dir, config.max_tokens)?;
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
        let pooling = config
            .pooling
            .or_else(|| st_pooling(dir))
            .unwrap_or(Pooling::Mean);
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            pooling,
            dim: bert_cfg.hidden_size,
            config,
        })
    }

    /// Loads a Qwen3 checkpoint (safetensors folder) as an embedder.
    fn load_decoder(config: EmbedderConfig, device: &Device) -> Result<Self, ModelError> {
        let dir = &config.dir;
        // Room is left for the end-of-text token appended to every input.
        let tokenizer = truncating_tokenizer(dir, config.max_tokens.max(2) - 1)?;
        let decoder = DecoderEmbedder::load(dir, &tokenizer, device, config.max_tokens)?;
        let pooling = config.pooling.unwrap_or(Pooling::Last);
        Ok(Self {
            dim: decoder.hidden(),
            model: Encoder::Decoder(decoder),
            tokenizer,
            device: device.clone(),
            pooling,
            config,
        })
    }

    /// The settings the embedder was loaded with.
    pub fn config(&self) -> &EmbedderConfig {
        &self.config
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
        if let Encoder::Decoder(dec) = &self.model {
            return encodings
                .iter()
                .map(|e| {
                    let ids = dec.input_ids(e.get_ids(), self.config.max_tokens);
                    dec.embed_ids(&ids, self.pooling, self.config.normalize)
                })
                .collect();
        }
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
            Encoder::Reference(_) | Encoder::Decoder(_) => {
                order.chunks(self.config.batch_size.max(1)).collect()
            }
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
            Encoder::Decoder(_) => unreachable!("decoder embedders return above"),
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
            rows.push(pool(states, dim, self.pooling, self.config.normalize));
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
            Pooling::Last => {
                let rows = batch
                    .iter()
                    .enumerate()
                    .map(|(row, &i)| {
                        let last = encodings[i].len().max(1) - 1;
                        hidden.get(row)?.get(last)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)?
            }
        };
        if !self.config.normalize {
            return Ok(pooled.to_vec2()?);
        }
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
        let n = plain.encode(text, true).map_err(tok_err)?.len();
        // A decoder embedder appends its end-of-text token.
        Ok(match self.model {
            Encoder::Decoder(_) => n + 1,
            _ => n,
        })
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
/// vector, L2-normalised when `normalize` is set.
pub(crate) fn pool(states: &[f32], dim: usize, pooling: Pooling, normalize: bool) -> Vec<f32> {
    let len = states.len() / dim;
    let mut v = match pooling {
        Pooling::Cls => states[..dim].to_vec(),
        Pooling::Last => states[(len.max(1) - 1) * dim..len.max(1) * dim].to_vec(),
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
    if !normalize {
        return v;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
