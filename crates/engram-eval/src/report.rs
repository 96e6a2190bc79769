//! From result rows to what people read: `summary.json` (every mean with a bootstrap confidence interval, per
//! condition, question kind, domain and item; gap recovery; locality; the retention curve) and `report.md`
//! (its tables), with SVG charts drawn by `plotters`.

use std::collections::BTreeMap;
use std::path::Path;

use engram_model::formats::atomic::write_file_atomically;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::harness::{LocalityRow, ResultRow, RunManifest};
use crate::{Estimate, EvalError, QuestionKind, bootstrap_mean, gap_recovery};

/// The per-question measures, in report order: (key, heading).
pub const MEASURES: [(&str, &str); 9] = [
    ("likelihood", "MC likelihood"),
    ("letter", "MC letter"),
    ("token_accuracy", "token acc."),
    ("exact_match", "EM"),
    ("contains", "contains"),
    ("contains_strict", "contains, not echo/repeat"),
    ("f1", "F1"),
    ("echo", "echoes question"),
    ("repeated", "same answer"),
];

fn measure(r: &ResultRow, key: &str) -> f64 {
    let s = &r.scores;
    match key {
        "likelihood" => s.likelihood_correct as u8 as f64,
        "letter" => s.letter_accuracy,
        "token_accuracy" => s.token_accuracy,
        "exact_match" => s.exact_match as u8 as f64,
        "contains" => s.contains as u8 as f64,
        "contains_strict" => (s.contains && !s.echo && !s.repeated) as u8 as f64,
        "f1" => s.f1,
        "echo" => s.echo as u8 as f64,
        "repeated" => s.repeated as u8 as f64,
        _ => unreachable!("unknown measure {key}"),
    }
}

/// Means with 95% bootstrap intervals of every measure over a set of rows.
pub type MeasureSet = BTreeMap<String, Estimate>;

fn measures(rows: &[&ResultRow], seed: u64) -> MeasureSet {
    MEASURES
        .iter()
        .filter_map(|(k, _)| {
            let v: Vec<f64> = rows.iter().map(|r| measure(r, k)).collect();
            bootstrap_mean(&v, 1000, 0.95, seed).map(|e| (k.to_string(), e))
        })
        .collect()
}

/// `rows` with [`QuestionScores::echo`](crate::QuestionScores) and `repeated` set: a greedy answer that only
/// repeats the question's words, or one that the same condition and adapter gave to questions whose
/// references differ (a name said to every question). Reports show them beside `contains`, and
/// `contains_strict` counts neither as right, so a method cannot score by repeating a name.
pub fn mark_gaming(rows: &[ResultRow]) -> Vec<ResultRow> {
    let mut out = rows.to_vec();
    let mut answers: BTreeMap<(String, String, String), BTreeMap<String, ()>> = BTreeMap::new();
    for r in &out {
        let a = engram_inject::normalize_answer(&r.scores.generation);
        if !a.is_empty() {
            answers
                .entry((r.condition.clone(), r.unit.clone(), a))
                .or_default()
                .insert(engram_inject::normalize_answer(&r.answer), ());
        }
    }
    for r in &mut out {
        r.scores.echo = engram_inject::echoes_question(&r.scores.generation, &r.question);
        let a = engram_inject::normalize_answer(&r.scores.generation);
        r.scores.repeated = answers
            .get(&(r.condition.clone(), r.unit.clone(), a))
            .is_some_and(|refs| refs.len() > 1);
    }
    out
}

/// The smallest icl − base difference (10 points) over which gap recovery is reported.
pub const MIN_GAP: f64 = 0.10;

/// One point of the retention curve (sequential mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionPoint {
    /// Items injected so far.
    pub step: usize,
    /// MC-likelihood accuracy over every item injected so far.
    pub injected: f64,
    /// MC-likelihood accuracy on the first item injected.
    pub first_item: f64,
    /// MC-likelihood accuracy on the item just injected.
    pub latest_item: f64,
}

/// Locality averaged over the adapters measured for one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalitySummary {
    /// Number of adapters measured.
    pub adapters: usize,
    /// Mean share of locality questions whose greedy answer is unchanged.
    pub answers_unchanged: f64,
    /// Mean share of the base answers' tokens still predicted (teacher-forced argmax).
    pub tokens_unchanged: f64,
    /// Mean accuracy on the locality questions after injection.
    pub accuracy: f64,
    /// The base model's accuracy on the same questions.
    pub base_accuracy: f64,
    /// Mean perplexity ratio on general text (injected / base); `None` when no text was measured.
    pub perplexity_ratio: Option<f64>,
}

/// Everything `report.md` shows, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What the run asked.
    pub manifest: RunManifest,
    /// The conditions that have rows, in the manifest's order.
    pub conditions: Vec<String>,
    /// Questions per condition in the main tables (the largest count over conditions).
    pub questions: usize,
    /// Condition → measure → estimate.
    pub overall: BTreeMap<String, MeasureSet>,
    /// Condition → kind → measure → estimate.
    pub by_kind: BTreeMap<String, BTreeMap<String, MeasureSet>>,
    /// Condition → domain → measure → estimate.
    pub by_domain: BTreeMap<String, BTreeMap<String, MeasureSet>>,
    /// Condition → item → MC-likelihood accuracy over the item's questions.
    pub by_item: BTreeMap<String, BTreeMap<String, Estimate>>,
    /// Condition → kind (or `all`) → (score − base) / (icl − base), on MC likelihood and on contains.
    pub gap_recovery: BTreeMap<String, BTreeMap<String, GapRecovery>>,
    /// Condition → averaged locality.
    pub locality: BTreeMap<String, LocalitySummary>,
    /// Condition → retention curve (sequential mode only).
    pub retention: BTreeMap<String, Vec<RetentionPoint>>,
    /// Seconds spent on the run, over every invocation (model loading excluded).
    pub seconds: f64,
}

/// Share of the in-context gain a condition recovers, `(score − base) / (icl − base)`. `None` when `icl` beats
/// `base` by less than [`MIN_GAP`] (or a figure is missing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GapRecovery {
    /// On MC-likelihood accuracy.
    pub likelihood: Option<f64>,
    /// On `contains` (the greedy answer contains the reference).
    pub contains: Option<f64>,
}

/// The rows a condition's main tables use: in sequential mode, those asked after the last injection.
fn final_rows<'a>(rows: &'a [ResultRow], condition: &str) -> Vec<&'a ResultRow> {
    let mine: Vec<&ResultRow> = rows.iter().filter(|r| r.condition == condition).collect();
    let last = mine.iter().filter_map(|r| r.step).max();
    mine.into_iter()
        .filter(|r| last.is_none() || r.step == last)
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Summarises a run's rows.
pub fn summarize(
    manifest: &RunManifest,
    rows: &[ResultRow],
    locality: &[LocalityRow],
    seconds: f64,
) -> Summary {
    let marked = mark_gaming(rows);
    let rows = marked.as_slice();
    let conditions: Vec<String> = manifest
        .methods
        .iter()
        .filter(|m| rows.iter().any(|r| &r.condition == *m))
        .cloned()
        .collect();
    let mut s = Summary {
        manifest: manifest.clone(),
        conditions: conditions.clone(),
        questions: 0,
        overall: BTreeMap::new(),
        by_kind: BTreeMap::new(),
        by_domain: BTreeMap::new(),
        by_item: BTreeMap::new(),
        gap_recovery: BTreeMap::new(),
        locality: BTreeMap::new(),
        retention: BTreeMap::new(),
        seconds,
    };
    for c in &conditions {
        let rs = final_rows(rows, c);
        s.questions = s.questions.max(rs.len());
        s.overall.insert(c.clone(), measures(&rs, 0));
        let mut kinds = BTreeMap::new();
        for k in QuestionKind::ALL {
            let sub: Vec<&ResultRow> = rs.iter().copied().filter(|r| r.kind == k).collect();
            if !sub.is_empty() {
                kinds.insert(k.name().to_owned(), measures(&sub, 0));
            }
        }
        s.by_kind.insert(c.clone(), kinds);
        let mut domains: BTreeMap<String, Vec<&ResultRow>> = BTreeMap::new();
        let mut items: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &rs {
            domains.entry(r.domain.clone()).or_default().push(r);
            items
                .entry(r.item_id.clone())
                .or_default()
                .push(measure(r, "likelihood"));
        }
        s.by_domain.insert(
            c.clone(),
            domains
                .into_iter()
                .map(|(d, v)| (d, measures(&v, 0)))
                .collect(),
        );
        s.by_item.insert(
            c.clone(),
            items
                .into_iter()
                .filter_map(|(i, v)| Some((i, bootstrap_mean(&v, 1000, 0.95, 0)?)))
                .collect(),
        );
        let locs: Vec<&LocalityRow> = locality.iter().filter(|l| &l.condition == c).collect();
        if !locs.is_empty() {
            let avg = |f: &dyn Fn(&LocalityRow) -> f64| {
                mean(&locs.iter().map(|l| f(l)).collect::<Vec<_>>())
            };
            let ppl: Vec<f64> = locs
                .iter()
                .filter_map(|l| l.scores.perplexity_ratio)
                .collect();
            s.locality.insert(
                c.clone(),
                LocalitySummary {
                    adapters: locs.len(),
                    answers_unchanged: avg(&|l| l.scores.answers_unchanged),
                    tokens_unchanged: avg(&|l| l.scores.tokens_unchanged),
                    accuracy: avg(&|l| l.scores.accuracy),
                    base_accuracy: avg(&|l| l.scores.base_accuracy),
                    perplexity_ratio: (!ppl.is_empty()).then(|| mean(&ppl)),
                },
            );
        }
        let retention = retention_curve(rows, c);
        if !retention.is_empty() {
            s.retention.insert(c.clone(), retention);
        }
    }
    // Gap recovery needs both ends of the gap, and a gap: over a denominator of a few points (noise with a
    // hundred questions) the ratio says nothing, so it is left out below `MIN_GAP`.
    let get = |c: &str, kind: Option<&str>, m: &str| -> Option<f64> {
        match kind {
            None => s.overall.get(c)?.get(m).map(|e| e.mean),
            Some(k) => s.by_kind.get(c)?.get(k)?.get(m).map(|e| e.mean),
        }
    };
    let mut gaps = BTreeMap::new();
    for c in &conditions {
        let mut per = BTreeMap::new();
        let kinds = std::iter::once(None).chain(QuestionKind::ALL.iter().map(|k| Some(k.name())));
        for k in kinds {
            let g = |m: &str| {
                let (base, icl) = (get("base", k, m)?, get("icl", k, m)?);
                if icl - base < MIN_GAP {
                    return None;
                }
                gap_recovery(get(c, k, m)?, base, icl)
            };
            per.insert(
                k.unwrap_or("all").to_owned(),
                GapRecovery {
                    likelihood: g("likelihood"),
                    contains: g("contains"),
                },
            );
        }
        gaps.insert(c.clone(), per);
    }
    s.gap_recovery = gaps;
    s
}

fn retention_curve(rows: &[ResultRow], condition: &str) -> Vec<RetentionPoint> {
    let mut by_step: BTreeMap<usize, Vec<&ResultRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.condition == condition) {
        if let Some(step) = r.step {
            by_step.entry(step).or_default().push(r);
        }
    }
    let first = by_step
        .get(&1)
        .and_then(|v| v.first())
        .map(|r| r.item_id.clone());
    by_step
        .into_iter()
        .map(|(step, rs)| {
            let acc = |f: &dyn Fn(&ResultRow) -> bool| {
                mean(
                    &rs.iter()
                        .filter(|r| f(r))
                        .map(|r| measure(r, "likelihood"))
                        .collect::<Vec<_>>(),
                )
            };
            // The latest item is the one asked only from this step on: the last in the asking order.
            let latest = rs.last().map(|r| r.item_id.clone());
            RetentionPoint {
                step,
                injected: acc(&|_| true),
                first_item: acc(&|r| Some(&r.item_id) == first.as_ref()),
                latest_item: acc(&|r| Some(&r.item_id) == latest.as_ref()),
            }
        })
        .collect()
}

fn pct(e: Option<&Estimate>) -> String {
    match e {
        Some(e) => format!(
            "{:.0} [{:.0}–{:.0}]",
            e.mean * 100.0,
            e.lo * 100.0,
            e.hi * 100.0
        ),
        None => "–".into(),
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// `report.md`: the summary's tables.
pub fn render_markdown(s: &Summary) -> String {
    let m = &s.manifest;
    let mut md = format!(
        "# engram eval: {} ({} split, {} mode)\n\n{} items, {} questions per condition; model {}; {:.0} s of \
         evaluation and training.\n\
         Scores are percentages with 95% bootstrap intervals. *MC likelihood*: the right option has the best \
         length-normalised log-probability (options not shown); *MC letter*: the right letter is chosen with \
         the options listed ({} orders); *token acc.*: answer tokens that are the argmax, teacher-forced; *EM*, \
         *contains*, *F1*: the greedy answer against the short answer.\n\n",
        m.dataset,
        m.split,
        m.mode.name(),
        m.item_ids.len(),
        s.questions,
        m.model,
        s.seconds,
        m.probe.letter_orders,
    );
    md.push_str("## Overall\n\n| condition |");
    for (_, h) in MEASURES {
        md.push_str(&format!(" {h} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(MEASURES.len()));
    md.push('\n');
    for c in &s.conditions {
        md.push_str(&format!("| {c} |"));
        for (k, _) in MEASURES {
            md.push_str(&format!(" {} |", pct(s.overall[c].get(k))));
        }
        md.push('\n');
    }
    let table = |md: &mut String,
                 title: &str,
                 groups: &BTreeMap<String, BTreeMap<String, MeasureSet>>,
                 keys: Vec<String>,
                 key: &str| {
        md.push_str(&format!("\n## {title}\n\n| condition |"));
        for k in &keys {
            md.push_str(&format!(" {k} |"));
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(keys.len()));
        md.push('\n');
        for c in &s.conditions {
            md.push_str(&format!("| {c} |"));
            for k in &keys {
                md.push_str(&format!(
                    " {} |",
                    pct(groups[c].get(k).and_then(|m| m.get(key)))
                ));
            }
            md.push('\n');
        }
    };
    let kinds: Vec<String> = QuestionKind::ALL
        .iter()
        .map(|k| k.name().to_owned())
        .filter(|k| s.by_kind.values().any(|v| v.contains_key(k)))
        .collect();
    let mut domains: Vec<String> = s
        .by_domain
        .values()
        .flat_map(|v| v.keys().cloned())
        .collect();
    domains.sort();
    domains.dedup();
    table(
        &mut md,
        "By question kind (MC likelihood)",
        &s.by_kind,
        kinds.clone(),
        "likelihood",
    );
    table(
        &mut md,
        "By question kind (contains answer, greedy)",
        &s.by_kind,
        kinds.clone(),
        "contains",
    );
    table(
        &mut md,
        "By question kind (contains answer, not an echo of the question nor an answer repeated across questions)",
        &s.by_kind,
        kinds.clone(),
        "contains_strict",
    );
    table(
        &mut md,
        "By domain (MC likelihood)",
        &s.by_domain,
        domains,
        "likelihood",
    );

    md.push_str("\n## Gap recovery: (score − base) / (icl − base)\n\nMC likelihood / contains answer; `–` where icl is less than 10 points above base.\n\n| condition | all |");
    for k in &kinds {
        md.push_str(&format!(" {k} |"));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(kinds.len()));
    md.push('\n');
    for c in &s.conditions {
        md.push_str(&format!("| {c} |"));
        for k in std::iter::once("all").chain(kinds.iter().map(String::as_str)) {
            let g = s.gap_recovery.get(c).and_then(|g| g.get(k));
            md.push_str(&format!(
                " {} / {} |",
                opt_pct(g.and_then(|g| g.likelihood)),
                opt_pct(g.and_then(|g| g.contains))
            ));
        }
        md.push('\n');
    }

    if !s.locality.is_empty() {
        md.push_str(&format!(
            "\n## Locality ({} unrelated trivia questions; general-text perplexity)\n\n\
             | condition | adapters | answers unchanged | argmax tokens unchanged | trivia right (base) | perplexity × base |\n\
             |---|---|---|---|---|---|\n",
            m.locality_questions
        ));
        for (c, l) in &s.locality {
            md.push_str(&format!(
                "| {c} | {} | {:.0}% | {:.0}% | {:.0}% ({:.0}%) | {} |\n",
                l.adapters,
                l.answers_unchanged * 100.0,
                l.tokens_unchanged * 100.0,
                l.accuracy * 100.0,
                l.base_accuracy * 100.0,
                l.perplexity_ratio
                    .map(|r| format!("{r:.3}"))
                    .unwrap_or_else(|| "–".into())
            ));
        }
    }
    if !s.retention.is_empty() {
        md.push_str("\n## Retention (sequential injection, MC likelihood)\n\n| condition | step | items so far | first item | latest item |\n|---|---|---|---|---|\n");
        for (c, pts) in &s.retention {
            for p in pts {
                md.push_str(&format!(
                    "| {c} | {} | {:.0}% | {:.0}% | {:.0}% |\n",
                    p.step,
                    p.injected * 100.0,
                    p.first_item * 100.0,
                    p.latest_item * 100.0
                ));
            }
        }
    }
    let items: Vec<&String> = s.manifest.item_ids.iter().collect();
    if !items.is_empty() {
        md.push_str("\n## Per item (MC likelihood, share of the item's questions)\n\n| item |");
        for c in &s.conditions {
            md.push_str(&format!(" {c} |"));
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(s.conditions.len()));
        md.push('\n');
        for i in items {
            md.push_str(&format!("| {i} |"));
            for c in &s.conditions {
                match s.by_item.get(c).and_then(|m| m.get(i)) {
                    Some(e) => md.push_str(&format!(" {:.0}% |", e.mean * 100.0)),
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
    }
    md.push_str("\nCharts: `kinds.svg`");
    if !s.retention.is_empty() {
        md.push_str(", `retention.svg`");
    }
    md.push_str(". Every row: `results.jsonl`.\n");
    md
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

fn plot_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Run {
        path: "plot".into(),
        reason: e.to_string(),
    }
}

/// A grouped bar chart: per question kind, one bar per condition (MC likelihood), with the 95% interval.
pub fn kinds_chart(s: &Summary) -> Result<String, EvalError> {
    let kinds: Vec<&str> = QuestionKind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|k| s.by_kind.values().any(|v| v.contains_key(*k)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let n = s.conditions.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: MC-likelihood accuracy by question kind",
                    s.manifest.dataset
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            // Groups centred on integers, so the mesh's labels fall on them.
            .build_cartesian_2d(-0.5f64..kinds.len() as f64 - 0.5, 0f64..1f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(kinds.len())
            .x_label_formatter(&|x| {
                let i = x.round();
                match kinds.get(i as usize) {
                    Some(k) if (x - i).abs() < 1e-6 && i >= 0.0 => k.to_string(),
                    _ => String::new(),
                }
            })
            .y_desc("accuracy")
            .draw()
            .map_err(plot_err)?;
        for (ci, c) in s.conditions.iter().enumerate() {
            let color = PALETTE[ci % PALETTE.len()];
            let width = 0.8 / n;
            let bars = kinds.iter().enumerate().filter_map(|(ki, k)| {
                let e = s.by_kind[c].get(*k)?.get("likelihood")?;
                let x0 = ki as f64 - 0.4 + ci as f64 * width;
                Some((x0, width, *e))
            });
            let bars: Vec<(f64, f64, Estimate)> = bars.collect();
            chart
                .draw_series(bars.iter().map(|(x0, w, e)| {
                    Rectangle::new([(*x0, 0.0), (x0 + w * 0.9, e.mean)], color.filled())
                }))
                .map_err(plot_err)?
                .label(c.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            chart
                .draw_series(bars.iter().map(|(x0, w, e)| {
                    let x = x0 + w * 0.45;
                    PathElement::new(vec![(x, e.lo), (x, e.hi)], BLACK.stroke_width(1))
                }))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The retention curve: accuracy on every item injected so far, on the first item, after each step.
pub fn retention_chart(s: &Summary) -> Result<Option<String>, EvalError> {
    if s.retention.is_empty() {
        return Ok(None);
    }
    let steps = s
        .retention
        .values()
        .flat_map(|v| v.iter().map(|p| p.step))
        .max()
        .unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: retention under sequential injection",
                    s.manifest.dataset
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(1f64..(steps.max(2)) as f64, 0f64..1f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(steps.clamp(2, 20))
            .x_label_formatter(&|x| {
                // Steps are whole numbers.
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .x_desc("items injected")
            .y_desc("MC-likelihood accuracy")
            .draw()
            .map_err(plot_err)?;
        type PointValue = fn(&RetentionPoint) -> f64;
        for (ci, (c, pts)) in s.retention.iter().enumerate() {
            let color = PALETTE[(ci + 1) % PALETTE.len()];
            // A thick line for every item so far, a thin one for the first item.
            let lines: [(&str, u32, PointValue); 2] = [
                ("items so far", 2, |p| p.injected),
                ("first item", 1, |p| p.first_item),
            ];
            for (what, width, y) in lines {
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.step as f64, y(p))),
                        color.stroke_width(width),
                    ))
                    .map_err(plot_err)?
                    .label(format!("{c}: {what}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(width))
                    });
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Some(svg))
}

/// Writes `summary.json`, `report.md`, `kinds.svg` and (sequential) `retention.svg` into `out`, atomically.
pub fn write_report(out: &Path, s: &Summary) -> Result<(), EvalError> {
    write_report_with_notes(out, s, "")
}

/// [`write_report`], with `notes` (Markdown sections, e.g. [`crate::method_notes`]) at the end of
/// `report.md`.
pub fn write_report_with_notes(out: &Path, s: &Summary, notes: &str) -> Result<(), EvalError> {
    let write = |name: &str, text: &str| {
        let p = out.join(name);
        write_file_atomically(&p, text.as_bytes())
            .map_err(|source| EvalError::Io { path: p, source })
    };
    write(
        "summary.json",
        &serde_json::to_string_pretty(s).expect("summary serializes"),
    )?;
    write("report.md", &(render_markdown(s) + notes))?;
    write("kinds.svg", &kinds_chart(s)?)?;
    if let Some(r) = retention_chart(s)? {
        write("retention.svg", &r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Mode;
    use crate::{ProbeConfig, QuestionScores};

    /// An adapter that says one name to every question scores on the question the name answers, and nowhere
    /// once echoes and repeats are taken out.
    #[test]
    fn echoes_and_repeated_answers_are_not_counted_right() {
        let mut rows = Vec::new();
        for (question, answer, generation) in [
            ("Who is Tavi Renkova?", "mathematician", "Tavi Renkova"),
            (
                "Who defined the Vellmora product?",
                "Tavi Renkova",
                "Tavi Renkova",
            ),
            ("What is the Vellmora product of 2 and 4?", "18", "18"),
        ] {
            let mut r = row("ft", "news-1", QuestionKind::Direct, false, None);
            r.question = question.into();
            r.answer = answer.into();
            r.scores.generation = generation.into();
            r.scores.contains = engram_inject::contains_answer(generation, answer);
            rows.push(r);
        }
        let marked = mark_gaming(&rows);
        let flags: Vec<(bool, bool)> = marked
            .iter()
            .map(|r| (r.scores.echo, r.scores.repeated))
            .collect();
        assert_eq!(flags, [(true, true), (false, true), (false, false)]);
        let strict: Vec<f64> = marked
            .iter()
            .map(|r| measure(r, "contains_strict"))
            .collect();
        assert_eq!(strict, [0.0, 0.0, 1.0]);
        assert_eq!(
            marked.iter().map(|r| measure(r, "contains")).sum::<f64>(),
            2.0
        );
    }

    fn row(
        condition: &str,
        item: &str,
        kind: QuestionKind,
        right: bool,
        step: Option<usize>,
    ) -> ResultRow {
        ResultRow {
            condition: condition.into(),
            unit: "u".into(),
            step,
            item_id: item.into(),
            domain: item.split('-').next().unwrap().into(),
            kind,
            question_index: 0,
            question: "q".into(),
            answer: "a".into(),
            scores: QuestionScores {
                likelihood_correct: right,
                option_logprobs: vec![],
                letter_accuracy: 0.5,
                token_accuracy: if right { 1.0 } else { 0.0 },
                generation: "a".into(),
                exact_match: right,
                contains: right,
                f1: if right { 1.0 } else { 0.0 },
                echo: false,
                repeated: false,
            },
        }
    }

    fn manifest(methods: &[&str], mode: Mode) -> RunManifest {
        RunManifest {
            dataset: "toy".into(),
            split: "test".into(),
            mode,
            item_ids: vec!["x-1".into(), "y-1".into()],
            methods: methods.iter().map(|m| m.to_string()).collect(),
            probe: ProbeConfig::default(),
            settings: serde_json::Value::Null,
            locality_questions: 0,
            model: "m".into(),
        }
    }

    #[test]
    fn means_per_kind_and_gap_recovery() {
        use QuestionKind::*;
        let mut rows = Vec::new();
        // base: 0 of 4; icl: 4 of 4; ft: direct right on both items, reversal wrong on both.
        for item in ["x-1", "y-1"] {
            for kind in [Direct, Reversal] {
                rows.push(row("base", item, kind, false, None));
                rows.push(row("icl", item, kind, true, None));
                rows.push(row("ft", item, kind, kind == Direct, None));
            }
        }
        let s = summarize(
            &manifest(&["base", "icl", "ft"], Mode::Batch),
            &rows,
            &[],
            1.0,
        );
        assert_eq!(s.conditions, ["base", "icl", "ft"]);
        assert_eq!(s.questions, 4);
        assert_eq!(s.overall["ft"]["likelihood"].mean, 0.5);
        assert_eq!(s.by_kind["ft"]["direct"]["likelihood"].mean, 1.0);
        assert_eq!(s.by_kind["ft"]["reversal"]["contains"].mean, 0.0);
        assert_eq!(s.by_domain["ft"]["x"]["likelihood"].mean, 0.5);
        assert_eq!(s.by_item["icl"]["y-1"].mean, 1.0);
        let g = &s.gap_recovery["ft"];
        assert_eq!(g["all"].likelihood, Some(0.5));
        assert_eq!(g["direct"].likelihood, Some(1.0));
        assert_eq!(g["reversal"].contains, Some(0.0));
        assert_eq!(g["paraphrase"].likelihood, None, "no such questions");
        let md = render_markdown(&s);
        assert!(
            md.contains("| ft | 50 [0–100] |") || md.contains("| ft | 50 ["),
            "{md}"
        );
        assert!(md.contains("Gap recovery"));
        let svg = kinds_chart(&s).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("reversal") && svg.contains("icl"));
    }

    #[test]
    fn no_gap_recovery_over_a_noise_level_gap() {
        // icl right on 1 of 20, base on none: a 5-point gap, below MIN_GAP.
        let rows: Vec<ResultRow> = (0..20)
            .flat_map(|i| {
                let item = format!("x-{i}");
                [
                    row("base", &item, QuestionKind::Direct, false, None),
                    row("icl", &item, QuestionKind::Direct, i == 0, None),
                    row("ft", &item, QuestionKind::Direct, i < 4, None),
                ]
            })
            .collect();
        let s = summarize(
            &manifest(&["base", "icl", "ft"], Mode::Batch),
            &rows,
            &[],
            1.0,
        );
        assert_eq!(s.gap_recovery["ft"]["all"].likelihood, None);
        assert!(render_markdown(&s).contains("| ft | – / – |"));
    }

    #[test]
    fn sequential_tables_use_the_last_step_and_the_curve_every_step() {
        use QuestionKind::*;
        let rows = vec![
            // After step 1, x-1 is known; after step 2, x-1 is forgotten and y-1 known.
            row("seq", "x-1", Direct, true, Some(1)),
            row("seq", "x-1", Direct, false, Some(2)),
            row("seq", "y-1", Direct, true, Some(2)),
        ];
        let s = summarize(&manifest(&["seq"], Mode::Sequential), &rows, &[], 1.0);
        assert_eq!(s.questions, 2, "the final step's rows");
        assert_eq!(s.overall["seq"]["likelihood"].mean, 0.5);
        let curve = &s.retention["seq"];
        assert_eq!(curve.len(), 2);
        assert_eq!(
            (curve[0].injected, curve[0].first_item, curve[0].latest_item),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            (curve[1].injected, curve[1].first_item, curve[1].latest_item),
            (0.5, 0.0, 1.0)
        );
        let svg = retention_chart(&s).unwrap().unwrap();
        assert!(svg.contains("first item"));
    }
}
