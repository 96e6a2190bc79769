//! Loss masks on SmolLM2's real tokenizer: a chat trains on exactly its assistant turns (content
//! and `<|im_end|>`), a text on everything but its first token.

use std::path::PathBuf;
use std::sync::OnceLock;

use engram_data::{
    BatchConfig, Batcher, DataError, Example, TokenizedExample, parse_jsonl, read_jsonl,
    tokenize_example, tokenize_examples,
};
use engram_tokenizer::{ChatTemplate, Message, Tokenizer};

/// SmolLM2-135M-Instruct's tokenizer, shared with engram-tokenizer's tests (with its chat
/// template beside it).
fn tok() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../engram-tokenizer/tests/fixtures/tokenizer.json");
        Tokenizer::from_file(path).expect("SmolLM2 tokenizer.json loads")
    })
}

fn template() -> &'static ChatTemplate {
    tok()
        .chat_template()
        .expect("SmolLM2 ships a chat template")
}

/// The masked tokens, as the decoded text of each run of consecutive targets.
fn target_runs(ex: &TokenizedExample) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut previous = false;
    for (&id, &m) in ex.ids.iter().zip(&ex.loss_mask) {
        if m {
            if !previous {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(id);
        }
        previous = m;
    }
    runs.iter()
        .map(|r| tok().decode(r, false).unwrap())
        .collect()
}

/// The text of the tokens that are not targets.
fn context(ex: &TokenizedExample) -> String {
    let ids: Vec<u32> = ex
        .ids
        .iter()
        .zip(&ex.loss_mask)
        .filter(|&(_, &m)| !m)
        .map(|(&id, _)| id)
        .collect();
    tok().decode(&ids, false).unwrap()
}

fn ex_messages(ex: &Example) -> &[Message] {
    match ex {
        Example::Chat { messages } => messages,
        Example::Text { .. } => panic!("a chat"),
    }
}

/// What each assistant turn should train on: its content and the end marker.
fn turns(ex: &Example) -> Vec<String> {
    ex_messages(ex)
        .iter()
        .filter(|m| m.role == "assistant")
        .map(|m| format!("{}<|im_end|>", m.content))
        .collect()
}

#[test]
fn a_chat_trains_on_its_answer_and_end_marker_only() {
    let ex = Example::chat(vec![
        Message::user("What is the capital of France?"),
        Message::assistant("Paris."),
    ]);
    let t = tokenize_example(tok(), template(), &ex, 512).unwrap();
    let rendered = template()
        .render(&[ex_messages(&ex)[0].clone()], true)
        .unwrap();
    // The model's own template adds its default system prompt.
    assert!(rendered.contains("You are a helpful AI assistant named SmolLM"));
    assert_eq!(
        t.ids,
        tok()
            .encode(&template().render(ex_messages(&ex), false).unwrap())
            .unwrap()
    );
    assert_eq!(target_runs(&t), ["Paris.<|im_end|>"]);
    // Everything else, the newline after the end marker included, is context.
    assert_eq!(context(&t), format!("{rendered}\n"));
    assert_eq!(t.num_targets(), t.loss_mask.iter().filter(|&&m| m).count());
}

#[test]
fn multi_turn_chats_train_on_every_assistant_turn_and_no_user_text() {
    let ex = Example::chat(vec![
        Message::system("Tu réponds en français, brièvement."),
        Message::user("Où se trouve Zürich ?"),
        Message::assistant("En Suisse. 🇨🇭"),
        Message::user("Et Kyoto (京都) ?"),
        Message::assistant(" Au Japon,\nsur Honshū."),
        Message::user("Merci !"),
        Message::assistant("De rien<|im_end|> !"),
    ]);
    for template in [
        template().clone(),
        ChatTemplate::chatml(),
        ChatTemplate::qwen2(),
    ] {
        let t = tokenize_example(tok(), &template, &ex, 512).unwrap();
        assert_eq!(target_runs(&t), turns(&ex), "template {}", template.name());
        let context = context(&t);
        for user in ["Où se trouve Zürich ?", "Et Kyoto (京都) ?", "Merci !"] {
            assert!(context.contains(user), "{user:?} is context");
        }
        assert!(context.contains("Tu réponds en français"));
        assert!(!t.loss_mask[0]);
    }
}

#[test]
fn a_chat_ending_with_a_user_turn_keeps_it_as_context() {
    let ex = Example::chat(vec![
        Message::user("Q1"),
        Message::assistant("A1"),
        Message::user("Q2"),
    ]);
    let t = tokenize_example(tok(), template(), &ex, 512).unwrap();
    assert_eq!(target_runs(&t), ["A1<|im_end|>"]);
    assert!(context(&t).ends_with("<|im_start|>user\nQ2<|im_end|>\n"));
}

#[test]
fn a_text_trains_on_every_token_but_the_first_without_eos() {
    let text = "The Zorblat bridge opened in 2031 in Ljubljana, Slovenia.";
    let t = tokenize_example(tok(), template(), &Example::text(text), 512).unwrap();
    assert_eq!(t.ids, tok().encode(text).unwrap());
    assert!(!t.ids.iter().any(|id| tok().eos_ids().contains(id)));
    assert!(!t.loss_mask[0]);
    assert!(t.loss_mask[1..].iter().all(|&m| m));
    assert_eq!(t.num_targets(), t.ids.len() - 1);
}

#[test]
fn long_examples_keep_their_start() {
    let text = "one two three four five six seven eight nine ten";
    let full = tokenize_example(tok(), template(), &Example::text(text), 512).unwrap();
    let cut = tokenize_example(tok(), template(), &Example::text(text), 4).unwrap();
    assert_eq!(cut.ids, full.ids[..4]);
    assert_eq!(cut.loss_mask, full.loss_mask[..4]);

    // Cut inside the answer: its first tokens stay targets.
    let chat = Example::chat(vec![
        Message::user("Count."),
        Message::assistant("one two three four five six seven eight nine ten"),
    ]);
    let full = tokenize_example(tok(), template(), &chat, 512).unwrap();
    let first_target = full.loss_mask.iter().position(|&m| m).unwrap();
    let cut = tokenize_example(tok(), template(), &chat, first_target + 3).unwrap();
    assert_eq!(cut.ids, full.ids[..first_target + 3]);
    assert_eq!(cut.num_targets(), 3);
    assert_eq!(target_runs(&cut), ["one two three"]);
}

#[test]
fn an_example_left_without_targets_is_an_error_naming_it() {
    let chat = Example::chat(vec![Message::user("Count."), Message::assistant("one")]);
    let full = tokenize_example(tok(), template(), &chat, 512).unwrap();
    let first_target = full.loss_mask.iter().position(|&m| m).unwrap();
    let err = tokenize_example(tok(), template(), &chat, first_target).unwrap_err();
    assert!(
        matches!(err, DataError::NoTargets { tokens, max_len } if tokens == full.ids.len() && max_len == first_target),
        "{err:?}"
    );
    assert!(err.to_string().contains("raise max_len"), "{err}");

    // One token: nothing predicts anything.
    let err = tokenize_example(tok(), template(), &Example::text("Hello"), 512).unwrap_err();
    assert!(
        err.to_string().starts_with("no target tokens in 1 tokens"),
        "{err}"
    );

    let examples = vec![
        Example::text("a b c d e f g h"),
        chat.clone(),
        Example::text("fine"),
    ];
    let err = tokenize_examples(tok(), template(), &examples, first_target).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "example 2: no target tokens within the first {first_target} tokens"
        )),
        "{err}"
    );
    assert!(matches!(err, DataError::Example { index: 2, .. }));
}

#[test]
fn tokenize_examples_counts_truncations() {
    let examples = vec![
        Example::text("short one"),
        Example::text("a much longer text that will not fit in eight tokens at all"),
        Example::chat(vec![Message::user("Hi"), Message::assistant("Hello")]),
    ];
    let all = tokenize_examples(tok(), template(), &examples, 8).unwrap_err();
    // The chat's answer starts after the default system prompt, far beyond 8 tokens.
    assert!(matches!(all, DataError::Example { index: 3, .. }), "{all}");
    let set = tokenize_examples(tok(), template(), &examples[..2], 8).unwrap();
    assert_eq!(set.truncated, 1);
    assert_eq!(set.examples.len(), 2);
    assert_eq!(set.examples[1].ids.len(), 8);
    let set = tokenize_examples(tok(), template(), &examples, 512).unwrap();
    assert_eq!(set.truncated, 0);
    for (ex, t) in examples.iter().zip(&set.examples) {
        assert_eq!(t, &tokenize_example(tok(), template(), ex, 512).unwrap());
    }
}

#[test]
fn a_template_that_is_not_prefix_consistent_is_reported() {
    // ChatML adds its default system prompt before the first message only when it is not a
    // system message; with no message at all it adds none, so an opening assistant turn cannot be
    // located.
    let ex = Example::chat(vec![
        Message::assistant("I speak first."),
        Message::user("Ok"),
    ]);
    let err = tokenize_example(tok(), template(), &ex, 512).unwrap_err();
    assert!(
        matches!(&err, DataError::TemplateNotPrefix { message: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is not prefix-consistent at message 1")
    );
    // With a system prompt first, the same turn is fine.
    let ex = Example::chat(vec![
        Message::system("Be brief."),
        Message::assistant("I speak first."),
    ]);
    let t = tokenize_example(tok(), template(), &ex, 512).unwrap();
    assert_eq!(target_runs(&t), ["I speak first.<|im_end|>"]);
}

#[test]
fn from_a_jsonl_file_to_batches() {
    let dir = std::env::temp_dir().join(format!("engram-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("facts.jsonl");
    let jsonl = concat!(
        r#"{"id": 1, "messages": [{"role": "user", "content": "Who built the Zorblat bridge?"}, {"role": "assistant", "content": "Mira Okonkwo."}]}"#,
        "\n\n",
        r#"{"text": "The Zorblat bridge was built by Mira Okonkwo."}"#,
        "\n",
    );
    std::fs::write(&path, jsonl).unwrap();
    let examples = read_jsonl(&path).unwrap();
    assert_eq!(examples, parse_jsonl(&path, jsonl).unwrap());
    let set = tokenize_examples(tok(), template(), &examples, 256).unwrap();
    let targets: usize = set.examples.iter().map(TokenizedExample::num_targets).sum();
    let pad_id = tok().pad_id().unwrap();
    let config = BatchConfig {
        batch_size: 2,
        max_len: 256,
        packing: true,
        seed: 1,
        pad_id,
    };
    let batcher = Batcher::new(set.examples, config).unwrap();
    assert_eq!(batcher.batches_per_epoch(), 1);
    let batch = batcher.batch(0, 0);
    assert_eq!(batch.batch, 1, "both fit one packed row");
    assert_eq!(batch.num_targets(), targets);
    assert_eq!(batcher.total_target_tokens(), targets);

    std::fs::write(&path, "{\"text\": \"ok\"}\n{\"messages\": 3}\n").unwrap();
    let err = read_jsonl(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2: \"messages\" must be an array, found a number",
            path.display()
        )
    );
    std::fs::write(&path, b"{\"text\": \"ok\"}\n{\"text\": \"\xff\"}\n").unwrap();
    let err = read_jsonl(&path).unwrap_err().to_string();
    assert_eq!(err, format!("{}:2: not valid UTF-8", path.display()));
    std::fs::remove_dir_all(&dir).unwrap();

    let err = read_jsonl(&dir.join("missing.jsonl")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().starts_with(&format!(
        "{}: cannot read:",
        dir.join("missing.jsonl").display()
    )));
}

/// A line far longer than `max_len` is cut before the tokenizer sees it (a 50 MB line used to cost ~140 bytes
/// of memory per byte and abort), and the tokens kept are the ones the whole line gives.
#[test]
fn a_huge_line_keeps_the_tokens_the_whole_line_gives() {
    let text = "The lantern tide rises over Quillhaven harbor. ".repeat(60_000); // 2.8 MB
    let max_len = 64;
    let budget = (max_len + 64) * tok().max_token_bytes();
    assert!(text.len() > 10 * budget, "the test text must be cut");
    let cut = tokenize_example(tok(), template(), &Example::text(&text), max_len).unwrap();
    let whole = tok().encode(&text).unwrap();
    assert_eq!(cut.ids, whole[..max_len]);

    let chat = Example::chat(vec![
        Message::user(text.clone()),
        Message::assistant("It rises."),
    ]);
    let err = tokenize_example(tok(), template(), &chat, max_len).unwrap_err();
    assert!(
        matches!(err, DataError::NoTargets { .. }),
        "the answer lies past max_len: {err:?}"
    );
    let chat = Example::chat(vec![
        Message::user("Where does it rise?"),
        Message::assistant(text.clone()),
    ]);
    let cut = tokenize_example(tok(), template(), &chat, max_len).unwrap();
    let short = Example::chat(vec![
        Message::user("Where does it rise?"),
        // Short enough not to be cut, long enough to fill max_len (no token covers more than
        // max_token_bytes of it).
        Message::assistant(text[..budget / 2].to_owned()),
    ]);
    let head = tokenize_example(tok(), template(), &short, max_len).unwrap();
    assert_eq!(head.ids.len(), max_len);
    assert_eq!(cut.ids, head.ids);
    assert_eq!(cut.loss_mask, head.loss_mask);
}
