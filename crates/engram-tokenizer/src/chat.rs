//! Chat templates: turning a list of messages into the exact prompt text a model was trained on.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};

use crate::TokenizerError;
use crate::jinja::{self, TEMPLATE_NAME};

/// One turn of a conversation, as chat templates receive it (`message['role']`,
/// `message['content']`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Message {
    /// `system`, `user`, `assistant` (or `tool`, for templates that know it).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message: instructions that replace the template's default system prompt.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message (an earlier model answer, or a training target).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A message as the template sees it: a map whose keys keep Python's order (`role`, then
/// `content`), so `message | tojson` and `message.items()` print as they do in transformers.
#[derive(Debug)]
struct MessageObject(Message);

impl Object for MessageObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.as_str())),
            "content" => Some(Value::from(self.0.content.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// SmolLM2-Instruct's template, byte for byte as shipped in its GGUF and `tokenizer_config.json`.
const CHATML_SOURCE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}";

/// Meta-Llama-3-8B-Instruct's template (`tokenizer_config.json` of meta-llama/Meta-Llama-3-8B-Instruct):
/// `<|begin_of_text|>` then per message `<|start_header_id|>role<|end_header_id|>\n\n` + trimmed
/// content + `<|eot_id|>`. No default system prompt.
const LLAMA3_SOURCE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// Qwen2.5-Instruct's template (`tokenizer_config.json` of Qwen/Qwen2.5-*-Instruct) without its
/// function-calling branches (a [`Message`] carries no tools or tool calls): ChatML with the
/// default system prompt "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
/// and `tool` results folded into a user turn.
const QWEN2_SOURCE: &str = r#"{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// End-of-turn markers that, when a template writes them, mean "the model's answer ends here".
const END_OF_TURN_MARKERS: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>",
];

/// A compiled chat template: renders a conversation into prompt text exactly like Hugging Face's
/// `apply_chat_template`, and knows which strings end a model turn.
///
/// Built from a model's own Jinja template ([`ChatTemplate::from_jinja`], as found in a GGUF file or
/// `tokenizer_config.json`) or from one of the built-in formats ([`ChatTemplate::chatml`],
/// [`ChatTemplate::llama3`], [`ChatTemplate::qwen2`]) for models that ship none.
#[derive(Clone)]
pub struct ChatTemplate {
    name: String,
    source: String,
    bos_token: String,
    eos_token: String,
    stop: Vec<String>,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("stop", &self.stop)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles a Hugging Face / GGUF Jinja chat template. `bos_token` and `eos_token` are the
    /// strings the template sees under those names (`""` when the model has none).
    ///
    /// Fails with [`TokenizerError::Template`] (naming the line and quoting the source) when the
    /// template does not compile.
    pub fn from_jinja(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, TokenizerError> {
        let name = family_name(source);
        Self::build(name, source, bos_token, eos_token)
    }

    fn build(
        name: &str,
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, TokenizerError> {
        let env = jinja::compile(name, source)?;
        let mut stop: Vec<String> = END_OF_TURN_MARKERS
            .iter()
            .filter(|m| source.contains(*m))
            .map(|m| (*m).to_owned())
            .collect();
        if !eos_token.is_empty() && !stop.iter().any(|s| s == eos_token) {
            stop.push(eos_token.to_owned());
        }
        Ok(Self {
            name: name.to_owned(),
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            stop,
            env,
        })
    }

    fn builtin(name: &str, source: &str, bos_token: &str, eos_token: &str) -> Self {
        match Self::build(name, source, bos_token, eos_token) {
            Ok(t) => t,
            // The built-in sources are constants covered by tests; this cannot happen.
            Err(e) => unreachable!("built-in chat template {name} does not compile: {e}"),
        }
    }

    /// ChatML as SmolLM2-Instruct uses it (`<|im_start|>role\ncontent<|im_end|>\n`), including its
    /// default system prompt "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    /// when the conversation has none.
    pub fn chatml() -> Self {
        Self::builtin("chatml", CHATML_SOURCE, "<|im_start|>", "<|im_end|>")
    }

    /// The Llama 3 Instruct format (`<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>`).
    /// The rendered text starts with `<|begin_of_text|>`; [`crate::Tokenizer::encode`] does not add
    /// a second one.
    pub fn llama3() -> Self {
        Self::builtin("llama3", LLAMA3_SOURCE, "<|begin_of_text|>", "<|eot_id|>")
    }

    /// The Qwen2.5 Instruct format: ChatML with the default system prompt "You are Qwen, created by
    /// Alibaba Cloud. You are a helpful assistant."
    pub fn qwen2() -> Self {
        Self::builtin("qwen2", QWEN2_SOURCE, "", "<|im_end|>")
    }

    /// Renders `messages` into prompt text. With `add_generation_prompt` the text ends with the
    /// header of an assistant turn, so the model continues with its answer.
    ///
    /// The template sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, and
    /// `tools`/`documents` as `none`, like transformers passes them.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| Value::from_object(MessageObject(m.clone())))
            .collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| jinja::template_error(&self.name, &self.source, &e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(|e| jinja::template_error(&self.name, &self.source, &e))
    }

    /// A short label for the template family (`chatml`, `llama3`, `qwen2`, or `jinja` for other
    /// templates), for `engram info` and logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Jinja source, e.g. to write `chat_template.jinja` when exporting a model folder.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Strings that end a model turn (end-of-turn markers the template writes, and its EOS token),
    /// e.g. `["<|im_end|>"]` for ChatML: generation stops when one of them appears.
    pub fn stop_strings(&self) -> Vec<String> {
        self.stop.clone()
    }
}

/// Guesses the family of a template from its content, for display only.
fn family_name(source: &str) -> &'static str {
    if source.trim_end() == CHATML_SOURCE {
        "chatml"
    } else if source.contains("<|start_header_id|>") {
        "llama3"
    } else if source.contains("You are Qwen") {
        "qwen2"
    } else if source.contains("<|im_start|>") {
        "chatml"
    } else {
        "jinja"
    }
}
