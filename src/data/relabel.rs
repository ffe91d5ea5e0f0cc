//! Relabel lists: corrections of known wrong labels, applied before anything else.
//!
//! CSV `id,field,true_value`, one correction a row:
//! - `gender`: `male` | `female`
//! - `age`: an integer
//! - `swap`: `normal<->incorrect_mask` (the two photos were filed under each other's name)
//! - `mask`: `STEM=state`, e.g. `mask3=incorrect` (`wear` | `incorrect` | `normal`)
//!
//! `id` is train.csv's id, or the person's folder name: an id that several folders share
//! (a duplicated id) must be written as the folder name, else the row is an error naming them.
use crate::util::data_error::{csv_error, csv_line, DataError};
use crate::labels::{Gender, Mask, STEMS};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Correction {
    Gender(Gender),
    Age(u32),
    SwapNormalIncorrect,
    Mask { stem: String, state: Mask },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Relabel {
    pub id: String,
    pub correction: Correction,
    /// Line in the relabel file, for error messages.
    pub line: u64,
}

pub fn read_relabels(path: &Path) -> Result<Vec<Relabel>, DataError> {
    let text = std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read relabel file: {e}")))?;
    parse_relabels(&text, path)
}

/// A relabel list from its text; `path` names it in messages.
pub fn parse_relabels(text: &[u8], path: &Path) -> Result<Vec<Relabel>, DataError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text);
    let headers = reader.headers().map_err(|e| csv_error(path, text, e))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| DataError::row(path, 1, format!("missing column `{name}` (expected id,field,true_value)")))
    };
    let (id_col, field_col, value_col) = (col("id")?, col("field")?, col("true_value")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, text, e))?;
        let line = csv_line(text, &record);
        let get = |i: usize| record.get(i).unwrap_or("").to_string();
        let (id, field, value) = (get(id_col), get(field_col), get(value_col));
        if id.is_empty() {
            return Err(DataError::row(path, line, "empty id"));
        }
        let correction = parse_correction(&field, &value).map_err(|msg| DataError::row(path, line, msg))?;
        out.push(Relabel { id, correction, line });
    }
    Ok(out)
}

fn parse_correction(field: &str, value: &str) -> Result<Correction, String> {
    match field.to_ascii_lowercase().as_str() {
        "gender" => Gender::parse(value)
            .map(Correction::Gender)
            .ok_or_else(|| format!("gender must be male or female, got `{value}`")),
        "age" => value
            .parse::<u32>()
            .map(Correction::Age)
            .map_err(|_| format!("age must be a non-negative integer, got `{value}`")),
        "swap" => {
            let v = value.replace(' ', "").to_ascii_lowercase();
            if v == "normal<->incorrect_mask" || v == "incorrect_mask<->normal" {
                Ok(Correction::SwapNormalIncorrect)
            } else {
                Err(format!("swap must be `normal<->incorrect_mask`, got `{value}`"))
            }
        }
        "mask" => {
            let (stem, state) = value
                .split_once('=')
                .ok_or_else(|| format!("mask must be `STEM=state` (e.g. mask3=incorrect), got `{value}`"))?;
            let stem = stem.trim().to_ascii_lowercase();
            if !STEMS.contains(&stem.as_str()) {
                return Err(format!("unknown image stem `{stem}` (expected one of {})", STEMS.join(", ")));
            }
            let state = Mask::parse(state)
                .ok_or_else(|| format!("unknown mask state `{}` (expected wear, incorrect or normal)", state.trim()))?;
            Ok(Correction::Mask { stem, state })
        }
        other => Err(format!("unknown field `{other}` (expected gender, age, swap or mask)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("relabel.csv");
        std::fs::write(
            &p,
            "id,field,true_value\n000001,gender,female\n000002,age,61\n000003,swap,normal<->incorrect_mask\n000004,mask,mask3=incorrect\n",
        )
        .unwrap();
        let r = read_relabels(&p).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].correction, Correction::Gender(Gender::Female));
        assert_eq!(r[1].correction, Correction::Age(61));
        assert_eq!(r[2].correction, Correction::SwapNormalIncorrect);
        assert_eq!(r[3].correction, Correction::Mask { stem: "mask3".into(), state: Mask::Incorrect });
        assert_eq!(r[3].line, 5);

        std::fs::write(&p, "id,field,true_value\n000001,gender,female\n000002,height,180\n").unwrap();
        let err = read_relabels(&p).unwrap_err().to_string();
        assert!(err.contains("relabel.csv:3"), "{err}");
        assert!(err.contains("unknown field `height`"), "{err}");

        std::fs::write(&p, "id,field,true_value\n000002,age,old\n").unwrap();
        let err = read_relabels(&p).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("age must be"), "{err}");
    }
}
