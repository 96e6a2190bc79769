//! Chat templates: built-in formats render their public layouts, model templates render like
//! transformers, and broken templates give errors that point at the problem.

mod common;

use common::fixture;
use engram_tokenizer::{ChatTemplate, Message, Tokenizer, TokenizerError};

fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("Hi!"),
        Message::assistant("Hello."),
        Message::user("2+2?"),
    ]
}

#[test]
fn llama3_renders_the_llama3_instruct_layout() {
    let t = ChatTemplate::llama3();
    assert_eq!(t.name(), "llama3");
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // Content is trimmed, no system prompt is invented, no generation header without asking.
    assert_eq!(
        t.render(&[Message::user("  spaced out \n")], false)
            .unwrap(),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nspaced out<|eot_id|>"
    );
    assert_eq!(t.stop_strings(), vec!["<|eot_id|>".to_owned()]);
}

#[test]
fn qwen2_renders_the_qwen25_layout_with_its_default_system_prompt() {
    let t = ChatTemplate::qwen2();
    assert_eq!(t.name(), "qwen2");
    assert_eq!(
        t.render(&[Message::user("Hi!")], true).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&conversation(), false).unwrap(),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
    );
    // Tool results are folded into one user turn.
    let with_tools = [
        Message::user("weather?"),
        Message::new("tool", "sunny"),
        Message::new("tool", "22C"),
    ];
    assert_eq!(
        t.render(&with_tools, true).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nweather?<|im_end|>\n\
         <|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n22C\n</tool_response><|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert_eq!(t.stop_strings(), vec!["<|im_end|>".to_owned()]);
}

#[test]
fn chatml_keeps_an_explicit_system_prompt_and_renders_turns() {
    let t = ChatTemplate::chatml();
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&[], true).unwrap(),
        "<|im_start|>assistant\n",
        "an empty conversation only opens the assistant turn"
    );
}

#[test]
fn a_syntax_error_names_the_problem_and_line() {
    let source = "{% for message in messages %}\n{{ message['content'] }\n{% endfor %}";
    let err = ChatTemplate::from_jinja(source, "", "").unwrap_err();
    match &err {
        TokenizerError::Template { line, message, .. } => {
            assert_eq!(*line, Some(2), "{err}");
            assert!(message.contains("syntax error"), "{message}");
            assert!(
                message.contains("message['content']"),
                "quotes the source: {message}"
            );
        }
        other => panic!("expected a template error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 2"), "{err}");

    let unclosed = ChatTemplate::from_jinja("{% if add_generation_prompt %}x", "", "").unwrap_err();
    assert!(unclosed.to_string().contains("syntax error"), "{unclosed}");
}

#[test]
fn raise_exception_aborts_rendering_with_its_message() {
    let source = "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}\
                  {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\
                  {% endif %}{{ m['content'] }}{% endfor %}";
    let t = ChatTemplate::from_jinja(source, "<s>", "</s>").unwrap();
    assert_eq!(t.name(), "jinja");
    assert_eq!(
        t.render(&[Message::user("a"), Message::assistant("b")], false)
            .unwrap(),
        "ab"
    );
    let err = t.render(&[Message::assistant("b")], false).unwrap_err();
    assert!(
        matches!(err, TokenizerError::Template { line: Some(1), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("Conversation roles must alternate"),
        "{err}"
    );
}

#[test]
fn templates_see_hf_variables_and_python_methods() {
    let source = "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}:{{ m.content.strip() }}]\
                  {% if m.content.strip().startswith('x') %}(x){% endif %}{% endfor %}\
                  {% if tools is none and documents is none %}|no tools{% endif %}\
                  {% if add_generation_prompt %}|gen{% endif %}{{ eos_token }}\n";
    let t = ChatTemplate::from_jinja(source, "<s>", "</s>").unwrap();
    assert_eq!(
        t.render(&[Message::user("  xyz  "), Message::assistant("ok")], true)
            .unwrap(),
        "<s>[USER:xyz](x)[ASSISTANT:ok]|no tools|gen</s>"
    );
    assert_eq!(t.stop_strings(), vec!["</s>".to_owned()]);
    // Messages serialise with Python's key order, as transformers' tojson shows them.
    let t = ChatTemplate::from_jinja("{{ messages | tojson }}", "", "").unwrap();
    assert_eq!(
        t.render(&[Message::user("héllo \"q\"")], false).unwrap(),
        r#"[{"role": "user", "content": "héllo \"q\""}]"#
    );
    // Llama 3.2 style date handling works.
    let t = ChatTemplate::from_jinja("{{ strftime_now('%Y') | length }}", "", "").unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "4");
}

#[test]
fn messages_round_trip_through_serde() {
    let m = Message::user("hello");
    assert_eq!(m, Message::new("user", "hello"));
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"role":"user","content":"hello"}"#);
    assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
    assert_eq!(Message::system("s").role, "system");
    assert_eq!(Message::assistant("a").role, "assistant");
}

#[test]
fn tokenizer_config_supplies_template_and_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let config = serde_json::json!({
        "bos_token": {"content": "<|endoftext|>", "special": true},
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": true,
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"}
        ]
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [2, 0]}"#,
    )
    .unwrap();
    let t = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    assert_eq!(t.bos_id(), Some(0));
    assert!(t.add_bos());
    assert_eq!(t.pad_id(), Some(0));
    assert_eq!(t.eos_ids(), &[2, 0]);
    let template = t.chat_template().unwrap();
    let text = template.render(&[Message::user("hi")], false).unwrap();
    assert_eq!(text, "<|endoftext|>hi");
    let mut expected = vec![0];
    expected.extend(common::hf().encode("hi").unwrap());
    assert_eq!(
        t.encode(&text).unwrap(),
        expected,
        "BOS written by the template is not doubled"
    );
    assert_eq!(
        t.encode("hi").unwrap(),
        expected,
        "BOS is added when missing"
    );

    // A template that does not compile leaves the tokenizer usable and says why.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": "{% if %}"}"#,
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("generation_config.json")).unwrap();
    let t = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(t.chat_template().is_none());
    assert!(t.chat_template_error().unwrap().contains("syntax error"));
    assert_eq!(t.eos_ids(), &[2], "EOS falls back to <|im_end|>");
}
