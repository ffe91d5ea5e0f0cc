//! The file format of labelled predictions (`val_predictions.csv`, `oof_predictions.csv`):
//! `path,person,fold,true,pred,confidence,p0..p17`, one image a row. Reading checks every value
//! (a hostile or hand-edited file is an error naming its line); `heldout` scores the rows.
use crate::labels::NUM_CLASSES;
use crate::util::argmax::argmax;
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct HeldOutRow {
    /// The image file, as training read it.
    pub path: String,
    /// The person's folder name: rows of one person belong together.
    pub person: String,
    /// The k-fold fold (1-based) the row was held out in; 0 outside k-fold.
    pub fold: usize,
    pub truth: usize,
    pub probs: [f32; NUM_CLASSES],
}

impl HeldOutRow {
    pub fn predicted(&self) -> usize {
        argmax(&self.probs)
    }
}

const FIXED_COLUMNS: [&str; 6] = ["path", "person", "fold", "true", "pred", "confidence"];

/// `path,person,fold,true,pred,confidence,p0..p17`; pred and confidence are for people reading it.
pub fn write_rows(path: &Path, rows: &[HeldOutRow]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(FIXED_COLUMNS.iter().map(|c| c.to_string()).chain((0..NUM_CLASSES).map(|c| format!("p{c}"))))?;
    for r in rows {
        let pred = r.predicted();
        let fixed = [r.path.clone(), r.person.clone(), r.fold.to_string(), r.truth.to_string(), pred.to_string(), r.probs[pred].to_string()];
        csv.write_record(fixed.into_iter().chain(r.probs.iter().map(|p| p.to_string())))?;
    }
    write_atomic(path, &csv.into_inner().context("held-out predictions")?)
}

pub fn read_rows(path: &Path) -> Result<Vec<HeldOutRow>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_rows(&text, path)
}

/// The rows `text` holds; `path` names the file in messages.
pub fn parse_rows(text: &[u8], path: &Path) -> Result<Vec<HeldOutRow>> {
    let mut reader = csv::Reader::from_reader(text);
    let header: Vec<String> = reader.headers().with_context(|| format!("{}:1", path.display()))?.iter().map(str::to_string).collect();
    let expected: Vec<String> =
        FIXED_COLUMNS.iter().map(|s| s.to_string()).chain((0..NUM_CLASSES).map(|c| format!("p{c}"))).collect();
    if header != expected {
        bail!("{}:1: expected the columns {}", path.display(), expected.join(","));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let r = record.with_context(|| format!("{}:{line}", path.display()))?;
        let num = |col: usize| -> Result<f64> {
            r.get(col).unwrap_or("").trim().parse::<f64>().map_err(|_| anyhow!("{}:{line}: column {} is not a number", path.display(), expected[col]))
        };
        let truth = num(3)? as usize;
        if truth >= NUM_CLASSES {
            bail!("{}:{line}: true class must be 0..17", path.display());
        }
        let mut probs = [0f32; NUM_CLASSES];
        for (c, p) in probs.iter_mut().enumerate() {
            *p = num(FIXED_COLUMNS.len() + c)? as f32;
            if !p.is_finite() {
                bail!("{}:{line}: probability p{c} is {p}: these are the predictions of a training run that diverged", path.display());
            }
        }
        rows.push(HeldOutRow { path: r[0].to_string(), person: r[1].to_string(), fold: num(2)? as usize, truth, probs });
    }
    Ok(rows)
}

