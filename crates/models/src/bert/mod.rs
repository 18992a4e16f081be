//! Lectern's own BERT encoder for the CPU.
//!
//! The same network as `candle_transformers::models::bert::BertModel`
//! (post-LayerNorm encoder, absolute positions, erf GELU), run on packed
//! sequences: the tokens of every sequence in a batch are stacked into one
//! `(tokens, hidden)` matrix with no padding, so every projection is one
//! large matrix product and attention runs per sequence without a mask.
//! The query, key and value projections are one fused product; bias,
//! activation, residual and LayerNorm are fused kernels (see [`kernels`]).
//! Matrix products write into activation buffers the encoder keeps from
//! pass to pass (see [`gemm`]); attention reads queries, keys and values
//! in place from the fused projection.

mod gemm;
pub(crate) mod kernels;

use std::cell::RefCell;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct, PositionEmbeddingType};
use rayon::prelude::*;

use gemm::{matmul, MatMut, MatRef};
use kernels::{add_bias, bias_residual_norm, layer_norm_row, softmax_rows, Norm};

/// One encoder layer; matrices are row-major `(in, out)`.
struct Layer {
    /// Fused query/key/value weight, `(hidden, 3 * hidden)`; the query
    /// columns are prescaled by `1/sqrt(head_dim)`.
    wqkv: Vec<f32>,
    bqkv: Vec<f32>,
    /// Attention output projection, `(hidden, hidden)`.
    wo: Vec<f32>,
    bo: Vec<f32>,
    attn_gamma: Vec<f32>,
    attn_beta: Vec<f32>,
    /// Feed-forward up projection, `(hidden, intermediate)`.
    w_up: Vec<f32>,
    b_up: Vec<f32>,
    /// Feed-forward down projection, `(intermediate, hidden)`.
    w_down: Vec<f32>,
    b_down: Vec<f32>,
    out_gamma: Vec<f32>,
    out_beta: Vec<f32>,
}

/// The activations of one forward pass, kept between passes so that the
/// products write into memory that is already mapped. Each buffer only
/// grows; a pass uses its first `tokens * width` values.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention output per (sequence, head), `len x head_dim` blocks.
    heads: Vec<f32>,
    ctx: Vec<f32>,
    attn: Vec<f32>,
    up: Vec<f32>,
}

/// The first `n` values of `buf`, growing it (with zeros) when it is shorter.
fn take(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

thread_local! {
    /// Attention scores of one (sequence, head), reused by the tasks a
    /// thread runs. A task makes no rayon calls while it holds it.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Buffer sets kept for later passes at most (one per pass running at once).
const KEPT_BUFFERS: usize = 4;

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
    intermediate: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
    buffers: Mutex<Vec<Buffers>>,
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

/// The weight of a linear layer, transposed to `(in, out)`, row-major.
fn weight_t(vb: &VarBuilder, out: usize, inp: usize) -> candle_core::Result<Vec<f32>> {
    vec_of(vb.get((out, inp), "weight")?.t()?.contiguous()?)
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
            // Queries come out already scaled by 1/sqrt(head_dim).
            let scale = 1.0 / ((h / cfg.num_attention_heads.max(1)) as f64).sqrt();
            let wqkv = vec_of(
                Tensor::cat(
                    &[
                        (q.get((h, h), "weight")? * scale)?,
                        k.get((h, h), "weight")?,
                        v.get((h, h), "weight")?,
                    ],
                    0,
                )?
                .t()?
                .contiguous()?,
            )?;
            let mut bqkv = vec_of((q.get(h, "bias")? * scale)?)?;
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
            intermediate: inter,
            heads: cfg.num_attention_heads,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
            eps: cfg.layer_norm_eps as f32,
            buffers: Mutex::new(Vec::new()),
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
        let mut buffers = self
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let x = take(&mut buffers.x, total * h);
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
        for layer in &self.layers {
            self.layer(layer, &mut buffers, &offsets);
        }
        let out = buffers.x[..total * h].to_vec();
        let mut kept = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_BUFFERS {
            kept.push(buffers);
        }
        Ok(out)
    }

    /// One layer over the packed tokens in `b.x`, whose rows it replaces
    /// with the layer's output.
    fn layer(&self, l: &Layer, b: &mut Buffers, offsets: &[usize]) {
        let h = self.hidden;
        let heads = self.heads;
        let d = h / heads;
        let total = offsets[offsets.len() - 1];
        let x = take(&mut b.x, total * h);
        let qkv = take(&mut b.qkv, total * 3 * h);
        matmul(
            MatMut::rows(qkv, total, 3 * h),
            MatRef::rows(x, total, h),
            MatRef::rows(&l.wqkv, h, 3 * h),
            true,
        );
        add_bias(qkv, &l.bqkv, false);
        let qkv = &*qkv;

        // Attention, one task per (sequence, head): scores, softmax and the
        // weighted values, with queries, keys and values read in place
        // from the projection. Each task writes its own `len x d` block.
        let out_heads = take(&mut b.heads, total * h);
        let mut tasks = Vec::with_capacity((offsets.len() - 1) * heads);
        let mut rest = &mut *out_heads;
        for w in offsets.windows(2) {
            let (start, len) = (w[0], w[1] - w[0]);
            for head in 0..heads {
                let (block, tail) = rest.split_at_mut(len * d);
                tasks.push((start, len, head, block));
                rest = tail;
            }
        }
        tasks.into_par_iter().for_each(|(start, len, head, block)| {
            let seq = &qkv[start * 3 * h..(start + len) * 3 * h];
            let part = |i: usize| MatRef::new(&seq[i * h + head * d..], len, d, 3 * h, 1);
            SCORES.with_borrow_mut(|scores| {
                let scores = take(scores, len * len);
                matmul(MatMut::rows(scores, len, len), part(0), part(1).t(), false);
                softmax_rows(scores, len);
                matmul(
                    MatMut::rows(block, len, d),
                    MatRef::rows(scores, len, len),
                    part(2),
                    false,
                );
            });
        });
        // Heads side by side again: `(tokens, hidden)`.
        let ctx = take(&mut b.ctx, total * h);
        ctx.par_chunks_mut(h).enumerate().for_each(|(token, row)| {
            let seq = offsets.partition_point(|&o| o <= token) - 1;
            let (start, len) = (offsets[seq], offsets[seq + 1] - offsets[seq]);
            let t = token - start;
            for (head, dst) in row.chunks_exact_mut(d).enumerate() {
                let src = &out_heads[(start * heads + head * len + t) * d..][..d];
                dst.copy_from_slice(src);
            }
        });

        let attn = take(&mut b.attn, total * h);
        matmul(
            MatMut::rows(attn, total, h),
            MatRef::rows(ctx, total, h),
            MatRef::rows(&l.wo, h, h),
            true,
        );
        let attn_norm = Norm {
            gamma: &l.attn_gamma,
            beta: &l.attn_beta,
            eps: self.eps,
        };
        bias_residual_norm(attn, x, &l.bo, &attn_norm);
        let inter = self.intermediate;
        let up = take(&mut b.up, total * inter);
        matmul(
            MatMut::rows(up, total, inter),
            MatRef::rows(attn, total, h),
            MatRef::rows(&l.w_up, h, inter),
            true,
        );
        add_bias(up, &l.b_up, true);
        // The layer's output replaces its input.
        matmul(
            MatMut::rows(x, total, h),
            MatRef::rows(up, total, inter),
            MatRef::rows(&l.w_down, inter, h),
            true,
        );
        let out_norm = Norm {
            gamma: &l.out_gamma,
            beta: &l.out_beta,
            eps: self.eps,
        };
        bias_residual_norm(x, attn, &l.b_down, &out_norm);
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
