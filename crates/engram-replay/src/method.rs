//! Replay protocols as evaluation [`Method`]s: replay each item with the base model as the generator, then
//! fine-tune a LoRA adapter on the records (`sys2-paraphrase`, `sys2-implication`, `sys2-self-qa`,
//! `sys2-mix`, `aug-ft`, and `sys2-self-qa-prefix`, the same self-QA data with the context as a prefix: the
//! contextual-shadowing control).

use std::path::Path;
use std::time::Instant;

use engram_eval::method::{InjectEnv, train_adapter};
use engram_eval::{EvalError, FineTuneSettings, Injection, Item, Method, Registry};
use engram_lora::write_file_atomically;
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
    pub generator: String,
    pub sources: usize,
    pub records: usize,
    /// Per protocol, summed over the sources.
    pub yields: Vec<Yield>,
    /// Wall time of the generation.
    pub seconds: f64,
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

/// How the replay methods generate and train.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySettings {
    /// LoRA, optimiser, batch size; `epochs` is replaced: see `examples_per_item`.
    pub finetune: FineTuneSettings,
    /// Training examples per injected item (the number of passes is set so that every method trains for
    /// about the same steps whatever its yield: equal compute).
    pub examples_per_item: usize,
    /// Generations per protocol and source (paraphrases, implications, model questions).
    pub n: usize,
    pub temperature: f32,
    pub seed: u64,
}

impl Default for ReplaySettings {
    /// 48 examples per item (12 steps of 4: a CPU budget; the PyTorch + PEFT reference used 40 steps of 4
    /// per item on hand-written QA), 6 generations at temperature 0.7.
    fn default() -> Self {
        Self {
            finetune: FineTuneSettings::default(),
            examples_per_item: 48,
            n: 6,
            temperature: 0.7,
            seed: 0,
        }
    }
}

impl ReplaySettings {
    pub fn validate(&self) -> Result<(), ReplayError> {
        self.finetune.validate()?;
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

    /// Passes over `records` records that give about `examples_per_item` examples per item.
    pub fn epochs(&self, records: usize, items: usize) -> usize {
        let want = self.examples_per_item * items.max(1);
        want.div_ceil(records.max(1)).clamp(1, 100)
    }

    /// The settings as JSON, for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "finetune": self.finetune.to_json(),
            "examples_per_item": self.examples_per_item,
            "n": self.n,
            "temperature": self.temperature,
            "seed": self.seed,
        })
    }
}

/// A replay protocol followed by supervised fine-tuning on its records.
pub struct ReplayMethod {
    pub name: String,
    pub description: String,
    pub protocol: Box<dyn ReplayProtocol>,
    pub format: Format,
    pub settings: ReplaySettings,
    /// Every source of the dataset, for protocols that link items.
    pub dataset: Vec<Source>,
    /// Shared by the methods of one registry, so that they generate each replay once.
    pub cache: GenerationCache,
}

impl Method for ReplayMethod {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn trains(&self) -> bool {
        true
    }
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, EvalError> {
        if out.join(engram_lora::CONFIG_FILE).is_file() {
            return Ok(Injection::Adapter(out.to_path_buf()));
        }
        let wrap = |e: ReplayError| match e {
            ReplayError::Eval(e) => e,
            other => EvalError::Method {
                method: self.name.clone(),
                source: Box::new(other),
            },
        };
        let (records, _) = match read_replay(out).map_err(wrap)? {
            Some(done) => done,
            None => {
                let sources: Vec<Source> = items.iter().map(Source::from).collect();
                // The generator is the base model (no adapter), also in sequential mode.
                let mut model = ModelGenerator::new(&*env.model);
                let mut generator = Cached {
                    inner: &mut model,
                    cache: self.cache.clone(),
                };
                let (records, report) = replay_sources(
                    self.protocol.as_ref(),
                    &mut generator,
                    &self.format,
                    &sources,
                    &self.dataset,
                    &mut |_, _| {},
                )
                .map_err(wrap)?;
                write_replay(out, &records, &report).map_err(wrap)?;
                (records, report)
            }
        };
        let examples: Vec<_> = records.iter().map(Record::example).collect();
        let settings = FineTuneSettings {
            epochs: self.settings.epochs(records.len(), items.len()),
            ..self.settings.finetune.clone()
        };
        train_adapter(env, &examples, &settings, previous, out)
    }
}

/// The replay methods' names, in registration order.
pub const METHODS: [&str; 6] = [
    "sys2-paraphrase",
    "sys2-implication",
    "sys2-self-qa",
    "sys2-self-qa-prefix",
    "sys2-mix",
    "aug-ft",
];

/// Registers the replay methods ([`METHODS`]) with `settings`; `dataset` is every item of the dataset (for
/// `aug-ft`'s links between items).
pub fn register(registry: &mut Registry, settings: &ReplaySettings, dataset: &[Item]) {
    let (n, t, seed) = (settings.n, settings.temperature, settings.seed);
    let sources: Vec<Source> = dataset.iter().map(Source::from).collect();
    let cache = GenerationCache::default();
    let method =
        |name: &str, description: &str, protocol: Box<dyn ReplayProtocol>, prefix: bool| {
            Box::new(ReplayMethod {
                name: name.into(),
                description: description.into(),
                protocol,
                format: Format {
                    context_prefix: prefix,
                },
                settings: settings.clone(),
                dataset: sources.clone(),
                cache: cache.clone(),
            })
        };
    registry.register(method(
        "sys2-paraphrase",
        "Sys2-FT: fine-tune on the model's own paraphrases of the context",
        Box::new(Paraphrase::new(n, t, seed)),
        false,
    ));
    registry.register(method(
        "sys2-implication",
        "Sys2-FT: fine-tune on implications the model draws from the context",
        Box::new(Implication::new(n, t, seed)),
        false,
    ));
    registry.register(method(
        "sys2-self-qa",
        "Sys2-FT: questions from the text and the model, answered by the model with the context in view",
        Box::new(SelfQa::new(n / 2, t, seed)),
        false,
    ));
    registry.register(method(
        "sys2-self-qa-prefix",
        "sys2-self-qa's data with the context as a prefix of each question (contextual shadowing)",
        Box::new(SelfQa::new(n / 2, t, seed)),
        true,
    ));
    registry.register(method(
        "sys2-mix",
        "Sys2-FT: paraphrases, implications and self-QA together",
        Box::new(Mix {
            name: "sys2-mix".into(),
            protocols: vec![
                // The single protocols' settings: their generations are reused from the cache.
                Box::new(Paraphrase::new(n, t, seed)),
                Box::new(Implication::new(n, t, seed)),
                Box::new(SelfQa::new(n / 2, t, seed)),
            ],
        }),
        false,
    ));
    registry.register(method(
        "aug-ft",
        "augmented fine-tuning (Lampinen et al.): the context plus sentence rephrasings, reversals and links to other items",
        Box::new(ReasoningTrace::new(2, t, seed)),
        false,
    ));
}
