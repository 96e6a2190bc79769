//! Incremental decoding for generation: text arrives token by token and must be shown without
//! ever cutting a UTF-8 character in half (byte-level tokens often hold a fraction of an emoji).

use crate::Tokenizer;
use crate::byte_level::push_token_bytes;

/// Turns token ids into text one id at a time. Made by [`Tokenizer::decode_stream`].
///
/// For byte-level tokenizers it works on bytes: each token's bytes are appended, complete
/// characters are returned, an incomplete trailing character waits for the next token. The chunks
/// concatenated (plus [`DecodeStream::finish`]) equal [`Tokenizer::decode`] of all ids, including
/// its U+FFFD replacement of invalid bytes. Other tokenizers (e.g. SentencePiece-style with a
/// `Metaspace` decoder) re-decode a short window of ids and return what grew, which keeps
/// context-dependent spacing right.
#[derive(Debug)]
pub struct DecodeStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Bytes not yet returned: at most an incomplete character.
    Bytes { pending: Vec<u8> },
    /// The window of ids whose decoding starts with `prefix` (already returned up to it).
    Window {
        ids: Vec<u32>,
        prefix: String,
        prefix_index: usize,
    },
}

impl<'a> DecodeStream<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer, skip_special: bool) -> Self {
        let state = if tokenizer.is_byte_level() {
            State::Bytes {
                pending: Vec::with_capacity(8),
            }
        } else {
            State::Window {
                ids: Vec::new(),
                prefix: String::new(),
                prefix_index: 0,
            }
        };
        Self {
            tokenizer,
            skip_special,
            state,
        }
    }

    /// Adds the next token id; returns the text it completes, or `None` when nothing can be shown
    /// yet (part of a character, a skipped special token, an id outside the vocabulary).
    pub fn push(&mut self, id: u32) -> Option<String> {
        match &mut self.state {
            State::Bytes { pending } => {
                let token = self.tokenizer.id_to_token(id)?;
                if self.skip_special && self.tokenizer.is_special_token(&token) {
                    return None;
                }
                push_token_bytes(&token, pending);
                let mut out = String::new();
                drain_complete_utf8(pending, &mut out);
                (!out.is_empty()).then_some(out)
            }
            State::Window {
                ids,
                prefix,
                prefix_index,
            } => {
                let tok = self.tokenizer;
                let skip = self.skip_special;
                if prefix.is_empty()
                    && !ids.is_empty()
                    && let Ok(p) = tok.decode(ids, skip)
                    && !p.ends_with('\u{FFFD}')
                {
                    *prefix = p;
                    *prefix_index = ids.len();
                }
                ids.push(id);
                let text = tok.decode(ids, skip).ok()?;
                if text.len() <= prefix.len() || text.ends_with('\u{FFFD}') {
                    return None;
                }
                let new_text = text.strip_prefix(prefix.as_str())?.to_owned();
                let keep_from = (*prefix_index).min(ids.len());
                ids.drain(..keep_from);
                *prefix = tok.decode(ids, skip).unwrap_or_default();
                *prefix_index = ids.len();
                Some(new_text)
            }
        }
    }

    /// Ends the stream: returns what is still held back (an incomplete character, shown as
    /// U+FFFD exactly as [`Tokenizer::decode`] would), and resets the stream.
    pub fn finish(&mut self) -> Option<String> {
        let out = match &mut self.state {
            State::Bytes { pending } => {
                let out = String::from_utf8_lossy(pending).into_owned();
                pending.clear();
                out
            }
            State::Window {
                ids,
                prefix,
                prefix_index,
            } => {
                let text = self
                    .tokenizer
                    .decode(ids, self.skip_special)
                    .unwrap_or_default();
                let out = text
                    .strip_prefix(prefix.as_str())
                    .map(str::to_owned)
                    .unwrap_or_default();
                ids.clear();
                prefix.clear();
                *prefix_index = 0;
                out
            }
        };
        (!out.is_empty()).then_some(out)
    }
}

/// Moves every complete character of `pending` into `out`, invalid bytes as U+FFFD (one per
/// maximal invalid sequence, like `String::from_utf8_lossy`), leaving only an incomplete but
/// possibly valid trailing sequence behind.
fn drain_complete_utf8(pending: &mut Vec<u8>, out: &mut String) {
    let mut start = 0;
    while start < pending.len() {
        match std::str::from_utf8(&pending[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = pending.len();
            }
            Err(e) => {
                let valid_end = start + e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&pending[start..valid_end]));
                start = valid_end;
                match e.error_len() {
                    // Truncated character: wait for more bytes.
                    None => break,
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start += n;
                    }
                }
            }
        }
    }
    pending.drain(..start);
}

#[cfg(test)]
mod tests {
    use super::drain_complete_utf8;

    #[test]
    fn drains_like_from_utf8_lossy() {
        let inputs: [&[u8]; 5] = [
            "héllo 👋".as_bytes(),
            b"\xF0\x9F\x91",
            b"a\x80b\xFF",
            b"\xE4\xB8\xAD\xE6",
            b"\xC3\x28",
        ];
        for bytes in inputs {
            // Feed byte by byte; the result plus the lossy tail must equal the lossy whole.
            let mut pending = Vec::new();
            let mut out = String::new();
            for &b in bytes {
                pending.push(b);
                drain_complete_utf8(&mut pending, &mut out);
            }
            out.push_str(&String::from_utf8_lossy(&pending));
            assert_eq!(out, String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }
}
