use tokenizers::Tokenizer;

use crate::{error::tok_err, ModelError};

/// Incremental detokeniser: turns a growing list of token ids into text
/// pieces without ever splitting a UTF-8 character.
///
/// Byte-level BPE tokens can end in the middle of a multi-byte character; the
/// decoded text then ends in U+FFFD. Such a piece is held back until the
/// following tokens complete the character.
#[derive(Debug)]
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    prev_index: usize,
    current_index: usize,
}

impl<'a> TokenStream<'a> {
    /// A stream over `tokenizer` with no tokens yet.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev_index: 0,
            current_index: 0,
        }
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(tokens, true).map_err(tok_err)
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>, ModelError> {
        let prev_text = if self.tokens.is_empty() {
            String::new()
        } else {
            self.decode(&self.tokens[self.prev_index..self.current_index])?
        };
        self.tokens.push(token);
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() && !text.ends_with('\u{FFFD}') {
            let piece = match text.get(prev_text.len()..) {
                Some(p) => p.to_string(),
                None => return Ok(None),
            };
            self.prev_index = self.current_index;
            self.current_index = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever text is still held back (for example a dangling partial character).
    pub fn flush(&self) -> Result<Option<String>, ModelError> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() {
            Ok(text.get(prev_text.len()..).map(str::to_string))
        } else {
            Ok(None)
        }
    }

    /// All tokens pushed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}
