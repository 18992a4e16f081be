//! A Qwen3 decoder used as a text embedder (Qwen3-Embedding): each text
//! ends with the end-of-text token and is pooled from the final hidden
//! states, by default from the last token's.

use std::path::Path;
use std::sync::Mutex;

use candle_core::Device;
use tokenizers::Tokenizer;

use crate::embed::{pool, Pooling};
use crate::qwen3::{Qwen3, Qwen3Options};
use crate::ModelError;

/// The token Qwen3-Embedding appends to every input and pools from.
pub(crate) const END_OF_TEXT: &str = "<|endoftext|>";

/// A Qwen3 checkpoint run for its hidden states.
pub(crate) struct DecoderEmbedder {
    /// The model owns a key/value cache, so one text runs at a time.
    model: Mutex<Qwen3>,
    eos: u32,
    hidden: usize,
}

impl DecoderEmbedder {
    /// Loads the safetensors folder `dir` for inputs of at most
    /// `max_tokens` tokens (the end-of-text token included).
    pub(crate) fn load(
        dir: &Path,
        tokenizer: &Tokenizer,
        device: &Device,
        max_tokens: usize,
    ) -> Result<Self, ModelError> {
        let eos = tokenizer
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| ModelError::InvalidFile {
                path: dir.join("tokenizer.json"),
                message: format!("the tokenizer has no `{END_OF_TEXT}` token"),
            })?;
        let model = Qwen3::load_safetensors(dir, device, Qwen3Options::new(max_tokens.max(1)))?;
        let hidden = model.config().hidden_size;
        Ok(Self {
            model: Mutex::new(model),
            eos,
            hidden,
        })
    }

    /// Vector length.
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// The tokens the model sees for an encoded text: at most `max_tokens`,
    /// always ending with the end-of-text token.
    pub(crate) fn input_ids(&self, ids: &[u32], max_tokens: usize) -> Vec<u32> {
        let mut out = ids.to_vec();
        if out.last() == Some(&self.eos) {
            out.pop();
        }
        out.truncate(max_tokens.max(1) - 1);
        out.push(self.eos);
        out
    }

    /// Runs one prepared input (see [`DecoderEmbedder::input_ids`]) and
    /// pools its hidden states into one vector.
    pub(crate) fn embed_ids(
        &self,
        ids: &[u32],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let states = {
            let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
            model.forward_hidden(ids)?
        };
        let flat: Vec<f32> = states.flatten_all()?.to_vec1()?;
        Ok(pool(&flat, self.hidden, pooling, normalize))
    }
}
