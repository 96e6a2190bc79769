//! `engram probe` and the options of the `gradual` methods: options and printing around `engram-curriculum`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use engram_curriculum::category::counts;
use engram_curriculum::probe::write_knowledge;
use engram_curriculum::{
    Category, Curricula, GradualSettings, ProbeCache, ProbeSettings, TwoStage, facts,
    model_identity,
};
use engram_eval::shipped::{Dataset, load_dataset};
use engram_eval::{Item, select_items};
use engram_model::{Generator, ModelGenerator};

use crate::replay::EndpointArgs;
use crate::{DeviceArgs, ModelArgs, Result, load};

/// How facts are probed (SliCK's knowledge categories), shared by `probe`, `eval` and `inject`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ProbeArgs {
    /// Probe: few-shot prompts per fact (each gives a greedy answer).
    #[arg(long, default_value_t = ProbeSettings::default().prompts)]
    probe_prompts: usize,
    /// Probe: exemplar turns per prompt, drawn from other facts of the dataset.
    #[arg(long, default_value_t = ProbeSettings::default().shots)]
    probe_shots: usize,
    /// Probe: sampled answers per fact, spread over the prompts.
    #[arg(long, default_value_t = ProbeSettings::default().samples)]
    probe_samples: usize,
    /// Probe: sampling temperature.
    #[arg(long, default_value_t = ProbeSettings::default().temperature)]
    probe_temperature: f32,
    /// Probe: cache folder of probe results (default: `probes` in the engram cache).
    #[arg(long)]
    probe_cache: Option<PathBuf>,
}

impl ProbeArgs {
    fn settings(&self, seed: u64) -> Result<ProbeSettings> {
        let s = ProbeSettings {
            prompts: self.probe_prompts,
            shots: self.probe_shots,
            samples: self.probe_samples,
            temperature: self.probe_temperature,
            seed,
            ..ProbeSettings::default()
        };
        s.validate()?;
        Ok(s)
    }

    fn cache(&self) -> Result<PathBuf> {
        Ok(match &self.probe_cache {
            Some(dir) => dir.clone(),
            None => engram_fetch::cache_dir()?.join("probes"),
        })
    }
}

/// The options of the `gradual`, `gradual-all` and `gradual-maybe` methods.
#[derive(Args, Debug, Clone)]
pub(crate) struct CurriculumArgs {
    /// Gradual: optimizer steps of stage 1 and stage 2 (the one-stage baselines get their sum).
    #[arg(long, value_delimiter = ',', default_values_t = [40, 40])]
    stage_steps: Vec<usize>,
    /// Gradual: dev checks per stage (its steps split into this many rounds; the best round on dev is kept).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Gradual: HighlyKnown facts replayed in stage 2, per fact trained.
    #[arg(long, default_value_t = 0.5)]
    replay_share: f64,
    /// Gradual: the training method of every stage (qa-ft, sys2-self-qa, self-param, ...).
    #[arg(long, default_value = "qa-ft")]
    stage_method: String,
    /// Gradual: greedy prompts per dev/test fact in the accuracy checks.
    #[arg(long, default_value_t = 1)]
    check_prompts: usize,
    #[command(flatten)]
    probe: ProbeArgs,
}

/// Items of `split` of `dataset`, or none when it has no such split.
fn split(dataset: &Dataset, name: &str) -> Vec<Item> {
    match dataset.split_ids(name) {
        Ok(Some(ids)) => select_items(&dataset.items, Some(ids), None),
        _ => Vec::new(),
    }
}

impl CurriculumArgs {
    /// The curricula on `dataset` (its dev split chooses each stage's round; its test split, less the
    /// `injected` items, is reported; exemplars come from its train split).
    pub(crate) fn curricula(
        &self,
        dataset: &Dataset,
        injected: &[Item],
        seed: u64,
    ) -> Result<Curricula> {
        let [s1, s2] = self.stage_steps[..] else {
            return Err(format!(
                "--stage-steps {:?}: give two step counts, e.g. 40,40",
                self.stage_steps
            )
            .into());
        };
        let two_stage = TwoStage {
            steps: [s1, s2],
            replay_share: self.replay_share,
            seed,
        };
        two_stage.validate()?;
        let mut pool = split(dataset, "train");
        if pool.is_empty() {
            pool = dataset.items.clone();
        }
        let test = split(dataset, "test")
            .into_iter()
            .filter(|t| !injected.iter().any(|i| i.id == t.id))
            .collect();
        let settings = GradualSettings {
            probe: self.probe.settings(seed)?,
            stage_method: self.stage_method.clone(),
            rounds: self.rounds,
            check_prompts: self.check_prompts,
            dev: split(dataset, "dev"),
            test,
            pool,
            cache: Some(self.probe.cache()?),
            log: Arc::new(|line| eprintln!("{line}")),
        };
        Ok(Curricula {
            settings,
            two_stage,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct ProbeCmdArgs {
    /// A shipped dataset (news, relations, trivia) or a JSONL file of items.
    #[arg(long)]
    dataset: String,
    /// train, dev, test or all.
    #[arg(long, default_value = "all")]
    split: String,
    /// At most N items (round-robin over domains).
    #[arg(long)]
    limit: Option<usize>,
    /// The categories file to write (JSONL, one fact per line).
    #[arg(long)]
    out: PathBuf,
    /// Probe the model with this adapter attached.
    #[arg(long, conflicts_with = "endpoint")]
    adapter: Option<PathBuf>,
    /// Seeds exemplars and samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    probe: ProbeArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub(crate) fn probe_cmd(args: ProbeCmdArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let settings = args.probe.settings(args.seed)?;
    let dataset = load_dataset(&args.dataset)?;
    let items = select_items(&dataset.items, dataset.split_ids(&args.split)?, args.limit);
    let which = facts(&items);
    if which.is_empty() {
        return Err(format!("{}: no direct question to probe", dataset.name).into());
    }
    let mut pool = split(&dataset, "train");
    if pool.is_empty() {
        pool = dataset.items.clone();
    }
    let pool = facts(&pool);
    // Who answers: an OpenAI-compatible endpoint, or the local model (with the adapter).
    let mut http = args.endpoint.http()?;
    let lm = match http {
        Some(_) => None,
        None => {
            let mut lm = load(&args.model, &args.device)?;
            if let Some(dir) = &args.adapter {
                engram_lora::load_adapter(&mut lm.model, dir, "probe")?;
            }
            Some(lm)
        }
    };
    let mut local = lm.as_ref().map(ModelGenerator::new);
    let (generator, identity): (&mut dyn Generator, String) = match (&mut http, &mut local) {
        (Some(h), _) => {
            let name = h.name();
            (h, name)
        }
        (None, Some(m)) => {
            let lm = lm.as_ref().expect("loaded above");
            (m, model_identity(lm, args.adapter.as_deref())?)
        }
        (None, None) => return Err("no generator".into()),
    };
    let cache = ProbeCache {
        dir: args.probe.cache()?,
    };
    eprintln!(
        "probing {} facts: {} prompts x {} shots, {} samples at T {}",
        which.len(),
        settings.prompts,
        settings.shots,
        settings.samples,
        settings.temperature
    );
    let (found, hit) = cache.probe(
        generator,
        &identity,
        &which,
        &pool,
        &settings,
        &mut |d, t| eprintln!("[{d}/{t}] answered"),
    )?;
    write_knowledge(&args.out, &found)?;
    let c = counts(found.iter().map(|k| &k.category));
    for (cat, n) in Category::ALL.iter().zip(c) {
        println!("{:<12} {n:>4}", cat.name());
    }
    println!(
        "wrote {} ({} facts{}, {:.0} s)",
        args.out.display(),
        found.len(),
        if hit { ", from the probe cache" } else { "" },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
