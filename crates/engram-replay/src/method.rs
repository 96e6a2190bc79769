//! Replay protocols as injection [`Method`]s: replay each item with the base model as the generator, then
//! fine-tune a LoRA adapter on the records. [`Replays`] is the family the registry builds them from
//! (`sys2-paraphrase`, `sys2-implication`, `sys2-self-qa`, `sys2-self-qa-prefix`, `sys2-mix`, `aug-ft`: the
//! names and recipes are listed in `engram_inject::METHODS`).

use std::path::Path;
use std::time::Instant;

use engram_inject::{
    Family, FamilyKind, FineTuneSettings, InjectEnv, InjectError, Injection, Item, Method,
    MethodInfo, Protocol, Recipe, Registry, fine_tune,
};
use engram_model::LoadedModel;
use engram_model::formats::atomic::write_file_atomically;
use serde::{Deserialize, Serialize};

use crate::generator::{Cached, GenerationCache};
use crate::protocol::{Implication, Mix, Paraphrase, ReasoningTrace, ReplayProtocol, SelfQa};
use crate::record::{Format, Record, Source, Yield, read_records, records_jsonl, total_yields};
use crate::{Generator, ModelGenerator, ReplayError};

/// The records of an injection, beside its adapter.
pub const REPLAY_FILE: &str = "replay.jsonl";
/// What the replay kept and cost ([`ReplayReport`]), written once the records are complete.
pub const REPORT_FILE: &str = "replay.json";

/// The yield and compute of replaying a set of sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// The generator's name, as in provenance.
    pub generator: String,
    /// Sources replayed.
    pub sources: usize,
    /// Records kept, over every protocol.
    pub records: usize,
    /// Per protocol, summed over the sources.
    pub yields: Vec<Yield>,
    /// Wall time of the generation.
    pub seconds: f64,
}

impl ReplayReport {
    /// The yield per protocol and the compute, as a plain-text table (what `engram replay` prints).
    pub fn table(&self) -> String {
        let mut t = format!(
            "{:<18} {:>9} {:>6} {:>7} {:>9} {:>9}  dropped\n",
            "protocol", "generated", "kept", "yield", "rule-made", "tokens"
        );
        for y in &self.yields {
            let dropped: Vec<String> = y.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
            t.push_str(&format!(
                "{:<18} {:>9} {:>6} {:>6.0}% {:>9} {:>9}  {}\n",
                y.protocol,
                y.generated,
                y.kept,
                100.0 * y.rate(),
                y.rule_made,
                y.tokens_generated,
                dropped.join(", ")
            ));
        }
        t.push_str(&format!(
            "generator {}: {} sources in {:.0} s\n",
            self.generator, self.sources, self.seconds
        ));
        t
    }
}

/// Replays every source with `protocol`; `on_source(done, total)` after each.
pub fn replay_sources(
    protocol: &dyn ReplayProtocol,
    generator: &mut dyn Generator,
    format: &Format,
    sources: &[Source],
    others: &[Source],
    on_source: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Record>, ReplayReport), ReplayError> {
    let start = Instant::now();
    let mut records = Vec::new();
    let mut yields = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let r = protocol.replay(s, others, generator, format)?;
        records.extend(r.records);
        yields.extend(r.yields);
        on_source(i + 1, sources.len());
    }
    let report = ReplayReport {
        generator: generator.name(),
        sources: sources.len(),
        records: records.len(),
        yields: total_yields(&yields),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((records, report))
}

/// Writes records and their report into `dir` (atomically; the report last, as the mark of completion).
pub fn write_replay(
    dir: &Path,
    records: &[Record],
    report: &ReplayReport,
) -> Result<(), ReplayError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplayError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let data = dir.join(REPLAY_FILE);
    write_file_atomically(&data, records_jsonl(records).as_bytes()).map_err(io(&data))?;
    let rep = dir.join(REPORT_FILE);
    let json = serde_json::to_string_pretty(report).expect("report serializes") + "\n";
    write_file_atomically(&rep, json.as_bytes()).map_err(io(&rep))?;
    Ok(())
}

/// Reads a finished replay written by [`write_replay`], or `None` when `dir` holds none.
pub fn read_replay(dir: &Path) -> Result<Option<(Vec<Record>, ReplayReport)>, ReplayError> {
    let rep = dir.join(REPORT_FILE);
    if !rep.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&rep).map_err(|source| ReplayError::Io {
        path: rep.clone(),
        source,
    })?;
    let report: ReplayReport = serde_json::from_str(&text).map_err(|e| ReplayError::Parse {
        path: rep.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    Ok(Some((read_records(&dir.join(REPLAY_FILE))?, report)))
}

/// The records of `protocol` for `items`, read back from `out` when a finished replay is there, otherwise
/// generated by the base `model` (through `cache`) and written to `out` ([`write_replay`]). Every method
/// that trains on replayed data starts here, so an interrupted run never generates twice.
pub fn replay_once(
    model: &LoadedModel,
    protocol: &dyn ReplayProtocol,
    format: &Format,
    items: &[Item],
    dataset: &[Source],
    cache: &GenerationCache,
    out: &Path,
) -> Result<Vec<Record>, ReplayError> {
    if let Some((records, _)) = read_replay(out)? {
        return Ok(records);
    }
    let sources: Vec<Source> = items.iter().map(Source::from).collect();
    // The generator is the base model (no adapter), also in sequential mode.
    let mut model = ModelGenerator::new(model);
    let mut generator = Cached {
        inner: &mut model,
        cache: cache.clone(),
    };
    let (records, report) = replay_sources(
        protocol,
        &mut generator,
        format,
        &sources,
        dataset,
        &mut |_, _| {},
    )?;
    write_replay(out, &records, &report)?;
    Ok(records)
}

/// How the replay methods generate, and how long they train (the LoRA, optimiser and batches are the
/// registry's [`FineTuneSettings`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySettings {
    /// Training examples per injected item (the number of passes is set so that every method trains for
    /// about the same steps whatever its yield: equal compute).
    pub examples_per_item: usize,
    /// Generations per protocol and source (paraphrases, implications, model questions).
    pub n: usize,
    /// Sampling temperature of the generations (0 = greedy).
    pub temperature: f32,
    /// Seeds the generations' sampling.
    pub seed: u64,
}

impl Default for ReplaySettings {
    /// 48 examples per item (12 steps of 4: a CPU budget; the PyTorch + PEFT reference used 40 steps of 4
    /// per item on hand-written QA), 6 generations at temperature 0.7.
    fn default() -> Self {
        Self {
            examples_per_item: 48,
            n: 6,
            temperature: 0.7,
            seed: 0,
        }
    }
}

impl ReplaySettings {
    /// Checks `examples_per_item` and the generation settings, naming the option.
    pub fn validate(&self) -> Result<(), ReplayError> {
        if self.examples_per_item == 0 {
            return Err(ReplayError::option(
                "examples-per-item",
                0,
                "must be at least 1",
            ));
        }
        crate::protocol_by_name("self-qa", self.n, self.temperature, self.seed)?;
        Ok(())
    }

    /// Passes over `records` records that give about `examples_per_item` examples per unit of text: per
    /// passage ([`crate::text::budget_units`]), so that a long text is not learned less than a short one.
    pub fn epochs(&self, records: usize, items: usize) -> usize {
        let want = self.examples_per_item * items.max(1);
        want.div_ceil(records.max(1)).clamp(1, 100)
    }

    /// The settings as JSON, for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "examples_per_item": self.examples_per_item,
            "n": self.n,
            "temperature": self.temperature,
            "seed": self.seed,
        })
    }
}

/// A replay protocol followed by supervised fine-tuning on its records.
pub struct ReplayMethod {
    /// The method's entry (`sys2-paraphrase`, `sys2-mix`, ...).
    pub info: &'static MethodInfo,
    /// Turns each source into records.
    pub protocol: Box<dyn ReplayProtocol>,
    /// How records become chat turns.
    pub format: Format,
    /// Generation settings and the training budget.
    pub settings: ReplaySettings,
    /// LoRA, optimiser and batches (the length is set from `settings.examples_per_item`).
    pub finetune: FineTuneSettings,
    /// Every source of the dataset, for protocols that link items.
    pub dataset: Vec<Source>,
    /// Shared by the methods of one registry, so that they generate each replay once.
    pub cache: GenerationCache,
}

impl Method for ReplayMethod {
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
        let records = replay_once(
            &*env.model,
            self.protocol.as_ref(),
            &self.format,
            items,
            &self.dataset,
            &self.cache,
            out,
        )?;
        let examples: Vec<_> = records.iter().map(Record::example).collect();
        let epochs = self
            .settings
            .epochs(records.len(), crate::text::budget_units(items));
        let settings = self.finetune.for_epochs(epochs);
        fine_tune(env, &examples, &settings, previous, out)
    }
    fn settings_json(&self) -> serde_json::Value {
        serde_json::json!({"finetune": self.finetune.to_json(), "replay": self.settings.to_json()})
    }
    fn report(&self, out: &Path) -> Result<Option<String>, InjectError> {
        Ok(read_replay(out)?.map(|(_, report)| format!("```\n{}```", report.table())))
    }
}

/// The replay methods' family: builds every [`Recipe::Replay`] of the registry with these settings.
#[derive(Clone)]
pub struct Replays {
    /// Generation settings and training budget.
    pub settings: ReplaySettings,
    /// Every source of the dataset (for `aug-ft`'s links between items).
    pub dataset: Vec<Source>,
    /// Shared by every method that replays (SELF-PARAM's QA targets too), so that each generation is made
    /// once.
    pub cache: GenerationCache,
}

impl Replays {
    /// The family for a dataset's items, generating through `cache`.
    pub fn new(settings: ReplaySettings, dataset: &[Item], cache: &GenerationCache) -> Self {
        Self {
            settings,
            dataset: dataset.iter().map(Source::from).collect(),
            cache: cache.clone(),
        }
    }

    /// The protocol of a recipe, with these settings' generation counts.
    pub fn protocol(&self, protocol: Protocol, name: &str) -> Box<dyn ReplayProtocol> {
        let s = &self.settings;
        let (n, t, seed) = (s.n, s.temperature, s.seed);
        match protocol {
            Protocol::Paraphrase => Box::new(Paraphrase::new(n, t, seed)),
            Protocol::Implication => Box::new(Implication::new(n, t, seed)),
            Protocol::SelfQa => Box::new(SelfQa::new(n / 2, t, seed)),
            Protocol::Mix => Box::new(Mix {
                name: name.into(),
                protocols: vec![
                    // The single protocols' settings: their generations are reused from the cache.
                    Box::new(Paraphrase::new(n, t, seed)),
                    Box::new(Implication::new(n, t, seed)),
                    Box::new(SelfQa::new(n / 2, t, seed)),
                ],
            }),
            Protocol::ReasoningTrace => Box::new(ReasoningTrace::new(2, t, seed)),
        }
    }
}

impl Family for Replays {
    fn kind(&self) -> FamilyKind {
        FamilyKind::Replay
    }
    fn build(
        &self,
        info: &'static MethodInfo,
        finetune: &FineTuneSettings,
        _: &Registry,
    ) -> Result<Box<dyn Method>, InjectError> {
        let Recipe::Replay {
            protocol,
            context_prefix,
        } = info.recipe
        else {
            return Err(InjectError::option(
                "method",
                info.name,
                "not a replay method",
            ));
        };
        self.settings.validate()?;
        Ok(Box::new(ReplayMethod {
            info,
            protocol: self.protocol(protocol, info.name),
            format: Format { context_prefix },
            settings: self.settings.clone(),
            finetune: finetune.clone(),
            dataset: self.dataset.clone(),
            cache: self.cache.clone(),
        }))
    }
}
