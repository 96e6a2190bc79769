//! The seam every knowledge-injection method plugs into, and the baselines each is compared with.
//!
//! A [`Method`] turns knowledge items into either a way of prompting (`base`: nothing; `icl`: the context in
//! the prompt) or a LoRA adapter (PEFT files) on the frozen base model. A [`Registry`](crate::Registry) builds
//! methods by name; the method crates (replay protocols, SELF-PARAM, the curricula) add their families there.
//!
//! The fine-tuning baselines share one runner, [`FineTune`], and differ only in the training examples they
//! build from an item: `naive-ft` trains on the raw context text, `prefix-ft` on question/answer turns with the
//! context as a prefix of the question (the contextual-shadowing control: the model can copy the answer from
//! the prefix, so the weights need not learn it), `qa-ft` on the same turns without the prefix.

use std::path::{Path, PathBuf};

use engram_data::Example;
use engram_model::LoadedModel;
use engram_tokenizer::Message;
use engram_train::{FineTuneSettings, StepMetrics};
use serde::{Deserialize, Serialize};

use crate::prompt::user_turn;
use crate::registry::{MethodInfo, method_info};
use crate::{InjectError, Item, QuestionKind};

/// The catalogue entry of a name this crate knows is there (checked by the registry's tests).
fn catalogued(name: &str) -> &'static MethodInfo {
    method_info(name).expect("a baseline of METHODS")
}

/// How the knowledge reaches the model when it is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    /// Nothing is written into the weights; `context` says whether the item's context is in the prompt.
    Prompt {
        /// Whether the item's context is put in the prompt (`icl`) or not (`base`).
        context: bool,
    },
    /// A PEFT adapter folder to load on the base model (questions are asked without the context).
    Adapter(PathBuf),
}

/// What a method may use while injecting.
pub struct InjectEnv<'a> {
    /// The base model, with no adapter attached; a method must leave it so.
    pub model: &'a mut LoadedModel,
    /// Called after every training step.
    pub on_step: &'a mut dyn FnMut(&StepMetrics),
}

/// A way of giving the model new knowledge.
///
/// Methods are built by name from one settings value in a [`Registry`](crate::Registry); the harness of
/// `engram-eval` and `engram inject` see only this trait.
pub trait Method: Send + Sync {
    /// Its entry in [`METHODS`](crate::METHODS) (a method of your own: a `MethodInfo` with
    /// [`Recipe::Custom`](crate::Recipe::Custom)): the name and description come from there, so they are listed in one place.
    fn info(&self) -> &MethodInfo;
    /// The name used on the command line and in reports (`naive-ft`).
    fn name(&self) -> &str {
        self.info().name
    }
    /// One line for `--help` and the report.
    fn description(&self) -> &str {
        self.info().description
    }
    /// Whether it writes into weights. Methods that do not are evaluated once per run, whatever the mode.
    fn trains(&self) -> bool {
        self.info().recipe.trains()
    }
    /// Writes the knowledge of `items` into an adapter in the folder `out` — continuing from the adapter in
    /// `previous` when given (sequential mode) — or says how the prompt carries it. A method that finds a
    /// finished adapter in `out` may return it at once (an interrupted run resumes); one whose training was
    /// cut short resumes from its checkpoint there.
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, InjectError>;

    /// Whether `out` holds a finished adapter (an interrupted run resumes around it).
    fn finished(&self, out: &Path) -> bool {
        out.join(engram_lora::CONFIG_FILE).is_file()
    }

    /// The settings this method runs with, as JSON: run manifests record them, and a resumed run must match.
    fn settings_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// A Markdown note on what an injection into `out` made and cost (the replay's yield, the distillation
    /// targets, a curriculum's stages), read from the files the method wrote there; `None` when it has
    /// nothing to add.
    fn report(&self, _out: &Path) -> Result<Option<String>, InjectError> {
        Ok(None)
    }

    /// [`Method::report`] and what the locality guard added to the run (`guard.json`, written by the shared
    /// training path whatever the method): what the CLI prints and the evaluation's report shows.
    fn notes(&self, out: &Path) -> Result<Option<String>, InjectError> {
        let guard = engram_train::GuardReport::read(out).map(|g| g.summary());
        Ok(match (self.report(out)?, guard) {
            (Some(r), Some(g)) => Some(format!("{}\n{g}", r.trim_end())),
            (r, g) => r.or(g),
        })
    }
}

/// A condition that writes nothing into the weights: `base` (the floor every method is measured from) or
/// `icl`, the context in the prompt (the upper bound a method that writes into weights aims at).
pub struct Prompted {
    context: bool,
}

impl Prompted {
    /// `base`: the model as it is, no context.
    pub const BASE: Prompted = Prompted { context: false };
    /// `icl`: the item's context in the prompt.
    pub const ICL: Prompted = Prompted { context: true };
}

impl Method for Prompted {
    fn info(&self) -> &MethodInfo {
        catalogued(if self.context { "icl" } else { "base" })
    }
    fn inject(
        &self,
        _: &mut InjectEnv<'_>,
        _: &[Item],
        _: Option<&Path>,
        _: &Path,
    ) -> Result<Injection, InjectError> {
        Ok(Injection::Prompt {
            context: self.context,
        })
    }
}

/// Builds one item's training examples.
pub type ExampleBuilder = fn(&Item) -> Vec<Example>;

/// Supervised fine-tuning of a LoRA adapter on examples built from each item.
pub struct FineTune {
    /// The method's entry (`naive-ft`, `prefix-ft`, `qa-ft`, ...).
    pub info: &'static MethodInfo,
    /// Turns each item into training examples.
    pub build: ExampleBuilder,
    /// Training settings.
    pub settings: FineTuneSettings,
}

impl FineTune {
    /// `naive-ft`: the raw context as a plain-text document.
    pub fn naive(settings: FineTuneSettings) -> Self {
        Self {
            info: catalogued("naive-ft"),
            build: naive_examples,
            settings,
        }
    }

    /// `prefix-ft`: the item's direct questions as chat turns, the context before each question.
    pub fn prefix(settings: FineTuneSettings) -> Self {
        Self {
            info: catalogued("prefix-ft"),
            build: prefix_examples,
            settings,
        }
    }

    /// `qa-ft`: the item's direct questions as chat turns, without the context.
    pub fn qa(settings: FineTuneSettings) -> Self {
        Self {
            info: catalogued("qa-ft"),
            build: qa_examples,
            settings,
        }
    }
}

/// The raw context.
pub fn naive_examples(item: &Item) -> Vec<Example> {
    vec![Example::text(item.context.clone())]
}

fn direct_turns(item: &Item, with_context: bool) -> Vec<Example> {
    item.questions
        .iter()
        .filter(|q| q.kind == QuestionKind::Direct)
        .map(|q| {
            let ctx = with_context.then_some(item.context.as_str());
            Example::chat(vec![
                Message::user(user_turn(ctx, &q.question)),
                Message::assistant(q.answer.clone()),
            ])
        })
        .collect()
}

/// Direct questions and answers with the context before each question.
pub fn prefix_examples(item: &Item) -> Vec<Example> {
    direct_turns(item, true)
}

/// Direct questions and answers alone.
pub fn qa_examples(item: &Item) -> Vec<Example> {
    direct_turns(item, false)
}

impl Method for FineTune {
    fn info(&self) -> &MethodInfo {
        self.info
    }
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, InjectError> {
        if self.finished(out) {
            return Ok(Injection::Adapter(out.to_path_buf()));
        }
        let examples: Vec<Example> = items.iter().flat_map(|i| (self.build)(i)).collect();
        fine_tune(env, &examples, &self.settings, previous, out)
    }
    fn settings_json(&self) -> serde_json::Value {
        self.settings.to_json()
    }
}

/// Fine-tunes an adapter on `examples` into `out` through the one supervised pipeline
/// ([`engram_train::fine_tune`]), continuing `previous` when given. Every method that ends in supervised
/// fine-tuning ends here.
pub fn fine_tune(
    env: &mut InjectEnv<'_>,
    examples: &[Example],
    settings: &FineTuneSettings,
    previous: Option<&Path>,
    out: &Path,
) -> Result<Injection, InjectError> {
    let dir = engram_train::fine_tune(env.model, examples, settings, previous, out, env.on_step)?;
    Ok(Injection::Adapter(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Question;

    fn item() -> Item {
        let q = |kind, question: &str, answer: &str| Question {
            kind,
            question: question.into(),
            answer: answer.into(),
            options: vec![answer.into(), "x".into(), "y".into(), "z".into()],
        };
        Item {
            id: "t-1".into(),
            domain: "d".into(),
            context: "Glon live in caves.".into(),
            questions: vec![
                q(QuestionKind::Direct, "Where do glon live?", "caves"),
                q(QuestionKind::Reversal, "What lives in caves?", "glon"),
            ],
        }
    }

    #[test]
    fn baseline_examples() {
        let i = item();
        assert_eq!(
            naive_examples(&i),
            vec![Example::text("Glon live in caves.")]
        );
        assert_eq!(
            prefix_examples(&i),
            vec![Example::chat(vec![
                Message::user("Glon live in caves.\n\nWhere do glon live?"),
                Message::assistant("caves"),
            ])],
            "direct questions only, context first"
        );
        assert_eq!(
            qa_examples(&i),
            vec![Example::chat(vec![
                Message::user("Where do glon live?"),
                Message::assistant("caves"),
            ])]
        );
    }
}
