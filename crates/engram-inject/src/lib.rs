//! # engram-inject
//!
//! The seam every knowledge-injection method plugs into, below the methods and the evaluation harness:
//!
//! - **Knowledge** ([`item`]): an [`Item`] is one piece of new knowledge (`context`) with questions of four
//!   [`QuestionKind`]s (direct, paraphrase, reversal, implication), read from JSONL with errors naming file,
//!   line and field; [`Splits`] by item id.
//! - **The prompt convention** ([`prompt`]): one user turn holding the question, after the context when it is
//!   in the prompt; greedy answers cut at the first line. Training, probing and evaluation share it.
//! - **The method seam** ([`method`]): a [`Method`] turns items into a way of prompting (`base`, `icl`) or a
//!   LoRA adapter, inside an [`InjectEnv`]; it returns [`InjectError`]. The fine-tuning baselines
//!   (`naive-ft`, `prefix-ft`, `qa-ft`) live here, on `engram-train`'s one supervised pipeline.
//! - **The registry** ([`registry`]): [`METHODS`] lists every method's name — the only such list — and a
//!   [`Registry`] builds them from one settings value; the method crates add their [`Family`].
//! - **Answers** ([`answer`]): how an answer string is matched against a reference (normalisation, exact
//!   match, contains, token F1), and bootstrap intervals: what methods use to check themselves (a curriculum's
//!   probe) and the evaluation harness reports.
//!
//! Methods never need the evaluation harness: `engram-replay`, `engram-distill` and `engram-curriculum`
//! depend on this crate, and `engram-eval` runs whatever [`Method`]s it is given.
#![warn(missing_docs)]

pub mod answer;
mod error;
pub mod item;
pub mod method;
pub mod prompt;
pub mod registry;

pub use answer::{
    Estimate, bootstrap_mean, contains_answer, echoes_question, exact_match, gap_recovery,
    normalize_answer, token_f1,
};
pub use engram_train::{Batching, FineTuneSettings, Guard};
pub use error::InjectError;
pub use item::{
    Item, Question, QuestionKind, Splits, parse_items, parse_splits, read_items, read_splits,
};
pub use method::{FineTune, InjectEnv, Injection, Method, Prompted, fine_tune};
pub use prompt::{answer_config, chat_prompt, user_turn};
pub use registry::{
    Examples, Family, FamilyKind, METHODS, MethodInfo, Protocol, Recipe, Registry, Stages,
    method_info,
};
