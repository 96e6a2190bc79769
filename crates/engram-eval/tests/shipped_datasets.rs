//! The datasets shipped in `datasets/` load with the crate's own checks and have the promised shape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use engram_eval::{QuestionKind, read_items, read_splits};

fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

#[test]
fn news_has_sixty_items_over_five_domains_with_every_kind() {
    let dir = datasets().join("news");
    let items = read_items(&dir.join("items.jsonl")).unwrap();
    assert_eq!(items.len(), 60);
    let mut per_domain: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &items {
        *per_domain.entry(item.domain.as_str()).or_default() += 1;
        assert_eq!(item.questions.len(), 5, "{}", item.id);
        let kinds: BTreeSet<QuestionKind> = item.questions.iter().map(|q| q.kind).collect();
        assert_eq!(kinds.len(), 4, "{}: every kind of question", item.id);
        assert!(
            item.id.starts_with(&format!("news-{}-", item.domain)),
            "{}",
            item.id
        );
    }
    assert_eq!(
        per_domain.into_iter().collect::<Vec<_>>(),
        vec![
            ("coding", 12),
            ("discoveries", 12),
            ("events", 12),
            ("leaderboards", 12),
            ("math", 12)
        ]
    );
    let splits = read_splits(&dir.join("splits.json"), &items).unwrap();
    assert_eq!(
        (splits.train.len(), splits.dev.len(), splits.test.len()),
        (30, 10, 20)
    );
}

#[test]
fn trivia_has_320_closed_book_questions_in_fixed_splits() {
    let t = engram_eval::shipped::trivia().unwrap();
    assert_eq!(t.items.len(), 320);
    let mut per_domain: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &t.items {
        *per_domain.entry(item.domain.as_str()).or_default() += 1;
        assert_eq!(item.questions.len(), 1, "{}", item.id);
        let q = &item.questions[0];
        assert_eq!(q.kind, QuestionKind::Direct);
        // The context states the fact: a curriculum can train on it.
        assert!(item.context.contains(&q.answer), "{}", item.id);
    }
    assert_eq!(per_domain.len(), 8);
    assert!(per_domain.values().all(|&n| n == 40));
    let s = t.splits.as_ref().unwrap();
    assert_eq!((s.train.len(), s.dev.len(), s.test.len()), (160, 64, 96));
    // The embedded copy is the file in datasets/.
    let dir = datasets().join("trivia");
    assert_eq!(read_items(&dir.join("items.jsonl")).unwrap(), t.items);
}

#[test]
fn general_text_is_a_few_thousand_words_free_of_the_news_names() {
    let texts = engram_eval::shipped::general_texts();
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    assert!(words >= 4000, "{words} words");
    let news = read_items(&datasets().join("news/items.jsonl")).unwrap();
    // A few of the invented names: general text must not teach them.
    for name in ["Vellmora", "Renkova", "Quenby", "brambleweb", "Ardowen"] {
        assert!(
            news.iter().any(|i| i.context.contains(name)),
            "{name} is a news name"
        );
        assert!(texts.iter().all(|t| !t.contains(name)), "{name}");
    }
}

#[test]
fn datasets_load_by_name_or_path_and_unknown_names_are_refused() {
    let news = engram_eval::shipped::load_dataset("news").unwrap();
    assert_eq!(news.split_ids("test").unwrap().unwrap().len(), 20);
    assert!(news.split_ids("all").unwrap().is_none());
    let e = news.split_ids("validation").unwrap_err().to_string();
    assert!(e.contains("validation"), "{e}");
    let by_path = datasets().join("news/items.jsonl");
    let d = engram_eval::shipped::load_dataset(by_path.to_str().unwrap()).unwrap();
    assert_eq!(d.items, news.items);
    assert_eq!(d.splits, news.splits);
    let e = engram_eval::shipped::load_dataset("nwes")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nwes") && e.contains("news"), "{e}");
}

/// `datasets/relations/` is the generator's output at its default seed, written for reading. Regenerate with
/// `ENGRAM_WRITE_DATASETS=1 cargo test -p engram-eval --test shipped_datasets`.
#[test]
fn relations_files_are_the_generators_output() {
    use engram_eval::relations::{RelationsConfig, generate_relations};
    let (items, splits) = generate_relations(&RelationsConfig::default()).unwrap();
    let mut jsonl = String::new();
    for i in &items {
        jsonl.push_str(&serde_json::to_string(i).unwrap());
        jsonl.push('\n');
    }
    let splits_json = serde_json::to_string_pretty(&splits).unwrap() + "\n";
    let dir = datasets().join("relations");
    if std::env::var_os("ENGRAM_WRITE_DATASETS").is_some() {
        std::fs::write(dir.join("items.jsonl"), &jsonl).unwrap();
        std::fs::write(dir.join("splits.json"), &splits_json).unwrap();
    }
    let on_disk = read_items(&dir.join("items.jsonl")).unwrap();
    assert_eq!(
        on_disk, items,
        "datasets/relations/items.jsonl is stale: regenerate it (see above)"
    );
    assert_eq!(
        read_splits(&dir.join("splits.json"), &items).unwrap(),
        splits
    );
    assert_eq!(items.len(), 48);
    assert_eq!(
        (splits.train.len(), splits.dev.len(), splits.test.len()),
        (24, 8, 16)
    );
    let loaded = engram_eval::shipped::load_dataset("relations").unwrap();
    assert_eq!(loaded.items, items);
}
