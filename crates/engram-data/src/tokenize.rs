//! Examples to token ids with a loss mask: which tokens the model is trained to predict.

use engram_tokenizer::{ChatTemplate, Message, Tokenizer};

use crate::{DataError, Example};

/// One example as token ids, with the tokens that are training targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedExample {
    /// The token ids, BOS included when the tokenizer adds one.
    pub ids: Vec<u32>,
    /// One flag per token: `loss_mask[i]` says token `i` is a training target (the model is
    /// trained to predict it from tokens `..i`). `loss_mask[0]` is always `false`: nothing
    /// predicts the first token.
    pub loss_mask: Vec<bool>,
}

impl TokenizedExample {
    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The number of target tokens (flags set in `loss_mask`, the first token never counting).
    pub fn num_targets(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// A list of examples tokenized by [`tokenize_examples`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedDataset {
    /// The examples, in the order given.
    pub examples: Vec<TokenizedExample>,
    /// How many of them were longer than `max_len` and lost their end.
    pub truncated: usize,
}

/// Tokenizes one example and marks its training targets.
///
/// - A **chat** is rendered with `template` (the model's own, so that training matches how it is
///   prompted; SmolLM2's adds its default system prompt when the chat has none) and the targets
///   are the tokens of the assistant turns: each turn's content and the end-of-turn marker that
///   closes it (`<|im_end|>`), so the model learns to stop. The template's separator after the
///   marker (ChatML's newline) is not a target: generation stops at the marker, the model never
///   writes it. System and user turns, and the headers of all turns, are context only.
/// - A **text** trains on every token but the first (which nothing predicts). No EOS is appended,
///   like plain language-modelling data in Hugging Face: a text teaches content, not where to
///   stop.
///
/// An example longer than `max_len` tokens keeps its first `max_len`. One left with no target
/// (a one-token text, a chat whose assistant turns are all cut off) is
/// [`DataError::NoTargets`]; [`tokenize_examples`] says which example it was.
///
/// The assistant turns are found in the text, not in the tokens: for assistant message `i`, the
/// conversation up to `i` rendered with the generation prompt (text `P`) must be a prefix of the
/// conversation up to and including `i` (text `F`), which must be a prefix of the whole one; the
/// turn is `F[P.len()..]`. A template for which that fails is [`DataError::TemplateNotPrefix`].
/// The whole conversation is tokenized once, and a token is a target when its first byte lies in
/// an assistant turn (so a token straddling the start of a turn stays context).
pub fn tokenize_example(
    tok: &Tokenizer,
    template: &ChatTemplate,
    ex: &Example,
    max_len: usize,
) -> Result<TokenizedExample, DataError> {
    truncate(tokenize_full(tok, template, ex, max_len)?, max_len)
}

/// Tokenizes a list of examples with [`tokenize_example`], counting those truncated. An error is
/// wrapped in [`DataError::Example`] with the 1-based position of the example in `examples`.
pub fn tokenize_examples(
    tok: &Tokenizer,
    template: &ChatTemplate,
    examples: &[Example],
    max_len: usize,
) -> Result<TokenizedDataset, DataError> {
    let mut out = Vec::with_capacity(examples.len());
    let mut truncated = 0;
    for (i, ex) in examples.iter().enumerate() {
        let full = tokenize_full(tok, template, ex, max_len).map_err(|e| e.in_example(i + 1))?;
        if full.ids.len() > max_len {
            truncated += 1;
        }
        out.push(truncate(full, max_len).map_err(|e| e.in_example(i + 1))?);
    }
    Ok(TokenizedDataset {
        examples: out,
        truncated,
    })
}

/// Keeps the first `max_len` tokens; fails if no target is left among them.
fn truncate(mut ex: TokenizedExample, max_len: usize) -> Result<TokenizedExample, DataError> {
    let tokens = ex.ids.len();
    ex.ids.truncate(max_len);
    ex.loss_mask.truncate(max_len);
    if ex.num_targets() == 0 {
        return Err(DataError::NoTargets { tokens, max_len });
    }
    Ok(ex)
}

/// The example with at least its first `max_len` tokens (more when it is longer: the caller truncates).
///
/// A text or message longer than `max_len` tokens could ever cover is cut first, so that a 50 MB line costs
/// the tokenizer (~100 bytes of working memory per byte of text) only what `max_len` keeps. The margin keeps
/// the cut past the end of the kept tokens' words, so they are the ones the whole text would give.
fn tokenize_full(
    tok: &Tokenizer,
    template: &ChatTemplate,
    ex: &Example,
    max_len: usize,
) -> Result<TokenizedExample, DataError> {
    let budget = max_len
        .saturating_add(CUT_MARGIN_TOKENS)
        .saturating_mul(tok.max_token_bytes());
    let (ids, mut loss_mask) = match ex {
        Example::Text { text } => {
            let ids = tok.encode(cut(text, budget))?;
            let mask = vec![true; ids.len()];
            (ids, mask)
        }
        Example::Chat { messages } => {
            let cut_messages: Vec<Message>;
            let messages = if messages.iter().any(|m| m.content.len() > budget) {
                cut_messages = messages
                    .iter()
                    .map(|m| Message {
                        role: m.role.clone(),
                        content: cut(&m.content, budget).to_owned(),
                    })
                    .collect();
                &cut_messages
            } else {
                messages
            };
            let (text, spans) = assistant_spans(template, messages)?;
            let (ids, offsets) = tok.encode_with_offsets(&text)?;
            let mask = offsets
                .iter()
                .map(|&(start, _)| spans.iter().any(|s| s.contains(&start)))
                .collect();
            (ids, mask)
        }
    };
    if let Some(first) = loss_mask.first_mut() {
        *first = false;
    }
    Ok(TokenizedExample { ids, loss_mask })
}

/// Tokens of slack past `max_len` before a long text is cut (see [`tokenize_full`]).
const CUT_MARGIN_TOKENS: usize = 64;

/// `text`'s first `max_bytes` bytes at most, ending on a character boundary.
fn cut(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Renders the conversation and returns it with the byte ranges of its assistant turns.
fn assistant_spans(
    template: &ChatTemplate,
    messages: &[Message],
) -> Result<(String, Vec<std::ops::Range<usize>>), DataError> {
    let full = template.render(messages, false)?;
    let stops = template.stop_strings();
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let prompt = template.render(&messages[..i], true)?;
        let with_turn = template.render(&messages[..=i], false)?;
        if !with_turn.starts_with(&prompt) || !full.starts_with(&with_turn) {
            return Err(DataError::TemplateNotPrefix {
                template: template.name().to_owned(),
                message: i + 1,
            });
        }
        let turn = &with_turn[prompt.len()..];
        // End the turn after its last end-of-turn marker; what follows is the template's
        // separator, which the model never generates.
        let end = stops
            .iter()
            .filter_map(|s| turn.rfind(s.as_str()).map(|at| at + s.len()))
            .max()
            .unwrap_or(turn.len());
        spans.push(prompt.len()..prompt.len() + end);
    }
    Ok((full, spans))
}
