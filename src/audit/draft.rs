//! A relabel-list draft (`id,field,true_value`, the format `data/relabel.rs` reads) from the
//! suspects a user accepts. It is only a file: training applies it when passed back in
//! (`--relabel FILE` or `data.relabel=FILE`).
//!
//! A relabel row names a person by train.csv's id, and an id that several folders share names
//! them all (the competition has duplicated ids). A row for such an id is written only when it
//! changes nothing for the other folders (a gender they already have); otherwise it is left out
//! and reported, since no relabel row can correct one of those folders alone.
use super::{PersonInfo, RelabelRow, Suspect};
use crate::data::relabel::{Correction, Relabel};
use crate::labels::Mask;
use crate::util::write_atomic;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftSummary {
    pub path: String,
    /// Rows copied from the relabel list the run was trained with (first, so that passing the
    /// draft back in keeps them).
    pub kept_rows: usize,
    /// Rows written for accepted suspects.
    pub written: Vec<RelabelRow>,
    /// Accepted suspects left out, and why.
    pub left_out: Vec<String>,
}

/// The relabel row of an existing correction.
pub fn correction_row(r: &Relabel) -> RelabelRow {
    let (field, value) = match &r.correction {
        Correction::Gender(g) => ("gender", g.word().to_string()),
        Correction::Age(a) => ("age", a.to_string()),
        Correction::SwapNormalIncorrect => ("swap", "normal<->incorrect_mask".to_string()),
        Correction::Mask { stem, state } => {
            let word = match state {
                Mask::Wear => "wear",
                Mask::Incorrect => "incorrect",
                Mask::NotWear => "normal",
            };
            ("mask", format!("{stem}={word}"))
        }
    };
    RelabelRow { id: r.id.clone(), field: field.into(), true_value: value }
}

/// Why `row` for `suspect` cannot be written, if it cannot: its id also names other folders,
/// and the row would change them.
fn shared_id_problem(suspect: &Suspect, row: &RelabelRow, people: &BTreeMap<String, PersonInfo>) -> Option<String> {
    let others: Vec<(&String, &PersonInfo)> = people.iter().filter(|(folder, info)| info.id == row.id && **folder != suspect.person).collect();
    if others.is_empty() {
        return None;
    }
    let harmless = match row.field.as_str() {
        "gender" => others.iter().all(|(_, o)| o.gender.is_some_and(|g| g.word() == row.true_value)),
        "age" => others.iter().all(|(_, o)| o.age.is_some_and(|a| a.to_string() == row.true_value)),
        _ => false,
    };
    if harmless {
        return None;
    }
    let names: Vec<&str> = others.iter().map(|(f, _)| f.as_str()).collect();
    Some(format!(
        "{} {} of {}: id {} also names {}, which a relabel row would change too; correct it in train.csv instead",
        row.field,
        row.true_value,
        suspect.person,
        row.id,
        names.join(", ")
    ))
}

/// Writes `kept` (the run's own relabel rows) and then a row for each accepted suspect that can
/// have one, atomically. `people` holds every person folder of the dataset with its id.
pub fn write_draft(path: &Path, kept: &[Relabel], accepted: &[&Suspect], people: &BTreeMap<String, PersonInfo>) -> Result<DraftSummary> {
    let mut summary = DraftSummary { path: path.display().to_string(), kept_rows: kept.len(), ..Default::default() };
    let mut rows: Vec<RelabelRow> = kept.iter().map(correction_row).collect();
    for s in accepted {
        let Some(row) = &s.relabel else {
            summary.left_out.push(format!("{} of {}: {}", s.field.name(), s.person, s.note));
            continue;
        };
        if let Some(problem) = shared_id_problem(s, row, people) {
            summary.left_out.push(problem);
            continue;
        }
        summary.written.push(row.clone());
        rows.push(row.clone());
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["id", "field", "true_value"])?;
    for r in &rows {
        out.write_record([&r.id, &r.field, &r.true_value])?;
    }
    write_atomic(path, &out.into_inner()?)?;
    Ok(summary)
}
