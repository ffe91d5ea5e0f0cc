//! Labelled predictions: one row per image with its person, true class and the 18-way
//! probabilities. Training writes the validation split's rows at each new best
//! (`RUN/val_predictions.csv`); a k-fold run gathers its folds' rows into out-of-fold
//! predictions (`RUN/oof_predictions.csv`). Tuning, reports and cross-validated scores read them.
use crate::labels::NUM_CLASSES;
use crate::metrics::bootstrap::{ImageOutcome, Resampling, ScoreIntervals};
use crate::metrics::{scores, Confusion, Scores};
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

pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Scores of `predicted(row)` against the rows' true classes.
pub fn score_rows(rows: &[HeldOutRow], predicted: impl Fn(&HeldOutRow) -> usize) -> Scores {
    score_pairs(rows.iter().map(|r| (r.truth, predicted(r))))
}

/// Scores of (true, predicted) class pairs.
pub fn score_pairs(pairs: impl Iterator<Item = (usize, usize)>) -> Scores {
    let mut conf = Confusion::new(NUM_CLASSES);
    for (t, p) in pairs {
        conf.add(t, p);
    }
    scores(&conf)
}

/// Each row's person, fold, true class and predicted class (the argmax), as the bootstrap over
/// people takes them.
pub fn outcomes(rows: &[HeldOutRow]) -> Vec<ImageOutcome<'_>> {
    rows.iter().map(|r| ImageOutcome { person: &r.person, fold: r.fold, truth: r.truth, pred: r.predicted() }).collect()
}

/// The 95% intervals of the rows' scores by a bootstrap over their people.
pub fn score_intervals(rows: &[HeldOutRow], resampling: Resampling) -> Result<ScoreIntervals> {
    crate::metrics::bootstrap::score_intervals(&outcomes(rows), resampling)
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
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_round_trip_and_bad_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut probs = [0.01f32; NUM_CLASSES];
        probs[7] = 0.83;
        let rows = vec![
            HeldOutRow { path: "a/b,c.jpg".into(), person: "000001_male_Asian_45".into(), fold: 2, truth: 7, probs },
            HeldOutRow { path: "d.png".into(), person: "p\"q".into(), fold: 0, truth: 3, probs: [1.0 / 18.0; NUM_CLASSES] },
        ];
        let path = dir.path().join("p.csv");
        write_rows(&path, &rows).unwrap();
        assert_eq!(read_rows(&path).unwrap(), rows);
        assert_eq!(rows[0].predicted(), 7);
        let s = score_rows(&rows, |r| r.predicted());
        assert_eq!(s.accuracy, 0.5);

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen(",2,7,", ",2,19,", 1)).unwrap();
        let err = format!("{:#}", read_rows(&path).unwrap_err());
        assert!(err.contains("p.csv:2"), "{err}");

        let mut nan = rows.clone();
        nan[1].probs[4] = f32::NAN;
        write_rows(&path, &nan).unwrap();
        let err = format!("{:#}", read_rows(&path).unwrap_err());
        assert!(err.contains("p.csv:3") && err.contains("p4 is NaN") && err.contains("diverged"), "{err}");
    }
}
