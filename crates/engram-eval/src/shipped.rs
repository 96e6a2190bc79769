//! The datasets shipped in `datasets/`, embedded in the binary so `--dataset news` works from anywhere, and
//! the loader that accepts either such a name or a JSONL file (with `splits.json` beside it, if any).

use std::path::{Path, PathBuf};

use crate::{EvalError, Item, Splits};
use engram_inject::{parse_items, parse_splits, read_items, read_splits};

/// A dataset ready to evaluate: its items and, when it has them, its fixed splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The shipped name (`news`) or the file's path.
    pub name: String,
    /// The items, in file order.
    pub items: Vec<Item>,
    /// The fixed train/dev/test split (`splits.json`), if the dataset has one.
    pub splits: Option<Splits>,
}

impl Dataset {
    /// The ids of `split` (`train`, `dev`, `test`), or `None` for `all`. A dataset without splits has only
    /// `all`.
    pub fn split_ids(&self, split: &str) -> Result<Option<&[String]>, EvalError> {
        if split == "all" {
            return Ok(None);
        }
        let bad = |reason: String| EvalError::Option {
            name: "split".into(),
            value: split.into(),
            reason,
        };
        let splits = self.splits.as_ref().ok_or_else(|| {
            bad(format!(
                "{} has no splits.json beside it; use --split all",
                self.name
            ))
        })?;
        splits
            .get(split)
            .map(Some)
            .ok_or_else(|| bad("expected train, dev, test or all".into()))
    }
}

// `datasets` in this crate is a link to the repository's `datasets/` (where they are read and edited), so that
// the packaged crate carries the files: cargo packages what the link points to as plain files.
macro_rules! dataset_file {
    ($path:literal) => {
        (
            concat!("datasets/", $path),
            include_str!(concat!("../datasets/", $path)),
        )
    };
}

const NEWS: [(&str, &str); 2] = [
    dataset_file!("news/items.jsonl"),
    dataset_file!("news/splits.json"),
];

const TRIVIA: [(&str, &str); 2] = [
    dataset_file!("trivia/items.jsonl"),
    dataset_file!("trivia/splits.json"),
];

/// `datasets/general/`: a few thousand words of plain text written for the project.
pub const GENERAL: [(&str, &str); 8] = [
    dataset_file!("general/01-water-cycle.txt"),
    dataset_file!("general/02-bread.txt"),
    dataset_file!("general/03-printing-press.txt"),
    dataset_file!("general/04-heart.txt"),
    dataset_file!("general/05-volcanoes.txt"),
    dataset_file!("general/06-honey-bees.txt"),
    dataset_file!("general/07-seasons.txt"),
    dataset_file!("general/08-bicycle.txt"),
];

/// Names accepted by [`load_dataset`] besides file paths.
pub const SHIPPED: [&str; 3] = ["news", "relations", "trivia"];

fn embedded(name: &str, files: [(&str, &str); 2]) -> Result<Dataset, EvalError> {
    let [(items_path, items), (splits_path, splits)] = files;
    let items = parse_items(Path::new(items_path), items)?;
    let splits = parse_splits(Path::new(splits_path), splits, &items)?;
    Ok(Dataset {
        name: name.into(),
        items,
        splits: Some(splits),
    })
}

/// A shipped dataset by name, or a JSONL file of items (its `splits.json` is read when it exists beside it).
pub fn load_dataset(spec: &str) -> Result<Dataset, EvalError> {
    match spec {
        "news" => embedded("news", NEWS),
        "trivia" => trivia(),
        "relations" => {
            // Generated, not embedded: `datasets/relations/` holds the same items for reading (a test keeps
            // the two equal).
            let (items, splits) = crate::relations::generate_relations(
                &crate::relations::RelationsConfig::default(),
            )?;
            Ok(Dataset {
                name: "relations".into(),
                items,
                splits: Some(splits),
            })
        }
        _ => {
            let path = PathBuf::from(spec);
            if !path.exists() && !spec.contains(['/', '.']) {
                return Err(EvalError::Option {
                    name: "dataset".into(),
                    value: spec.into(),
                    reason: format!(
                        "no such file, and not a shipped dataset ({})",
                        SHIPPED.join(", ")
                    ),
                });
            }
            let items = read_items(&path)?;
            let splits_path = path.with_file_name("splits.json");
            let splits = if splits_path.is_file() {
                Some(read_splits(&splits_path, &items)?)
            } else {
                None
            };
            Ok(Dataset {
                name: path.display().to_string(),
                items,
                splits,
            })
        }
    }
}

/// Real-world closed-book questions the base model partly knows (locality, the curriculum).
pub fn trivia() -> Result<Dataset, EvalError> {
    embedded("trivia", TRIVIA)
}

/// The plain general texts of `datasets/general/` (perplexity drift, regularisation).
pub fn general_texts() -> Vec<String> {
    GENERAL.iter().map(|(_, t)| t.to_string()).collect()
}

/// The general texts SELF-PARAM's regulariser reads: the first half (texts 01-04). Perplexity (locality) is
/// measured on all of them, so it overlaps these; kept in one place so every caller agrees.
pub fn regulariser_texts() -> Vec<String> {
    let mut texts = general_texts();
    texts.truncate(texts.len() / 2);
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const STOP: &[&str] = &[
        "what", "which", "does", "have", "with", "that", "this", "from", "about", "many", "much",
        "your", "there", "their", "where", "when", "explain", "briefly", "write", "sentence",
        "give", "into", "word", "name", "called", "most", "used", "make", "made", "they", "them",
        "were",
    ];

    fn content_words(text: &str) -> BTreeSet<String> {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|w| w.to_ascii_lowercase())
            .filter(|w| w.len() >= 4 && !STOP.contains(&w.as_str()))
            .collect()
    }

    fn words(text: &str) -> Vec<String> {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| w.to_ascii_lowercase())
            .collect()
    }

    /// The locality guard rehearses the base model's answers to `datasets/rehearsal`; locality is measured on
    /// the trivia questions and the general texts. Nothing rehearsed may be something measured: no trivia
    /// item (of any split) is asked or answered by a rehearsal prompt, and no general text's topic appears.
    #[test]
    fn the_rehearsal_pool_is_disjoint_from_every_locality_measure() {
        let pool = engram_train::guard::shipped_prompts();
        let trivia = trivia().unwrap();
        assert_eq!(trivia.items.len(), 320, "all splits, not only the test one");
        for prompt in &pool {
            let prompt_words = words(prompt);
            let mine = content_words(prompt);
            for item in &trivia.items {
                for q in &item.questions {
                    let answer = words(&q.answer);
                    if q.answer.len() >= 4 {
                        assert!(
                            !prompt_words
                                .windows(answer.len())
                                .any(|w| w == answer.as_slice()),
                            "rehearsal prompt {prompt:?} names the answer of {}: {:?}",
                            item.id,
                            q.answer
                        );
                    }
                    let theirs = content_words(&format!("{} {}", q.question, item.context));
                    let shared: Vec<_> = mine.intersection(&theirs).collect();
                    assert!(
                        shared.len() < 3,
                        "rehearsal prompt {prompt:?} shares {shared:?} with {}",
                        item.id
                    );
                }
            }
            for (name, text) in GENERAL {
                assert!(!text.contains(prompt.as_str()), "{prompt:?} is in {name}");
            }
            // The general texts' topics, one file each.
            let lower = format!(" {} ", prompt_words.join(" "));
            for topic in [
                "water cycle",
                "bread",
                "printing",
                "press",
                "heart",
                "volcano",
                "volcanoes",
                "bee",
                "bees",
                "honey",
                "season",
                "seasons",
                "bicycle",
                "bicycles",
            ] {
                assert!(
                    !lower.contains(&format!(" {topic} ")),
                    "rehearsal prompt {prompt:?} is about a general text's topic ({topic})"
                );
            }
        }
    }
}
