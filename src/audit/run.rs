//! `masklab audit RUN`: the audit of a k-fold run's out-of-fold predictions, written as
//! `RUN/audit.json` (which the run's report shows as photo rows), optionally a suspects CSV and
//! a relabel-list draft.
use super::draft::{write_draft, DraftSummary};
use super::{audit, Audit, AuditOptions, PersonInfo, Suspect};
use crate::data::dataset::{read_train, ReadOptions};
use crate::data::relabel::{read_relabels, Relabel};
use crate::run_dir::heldout::{read_rows, HeldOutRow};
use crate::run_dir::metrics_log::History;
use crate::run_dir::RunDir;
use crate::run_dir::RunLock;
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

/// Suspects scoring at least this are accepted into a relabel draft by default.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct RunAuditOptions {
    /// Suspects listed (stdout, CSV, report) and open to acceptance; 0 = all.
    pub top: usize,
    /// Accepted into the draft: listed suspects scoring at least this.
    pub min_score: f64,
    pub hard_years: u32,
    /// The dataset folder (default: the one the run trained on).
    pub data: Option<PathBuf>,
    pub out_csv: Option<PathBuf>,
    pub write_relabel: Option<PathBuf>,
}

impl Default for RunAuditOptions {
    fn default() -> Self {
        RunAuditOptions { top: 50, min_score: DEFAULT_MIN_SCORE, hard_years: 2, data: None, out_csv: None, write_relabel: None }
    }
}

/// `RUN/audit.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditFile {
    pub run: String,
    /// The dataset the ids and ages came from, when it could be read.
    pub data: Option<String>,
    /// The relabel list the run trained with, if any.
    pub relabel_file: Option<String>,
    pub top: usize,
    pub min_score: f64,
    pub audit: Audit,
    pub draft: Option<DraftSummary>,
    /// What could not be read, in words (the audit went on without it).
    pub warnings: Vec<String>,
}

impl AuditFile {
    /// The suspects listed: the first `top` (all when 0).
    pub fn listed(&self) -> &[Suspect] {
        let n = if self.top == 0 { self.audit.suspects.len() } else { self.top.min(self.audit.suspects.len()) };
        &self.audit.suspects[..n]
    }

    /// The listed suspects scoring at least `min_score`.
    pub fn accepted(&self) -> Vec<&Suspect> {
        self.listed().iter().filter(|s| s.score >= self.min_score).collect()
    }
}

/// Reads `RUN/audit.json`; None when the run has not been audited.
pub fn read_audit(run: &RunDir) -> Result<Option<AuditFile>> {
    let path = run.audit_file();
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is not an audit file written by masklab audit", path.display()))?))
}

/// The dataset a run trained on: the `data` of its first fold's `start` line in metrics.jsonl.
pub fn trained_on(run: &RunDir) -> Option<PathBuf> {
    History::read(&run.fold(1).metrics_file()).ok()?.start.data
}

/// Audits a k-fold run and writes RUN/audit.json (and the CSV and draft when asked).
pub fn audit_run(run: &RunDir, opts: &RunAuditOptions, observers: &mut [&mut dyn AuditObserver]) -> Result<AuditFile> {
    let oof_path = run.oof_predictions();
    let shown = run.path().display();
    if !run.is_kfold() {
        bail!("{shown} is not a k-fold run (no folds file): the audit needs out-of-fold predictions; train one with data.folds=5");
    }
    if !oof_path.is_file() {
        let name = oof_path.file_name().unwrap_or_default().to_string_lossy();
        bail!("{shown} has no {name}: its folds have not all finished; continue it with masklab train DATA --resume {shown}");
    }
    // audit.json is written into the run: not while training or tune is writing it.
    let _lock = RunLock::acquire(run, "audit")?;
    let data_section: crate::data::settings::DataConfig = crate::util::section::read(&run.config_table()?)?;
    let bounds = data_section.bounds()?;
    let rows = read_rows(&oof_path)?;
    check_complete(run, &rows)?;

    let mut warnings = Vec::new();
    let mut people: BTreeMap<String, PersonInfo> = BTreeMap::new();
    let mut kept: Vec<Relabel> = Vec::new();
    let mut relabel_file = None;
    let data = opts.data.clone().or_else(|| trained_on(run));
    let mut data_read = None;
    match &data {
        Some(data) => {
            let mut read = ReadOptions { skip_bad: true, ..data_section.read_options() };
            // data.relabel is a path as training was given it, perhaps from another folder.
            if let Some(missing) = read.relabel.clone().filter(|p| !p.is_file()) {
                warnings.push(format!("the run's relabel list {} is not found from here: ages come from train.csv as filed, and a draft will not repeat its rows", missing.display()));
                read.relabel = None;
                read.no_relabel = true;
            }
            match read_train(data, &read) {
                Ok(set) => {
                    for p in &set.people {
                        people.insert(p.folder.clone(), PersonInfo { id: p.id.clone(), age: Some(p.age), gender: Some(p.gender) });
                    }
                    if let Some(file) = &set.relabel_file {
                        kept = read_relabels(file)?;
                        relabel_file = Some(file.display().to_string());
                    }
                    data_read = Some(data.display().to_string());
                }
                Err(e) => warnings.push(format!("cannot read the dataset ({e}); ids and ages come from the folder names")),
            }
        }
        None => warnings.push("the run does not name its dataset; ids and ages come from the folder names".into()),
    }
    // People of the predictions that the dataset did not list (or no dataset): their folder names.
    for r in &rows {
        people.entry(r.person.clone()).or_insert_with(|| PersonInfo::from_folder(&r.person));
    }
    for r in &rows {
        if let (Some(info), Some(c)) = (people.get_mut(&r.person), crate::labels::Class::decode(r.truth)) {
            info.gender = Some(c.gender);
        }
    }

    let result = audit(&rows, &people, &AuditOptions { bounds, hard_years: opts.hard_years })?;
    let mut file = AuditFile {
        run: run.path().display().to_string(),
        data: data_read,
        relabel_file,
        top: opts.top,
        min_score: opts.min_score,
        audit: result,
        draft: None,
        warnings,
    };
    if let Some(path) = &opts.write_relabel {
        let accepted = file.accepted();
        let draft = write_draft(path, &kept, &accepted, &people)?;
        file.draft = Some(draft);
    }
    if let Some(path) = &opts.out_csv {
        write_atomic(path, suspects_csv(file.listed())?.as_bytes())?;
    }
    write_atomic(&run.audit_file(), serde_json::to_string_pretty(&file)?.as_bytes())?;
    for o in observers.iter_mut() {
        o.audited(run, &file)?;
    }
    Ok(file)
}

/// Refuses out-of-fold predictions that are not exactly the folds' held-out predictions (every
/// image once, each with the fold that held it out): rows deleted, duplicated or moved by hand
/// would skew every rate the audit estimates, silently.
fn check_complete(run: &RunDir, rows: &[HeldOutRow]) -> Result<()> {
    let oof = run.oof_predictions();
    let shown = oof.display();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(first) = seen.insert(r.path.as_str(), i + 2) {
            bail!("{shown}:{}: {} appears twice (first on line {first}); gather the run again with masklab train DATA --resume {}", i + 2, r.path, run.path().display());
        }
    }
    let folds = run.folds_state()?.folds;
    let mut expected = 0;
    for fold in 1..=folds {
        let val = run.fold(fold).val_predictions();
        let held = read_rows(&val).with_context(|| format!("the audit checks {shown} against each fold's held-out predictions"))?;
        expected += held.len();
        for h in &held {
            match seen.get(h.path.as_str()).map(|line| (line, &rows[line - 2])) {
                None => bail!(
                    "{shown} lacks {} (held out by fold {fold}, {}): the file is incomplete; gather the run again with masklab train DATA --resume {}",
                    h.path,
                    val.display(),
                    run.path().display()
                ),
                Some((line, r)) if r.fold != fold || r.truth != h.truth => {
                    bail!("{shown}:{line}: {} says fold {} class {}, but fold {fold} held it out as class {}", r.path, r.fold, r.truth, h.truth)
                }
                Some(_) => {}
            }
        }
    }
    if rows.len() != expected {
        bail!("{shown} has {} rows, the {folds} folds held out {expected} images: it holds images no fold predicted", rows.len());
    }
    Ok(())
}

/// Hears that a run's audit.json was written (the run's report shows the suspects).
pub trait AuditObserver {
    fn audited(&mut self, run: &RunDir, file: &AuditFile) -> Result<()>;
}

/// The listed suspects as CSV, one a row, ranked.
pub fn suspects_csv(suspects: &[Suspect]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rank", "score", "field", "person", "id", "photo", "given", "suggested", "confidence", "baseline", "hard_case", "disagreeing", "considered", "flagged",
        "evidence", "note", "relabel_field", "relabel_value",
    ])?;
    for (i, s) in suspects.iter().enumerate() {
        let (rf, rv) = s.relabel.as_ref().map(|r| (r.field.as_str(), r.true_value.as_str())).unwrap_or(("", ""));
        w.write_record([
            (i + 1).to_string(),
            format!("{:.4}", s.score),
            s.field.name().to_string(),
            s.person.clone(),
            s.id.clone(),
            s.photo.clone().unwrap_or_default(),
            s.given.clone(),
            s.suggested.clone(),
            format!("{:.4}", s.confidence),
            format!("{:.4}", s.baseline),
            s.hard_case.to_string(),
            s.disagreeing.to_string(),
            s.considered.to_string(),
            s.flagged.to_string(),
            s.evidence.clone(),
            s.note.clone(),
            rf.to_string(),
            rv.to_string(),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// The audit as people read it on a terminal.
pub fn render(file: &AuditFile) -> String {
    let a = &file.audit;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "label audit of {}: {} out-of-fold images of {} people; per-photo confident learning flags {} photos; {} suspects",
        file.run,
        a.images,
        a.people,
        a.photo_issues,
        a.suspects.len()
    );
    for w in &file.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for (task, f1) in a.oof_f1.weak() {
        let _ = writeln!(s, "warning: the out-of-fold model reads {task} poorly (macro F1 {f1:.2}): its {task} suspects are mostly its own mistakes");
    }
    let listed = file.listed();
    if listed.is_empty() {
        s.push_str("no suspects: every person's pooled gender and age band, every normal/incorrect pair and every photo's mask state agree with the labels\n");
    } else {
        let _ = writeln!(s, "{:>4}  {:>5}  {:<6}  {:<32}  {:<40}  evidence", "rank", "score", "field", "person", "given -> suggested");
    }
    for (i, x) in listed.iter().enumerate() {
        let what = match &x.photo {
            Some(stem) => format!("{stem}: {} -> {}", x.given, x.suggested),
            None => format!("{} -> {}", x.given, x.suggested),
        };
        let mark = if x.hard_case { format!(" [{}]", x.note) } else { String::new() };
        let _ = writeln!(s, "{:>4}  {:>5.3}  {:<6}  {:<32}  {:<40}  {}{mark}", i + 1, x.score, x.field.name(), x.person, what, x.evidence);
    }
    if listed.len() < a.suspects.len() {
        let _ = writeln!(s, "({} more below the top {}; --top 0 lists all)", a.suspects.len() - listed.len(), listed.len());
    }
    if !listed.is_empty() {
        let accepted = file.accepted().len();
        let _ = writeln!(s, "{accepted} of the {} listed score at least {:.2} (accepted for a relabel draft)", listed.len(), file.min_score);
    }
    if let Some(d) = &file.draft {
        let _ = writeln!(
            s,
            "wrote {}: {} row(s) for accepted suspects{}; apply it by training with --relabel {} (or data.relabel=...)",
            d.path,
            d.written.len(),
            if d.kept_rows > 0 { format!(" after the {} row(s) of the run's own relabel list", d.kept_rows) } else { String::new() },
            d.path
        );
        for l in &d.left_out {
            let _ = writeln!(s, "left out of the draft: {l}");
        }
    }
    s
}
