//! Labelled predictions: one row per image with its person, true class and the 18-way
//! probabilities. Training writes the validation split's rows at each new best
//! (`RUN/val_predictions.csv`); a k-fold run gathers its folds' rows into out-of-fold
//! predictions (`RUN/oof_predictions.csv`). Tuning, reports and cross-validated scores read them.
pub use super::predictions_csv::{parse_rows, read_rows, write_rows, HeldOutRow};
use crate::labels::NUM_CLASSES;
use crate::metrics::bootstrap::{ImageOutcome, Resampling, ScoreIntervals};
use crate::metrics::{scores, Confusion, Scores};
use anyhow::Result;

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
