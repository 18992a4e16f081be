//! Final hidden states instead of logits, for using a Qwen3 checkpoint as a
//! text embedder (Qwen3-Embedding).

use candle_core::{DType, Tensor};

use super::{causal_mask, Qwen3};
use crate::ModelError;

impl Qwen3 {
    /// Runs `tokens` from position 0 on an emptied cache and returns the
    /// final hidden states after the last RMSNorm: f32, shape
    /// `(tokens.len(), hidden_size)`. The language-model head is not run.
    ///
    /// The cache is emptied first, so every call sees only its own tokens;
    /// sequences longer than the granted context are refused.
    pub fn forward_hidden(&mut self, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Compute("no tokens to run".into()));
        }
        self.reset();
        let capacity = self.cache.capacity();
        if n > capacity {
            return Err(ModelError::ContextOverflow {
                prompt_tokens: n,
                context: capacity,
                reserved: 0,
                fits: capacity,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Compute(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        let out = self.hidden_states(tokens);
        // Leave no state behind for the next caller.
        self.reset();
        Ok(out?)
    }

    fn hidden_states(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let n = tokens.len();
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.lookup(&ids, self.dtype)?.unsqueeze(0)?;
        let (cos, sin) = self.rope.cos_sin(0, n)?;
        let mask = if n > 1 {
            Some(causal_mask(n, 0, &self.device)?)
        } else {
            None
        };
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &cos, &sin, mask.as_ref())?;
        }
        self.cache.advance(n);
        let x =
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, self.cfg.rms_norm_eps as f32)?;
        x.squeeze(0)?.to_dtype(DType::F32)
    }
}
