//! `SWEEP/sweep.html`: the sweep at a glance. The best value with its 95% interval, the best
//! trials (linked to their own reports), the best value found against time, each parameter
//! against the objective, every trial across the parameters (parallel coordinates), the best
//! trials' paired comparison, and every trial with its status.
use super::space::{Domain, ParamValue};
use super::spec::Direction;
use super::study::{Study, StudyState};
use super::trial::{Trial, TrialStatus};
use crate::metrics::bootstrap::{Resampling, ScoreInterval};
use crate::report::compare::differences_html;
use crate::report::html::{cards, escape, facts, table, Card, Page};
use crate::report::plots::{line_chart_png, LineChart, Series, PALETTE};
use crate::report::search_plots::{parallel_png, ramp, scatter_png, AxisScale, ParallelAxis, ParallelLine, Scatter, ScatterPoint};
use crate::run_dir::RunDir;
use crate::train::settings::Monitor;
use anyhow::Result;
use plotters::style::RGBColor;

/// The page's charts, beside it.
pub const FIGURE_DIR: &str = "sweep";
/// The best trials' comparison.
pub const COMPARE_DIR: &str = "best-trials";
/// How many of the best complete trials the page compares.
pub const COMPARED_TRIALS: usize = 3;
pub const PAGE_FILE: &str = "sweep.html";
/// The best trial's config as a preset, which results writes and the page names.
pub const PRESET_FILE: &str = "best.toml";

const PRUNED_GREY: RGBColor = RGBColor(175, 175, 175);

pub fn sweep_page(study: &Study, state: &StudyState, resampling: Option<Resampling>) -> Result<Page> {
    let dir = study.dir();
    let objective = state.spec.objective;
    let metric = objective.metric.to_string();
    let mut page = Page::new(&format!("Sweep: {}", RunDir::new(dir).name()), &dir.display().to_string(), FIGURE_DIR);
    let best = state.ranked();

    page.section("summary", "Summary");
    let best_interval = best.first().and_then(|t| objective_interval(&study.trial_run(t.number), objective.metric));
    let (complete, pruned, failed, running) =
        (state.count(TrialStatus::Complete), state.count(TrialStatus::Pruned), state.count(TrialStatus::Failed), state.count(TrialStatus::Running));
    page.html(&cards(&[
        Card::new(&format!("best {metric}{}", best.first().map(|t| format!(" ({})", t.name())).unwrap_or_default()), best.first().and_then(|t| t.value).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()))
            .with_interval(best_interval.as_ref()),
        Card::new("trials complete", complete.to_string()),
        Card::new("pruned", pruned.to_string()),
        Card::new("failed", failed.to_string()),
        Card::new("running", running.to_string()),
        Card::new("minutes so far", format!("{:.1}", elapsed(state) / 60.0)),
    ]));
    let spec = &state.spec;
    let mut rows: Vec<(&str, String)> = spec.space.params.iter().map(|(k, d)| ("parameter", format!("{k}: {}", domain_text(d)))).collect();
    rows.push(("objective", format!("{metric} of the validation split, {} (a trial's value: its best epoch's)", direction_text(objective.direction))));
    rows.push(("sampler", format!("{:?} (seed {}, {} random trials first, {} candidates)", spec.sampler.kind, spec.sampler.seed, spec.sampler.startup_trials, spec.sampler.candidates).to_lowercase()));
    rows.push(("pruner", format!("{:?}: rungs at epoch {} x {}^k, the top 1/{} go on", spec.pruner.kind, spec.pruner.min_epochs, spec.pruner.reduction_factor, spec.pruner.reduction_factor).to_lowercase()));
    rows.push(("budget", budget_text(state)));
    let mut workers: Vec<&str> = state.trials.iter().map(|t| t.worker.as_str()).collect();
    workers.sort_unstable();
    workers.dedup();
    rows.push(("workers", format!("{} ({})", workers.len(), workers.join(", "))));
    page.html(&facts(&rows));

    page.section("best", "Best trials");
    if best.is_empty() {
        page.html("<p class=\"note\">No trial is complete yet.</p>");
    } else {
        let keys = state.param_keys();
        let mut header = vec!["trial".to_string(), metric.clone(), format!("{metric} 95% CI"), "epochs".into()];
        header.extend(keys.iter().cloned());
        let rows: Vec<Vec<String>> = best
            .iter()
            .take(10)
            .map(|t| {
                let mut row = vec![
                    t.name(),
                    t.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
                    objective_interval(&study.trial_run(t.number), objective.metric).map(|i| i.bracket()).unwrap_or_else(|| "-".into()),
                    t.epochs.len().to_string(),
                ];
                row.extend(keys.iter().map(|k| t.params.get(k).map(|v| v.to_string()).unwrap_or_default()));
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        page.html(&table(&header, &rows));
        let links: Vec<String> = best
            .iter()
            .take(10)
            .map(|t| format!("<a href=\"{}/{}\">{}</a>", escape(&t.name()), RunDir::report_page_name(), escape(&t.name())))
            .collect();
        page.html(&format!("<p>Each trial's own report: {}. The best config as a preset: <code>{}</code>.</p>", links.join(" &middot; "), escape(PRESET_FILE)));
    }

    page.section("charts", "The search");
    page.begin_row();
    page.figure("history.png", line_chart_png(&history_chart(state, &metric))?, &format!("Best {metric} found against time (complete trials)"));
    page.figure("parallel.png", parallel_chart(state, &metric)?, "Every trial across the parameters (colour: its value; grey: pruned, at its last epoch)");
    page.end_row();
    page.begin_row();
    for (i, key) in state.param_keys().iter().enumerate() {
        page.figure(&format!("param_{i}.png"), scatter_png(&param_chart(state, key, &metric))?, &format!("{key} against {metric}"));
    }
    page.end_row();

    page.section("comparison", "The best trials compared");
    let compared: Vec<std::path::PathBuf> = best.iter().take(COMPARED_TRIALS).map(|t| study.trial_run(t.number).path().to_path_buf()).collect();
    match (compared.len(), resampling) {
        (0 | 1, _) => page.html("<p class=\"note\">Fewer than two complete trials: nothing to compare yet.</p>"),
        (_, None) => page.html("<p class=\"note\">Intervals are off (intervals.resamples = 0): no paired comparison.</p>"),
        (_, Some(r)) => match crate::report::compare::compare(&compared, &dir.join(COMPARE_DIR), Some(r)) {
            Ok(c) => {
                if let Some((diffs, r)) = &c.differences {
                    differences_html(&mut page, diffs, *r);
                }
                page.html(&format!("<p>Curves and config differences: <a href=\"{COMPARE_DIR}/{}\">{COMPARE_DIR}/{}</a>.</p>", crate::report::compare::COMPARE_FILE, crate::report::compare::COMPARE_FILE));
            }
            Err(e) => page.html(&format!("<p class=\"note\">The comparison failed: {}</p>", escape(&format!("{e:#}")))),
        },
    }

    page.section("trials", "Every trial");
    let keys = state.param_keys();
    let mut header = vec!["trial".to_string(), "status".into(), metric.clone(), "epochs".into(), "minutes".into(), "worker".into()];
    header.extend(keys.iter().cloned());
    header.push("note".into());
    let rows: Vec<Vec<String>> = state
        .trials
        .iter()
        .map(|t| {
            let mut row = vec![
                t.name(),
                format!("{}{}", t.status, if t.attempts > 1 { format!(" (attempt {})", t.attempts) } else { String::new() }),
                t.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
                t.epochs.len().to_string(),
                t.finished.map(|f| format!("{:.1}", (f - t.started) / 60.0)).unwrap_or_else(|| "-".into()),
                t.worker.clone(),
            ];
            row.extend(keys.iter().map(|k| t.params.get(k).map(|v| v.to_string()).unwrap_or_default()));
            row.push(t.note.clone().unwrap_or_default());
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    page.html(&table(&header, &rows));
    Ok(page)
}

/// The 95% interval of the objective at a trial's best epoch (from its best.json); scores only.
fn objective_interval(run: &RunDir, metric: Monitor) -> Option<ScoreInterval> {
    let intervals = run.best().ok()??.eval?.intervals?;
    match metric {
        Monitor::F1 => Some(intervals.f1),
        Monitor::F1Mask => Some(intervals.f1_mask),
        Monitor::F1Gender => Some(intervals.f1_gender),
        Monitor::F1Age => Some(intervals.f1_age),
        Monitor::Accuracy | Monitor::Loss => None,
    }
}

fn elapsed(state: &StudyState) -> f64 {
    state.trials.iter().filter_map(|t| t.finished.or(t.epochs.last().map(|e| e.at))).fold(0.0, f64::max).max(state.created) - state.created
}

fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::Maximize => "maximised",
        Direction::Minimize => "minimised",
    }
}

fn budget_text(state: &StudyState) -> String {
    let b = &state.spec.budget;
    let mut parts = Vec::new();
    if let Some(n) = b.trials {
        parts.push(format!("{n} trials ({} started)", state.trials.len()));
    }
    if let Some(s) = b.seconds {
        parts.push(format!("{s:.0} s per worker process"));
    }
    parts.join(", ")
}

fn domain_text(d: &Domain) -> String {
    match d {
        Domain::Choices(c) => format!("one of {}", c.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
        Domain::Int { low, high, log } => format!("integers {low}..={high}{}", if *log { ", log scale" } else { "" }),
        Domain::Float { low, high, log } => format!("{low} to {high}{}", if *log { ", log scale" } else { "" }),
    }
}

/// A parameter's axis, and a value's place on it.
fn axis_of(domain: &Domain) -> AxisScale {
    match domain {
        Domain::Choices(c) => AxisScale::Categories(c.iter().map(|v| v.to_string()).collect()),
        Domain::Int { low, high, log: true } => AxisScale::Log { low: *low as f64, high: *high as f64 },
        Domain::Int { low, high, log: false } => AxisScale::Linear { low: *low as f64, high: *high as f64 },
        Domain::Float { low, high, log: true } => AxisScale::Log { low: *low, high: *high },
        Domain::Float { low, high, log: false } => AxisScale::Linear { low: *low, high: *high },
    }
}

fn position(domain: &Domain, value: &ParamValue) -> f64 {
    match (domain, value) {
        (Domain::Choices(c), v) => c.iter().position(|x| x == v).map_or(f64::NAN, |i| i as f64),
        (_, ParamValue::Int(i)) => *i as f64,
        (_, ParamValue::Float(x)) => *x,
        _ => f64::NAN,
    }
}

/// What a trial shows on the charts: its value (complete), or its value at its last epoch
/// (pruned, in grey); None for the others.
fn shown_value(t: &Trial) -> Option<(f64, bool)> {
    match t.status {
        TrialStatus::Complete => t.value.map(|v| (v, false)),
        TrialStatus::Pruned => t.last_epoch().map(|e| (e.value, true)),
        _ => None,
    }
}

fn history_chart(state: &StudyState, metric: &str) -> LineChart {
    let direction = state.spec.objective.direction;
    let mut done: Vec<(f64, f64)> = state
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Complete)
        .filter_map(|t| Some(((t.finished? - state.created) / 60.0, t.value?)))
        .filter(|(_, v)| !v.is_nan())
        .collect();
    done.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best_so_far: Vec<(f64, f64)> = Vec::new();
    let mut best: Option<f64> = None;
    for &(t, v) in &done {
        let next = match best {
            Some(b) if direction.oriented(b) >= direction.oriented(v) => b,
            _ => v,
        };
        if let Some(b) = best {
            best_so_far.push((t, b)); // a step: flat until the trial that improved on it
        }
        best_so_far.push((t, next));
        best = Some(next);
    }
    LineChart::per_epoch(
        &format!("Best {metric} found"),
        metric,
        vec![
            Series { name: "each complete trial".into(), points: done, markers: true, colour: RGBColor(158, 202, 225) },
            Series { name: "best so far".into(), points: best_so_far, markers: false, colour: PALETTE[3] },
        ],
        None,
    )
    .with_x_desc("minutes since the sweep started")
}

fn param_chart(state: &StudyState, key: &str, metric: &str) -> Scatter {
    let domain = &state.spec.space.params[key];
    let points = state
        .trials
        .iter()
        .filter_map(|t| {
            let (y, pruned) = shown_value(t)?;
            let x = position(domain, t.params.get(key)?);
            Some(ScatterPoint { x, y, colour: if pruned { PRUNED_GREY } else { PALETTE[0] } })
        })
        .collect();
    Scatter {
        title: key.to_string(),
        x_desc: format!("{key}{}", if matches!(axis_of(domain), AxisScale::Log { .. }) { " (log scale)" } else { "" }),
        y_desc: metric.to_string(),
        x: axis_of(domain),
        points,
        legend: vec![("complete".into(), PALETTE[0]), ("pruned (at its last epoch)".into(), PRUNED_GREY)],
    }
}

fn parallel_chart(state: &StudyState, metric: &str) -> Result<Vec<u8>> {
    let direction = state.spec.objective.direction;
    let keys = state.param_keys();
    let shown: Vec<(&Trial, f64, bool)> = state.trials.iter().filter_map(|t| shown_value(t).map(|(v, p)| (t, v, p))).filter(|(_, v, _)| v.is_finite()).collect();
    let (lo, hi) = shown.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v, _)| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let mut axes: Vec<ParallelAxis> = keys.iter().map(|k| ParallelAxis { name: k.clone(), scale: axis_of(&state.spec.space.params[k]) }).collect();
    axes.push(ParallelAxis { name: metric.to_string(), scale: AxisScale::Linear { low: lo, high: hi } });
    let best = state.ranked().first().map(|t| t.number);
    // 0 for the worst value shown, 1 for the best.
    let oriented = |v: f64| match (hi > lo, direction) {
        (false, _) => 1.0,
        (true, Direction::Maximize) => (v - lo) / (hi - lo),
        (true, Direction::Minimize) => (hi - v) / (hi - lo),
    };
    let lines: Vec<ParallelLine> = shown
        .iter()
        .map(|(t, v, pruned)| {
            let mut values: Vec<f64> = keys.iter().map(|k| t.params.get(k).map_or(f64::NAN, |p| position(&state.spec.space.params[k], p))).collect();
            values.push(*v);
            ParallelLine { values, colour: if *pruned { PRUNED_GREY } else { ramp(oriented(*v)) }, front: Some(t.number) == best }
        })
        .collect();
    let note = format!("colour: {metric}, {} is yellow; grey: pruned trials at their last epoch", match direction {
        Direction::Maximize => "highest",
        Direction::Minimize => "lowest",
    });
    parallel_png("Trials across the parameters", &axes, &lines, &note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::trial::EpochValue;

    fn trial(number: usize, status: TrialStatus, value: Option<f64>, finished: f64) -> Trial {
        Trial {
            number,
            params: Default::default(),
            status,
            epochs: vec![EpochValue { epoch: 1, value: value.unwrap_or(0.1), at: finished }],
            value,
            attempts: 1,
            worker: "h:1".into(),
            started: 0.0,
            finished: Some(finished),
            note: None,
        }
    }

    #[test]
    fn best_so_far_steps_up_only_when_a_trial_beats_it() {
        let spec = crate::sweep::spec::SweepSpec::parse("[space]\n\"optim.lr\" = { float = [0.001, 0.01] }\n[budget]\ntrials = 4\n").unwrap();
        let state = StudyState {
            version: 1,
            spec,
            created: 0.0,
            trials: vec![
                trial(0, TrialStatus::Complete, Some(0.5), 60.0),
                trial(1, TrialStatus::Complete, Some(0.4), 120.0),
                trial(2, TrialStatus::Pruned, None, 150.0),
                trial(3, TrialStatus::Complete, Some(0.7), 180.0),
            ],
        };
        let chart = history_chart(&state, "f1");
        assert_eq!(chart.series[0].points, vec![(1.0, 0.5), (2.0, 0.4), (3.0, 0.7)]);
        assert_eq!(chart.series[1].points, vec![(1.0, 0.5), (2.0, 0.5), (2.0, 0.5), (3.0, 0.5), (3.0, 0.7)]);
        assert_eq!(chart.x_desc, "minutes since the sweep started");
    }
}
