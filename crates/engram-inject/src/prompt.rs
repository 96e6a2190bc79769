//! The chat-prompt convention shared by training, probing and evaluation: one user turn holding the question,
//! after the item's context and a blank line when the context is in the prompt, rendered with the model's chat
//! template; answers are greedy and end at the first line.

use engram_model::{GenerationConfig, ModelError};
use engram_tokenizer::{ChatTemplate, Message};

/// The user turn for `question`, with `context` before it when given.
pub fn user_turn(context: Option<&str>, question: &str) -> String {
    match context {
        Some(c) => format!("{c}\n\n{question}"),
        None => question.to_owned(),
    }
}

/// The chat prompt (ending with the assistant header) for `question`.
pub fn chat_prompt(
    template: &ChatTemplate,
    context: Option<&str>,
    question: &str,
) -> Result<String, ModelError> {
    Ok(template.render(&[Message::user(user_turn(context, question))], true)?)
}

/// How an answer is generated, for questions and locality alike: greedy, cut at the end of the first line.
pub fn answer_config(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        stop_strings: vec!["\n".into()],
        ..GenerationConfig::greedy(max_new_tokens)
    }
}
