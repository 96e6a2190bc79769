//! `engram demo`: the whole idea in a few minutes. The base model answers questions about a text it has never
//! seen (wrong), answers them with the text in its prompt (right: the upper bound), the text is written into an
//! adapter with the best measured method, and the adapter answers them without the text.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use engram::MethodSettings;
use engram_eval::shipped::load_dataset;
use engram_inject::{
    InjectEnv, Injection, Item, Question, QuestionKind, answer_config, chat_prompt, contains_answer,
};
use engram_lora::Adapters;
use engram_model::{LoadedModel, generate};

use crate::{DeviceArgs, ModelArgs, Result, load};

/// The bundled item the demo teaches unless told otherwise: a fictional theorem (measured: the base model
/// invents an answer; with the text it answers; `sys2-self-qa` at these settings writes "7" into the adapter).
const DEFAULT_ITEM: &str = "news-math-003";

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// A bundled `news` item to teach (see datasets/news/items.jsonl).
    #[arg(long, default_value = DEFAULT_ITEM, conflicts_with = "context")]
    item: String,
    /// Teach your own text instead (a plain-text file). Ask about it with --question; without, the demo asks
    /// questions made from the text's own sentences (who/what/how many/what year).
    #[arg(long)]
    context: Option<PathBuf>,
    /// A question to ask (repeat for several). With --context, `QUESTION=>ANSWER` also marks right answers.
    #[arg(long)]
    question: Vec<String>,
    /// The injection method (any `engram inject --method`); the default is the best measured on `news`
    /// for one item at CPU cost (docs/choosing.md).
    #[arg(long, default_value = engram::DEFAULT_METHOD)]
    method: String,
    /// Learning rate (1e-3 reaches the answer in ~20 steps for one item; 3e-4 needs more steps).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Training examples per item (replay records repeated to this budget).
    #[arg(long, default_value_t = 64)]
    examples_per_item: usize,
    /// Seed of the replay sampling and the training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep the adapter in this folder (default: a temporary folder, removed at the end).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Upper bound on each answer's tokens.
    #[arg(long, default_value_t = 48)]
    max_new_tokens: usize,
    /// Unrelated general questions asked of the base model and of the adapter, to show what the injection
    /// cost elsewhere (from the trivia test split, one per domain).
    #[arg(long, default_value_t = 5)]
    general: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// A question and, when known, its answer.
struct Ask {
    kind: String,
    question: String,
    answer: Option<String>,
}

impl DemoArgs {
    /// The item to teach and the questions to ask about it.
    fn item(&self) -> Result<(Item, Vec<Ask>)> {
        let given: Vec<Ask> = self
            .question
            .iter()
            .map(|q| match q.split_once("=>") {
                Some((q, a)) => Ask {
                    kind: "yours".into(),
                    question: q.trim().to_owned(),
                    answer: Some(a.trim().to_owned()),
                },
                None => Ask {
                    kind: "yours".into(),
                    question: q.trim().to_owned(),
                    answer: None,
                },
            })
            .collect();
        if let Some(path) = &self.context {
            let context = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
                .trim()
                .to_owned();
            if context.is_empty() {
                return Err(format!("{}: the file is empty", path.display()).into());
            }
            let mut asks = given;
            if asks.is_empty() {
                asks = engram_replay::text::text_questions(&context)
                    .into_iter()
                    .take(5)
                    .map(|q| Ask {
                        kind: "from the text".into(),
                        question: q.question,
                        answer: Some(q.answer),
                    })
                    .collect();
            }
            if asks.is_empty() {
                return Err(format!(
                    "{}: found no sentence to make a question from; pass --question",
                    path.display()
                )
                .into());
            }
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "context".into());
            let item = Item {
                id,
                domain: "yours".into(),
                context,
                // The harness's items carry multiple-choice questions; the demo asks open questions only, and
                // the replay methods make their data from the context alone.
                questions: Vec::<Question>::new(),
            };
            return Ok((item, asks));
        }
        let news = load_dataset("news")?;
        let item = news
            .items
            .iter()
            .find(|i| i.id == self.item)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "--item {}: not in the news dataset (e.g. {})",
                    self.item,
                    news.items
                        .iter()
                        .take(4)
                        .map(|i| i.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let mut asks: Vec<Ask> = item
            .questions
            .iter()
            .map(|q| Ask {
                kind: kind_name(q.kind).into(),
                question: q.question.clone(),
                answer: Some(q.answer.clone()),
            })
            .collect();
        asks.extend(given);
        Ok((item, asks))
    }
}

/// `n` trivia questions of the test split, one domain after another (locality questions: never trained on).
fn general_questions(n: usize) -> Result<Vec<Ask>> {
    let trivia = load_dataset("trivia")?;
    let ids = trivia.split_ids("test")?;
    Ok(engram_eval::select_items(&trivia.items, ids, Some(n))
        .into_iter()
        .flat_map(|i| i.questions.into_iter().take(1))
        .map(|q| Ask {
            kind: "general".into(),
            question: q.question,
            answer: Some(q.answer),
        })
        .collect())
}

fn kind_name(kind: QuestionKind) -> &'static str {
    match kind {
        QuestionKind::Direct => "direct",
        QuestionKind::Paraphrase => "paraphrase",
        QuestionKind::Reversal => "reversal",
        QuestionKind::Implication => "implication",
    }
}

/// Greedy answers to every question in one batch, with or without `context` in the prompt.
fn answer_all(
    lm: &LoadedModel,
    asks: &[Ask],
    context: Option<&str>,
    max_new_tokens: usize,
) -> Result<Vec<String>> {
    let prompts = asks
        .iter()
        .map(|a| {
            let p = chat_prompt(&lm.chat_template, context, &a.question)?;
            Ok(lm.tokenizer.encode(&p)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = answer_config(max_new_tokens);
    let out = generate(&lm.model, &lm.tokenizer, &prompts, &cfg, &mut |_, _| {})?;
    Ok(out.into_iter().map(|g| g.text.trim().to_owned()).collect())
}

fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("a fixed template")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
    );
    bar.set_message(msg.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Times a step under a spinner.
fn timed<T>(
    times: &mut Vec<(String, f64)>,
    label: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let bar = spinner(label);
    let start = Instant::now();
    let out = f();
    bar.finish_and_clear();
    times.push((label.to_owned(), start.elapsed().as_secs_f64()));
    out
}

/// One line of an answer, cut to `width` characters.
fn one_line(text: &str, width: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= width {
        return line;
    }
    let cut: String = line.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn mark(answer: &Option<String>, text: &str) -> &'static str {
    match answer {
        Some(a) if contains_answer(text, a) => "✓",
        Some(_) => "✗",
        None => " ",
    }
}

pub(crate) fn demo_cmd(args: DemoArgs) -> Result<()> {
    let total = Instant::now();
    let (item, asks) = args.item()?;
    let mut settings = MethodSettings::one_text().with_seed(args.seed);
    settings.finetune.train.lr = args.lr;
    settings.replay.examples_per_item = args.examples_per_item;
    settings.finetune.validate()?;
    settings.replay.validate()?;
    let items = vec![item.clone()];
    let method = engram::registry(&settings, &items).build(&args.method)?;
    if !method.trains() {
        return Err(format!("--method {}: writes nothing into weights", args.method).into());
    }

    let mut times: Vec<(String, f64)> = Vec::new();
    let start = Instant::now();
    let mut lm = load(&args.model, &args.device)?;
    times.push(("load the model".into(), start.elapsed().as_secs_f64()));

    println!("\nThe text to learn ({}):\n", item.id);
    for line in textwrap(&item.context, 100) {
        println!("    {line}");
    }
    println!();

    let n = asks.len();
    let base = timed(
        &mut times,
        &format!("base model, no text ({n} questions)"),
        || answer_all(&lm, &asks, None, args.max_new_tokens),
    )?;
    let icl = timed(
        &mut times,
        &format!("text in the prompt ({n} questions)"),
        || answer_all(&lm, &asks, Some(&item.context), args.max_new_tokens),
    )?;
    let general = general_questions(args.general)?;
    let general_base = timed(
        &mut times,
        &format!("base model, {} general questions", general.len()),
        || answer_all(&lm, &general, None, args.max_new_tokens),
    )?;

    // The adapter goes to --out, or to a temporary folder that is removed when the demo ends.
    let temp;
    let out = match &args.out {
        Some(p) => p.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("adapter")
        }
    };
    let start = Instant::now();
    let bar = spinner(&format!(
        "{}: writing training data from the text",
        method.name()
    ));
    let mut on_step = |m: &engram_train::StepMetrics| {
        if bar.length().is_none() {
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} steps, loss {prefix} ({elapsed})",
                )
                .expect("a fixed template")
                .progress_chars("=> "),
            );
            bar.set_length(m.total_steps as u64);
            bar.set_message(format!("{}: training", method.name()));
        }
        bar.set_position(m.step as u64);
        bar.set_prefix(format!("{:.3}", m.loss));
    };
    let mut env = InjectEnv {
        model: &mut lm,
        on_step: &mut on_step,
    };
    let injection = method.inject(&mut env, &items, None, &out)?;
    bar.finish_and_clear();
    times.push((
        format!("inject with {}", method.name()),
        start.elapsed().as_secs_f64(),
    ));
    let dir = match injection {
        Injection::Adapter(dir) => dir,
        Injection::Prompt { .. } => return Err("the method wrote no adapter".into()),
    };
    engram_lora::load_adapter(&mut lm.model, &dir, "demo")?;
    lm.model.set_active_adapters(&["demo"])?;
    let tuned = timed(
        &mut times,
        &format!("adapter, no text ({n} questions)"),
        || answer_all(&lm, &asks, None, args.max_new_tokens),
    )?;

    let general_tuned = timed(
        &mut times,
        &format!("adapter, {} general questions", general.len()),
        || answer_all(&lm, &general, None, args.max_new_tokens),
    )?;

    let width = 84;
    let mut right = [0usize; 3];
    let known = asks.iter().filter(|a| a.answer.is_some()).count();
    for (i, a) in asks.iter().enumerate() {
        match &a.answer {
            Some(ans) => println!("{}. [{}] {}   (answer: {ans})", i + 1, a.kind, a.question),
            None => println!("{}. [{}] {}", i + 1, a.kind, a.question),
        }
        for (j, (label, text)) in [
            ("base model, no text", &base[i]),
            ("text in the prompt ", &icl[i]),
            ("adapter, no text   ", &tuned[i]),
        ]
        .into_iter()
        .enumerate()
        {
            let m = mark(&a.answer, text);
            right[j] += usize::from(m == "✓");
            // Up to three lines: a right answer is often in the second sentence.
            let lines = textwrap(&one_line(text, 3 * width), width);
            for (k, line) in lines.iter().enumerate() {
                if k == 0 {
                    println!("   {label} {m} {line}");
                } else {
                    println!("   {:width$}   {line}", "", width = label.chars().count());
                }
            }
        }
        println!();
    }
    if known > 0 {
        println!(
            "answers containing the expected one: base {}/{known}, text in the prompt {}/{known}, adapter {}/{known}",
            right[0], right[1], right[2]
        );
    }
    if !general.is_empty() {
        println!("\nUnrelated general questions (what the injection cost elsewhere):\n");
        let mut unchanged = 0;
        for (i, a) in general.iter().enumerate() {
            let same = general_base[i] == general_tuned[i];
            unchanged += usize::from(same);
            println!(
                "{}. {}   (answer: {})",
                i + 1,
                a.question,
                a.answer.as_deref().unwrap_or("?")
            );
            for (label, text) in [
                ("base model", &general_base[i]),
                ("adapter   ", &general_tuned[i]),
            ] {
                let m = mark(&a.answer, text);
                println!("   {label} {m} {}", one_line(text, width));
            }
            if same {
                println!("   (unchanged)");
            }
        }
        let right = |answers: &[String]| {
            general
                .iter()
                .zip(answers)
                .filter(|(a, t)| mark(&a.answer, t) == "✓")
                .count()
        };
        println!(
            "\ngeneral answers unchanged: {unchanged}/{}; right: base {}/{}, adapter {}/{}",
            general.len(),
            right(&general_base),
            general.len(),
            right(&general_tuned),
            general.len()
        );
    }
    println!("\n{:<44} {:>9}", "step", "seconds");
    for (label, s) in &times {
        println!("{label:<44} {s:>9.1}");
    }
    println!("{:<44} {:>9.1}", "total", total.elapsed().as_secs_f64());
    match &args.out {
        Some(p) => println!(
            "\nadapter kept in {} — `engram ask --adapter {} --question ...`, or `engram serve --adapter {}`",
            p.display(),
            p.display(),
            p.display()
        ),
        None => println!("\n(the adapter was temporary; keep one with --out DIR)"),
    }
    Ok(())
}

/// `text` broken into lines of at most `width` characters at spaces.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_cuts() {
        assert_eq!(textwrap("a bb ccc dd", 5), vec!["a bb", "ccc", "dd"]);
        assert_eq!(one_line("x\n y   z", 10), "x y z");
        assert_eq!(one_line("abcdefghijk", 5), "abcd…");
        assert_eq!(mark(&Some("7".into()), "It has 7 corners."), "✓");
        assert_eq!(mark(&Some("7".into()), "It has many."), "✗");
        assert_eq!(mark(&None, "anything"), " ");
    }
}
