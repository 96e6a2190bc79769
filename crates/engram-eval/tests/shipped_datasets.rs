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
