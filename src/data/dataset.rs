//! Reads the competition's layout: `DATA/train/train.csv` + `DATA/train/images/<path>/`
//! (seven photos a person) and `DATA/eval/info.csv` + `DATA/eval/images/`.
//!
//! The folder is the person: duplicate and suffixed ids (`001498-1`) stay distinct people, but
//! one folder listed on two rows is an error (it would count one person twice and could put the
//! same photos on both sides of a split). Labels come from train.csv's columns, then the relabel
//! list corrects them; a relabel row names a person by id or by folder name, and an id shared by
//! several folders must be written as the folder name.
use crate::util::data_error::{csv_error, csv_line, DataError, Problems};
use super::relabel::{read_relabels, Correction, Relabel};
use crate::labels::{AgeBounds, Class, Gender, Mask, STEMS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(Clone, Debug)]
pub struct ImageEntry {
    pub path: PathBuf,
    /// One of [`STEMS`].
    pub stem: String,
    pub mask: Mask,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub gender: Gender,
    pub race: String,
    pub age: u32,
    /// The folder name under `train/images/`.
    pub folder: String,
    pub images: Vec<ImageEntry>,
    /// The person's line in train.csv (1-based; the header is line 1).
    pub line: u64,
}

/// One labelled image, ready for splitting and training.
#[derive(Clone, Debug)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`TrainSet::people`].
    pub person: usize,
    pub class: Class,
}

#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// A relabel list to apply instead of `DATA/train/relabel.csv`.
    pub relabel: Option<PathBuf>,
    /// Ignore `DATA/train/relabel.csv` even when present.
    pub no_relabel: bool,
    /// Report bad rows, folders and images and go on, instead of stopping at the first.
    pub skip_bad: bool,
}

#[derive(Clone, Debug)]
pub struct TrainSet {
    pub root: PathBuf,
    pub people: Vec<Person>,
    /// Files in person folders that are not one of the seven photos (macOS `._*` junk, stray files).
    pub skipped_files: Vec<PathBuf>,
    /// The relabel file applied, if any, and how many corrections it made.
    pub relabel_file: Option<PathBuf>,
    pub relabeled: usize,
    /// Problems reported and skipped under `skip_bad`.
    pub problems: Vec<String>,
}

impl TrainSet {
    /// Every image with its 18-way class under the given age bounds.
    pub fn samples(&self, bounds: &AgeBounds) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.people.len() * 7);
        for (i, p) in self.people.iter().enumerate() {
            let age = bounds.band(p.age);
            for img in &p.images {
                out.push(Sample { path: img.path.clone(), person: i, class: Class::new(img.mask, p.gender, age) });
            }
        }
        out
    }

    pub fn image_count(&self) -> usize {
        self.people.iter().map(|p| p.images.len()).sum()
    }

    /// Per person, the stratum used to split: gender x age band (0..6).
    pub fn strata(&self, bounds: &AgeBounds) -> Vec<usize> {
        self.people.iter().map(|p| p.gender.index() * 3 + bounds.band(p.age).index()).collect()
    }
}

/// Reads `DATA/train/` and applies the relabel list.
pub fn read_train(data: &Path, opts: &ReadOptions) -> Result<TrainSet, DataError> {
    let train_dir = data.join("train");
    let csv_path = train_dir.join("train.csv");
    let images_dir = train_dir.join("images");
    if !csv_path.is_file() {
        return Err(DataError::file(&csv_path, "not found (expected DATA/train/train.csv with columns id,gender,race,age,path)"));
    }
    if !images_dir.is_dir() {
        return Err(DataError::file(&images_dir, "folder not found"));
    }
    let mut problems = Problems::new(opts.skip_bad);
    let mut skipped_people = Vec::new();
    let text = std::fs::read(&csv_path).map_err(|e| DataError::file(&csv_path, format!("cannot read: {e}")))?;
    let rows = parse_train_rows(&text, &csv_path, &mut problems, &mut skipped_people)?;
    let rows = drop_repeated_folders(rows, &csv_path, &mut problems)?;
    let mut people = Vec::with_capacity(rows.len());
    let mut skipped_files = Vec::new();
    for row in rows {
        let folder = images_dir.join(&row.folder);
        match list_person_images(&folder, &mut skipped_files) {
            Ok(images) => people.push(Person { images, ..row }),
            Err(e) => {
                skipped_people.push(SkippedPerson { id: row.id.clone(), folder: row.folder.clone(), why: e.to_string() });
                problems.bad(e)?
            }
        }
    }
    skipped_files.sort();

    let relabel_file = match (&opts.relabel, opts.no_relabel) {
        (Some(p), _) => Some(p.clone()),
        (None, false) if train_dir.join("relabel.csv").is_file() => Some(train_dir.join("relabel.csv")),
        _ => None,
    };
    let mut relabeled = 0;
    if let Some(path) = &relabel_file {
        let relabels = read_relabels(path)?;
        let relabels = drop_relabels_of_skipped(relabels, &people, &skipped_people, path, &mut problems)?;
        relabeled = apply_relabels(&mut people, &relabels, path, &csv_path)?;
    }
    Ok(TrainSet { root: data.to_path_buf(), people, skipped_files, relabel_file, relabeled, problems: problems.reported })
}

/// A train.csv row left out under `skip_bad` (a bad row, or a folder without its photos), as
/// far as its id and folder could be read: a relabel row naming it is reported, not an error.
struct SkippedPerson {
    id: String,
    folder: String,
    why: String,
}

/// The relabel rows for people that `skip_bad` left out, reported as skipped with the reason
/// their person was (instead of "unknown id", which would stop the read); the others, kept.
fn drop_relabels_of_skipped(relabels: Vec<Relabel>, people: &[Person], skipped: &[SkippedPerson], path: &Path, problems: &mut Problems) -> Result<Vec<Relabel>, DataError> {
    let mut kept = Vec::with_capacity(relabels.len());
    for r in relabels {
        let present = people.iter().any(|p| p.folder == r.id || p.id == r.id);
        match skipped.iter().find(|s| !present && (s.folder == r.id || s.id == r.id)) {
            Some(s) => problems.bad(DataError::row(path, r.line, format!("correction for `{}` not applied: its person was skipped ({})", r.id, s.why)))?,
            None => kept.push(r),
        }
    }
    Ok(kept)
}

/// train.csv's people from its text (`path` names it in messages), one folder once. The
/// folders themselves are not looked at.
pub fn parse_train_csv(text: &[u8], path: &Path, skip_bad: bool) -> Result<Vec<Person>, DataError> {
    let mut problems = Problems::new(skip_bad);
    let rows = parse_train_rows(text, path, &mut problems, &mut Vec::new())?;
    drop_repeated_folders(rows, path, &mut problems)
}

fn parse_train_rows(text: &[u8], path: &Path, problems: &mut Problems, skipped: &mut Vec<SkippedPerson>) -> Result<Vec<Person>, DataError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text);
    let headers = reader.headers().map_err(|e| csv_error(path, text, e))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h.eq_ignore_ascii_case(name)).ok_or_else(|| {
            DataError::row(path, 1, format!("missing column `{name}` (expected id,gender,race,age,path)"))
        })
    };
    let (id_c, gender_c, race_c, age_c, path_c) = (col("id")?, col("gender")?, col("race")?, col("age")?, col("path")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.bad(csv_error(path, text, e))?;
                continue;
            }
        };
        let line = csv_line(text, &record);
        match parse_person(&record, [id_c, gender_c, race_c, age_c, path_c]) {
            Ok(p) => out.push(Person { line, ..p }),
            Err(msg) => {
                let err = DataError::row(path, line, msg);
                let field = |c: usize| record.get(c).unwrap_or("").to_string();
                skipped.push(SkippedPerson { id: field(id_c), folder: field(path_c), why: err.to_string() });
                problems.bad(err)?
            }
        }
    }
    Ok(out)
}

fn parse_person(record: &csv::StringRecord, cols: [usize; 5]) -> Result<Person, String> {
    let get = |i: usize| record.get(i).unwrap_or("");
    let [id_c, gender_c, race_c, age_c, path_c] = cols;
    let id = get(id_c).to_string();
    if id.is_empty() {
        return Err("empty id".into());
    }
    let gender = Gender::parse(get(gender_c))
        .ok_or_else(|| format!("gender must be male or female, got `{}`", get(gender_c)))?;
    let age = get(age_c)
        .parse::<u32>()
        .map_err(|_| format!("age must be a non-negative integer, got `{}`", get(age_c)))?;
    let folder = get(path_c).to_string();
    if folder.is_empty() || folder.contains("..") || folder.contains('/') {
        return Err(format!("path must be a folder name under train/images, got `{folder}`"));
    }
    Ok(Person { id, gender, race: get(race_c).to_string(), age, folder, images: Vec::new(), line: 0 })
}

/// One folder is one person: a folder on a second row is an error naming both lines (or, with
/// skip_bad, the later row is reported and dropped).
fn drop_repeated_folders(rows: Vec<Person>, path: &Path, problems: &mut Problems) -> Result<Vec<Person>, DataError> {
    let mut first_line: BTreeMap<String, u64> = BTreeMap::new();
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(&first) = first_line.get(&row.folder) {
            problems.bad(DataError::row(
                path,
                row.line,
                format!(
                    "folder `{}` is already listed on line {first} ({}:{first}): one folder is one person, listed once",
                    row.folder,
                    path.display()
                ),
            ))?;
            continue;
        }
        first_line.insert(row.folder.clone(), row.line);
        kept.push(row);
    }
    Ok(kept)
}

/// The seven photos of one person folder, in stem order. Other files are appended to `skipped`.
fn list_person_images(folder: &Path, skipped: &mut Vec<PathBuf>) -> Result<Vec<ImageEntry>, DataError> {
    let entries = std::fs::read_dir(folder).map_err(|e| DataError::file(folder, format!("cannot list person folder: {e}")))?;
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::file(folder, format!("cannot list person folder: {e}")))?;
        names.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    names.sort();
    for (name, path) in names {
        match photo_stem(&name) {
            Some(stem) => {
                if let Some(first) = found.get(&stem) {
                    return Err(DataError::file(
                        &path,
                        format!("second photo for `{stem}` (first: {})", first.display()),
                    ));
                }
                found.insert(stem, path);
            }
            None => skipped.push(path),
        }
    }
    let missing: Vec<&str> = STEMS.iter().copied().filter(|s| !found.contains_key(*s)).collect();
    if !missing.is_empty() {
        return Err(DataError::file(folder, format!("missing photo(s): {}", missing.join(", "))));
    }
    Ok(STEMS
        .iter()
        .map(|s| ImageEntry {
            path: found.remove(*s).expect("checked above"),
            stem: s.to_string(),
            mask: Mask::from_stem(s).expect("a known stem"),
        })
        .collect())
}

/// `mask1.JPG` -> `mask1`; None for junk (`._mask1.jpg`), other stems and other extensions.
pub fn photo_stem(name: &str) -> Option<String> {
    if name.starts_with("._") {
        return None;
    }
    let (stem, ext) = name.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return None;
    }
    let stem = stem.to_ascii_lowercase();
    Mask::from_stem(&stem).map(|_| stem)
}

/// The one person a relabel row names: by folder name, else by an id that one folder has.
fn relabel_target(people: &[Person], r: &Relabel, path: &Path, train_csv: &Path) -> Result<usize, DataError> {
    if let Some(i) = people.iter().position(|p| p.folder == r.id) {
        return Ok(i);
    }
    let matches: Vec<usize> = (0..people.len()).filter(|&i| people[i].id == r.id).collect();
    match matches[..] {
        [i] => Ok(i),
        [] => {
            let suffixed: Vec<&str> =
                people.iter().filter(|p| p.id.starts_with(&format!("{}-", r.id))).map(|p| p.id.as_str()).collect();
            let hint = if suffixed.is_empty() { String::new() } else { format!("; did you mean {}?", suffixed.join(" or ")) };
            Err(DataError::row(path, r.line, format!("unknown id `{}` (not in train.csv{hint})", r.id)))
        }
        _ => {
            let candidates: Vec<String> = matches
                .iter()
                .map(|&i| format!("`{}` ({}:{})", people[i].folder, train_csv.display(), people[i].line))
                .collect();
            Err(DataError::row(
                path,
                r.line,
                format!(
                    "id `{}` belongs to {} people: {}; write the folder name of the one you mean instead of the id",
                    r.id,
                    matches.len(),
                    candidates.join(", ")
                ),
            ))
        }
    }
}

fn apply_relabels(people: &mut [Person], relabels: &[Relabel], path: &Path, train_csv: &Path) -> Result<usize, DataError> {
    // Resolve every row first so that a bad one leaves the labels untouched.
    let targets = relabels.iter().map(|r| relabel_target(people, r, path, train_csv)).collect::<Result<Vec<_>, _>>()?;
    for (r, i) in relabels.iter().zip(targets) {
        let p = &mut people[i];
        match &r.correction {
            Correction::Gender(g) => p.gender = *g,
            Correction::Age(a) => p.age = *a,
            Correction::SwapNormalIncorrect => {
                for img in &mut p.images {
                    img.mask = match img.mask {
                        Mask::NotWear => Mask::Incorrect,
                        Mask::Incorrect => Mask::NotWear,
                        m => m,
                    };
                }
            }
            Correction::Mask { stem, state } => {
                if let Some(img) = p.images.iter_mut().find(|img| &img.stem == stem) {
                    img.mask = *state;
                }
            }
        }
    }
    Ok(relabels.len())
}

/// The test layout: `DATA/eval/info.csv` (`ImageID,ans`) and its images, in info.csv's order.
#[derive(Clone, Debug)]
pub struct EvalSet {
    pub dir: PathBuf,
    pub info_path: PathBuf,
    pub image_ids: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub problems: Vec<String>,
}

/// Reads an eval folder holding `info.csv` and `images/`. Missing images are errors unless `skip_bad`,
/// in which case they are reported and kept (the caller decides what a missing image predicts).
pub fn read_eval(dir: &Path, skip_bad: bool) -> Result<EvalSet, DataError> {
    let info_path = dir.join("info.csv");
    let images = dir.join("images");
    let text = std::fs::read(&info_path)
        .map_err(|e| DataError::file(&info_path, format!("cannot read (expected EVAL/info.csv with ImageID,ans): {e}")))?;
    let rows = parse_info_rows(&text, &info_path)?;
    let mut problems = Problems::new(skip_bad);
    let (mut image_ids, mut paths) = (Vec::new(), Vec::new());
    for (line, id) in rows {
        let path = images.join(&id);
        if !path.is_file() {
            problems.bad(DataError::row(&info_path, line, format!("image not found: {}", path.display())))?;
        }
        image_ids.push(id);
        paths.push(path);
    }
    Ok(EvalSet { dir: dir.to_path_buf(), info_path, image_ids, paths, problems: problems.reported })
}

/// info.csv's image ids with their lines, from its text (`info_path` names it in messages).
pub fn parse_info_csv(text: &[u8], info_path: &Path) -> Result<Vec<(u64, String)>, DataError> {
    parse_info_rows(text, info_path)
}

fn parse_info_rows(text: &[u8], info_path: &Path) -> Result<Vec<(u64, String)>, DataError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text);
    let headers = reader.headers().map_err(|e| csv_error(info_path, text, e))?.clone();
    let id_c = headers
        .iter()
        .position(|h| h == "ImageID")
        .ok_or_else(|| DataError::row(info_path, 1, "missing column `ImageID`"))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(info_path, text, e))?;
        let line = csv_line(text, &record);
        let id = record.get(id_c).unwrap_or("").to_string();
        if id.is_empty() || id.contains('/') || id.contains("..") {
            return Err(DataError::row(info_path, line, format!("bad ImageID `{id}`")));
        }
        rows.push((line, id));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_stems_accept_mixed_extensions_and_reject_junk() {
        assert_eq!(photo_stem("mask1.jpg").as_deref(), Some("mask1"));
        assert_eq!(photo_stem("normal.JPEG").as_deref(), Some("normal"));
        assert_eq!(photo_stem("incorrect_mask.png").as_deref(), Some("incorrect_mask"));
        assert_eq!(photo_stem("._mask1.jpg"), None);
        assert_eq!(photo_stem("mask1.gif"), None);
        assert_eq!(photo_stem("Thumbs.db"), None);
        assert_eq!(photo_stem("mask6.jpg"), None);
    }
}
