//! Every method by name — the one place method names are listed ([`METHODS`]) — and the [`Registry`] that
//! builds them from one settings value.
//!
//! A method's [`Recipe`] says which family makes it; a family ([`Family`]) is implemented by the crate that
//! owns it (`engram-replay`, `engram-distill`, `engram-curriculum`) and holds that family's own settings.
//! This crate builds the baselines itself. A registry knows the methods of the families added to it.

use std::sync::Arc;

use engram_train::FineTuneSettings;

use crate::InjectError;
use crate::method::{FineTune, Method, Prompted};

/// Which training examples a plain fine-tuning baseline builds from an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Examples {
    /// The raw context as a document.
    Naive,
    /// Direct questions with the context as a prefix.
    Prefix,
    /// Direct questions alone.
    Qa,
}

/// A replay protocol: how the model rewrites a text into its own training data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Paraphrases of the text.
    Paraphrase,
    /// Implications drawn from the text.
    Implication,
    /// Questions from the text and the model, answered with the text in view.
    SelfQa,
    /// Paraphrase, implication and self-QA together.
    Mix,
    /// Sentence rephrasings, reversals and links to other items (augmented fine-tuning).
    ReasoningTrace,
}

/// Which stages a curriculum runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stages {
    /// Gradual Learning's two stages.
    TwoStage,
    /// One stage on every fact, at the two stages' compute.
    AllFacts,
    /// One stage on `MaybeKnown` facts, at the two stages' compute.
    MaybeKnown,
}

/// How a method is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// No training: the prompt with (`icl`) or without (`base`) the context.
    Prompt {
        /// Whether the context is in the prompt.
        context: bool,
    },
    /// Supervised fine-tuning on examples made by rule.
    FineTune(Examples),
    /// A replay protocol, then supervised fine-tuning on its records.
    Replay {
        /// The protocol.
        protocol: Protocol,
        /// Put the context before each question (the contextual-shadowing control).
        context_prefix: bool,
    },
    /// SELF-PARAM's KL distillation.
    SelfParam,
    /// On-policy context distillation: the student's own answers, scored by the teacher reading the context.
    SelfDistill,
    /// A knowledge-category curriculum.
    Curriculum(Stages),
    /// A method of your own, used directly (the registry builds only [`METHODS`]).
    Custom,
}

/// The crate that makes a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyKind {
    /// This crate (the baselines).
    Baseline,
    /// `engram-replay`.
    Replay,
    /// `engram-distill`.
    Distill,
    /// `engram-curriculum`.
    Curriculum,
    /// Outside engram: no registry builds it.
    Custom,
}

impl Recipe {
    /// Whether the method writes into weights (every recipe but the prompt).
    pub fn trains(self) -> bool {
        !matches!(self, Recipe::Prompt { .. })
    }

    /// The family that builds it.
    pub fn family(self) -> FamilyKind {
        match self {
            Recipe::Prompt { .. } | Recipe::FineTune(_) => FamilyKind::Baseline,
            Recipe::Replay { .. } => FamilyKind::Replay,
            Recipe::SelfParam | Recipe::SelfDistill => FamilyKind::Distill,
            Recipe::Curriculum(_) => FamilyKind::Curriculum,
            Recipe::Custom => FamilyKind::Custom,
        }
    }
}

/// A method's name, its line for `--help` and reports, and how it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// The name used on the command line and in reports.
    pub name: &'static str,
    /// One line for `--help` and the report.
    pub description: &'static str,
    /// How it is made.
    pub recipe: Recipe,
}

const fn info(name: &'static str, description: &'static str, recipe: Recipe) -> MethodInfo {
    MethodInfo {
        name,
        description,
        recipe,
    }
}

const fn replay(protocol: Protocol, context_prefix: bool) -> Recipe {
    Recipe::Replay {
        protocol,
        context_prefix,
    }
}

/// Every method engram knows, in the order reports list them.
pub const METHODS: [MethodInfo; 16] = [
    info(
        "base",
        "the base model, no context",
        Recipe::Prompt { context: false },
    ),
    info(
        "icl",
        "the base model with the item's context in the prompt (upper bound)",
        Recipe::Prompt { context: true },
    ),
    info(
        "naive-ft",
        "fine-tune on the raw context text",
        Recipe::FineTune(Examples::Naive),
    ),
    info(
        "prefix-ft",
        "fine-tune on direct question/answer turns with the context as a prefix (the contextual-shadowing control)",
        Recipe::FineTune(Examples::Prefix),
    ),
    info(
        "qa-ft",
        "fine-tune on direct question/answer turns without the context",
        Recipe::FineTune(Examples::Qa),
    ),
    info(
        "sys2-paraphrase",
        "Sys2-FT: fine-tune on the model's own paraphrases of the context",
        replay(Protocol::Paraphrase, false),
    ),
    info(
        "sys2-implication",
        "Sys2-FT: fine-tune on implications the model draws from the context",
        replay(Protocol::Implication, false),
    ),
    info(
        "sys2-self-qa",
        "Sys2-FT: questions from the text and the model, answered by the model with the context in view",
        replay(Protocol::SelfQa, false),
    ),
    info(
        "sys2-self-qa-prefix",
        "sys2-self-qa's data with the context as a prefix of each question (contextual shadowing)",
        replay(Protocol::SelfQa, true),
    ),
    info(
        "sys2-mix",
        "Sys2-FT: paraphrases, implications and self-QA together",
        replay(Protocol::Mix, false),
    ),
    info(
        "aug-ft",
        "augmented fine-tuning (Lampinen et al.): the context plus sentence rephrasings, reversals and links to other items",
        replay(Protocol::ReasoningTrace, false),
    ),
    info(
        "self-param",
        "SELF-PARAM: KL distillation of the base model reading the context into an adapter reading QA, continuations and regulariser text without it",
        Recipe::SelfParam,
    ),
    info(
        "self-distill",
        "on-policy self-distillation (SDFT): the adapter answers the item's questions itself and learns the base model's distribution with the context in view on its own tokens; stops once it answers its training questions",
        Recipe::SelfDistill,
    ),
    info(
        "gradual",
        "Gradual Learning: stage 1 on MaybeKnown facts, re-probe, stage 2 on facts that moved up plus HighlyKnown replay",
        Recipe::Curriculum(Stages::TwoStage),
    ),
    info(
        "gradual-all",
        "one stage on every fact, the two-stage schedule's compute (baseline)",
        Recipe::Curriculum(Stages::AllFacts),
    ),
    info(
        "gradual-maybe",
        "one stage on MaybeKnown facts, the two-stage schedule's compute (baseline)",
        Recipe::Curriculum(Stages::MaybeKnown),
    ),
];

/// The catalogue entry called `name`.
pub fn method_info(name: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|m| m.name == name)
}

/// A crate's methods: builds those of its [`FamilyKind`] with its own settings.
pub trait Family: Send + Sync {
    /// Which methods it builds.
    fn kind(&self) -> FamilyKind;
    /// Builds `info`'s method with the fine-tuning settings `finetune`; `registry` builds other methods (a
    /// curriculum's stages).
    fn build(
        &self,
        info: &'static MethodInfo,
        finetune: &FineTuneSettings,
        registry: &Registry,
    ) -> Result<Box<dyn Method>, InjectError>;
}

/// Builds methods by name from one settings value: the fine-tuning settings every trained method shares,
/// and the families added (each with its own settings). Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    finetune: FineTuneSettings,
    families: Vec<Arc<dyn Family>>,
    /// Why a family is missing, for the error that names one of its methods.
    missing: Vec<(FamilyKind, String)>,
}

impl Registry {
    /// The baselines (`base`, `icl`, `naive-ft`, `prefix-ft`, `qa-ft`), fine-tuning with `finetune`.
    pub fn new(finetune: FineTuneSettings) -> Self {
        Self {
            finetune,
            families: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Says why the family `kind` is not added: asking for one of its methods is an error giving `reason`.
    pub fn without(mut self, kind: FamilyKind, reason: impl Into<String>) -> Self {
        self.missing.push((kind, reason.into()));
        self
    }

    /// Adds a family's methods (one of the same kind is replaced).
    pub fn with(mut self, family: impl Family + 'static) -> Self {
        self.families.retain(|f| f.kind() != family.kind());
        self.families.push(Arc::new(family));
        self
    }

    /// The fine-tuning settings.
    pub fn finetune(&self) -> &FineTuneSettings {
        &self.finetune
    }

    /// The same registry fine-tuning with `finetune` (a curriculum's stage gets its own step budget).
    pub fn with_finetune(&self, finetune: FineTuneSettings) -> Self {
        Self {
            finetune,
            families: self.families.clone(),
            missing: self.missing.clone(),
        }
    }

    fn family(&self, kind: FamilyKind) -> Option<&dyn Family> {
        self.families
            .iter()
            .find(|f| f.kind() == kind)
            .map(|f| f.as_ref())
    }

    fn available(&self, info: &MethodInfo) -> bool {
        let kind = info.recipe.family();
        kind == FamilyKind::Baseline || self.family(kind).is_some()
    }

    /// The names of the methods this registry builds, in catalogue order.
    pub fn names(&self) -> Vec<&'static str> {
        METHODS
            .iter()
            .filter(|m| self.available(m))
            .map(|m| m.name)
            .collect()
    }

    /// The names of the methods that write into weights.
    pub fn training_names(&self) -> Vec<&'static str> {
        METHODS
            .iter()
            .filter(|m| self.available(m) && m.recipe.trains())
            .map(|m| m.name)
            .collect()
    }

    /// Builds the method `name`; an unknown name is an error listing the known ones.
    pub fn build(&self, name: &str) -> Result<Box<dyn Method>, InjectError> {
        let unknown = || {
            InjectError::option(
                "method",
                name,
                format!("unknown method; known: {}", self.names().join(", ")),
            )
        };
        let info = method_info(name).ok_or_else(unknown)?;
        if !self.available(info) {
            let kind = info.recipe.family();
            return Err(match self.missing.iter().find(|(k, _)| *k == kind) {
                Some((_, reason)) => InjectError::option("method", name, reason.clone()),
                None => unknown(),
            });
        }
        let s = &self.finetune;
        Ok(match info.recipe {
            Recipe::Prompt { context } => Box::new(if context {
                Prompted::ICL
            } else {
                Prompted::BASE
            }),
            Recipe::FineTune(Examples::Naive) => Box::new(FineTune::naive(s.clone())),
            Recipe::FineTune(Examples::Prefix) => Box::new(FineTune::prefix(s.clone())),
            Recipe::FineTune(Examples::Qa) => Box::new(FineTune::qa(s.clone())),
            other => {
                let family = self.family(other.family()).expect("checked available");
                family.build(info, s, self)?
            }
        })
    }

    /// The methods named in `names`, in that order.
    pub fn select(&self, names: &[String]) -> Result<Vec<Box<dyn Method>>, InjectError> {
        names.iter().map(|n| self.build(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_recipe_is_listed_once() {
        let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHODS.len(), "a name is listed twice");
        let mut recipes: Vec<String> = METHODS.iter().map(|m| format!("{:?}", m.recipe)).collect();
        recipes.sort();
        recipes.dedup();
        assert_eq!(recipes.len(), METHODS.len(), "two names for one recipe");
    }

    #[test]
    fn registry_selects_by_name_and_names_the_unknown() {
        let r = Registry::new(FineTuneSettings::default());
        assert_eq!(r.names(), ["base", "icl", "naive-ft", "prefix-ft", "qa-ft"]);
        let picked = r.select(&["icl".into(), "base".into()]).unwrap();
        assert_eq!(picked[0].name(), "icl");
        assert!(!picked[1].trains());
        let err = r.select(&["sys2-ft".into()]).err().unwrap().to_string();
        assert!(err.contains("sys2-ft") && err.contains("naive-ft"), "{err}");
        // A family's methods are unknown until the family is added.
        let err = r.build("sys2-self-qa").err().unwrap().to_string();
        assert!(err.contains("unknown method"), "{err}");
        let r = r.without(FamilyKind::Replay, "needs a generator");
        let err = r.build("sys2-self-qa").err().unwrap().to_string();
        assert!(
            err.contains("sys2-self-qa") && err.contains("needs a generator"),
            "{err}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let s = FineTuneSettings::default().with_length(engram_train::Length::Epochs(0));
        assert!(s.validate().unwrap_err().to_string().contains("epochs"));
        let mut s = FineTuneSettings::default();
        s.train.lr = f64::NAN;
        assert!(s.validate().unwrap_err().to_string().contains("lr"));
    }
}
