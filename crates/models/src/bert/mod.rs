//! Lectern's own BERT encoder for the CPU.
//!
//! The same network as `candle_transformers::models::bert::BertModel`
//! (post-LayerNorm encoder, absolute positions, erf GELU), run on packed
//! sequences: the tokens of every sequence in a batch are stacked into one
//! `(tokens, hidden)` matrix with no padding, so every projection is one
//! large matrix product and attention runs per sequence without a mask.
//! The query, key and value projections are one fused product; bias,
//! activation, residual and LayerNorm are fused kernels (see [`kernels`]).
//! Matrix products go through candle (gemm).

pub(crate) mod kernels;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct, PositionEmbeddingType};
use rayon::prelude::*;

use kernels::{layer_norm_row, BiasGelu, BiasResidualNorm, Softmax, SplitHeads};

struct Layer {
    /// Fused query/key/value weight, `(hidden, 3 * hidden)`.
    wqkv: Tensor,
    bqkv: Vec<f32>,
    /// Attention output projection, `(hidden, hidden)`.
    wo: Tensor,
    bo: Vec<f32>,
    attn_gamma: Vec<f32>,
    attn_beta: Vec<f32>,
    /// Feed-forward up projection, `(hidden, intermediate)`.
    w_up: Tensor,
    b_up: Vec<f32>,
    /// Feed-forward down projection, `(intermediate, hidden)`.
    w_down: Tensor,
    b_down: Vec<f32>,
    out_gamma: Vec<f32>,
    out_beta: Vec<f32>,
}

/// A BERT encoder whose forward pass runs fused CPU kernels on packed sequences.
pub(crate) struct BertEncoder {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type embeddings, `(type_vocab, hidden)` row-major.
    token_types: Vec<f32>,
    type_vocab: usize,
    emb_gamma: Vec<f32>,
    emb_beta: Vec<f32>,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
    device: Device,
}

/// Why the fused encoder cannot run a configuration (the caller falls back
/// to candle's reference implementation).
pub(crate) fn unsupported(cfg: &BertConfig, device: &Device) -> Option<String> {
    if !device.is_cpu() {
        return Some("fused encoder kernels run on the CPU only".into());
    }
    if cfg.hidden_act != HiddenAct::Gelu {
        return Some(format!("activation {:?}", cfg.hidden_act));
    }
    if cfg.position_embedding_type != PositionEmbeddingType::Absolute {
        return Some("non-absolute position embeddings".into());
    }
    if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
        return Some("hidden size not divisible by the head count".into());
    }
    None
}

fn vec_of(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// The weight of a linear layer, transposed to `(in, out)` and contiguous.
fn weight_t(vb: &VarBuilder, out: usize, inp: usize) -> candle_core::Result<Tensor> {
    vb.get((out, inp), "weight")?.t()?.contiguous()
}

impl BertEncoder {
    /// Loads the weights the way `BertModel::load` names them (at the root,
    /// under `bert.`, or under the config's `model_type`), or under
    /// `roberta.` as XLM-RoBERTa checkpoints name them.
    pub(crate) fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let probe = "embeddings.word_embeddings.weight";
        let vb = if vb.contains_tensor(probe) {
            vb
        } else if vb.contains_tensor(&format!("bert.{probe}")) {
            vb.pp("bert")
        } else if vb.contains_tensor(&format!("roberta.{probe}")) {
            vb.pp("roberta")
        } else if let Some(mt) = cfg
            .model_type
            .as_ref()
            .filter(|mt| vb.contains_tensor(&format!("{mt}.{probe}")))
        {
            vb.pp(mt)
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let inter = cfg.intermediate_size;
        let emb = vb.pp("embeddings");
        let word = vec_of(emb.get((cfg.vocab_size, h), "word_embeddings.weight")?)?;
        let position = vec_of(emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let type_vocab = cfg.type_vocab_size.max(1);
        let token_types = vec_of(emb.get((type_vocab, h), "token_type_embeddings.weight")?)?;
        let emb_gamma = vec_of(emb.get(h, "LayerNorm.weight")?)?;
        let emb_beta = vec_of(emb.get(h, "LayerNorm.bias")?)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{i}"));
            let att = vb.pp("attention");
            let sa = att.pp("self");
            let (q, k, v) = (sa.pp("query"), sa.pp("key"), sa.pp("value"));
            let wqkv = Tensor::cat(
                &[
                    q.get((h, h), "weight")?,
                    k.get((h, h), "weight")?,
                    v.get((h, h), "weight")?,
                ],
                0,
            )?
            .t()?
            .contiguous()?;
            let mut bqkv = vec_of(q.get(h, "bias")?)?;
            bqkv.extend(vec_of(k.get(h, "bias")?)?);
            bqkv.extend(vec_of(v.get(h, "bias")?)?);
            let ao = att.pp("output");
            let out = vb.pp("output");
            let up = vb.pp("intermediate").pp("dense");
            layers.push(Layer {
                wqkv,
                bqkv,
                wo: weight_t(&ao.pp("dense"), h, h)?,
                bo: vec_of(ao.pp("dense").get(h, "bias")?)?,
                attn_gamma: vec_of(ao.pp("LayerNorm").get(h, "weight")?)?,
                attn_beta: vec_of(ao.pp("LayerNorm").get(h, "bias")?)?,
                w_up: weight_t(&up, inter, h)?,
                b_up: vec_of(up.get(inter, "bias")?)?,
                w_down: weight_t(&out.pp("dense"), h, inter)?,
                b_down: vec_of(out.pp("dense").get(h, "bias")?)?,
                out_gamma: vec_of(out.pp("LayerNorm").get(h, "weight")?)?,
                out_beta: vec_of(out.pp("LayerNorm").get(h, "bias")?)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_types,
            type_vocab,
            emb_gamma,
            emb_beta,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
            eps: cfg.layer_norm_eps as f32,
            device: vb.device().clone(),
        })
    }

    /// Hidden size.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder over `seqs` (token ids, token type 0, positions from
    /// 0) and returns the last hidden states of all tokens stacked
    /// `(sum of lengths, hidden)`, sequence after sequence.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        self.forward_with(seqs, None, None)
    }

    /// [`BertEncoder::forward`] with explicit token type ids (a sentence
    /// pair's second segment is type 1 in BERT) and position ids
    /// (XLM-RoBERTa counts from `pad_token_id + 1`), each one slice per
    /// sequence of the same length as its tokens. `None` means type 0 and
    /// positions from 0.
    pub(crate) fn forward_with(
        &self,
        seqs: &[&[u32]],
        type_ids: Option<&[&[u32]]>,
        position_ids: Option<&[&[u32]]>,
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        for (what, given) in [("token type", type_ids), ("position", position_ids)] {
            if let Some(given) = given {
                if given.len() != seqs.len()
                    || given.iter().zip(seqs).any(|(g, s)| g.len() != s.len())
                {
                    return Err(candle_core::Error::Msg(format!(
                        "{what} ids do not match the token sequences in length"
                    )));
                }
            }
        }
        if let Some(bad) = type_ids
            .into_iter()
            .flatten()
            .flat_map(|t| t.iter())
            .find(|&&t| t as usize >= self.type_vocab)
        {
            return Err(candle_core::Error::Msg(format!(
                "token type {bad} is outside the model's {} types",
                self.type_vocab
            )));
        }
        if let Some(bad) = position_ids
            .into_iter()
            .flatten()
            .flat_map(|t| t.iter())
            .find(|&&p| p as usize >= self.max_positions)
        {
            return Err(candle_core::Error::Msg(format!(
                "position {bad} exceeds the model's {} positions",
                self.max_positions
            )));
        }
        let mut offsets = Vec::with_capacity(seqs.len() + 1);
        offsets.push(0usize);
        for s in seqs {
            if s.is_empty() {
                return Err(candle_core::Error::Msg("empty token sequence".into()));
            }
            if s.len() > self.max_positions {
                return Err(candle_core::Error::Msg(format!(
                    "sequence of {} tokens exceeds the model's {} positions",
                    s.len(),
                    self.max_positions
                )));
            }
            if let Some(&bad) = s.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(candle_core::Error::Msg(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.vocab
                )));
            }
            offsets.push(offsets[offsets.len() - 1] + s.len());
        }
        let total = offsets[offsets.len() - 1];
        if total == 0 {
            return Ok(Vec::new());
        }
        // Embeddings: word + position + token type, then LayerNorm.
        let positions: Vec<(u32, usize, usize)> = seqs
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.iter().enumerate().map(move |(p, &id)| {
                    let pos = position_ids.map_or(p, |ps| ps[i][p] as usize);
                    let ty = type_ids.map_or(0, |ts| ts[i][p] as usize);
                    (id, pos, ty)
                })
            })
            .collect();
        let mut x = vec![0f32; total * h];
        x.par_chunks_mut(h)
            .zip(positions.par_iter())
            .for_each(|(row, &(id, p, ty))| {
                let w = &self.word[id as usize * h..][..h];
                let pe = &self.position[p * h..][..h];
                let te = &self.token_types[ty * h..][..h];
                for (((o, &a), &b), &c) in row.iter_mut().zip(w).zip(pe).zip(te) {
                    *o = a + b + c;
                }
                kernels::simd(
                    #[inline(always)]
                    || layer_norm_row(row, &self.emb_gamma, &self.emb_beta, self.eps),
                );
            });
        let mut x = Tensor::from_vec(x, (total, h), &self.device)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &offsets)?;
        }
        x.flatten_all()?.to_vec1::<f32>()
    }

    fn layer(&self, l: &Layer, x: &Tensor, offsets: &[usize]) -> candle_core::Result<Tensor> {
        let h = self.hidden;
        let heads = self.heads;
        let d = h / heads;
        let split = x.matmul(&l.wqkv)?.apply_op1_no_bwd(&SplitHeads {
            bias: &l.bqkv,
            offsets,
            heads,
            head_dim: d,
        })?;
        // One task per sequence; the products inside split further when a
        // thread is free.
        let contexts = offsets
            .par_windows(2)
            .map(|w| {
                let (start, len) = (w[0], w[1] - w[0]);
                let block = split
                    .narrow(0, start * 3 * h, len * 3 * h)?
                    .reshape((3, heads, len, d))?;
                let (q, k, v) = (block.get(0)?, block.get(1)?, block.get(2)?);
                let probs = q.matmul(&k.t()?)?;
                probs.inplace_op1(&Softmax { parallel: true })?;
                let ctx = probs.matmul(&v)?; // (heads, len, d)
                ctx.transpose(0, 1)?.contiguous()?.reshape((len, h))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let ctx = Tensor::cat(&contexts, 0)?;
        // The products' fresh outputs are finished in place.
        let attn = ctx.matmul(&l.wo)?;
        attn.inplace_op2(
            x,
            &BiasResidualNorm {
                bias: &l.bo,
                gamma: &l.attn_gamma,
                beta: &l.attn_beta,
                eps: self.eps,
            },
        )?;
        let up = attn.matmul(&l.w_up)?;
        up.inplace_op1(&BiasGelu { bias: &l.b_up })?;
        let out = up.matmul(&l.w_down)?;
        out.inplace_op2(
            &attn,
            &BiasResidualNorm {
                bias: &l.b_down,
                gamma: &l.out_gamma,
                beta: &l.out_beta,
                eps: self.eps,
            },
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_transformers::models::bert::BertModel;
    use std::path::PathBuf;

    fn minilm_dir() -> PathBuf {
        let models = std::env::var_os("LECTERN_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/lectern/models")
            });
        let dir = models.join("all-MiniLM-L6-v2");
        assert!(
            dir.join("model.safetensors").is_file(),
            "all-MiniLM-L6-v2 missing in {}: run models/provision.sh",
            models.display()
        );
        dir
    }

    /// The fused encoder on packed sequences gives the same hidden states as
    /// candle-transformers' `BertModel` on a padded, masked batch of the same
    /// weights.
    #[test]
    fn fused_encoder_matches_candle_bert() {
        let dir = minilm_dir();
        let cfg: BertConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let data = std::fs::read(dir.join("model.safetensors")).unwrap();
        let dev = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &dev).unwrap();
        let fused = BertEncoder::load(vb.clone(), &cfg).unwrap();
        let reference = BertModel::load(vb, &cfg).unwrap();
        // Three sequences of different lengths, ids spread over the vocabulary.
        let lens = [37usize, 5, 130];
        let seqs: Vec<Vec<u32>> = lens
            .iter()
            .enumerate()
            .map(|(s, &n)| {
                (0..n)
                    .map(|i| ((i * 7919 + s * 104_729 + 101) % cfg.vocab_size) as u32)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let got = fused.forward(&refs).unwrap();
        let h = cfg.hidden_size;
        assert_eq!(got.len(), lens.iter().sum::<usize>() * h);

        let max_len = *lens.iter().max().unwrap();
        let mut ids = vec![0u32; lens.len() * max_len];
        let mut mask = vec![0u32; lens.len() * max_len];
        for (r, s) in seqs.iter().enumerate() {
            ids[r * max_len..r * max_len + s.len()].copy_from_slice(s);
            mask[r * max_len..r * max_len + s.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (lens.len(), max_len), &dev).unwrap();
        let mask = Tensor::from_vec(mask, (lens.len(), max_len), &dev).unwrap();
        let want: Vec<Vec<Vec<f32>>> = reference
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap()
            .to_vec3()
            .unwrap();
        let mut worst = 0f32;
        let mut offset = 0;
        for (r, &n) in lens.iter().enumerate() {
            for t in 0..n {
                let row = &got[(offset + t) * h..(offset + t + 1) * h];
                for (a, b) in row.iter().zip(&want[r][t]) {
                    worst = worst.max((a - b).abs());
                }
            }
            offset += n;
        }
        assert!(worst <= 1e-4, "max abs difference {worst}");
    }

    #[test]
    fn out_of_range_input_is_refused() {
        let dir = minilm_dir();
        let cfg: BertConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let data = std::fs::read(dir.join("model.safetensors")).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &Device::Cpu).unwrap();
        let enc = BertEncoder::load(vb, &cfg).unwrap();
        let too_long = vec![101u32; cfg.max_position_embeddings + 1];
        let err = enc.forward(&[&too_long]).unwrap_err().to_string();
        assert!(err.contains("exceeds"), "{err}");
        let bad = [cfg.vocab_size as u32];
        let err = enc.forward(&[&bad]).unwrap_err().to_string();
        assert!(err.contains("vocabulary"), "{err}");
    }
}
