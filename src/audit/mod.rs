//! The label audit: suspected wrong labels of a training set, found from out-of-fold
//! predictions (every image predicted by a model that never saw its person).
//!
//! Three kinds of evidence, all from the 18-way probabilities split into their mask, gender and
//! age marginals:
//! - per photo, confident learning (`confident`, as cleanlab's `find_label_issues`) over the 18
//!   classes flags photos; a photo whose mask marginal says another state is a **mask** suspect
//!   (the flag is part of its evidence, as the flags of a person's photos are for gender and age);
//! - per person, the seven photos pooled (the mean of their marginals), since a person's photos
//!   share gender and age: a person whose pooled gender or age band is not the given one is a
//!   **gender** or **age** suspect;
//! - per person, the `normal` / `incorrect_mask` pair (each person has one of each): when the
//!   bare-face photo looks worn-incorrectly and the other looks bare, the two were filed under
//!   each other's name, a **swap** suspect.
//!
//! A suspect's confidence is the model's pooled probability of the suggested value (for a swap,
//! the probability that the pair is swapped rather than as filed, from the two photos' mask
//! readings). Its score is the confidence times the reliability of the model on that task (the
//! out-of-fold macro F1, corrected for chance: 0 for a model no better than guessing, 1 for a
//! perfect one), so that a task the model reads poorly does not fill the list with its own
//! mistakes. Plausibly hard cases rather than wrong labels are marked and their score is halved:
//! age suspects whose person is at most `hard_years` outside the suggested band (a 29-year-old
//! who looks 31), and single photos read as the neighbouring mask state (a mask below the nose
//! read as worn, one on the chin read as bare; worn against bare is never a hard case).
pub mod confident;
pub mod draft;
pub mod run;

use crate::labels::{AgeBand, AgeBounds, Class, Gender, Mask, NUM_CLASSES, STEMS};
use crate::run_dir::heldout::HeldOutRow;
use crate::util::argmax::argmax;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A hard case's score is multiplied by this: it stays on the list, below clear cases.
pub const HARD_CASE_FACTOR: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Gender,
    Age,
    /// The mask state of one photo.
    Mask,
    /// The `normal` and `incorrect_mask` photos filed under each other's name.
    Swap,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Gender => "gender",
            Field::Age => "age",
            Field::Mask => "mask",
            Field::Swap => "swap",
        }
    }
}

/// What the audit knows of a person folder besides its predictions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersonInfo {
    /// The id that relabel lists name (train.csv's `id`).
    pub id: String,
    /// The age as training used it, when known.
    pub age: Option<u32>,
    /// The gender as training used it, when known.
    pub gender: Option<Gender>,
}

impl PersonInfo {
    /// What a folder named `<id>_<gender>_<race>_<age>` says; the id is the whole name when it
    /// has no `_`.
    pub fn from_folder(folder: &str) -> PersonInfo {
        let parts: Vec<&str> = folder.split('_').collect();
        PersonInfo {
            id: parts[0].to_string(),
            gender: parts.get(1).and_then(|g| Gender::parse(g)),
            age: if parts.len() >= 4 { parts[parts.len() - 1].parse().ok() } else { None },
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuditOptions {
    pub bounds: AgeBounds,
    /// An age suspect whose person is at most this many years outside the suggested band is a hard case.
    pub hard_years: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { bounds: AgeBounds::default(), hard_years: 2 }
    }
}

/// One photo of a suspect's person, as the evidence shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoEvidence {
    pub path: String,
    /// The file stem (`mask1` .. `normal`).
    pub stem: String,
    /// The given 18-way class and the predicted one (argmax).
    pub given: usize,
    pub predicted: usize,
    /// The photo's probability of the suggested value of the suspect's field.
    pub p_suggested: f64,
    /// Whether this photo by itself says the suggested value (its marginal's argmax).
    pub disagrees: bool,
    /// Whether per-photo confident learning flags it.
    pub flagged: bool,
}

/// A relabel-list row (`id,field,true_value`) that would apply a suspect's suggestion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelabelRow {
    pub id: String,
    pub field: String,
    pub true_value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// The person folder.
    pub person: String,
    pub id: String,
    pub field: Field,
    /// The photo (file stem) a mask suspect is about.
    pub photo: Option<String>,
    pub given: String,
    pub suggested: String,
    /// The ranking score: confidence times reliability, times HARD_CASE_FACTOR for a hard case.
    pub score: f64,
    /// The model's probability of the suggested value, pooled over the photos considered.
    pub confidence: f64,
    /// The same probability as it usually is for units filed with the given value (people for
    /// gender and age, photos for mask, pairs for swaps), for comparison.
    pub baseline: f64,
    /// How well the model reads the field's task: its out-of-fold macro F1 corrected for chance, in [0, 1].
    pub reliability: f64,
    pub hard_case: bool,
    /// Photos that by themselves say the suggested value, of the photos considered.
    pub disagreeing: usize,
    pub considered: usize,
    /// Of the disagreeing photos, how many per-photo confident learning flags.
    pub flagged: usize,
    /// The evidence in words.
    pub evidence: String,
    /// All the person's photos, in stem order.
    pub photos: Vec<PhotoEvidence>,
    /// The relabel row that applies the suggestion, when masklab's relabel list can say it.
    pub relabel: Option<RelabelRow>,
    /// Why it is a hard case, or why no relabel row can apply it.
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub images: usize,
    pub people: usize,
    pub age_bounds: [u32; 2],
    pub hard_years: u32,
    /// Per-class thresholds of per-photo confident learning (mean self-confidence), 18.
    pub thresholds: Vec<f64>,
    /// Photos that per-photo confident learning flags (any field).
    pub photo_issues: usize,
    /// Their paths, in the order of the predictions file.
    pub flagged_photos: Vec<String>,
    /// How well the out-of-fold model reads each task (macro F1 of its argmax): a suspect means
    /// little where its task is read poorly.
    pub oof_f1: TaskF1,
    /// Every suspect, highest score first.
    pub suspects: Vec<Suspect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskF1 {
    pub mask: f64,
    pub gender: f64,
    pub age: f64,
}

/// Below this out-of-fold macro F1 a task's suspects are mostly the model's own mistakes.
pub const WEAK_TASK_F1: f64 = 0.6;

impl TaskF1 {
    /// Each task's F1 corrected for chance ((F1 - 1/k) / (1 - 1/k) for k classes), in [0, 1].
    pub fn reliability(&self) -> TaskF1 {
        let r = |f1: f64, k: f64| ((f1 - 1.0 / k) / (1.0 - 1.0 / k)).clamp(0.0, 1.0);
        TaskF1 { mask: r(self.mask, 3.0), gender: r(self.gender, 2.0), age: r(self.age, 3.0) }
    }

    /// The tasks read poorly, as (name, F1).
    pub fn weak(&self) -> Vec<(&'static str, f64)> {
        [("mask", self.mask), ("gender", self.gender), ("age", self.age)].into_iter().filter(|(_, f)| *f < WEAK_TASK_F1).collect()
    }
}

/// A photo's probabilities split by task, each normalised to sum to one.
struct Marginals {
    mask: [f64; 3],
    gender: [f64; 2],
    age: [f64; 3],
}

fn marginals(probs: &[f32; NUM_CLASSES]) -> Option<Marginals> {
    let total: f64 = probs.iter().map(|&p| p as f64).sum();
    if !(total > 0.0 && total.is_finite()) || probs.iter().any(|p| *p < 0.0) {
        return None;
    }
    let mut m = Marginals { mask: [0.0; 3], gender: [0.0; 2], age: [0.0; 3] };
    for c in Class::all() {
        let p = probs[c.encode()] as f64 / total;
        m.mask[c.mask.index()] += p;
        m.gender[c.gender.index()] += p;
        m.age[c.age.index()] += p;
    }
    Some(m)
}

fn stem_of(path: &str) -> String {
    Path::new(&path.replace('\\', "/")).file_stem().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

fn mask_word(m: Mask) -> &'static str {
    match m {
        Mask::Wear => "wear",
        Mask::Incorrect => "incorrect",
        Mask::NotWear => "normal",
    }
}

/// How many years `age` lies outside `band` (0 inside it).
pub fn years_outside(age: u32, band: AgeBand, bounds: &AgeBounds) -> u32 {
    let (lo, hi) = band_range(band, bounds);
    if age < lo {
        lo - age
    } else if age > hi {
        age - hi
    } else {
        0
    }
}

/// The first and last age of a band (the old band ends at u32::MAX).
fn band_range(band: AgeBand, bounds: &AgeBounds) -> (u32, u32) {
    match band {
        AgeBand::Young => (0, bounds.middle - 1),
        AgeBand::Middle => (bounds.middle, bounds.old - 1),
        AgeBand::Old => (bounds.old, u32::MAX),
    }
}

/// The age in `band` nearest to `age`: what a relabel row writes for a suggested band.
pub fn nearest_age_in(band: AgeBand, age: u32, bounds: &AgeBounds) -> u32 {
    let (lo, hi) = band_range(band, bounds);
    age.clamp(lo, hi)
}

/// One person's rows, in stem order, with their marginals.
struct PersonRows<'a> {
    folder: &'a str,
    rows: Vec<(usize, &'a HeldOutRow, Marginals)>,
    gender: Gender,
    band: AgeBand,
}

/// Audits out-of-fold rows. `people` holds what is known of each person folder beyond its rows
/// (its id and age); folders missing from it are read from their names.
pub fn audit(rows: &[HeldOutRow], people: &BTreeMap<String, PersonInfo>, opts: &AuditOptions) -> Result<Audit> {
    if rows.is_empty() {
        bail!("no predictions to audit");
    }
    let mut marg = Vec::with_capacity(rows.len());
    for r in rows {
        match marginals(&r.probs) {
            Some(m) => marg.push(m),
            None => bail!("{}: its probabilities are not a distribution (negative, all zero or not finite)", r.path),
        }
    }
    let labels: Vec<usize> = rows.iter().map(|r| r.truth).collect();
    let probs: Vec<Vec<f64>> = rows.iter().map(|r| r.probs.iter().map(|&p| p as f64).collect()).collect();
    let cl = confident::find_label_issues(&labels, &probs);

    let mut by_person: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_person.entry(r.person.as_str()).or_default().push(i);
    }
    let mut marg: Vec<Option<Marginals>> = marg.into_iter().map(Some).collect();
    let mut persons = Vec::with_capacity(by_person.len());
    for (folder, idx) in &by_person {
        let first = Class::decode(rows[idx[0]].truth).expect("checked by read_rows");
        for &i in idx {
            let c = Class::decode(rows[i].truth).expect("checked by read_rows");
            if c.gender != first.gender || c.age != first.age {
                bail!("person {folder}: its rows disagree on gender or age band ({} and {}): one folder is one person", rows[idx[0]].path, rows[i].path);
            }
        }
        let mut person_rows: Vec<(usize, &HeldOutRow, Marginals)> =
            idx.iter().map(|&i| (i, &rows[i], marg[i].take().expect("each row once"))).collect();
        person_rows.sort_by_key(|(_, r, _)| {
            let stem = stem_of(&r.path);
            (STEMS.iter().position(|s| *s == stem).unwrap_or(STEMS.len()), r.path.clone())
        });
        persons.push(PersonRows { folder, rows: person_rows, gender: first.gender, band: first.age });
    }
    let base = Baselines::of(&persons);
    let s = crate::run_dir::heldout::score_rows(rows, |r| r.predicted());
    let oof_f1 = TaskF1 { mask: s.f1_mask, gender: s.f1_gender, age: s.f1_age };
    let reliability = oof_f1.reliability();
    let mut suspects = Vec::new();
    for p in &persons {
        let info = people.get(p.folder).cloned().unwrap_or_else(|| PersonInfo::from_folder(p.folder));
        suspects.extend(person_suspects(p, &info, &cl, &base, &reliability, opts));
    }
    suspects.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.person.cmp(&b.person)).then_with(|| a.field.cmp(&b.field)).then_with(|| a.photo.cmp(&b.photo)));
    Ok(Audit {
        images: rows.len(),
        people: by_person.len(),
        age_bounds: [opts.bounds.middle, opts.bounds.old],
        hard_years: opts.hard_years,
        thresholds: cl.thresholds.clone(),
        photo_issues: cl.issue.iter().filter(|i| **i).count(),
        flagged_photos: rows.iter().zip(&cl.issue).filter(|(_, i)| **i).map(|(r, _)| r.path.clone()).collect(),
        oof_f1,
        suspects,
    })
}

impl PersonRows<'_> {
    fn pooled_gender(&self) -> [f64; 2] {
        let n = self.rows.len() as f64;
        let mut out = [0.0; 2];
        for (_, _, m) in &self.rows {
            out.iter_mut().zip(m.gender).for_each(|(o, v)| *o += v / n);
        }
        out
    }

    fn pooled_age(&self) -> [f64; 3] {
        let n = self.rows.len() as f64;
        let mut out = [0.0; 3];
        for (_, _, m) in &self.rows {
            out.iter_mut().zip(m.age).for_each(|(o, v)| *o += v / n);
        }
        out
    }

    /// The one photo filed bare and the one filed worn incorrectly; None unless the person has
    /// exactly one of each.
    fn pair(&self) -> Option<Pair> {
        let with = |mask: Mask| -> Vec<usize> { (0..self.rows.len()).filter(|&k| Class::decode(self.rows[k].1.truth).is_some_and(|c| c.mask == mask)).collect() };
        match (with(Mask::NotWear).as_slice(), with(Mask::Incorrect).as_slice()) {
            ([b], [w]) => {
                let (mb, mw) = (&self.rows[*b].2.mask, &self.rows[*w].2.mask);
                let (i, n) = (Mask::Incorrect.index(), Mask::NotWear.index());
                // The two hypotheses' likelihoods: swapped (bare file shows an incorrect mask, the
                // other a bare face) against as filed.
                let (swapped, filed) = (mb[i] * mw[n], mb[n] * mw[i]);
                let posterior = if swapped + filed > 0.0 { swapped / (swapped + filed) } else { 0.0 };
                Some(Pair { bare: *b, incorrect: *w, bare_reads_incorrect: mb[i], incorrect_reads_bare: mw[n], posterior })
            }
            _ => None,
        }
    }
}

/// A person's `normal` / `incorrect_mask` pair as the model reads it.
struct Pair {
    bare: usize,
    incorrect: usize,
    bare_reads_incorrect: f64,
    incorrect_reads_bare: f64,
    /// The probability that the two are swapped rather than as filed.
    posterior: f64,
}

/// What the model usually says, per given value: the mean probability of each value over the
/// people (gender, age), photos (mask) or bare/incorrect pairs (swap) filed with the given one.
/// Shown beside each suspect's confidence, so a reviewer sees how unusual it is.
struct Baselines {
    gender: [[f64; 2]; 2],
    age: [[f64; 3]; 3],
    mask: [[f64; 3]; 3],
    swap: f64,
}

impl Baselines {
    fn of(persons: &[PersonRows]) -> Baselines {
        fn means<const K: usize>(items: impl Iterator<Item = (usize, [f64; K])>) -> [[f64; K]; K] {
            let mut sum = [[0.0; K]; K];
            let mut n = [0usize; K];
            for (given, v) in items {
                n[given] += 1;
                sum[given].iter_mut().zip(v).for_each(|(s, x)| *s += x);
            }
            for (row, n) in sum.iter_mut().zip(n) {
                row.iter_mut().for_each(|s| *s /= n.max(1) as f64);
            }
            sum
        }
        let pairs: Vec<f64> = persons.iter().filter_map(|p| p.pair()).map(|pair| pair.posterior).collect();
        Baselines {
            gender: means(persons.iter().map(|p| (p.gender.index(), p.pooled_gender()))),
            age: means(persons.iter().map(|p| (p.band.index(), p.pooled_age()))),
            mask: means(persons.iter().flat_map(|p| p.rows.iter().map(|(_, r, m)| (Class::decode(r.truth).expect("checked").mask.index(), m.mask)))),
            swap: pairs.iter().sum::<f64>() / pairs.len().max(1) as f64,
        }
    }
}

fn person_suspects(p: &PersonRows, info: &PersonInfo, cl: &confident::ConfidentLearning, base: &Baselines, reliability: &TaskF1, opts: &AuditOptions) -> Vec<Suspect> {
    let n = p.rows.len();
    let mut out = Vec::new();
    // The class confident learning suggests for a flagged photo: its argmax (never its label).
    let suggested_class = |i: usize, r: &HeldOutRow| -> Option<Class> {
        cl.issue[i].then(|| Class::decode(argmax(&r.probs)).expect("18 probabilities"))
    };
    let photos = |p_of: &dyn Fn(&Marginals) -> f64, says: &dyn Fn(&Marginals) -> bool, flagged: &dyn Fn(usize, &HeldOutRow) -> bool| -> Vec<PhotoEvidence> {
        p.rows
            .iter()
            .map(|(i, r, m)| PhotoEvidence {
                path: r.path.clone(),
                stem: stem_of(&r.path),
                given: r.truth,
                predicted: r.predicted(),
                p_suggested: p_of(m),
                disagrees: says(m),
                flagged: flagged(*i, r),
            })
            .collect()
    };
    let new = |field: Field, photo: Option<String>, given: String, suggested: String, (confidence, baseline): (f64, f64), photos: Vec<PhotoEvidence>, evidence: String| Suspect {
        person: p.folder.to_string(),
        id: info.id.clone(),
        field,
        photo,
        given,
        suggested,
        score: confidence * field_reliability(field, reliability),
        confidence,
        baseline,
        reliability: field_reliability(field, reliability),
        hard_case: false,
        disagreeing: photos.iter().filter(|e| e.disagrees).count(),
        considered: 0,
        flagged: photos.iter().filter(|e| e.disagrees && e.flagged).count(),
        evidence,
        photos,
        relabel: None,
        note: String::new(),
    };
    let row = |field: &str, value: String| Some(RelabelRow { id: info.id.clone(), field: field.into(), true_value: value });

    // Gender: the photos pooled.
    let other = Gender::from_index(1 - p.gender.index()).expect("two genders");
    let pooled = p.pooled_gender()[other.index()];
    let usual = base.gender[p.gender.index()][other.index()];
    if pooled > 0.5 {
        let ev = photos(
            &|m| m.gender[other.index()],
            &|m| m.gender[other.index()] > m.gender[p.gender.index()],
            &|i, r| suggested_class(i, r).is_some_and(|c| c.gender == other),
        );
        let k = ev.iter().filter(|e| e.disagrees).count();
        let mean_k = mean(ev.iter().filter(|e| e.disagrees).map(|e| e.p_suggested));
        let evidence = format!(
            "{k} of {n} photos say {} (mean p {mean_k:.2}); pooled p({}) {pooled:.2}, usually {usual:.2} for people filed {}",
            other.word(),
            other.word(),
            p.gender.word()
        );
        let mut s = new(Field::Gender, None, p.gender.word().into(), other.word().into(), (pooled, usual), ev, evidence);
        s.considered = n;
        s.relabel = row("gender", other.word().into());
        out.push(s);
    }

    // Age band: the photos pooled.
    let pooled_age = p.pooled_age();
    let best = AgeBand::from_index(argmax(&pooled_age)).expect("three bands");
    if best != p.band {
        let b = &opts.bounds;
        let ev = photos(
            &|m| m.age[best.index()],
            &|m| argmax(&m.age) == best.index(),
            &|i, r| suggested_class(i, r).is_some_and(|c| c.age == best),
        );
        let k = ev.iter().filter(|e| e.disagrees).count();
        let mean_k = mean(ev.iter().filter(|e| e.disagrees).map(|e| e.p_suggested));
        let given = match info.age {
            Some(age) => format!("{} (age {age})", b.band_label(p.band)),
            None => b.band_label(p.band),
        };
        let usual = base.age[p.band.index()][best.index()];
        let evidence = format!(
            "{k} of {n} photos say {} (mean p {mean_k:.2}); pooled p({}) {:.2}, usually {usual:.2} for people filed {}",
            b.band_label(best),
            b.band_label(best),
            pooled_age[best.index()],
            b.band_label(p.band)
        );
        let mut s = new(Field::Age, None, given, b.band_label(best), (pooled_age[best.index()], usual), ev, evidence);
        s.considered = n;
        match info.age {
            Some(age) => {
                let years = years_outside(age, best, b);
                if years <= opts.hard_years {
                    s.hard_case = true;
                    s.score *= HARD_CASE_FACTOR;
                    s.note = format!("hard case: age {age} is {years} year{} from {}", if years == 1 { "" } else { "s" }, b.band_label(best));
                }
                s.relabel = row("age", nearest_age_in(best, age, b).to_string());
            }
            None => s.note = "the person's age is unknown (no train.csv, folder name without it): no relabel row".into(),
        }
        out.push(s);
    }

    // Swap: the one photo labelled NotWear against the one labelled Incorrect.
    let mut swapped = Vec::new();
    if let Some(pair) = p.pair().filter(|pair| pair.posterior > 0.5) {
        let (b, w, pb, pw) = (pair.bare, pair.incorrect, pair.bare_reads_incorrect, pair.incorrect_reads_bare);
        let (sb, sw) = (stem_of(&p.rows[b].1.path), stem_of(&p.rows[w].1.path));
        let both = [b, w];
        let ev: Vec<PhotoEvidence> = photos(&|_| 0.0, &|_| false, &|i, _| cl.issue[i])
            .into_iter()
            .enumerate()
            .map(|(k, mut e)| {
                if both.contains(&k) {
                    e.disagrees = true;
                    e.p_suggested = if k == b { pb } else { pw };
                }
                e
            })
            .collect();
        let evidence = format!(
            "{sb} (filed bare) reads worn incorrectly (p {pb:.2}); {sw} (filed incorrect) reads bare (p {pw:.2}); swapped rather than as filed: p {:.2}, usually {:.2}",
            pair.posterior,
            base.swap
        );
        let mut s = new(
            Field::Swap,
            None,
            format!("{sb}=normal, {sw}=incorrect"),
            format!("{sb}=incorrect, {sw}=normal"),
            (pair.posterior, base.swap),
            ev,
            evidence,
        );
        s.considered = 2;
        s.relabel = row("swap", "normal<->incorrect_mask".into());
        out.push(s);
        swapped = both.to_vec();
    }

    // Mask state of single photos: those whose mask marginal says another state (a swapped pair
    // is reported as the swap). Confident learning's flag is evidence, not a gate: it prunes only
    // as many photos as its noise estimate allows and passes over a wrong label that is no more
    // confident than its true class's average photo.
    for (k, (i, r, m)) in p.rows.iter().enumerate() {
        let given = Class::decode(r.truth).expect("checked").mask;
        let best = Mask::from_index(argmax(&m.mask)).expect("three states");
        if best == given || swapped.contains(&k) {
            continue;
        }
        let stem = stem_of(&r.path);
        let mut ev = photos(&|m| m.mask[best.index()], &|_| false, &|i, _| cl.issue[i]);
        ev[k].disagrees = true;
        let usual = base.mask[given.index()][best.index()];
        let evidence = format!(
            "{stem} looks {} (p {:.2}, usually {usual:.2} for photos filed {}); {}",
            best.name(),
            m.mask[best.index()],
            given.name(),
            if cl.issue[*i] { "flagged by confident learning" } else { "not flagged by confident learning" }
        );
        let mut s = new(Field::Mask, Some(stem.clone()), given.name().into(), best.name().into(), (m.mask[best.index()], usual), ev, evidence);
        s.considered = 1;
        // Worn and bare are never confused by a labeller; the incorrect state borders both.
        if given == Mask::Incorrect || best == Mask::Incorrect {
            s.hard_case = true;
            s.score *= HARD_CASE_FACTOR;
            s.note = format!(
                "hard case: {}",
                if given == Mask::Wear || best == Mask::Wear { "a mask just below the nose reads as worn or incorrect alike" } else { "a mask on the chin reads as incorrect or bare alike" }
            );
        }
        if STEMS.contains(&stem.as_str()) {
            s.relabel = row("mask", format!("{stem}={}", mask_word(best)));
        } else {
            s.note = format!("`{stem}` is not one of the seven photo names: no relabel row");
        }
        out.push(s);
    }
    out
}

fn field_reliability(field: Field, r: &TaskF1) -> f64 {
    match field {
        Field::Gender => r.gender,
        Field::Age => r.age,
        Field::Mask | Field::Swap => r.mask,
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests;
