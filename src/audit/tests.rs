//! The audit on synthetic out-of-fold probabilities: a model that is good at masks, fair at
//! gender and weak at age near the band bounds, with planted wrong labels.
use super::draft::write_draft;
use super::run::DEFAULT_MIN_SCORE;
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One synthetic person: what is true, what the folder says, and how the model sees them.
#[derive(Clone)]
struct Synth {
    id: String,
    gender: Gender,
    age: u32,
    filed_gender: Gender,
    filed_age: u32,
    /// The normal and incorrect_mask photos are filed under each other's name.
    swapped: bool,
    /// mask3 truly shows this state (filed as worn).
    mask3: Option<Mask>,
    /// How clearly the model sees the gender: its mean probability of the true one.
    gender_clarity: f64,
    /// The band the model sees (a hard case looks like the next band).
    looks: AgeBand,
}

impl Synth {
    fn folder(&self) -> String {
        format!("{}_{}_Asian_{}", self.id, self.filed_gender.word(), self.filed_age)
    }
}

fn bounds() -> AgeBounds {
    AgeBounds::default()
}

fn population(n: usize, rng: &mut ChaCha8Rng) -> Vec<Synth> {
    (0..n)
        .map(|i| {
            let gender = if rng.gen_bool(0.55) { Gender::Female } else { Gender::Male };
            let age = match rng.gen_range(0..10) {
                0..=4 => rng.gen_range(18..30),
                5..=8 => rng.gen_range(30..60),
                _ => rng.gen_range(60..67),
            };
            // One person in ten is hard to read for gender: the model leans to the truth, barely.
            let gender_clarity = if rng.gen_bool(0.1) { rng.gen_range(0.5..0.6) } else { rng.gen_range(0.75..0.97) };
            Synth { id: format!("{:06}", i + 1), gender, age, filed_gender: gender, filed_age: age, swapped: false, mask3: None, gender_clarity, looks: bounds().band(age) }
        })
        .collect()
}

fn dirichlet_rest(rng: &mut ChaCha8Rng, k: usize, top: usize, p_top: f64) -> Vec<f64> {
    let w: Vec<f64> = (0..k).map(|i| if i == top { 0.0 } else { rng.gen_range(0.1..1.0) }).collect();
    let sum: f64 = w.iter().sum();
    (0..k).map(|i| if i == top { p_top } else { (1.0 - p_top) * w[i] / sum }).collect()
}

/// Out-of-fold rows for the people: the model's probabilities come from the truth (and from
/// what each person looks like), the labels from the folders.
fn oof(people: &[Synth], seed: u64) -> Vec<HeldOutRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (n, p) in people.iter().enumerate() {
        let age_clarity: f64 = rng.gen_range(0.55..0.85);
        for stem in STEMS {
            let mut shown = Mask::from_stem(stem).unwrap();
            if stem == "mask3" {
                shown = p.mask3.unwrap_or(shown);
            }
            let filed_stem = match (stem, p.swapped) {
                ("normal", true) => "incorrect_mask",
                ("incorrect_mask", true) => "normal",
                (s, _) => s,
            };
            let p_mask = rng.gen_range(0.85..0.99);
            let mask = dirichlet_rest(&mut rng, 3, shown.index(), p_mask);
            let pg = (p.gender_clarity + rng.gen_range(-0.08..0.08)).clamp(0.02, 0.99);
            let gender = if p.gender == Gender::Male { [pg, 1.0 - pg] } else { [1.0 - pg, pg] };
            let p_age = (age_clarity + rng.gen_range(-0.1..0.1)).clamp(0.4, 0.95);
            let age = dirichlet_rest(&mut rng, 3, p.looks.index(), p_age);
            let mut probs = [0f32; NUM_CLASSES];
            for c in Class::all() {
                probs[c.encode()] = (mask[c.mask.index()] * gender[c.gender.index()] * age[c.age.index()]) as f32;
            }
            let given = Class::new(Mask::from_stem(filed_stem).unwrap(), p.filed_gender, bounds().band(p.filed_age));
            rows.push(HeldOutRow {
                path: format!("train/images/{}/{filed_stem}.jpg", p.folder()),
                person: p.folder(),
                fold: n % 5 + 1,
                truth: given.encode(),
                probs,
            });
        }
    }
    rows
}

fn infos(people: &[Synth]) -> BTreeMap<String, PersonInfo> {
    people.iter().map(|p| (p.folder(), PersonInfo { id: p.id.clone(), age: Some(p.filed_age), gender: Some(p.filed_gender) })).collect()
}

/// Adds hard cases: people within a year or two of a bound whom the model sees in the next band.
fn add_hard_cases(people: &mut [Synth], at: &[usize]) {
    let ages = [28, 29, 61, 31, 58];
    for (k, &i) in at.iter().enumerate() {
        let age = ages[k % ages.len()];
        let p = &mut people[i];
        p.age = age;
        p.filed_age = age;
        p.looks = match age {
            28 | 29 => AgeBand::Middle,
            61 => AgeBand::Middle,
            31 => AgeBand::Young,
            _ => AgeBand::Old,
        };
    }
}

#[test]
fn planted_errors_rank_first_and_hard_cases_are_marked_below_them() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut people = population(150, &mut rng);
    add_hard_cases(&mut people, &[20, 21, 22, 23, 24]);
    // Planted: two flipped genders, a swap, an age far in the wrong band, a mask3 worn incorrectly.
    people[3].filed_gender = Gender::Female;
    people[3].gender = Gender::Male;
    people[3].gender_clarity = 0.9;
    people[40].filed_gender = Gender::Male;
    people[40].gender = Gender::Female;
    people[40].gender_clarity = 0.85;
    people[7].swapped = true;
    people[9].age = 24;
    people[9].looks = AgeBand::Young;
    people[9].filed_age = 64;
    people[12].mask3 = Some(Mask::NotWear);
    // A mask3 worn below the nose, filed as worn: a hard case, not among the clear ones.
    people[14].mask3 = Some(Mask::Incorrect);
    let rows = oof(&people, 5);
    let result = audit(&rows, &infos(&people), &AuditOptions::default()).unwrap();
    let s = &result.suspects;

    let planted = [(3, Field::Gender), (40, Field::Gender), (7, Field::Swap), (9, Field::Age), (12, Field::Mask)];
    let top: Vec<(String, Field)> = s.iter().take(planted.len()).map(|x| (x.person.clone(), x.field)).collect();
    for (i, f) in planted {
        assert!(top.contains(&(people[i].folder(), f)), "planted {f:?} of person {i} not in the top 5: {top:?}");
    }
    for x in &s[..planted.len()] {
        assert!(x.score >= DEFAULT_MIN_SCORE, "{x:?}");
        assert!(!x.hard_case);
    }
    let by = |i: usize, f: Field| s.iter().find(|x| x.person == people[i].folder() && x.field == f).unwrap();
    let g = by(3, Field::Gender);
    assert_eq!((g.given.as_str(), g.suggested.as_str(), g.considered), ("female", "male", 7));
    assert!(g.disagreeing >= 6 && g.evidence.starts_with(&format!("{} of 7 photos say male", g.disagreeing)), "{}", g.evidence);
    assert_eq!(g.relabel, Some(RelabelRow { id: "000004".into(), field: "gender".into(), true_value: "male".into() }));
    assert_eq!(g.photos.len(), 7);
    assert_eq!(g.photos[0].stem, "mask1");
    let a = by(9, Field::Age);
    assert_eq!((a.given.as_str(), a.suggested.as_str()), (">=60 (age 64)", "<30"));
    assert_eq!(a.relabel.as_ref().unwrap().true_value, "29", "the nearest age inside the suggested band");
    let w = by(7, Field::Swap);
    assert_eq!(w.relabel.as_ref().unwrap().true_value, "normal<->incorrect_mask");
    assert_eq!(w.photos.iter().filter(|e| e.disagrees).map(|e| e.stem.as_str()).collect::<Vec<_>>(), ["incorrect_mask", "normal"]);
    assert!(!s.iter().any(|x| x.person == people[7].folder() && x.field == Field::Mask), "the swapped photos are one swap suspect, not two mask suspects");
    let m = by(12, Field::Mask);
    assert_eq!((m.photo.as_deref(), m.given.as_str(), m.suggested.as_str()), (Some("mask3"), "Wear", "NotWear"));
    assert_eq!(m.relabel.as_ref().unwrap().true_value, "mask3=normal");
    let near = by(14, Field::Mask);
    assert!(near.hard_case && near.note.contains("below the nose"), "{near:?}");
    assert_eq!(near.relabel.as_ref().unwrap().true_value, "mask3=incorrect");

    // The hard cases are suspects too, marked, with halved scores below every clear planted error.
    let last_planted = s.iter().position(|x| planted.iter().any(|(i, f)| x.person == people[*i].folder() && x.field == *f)).unwrap();
    let hard: Vec<&Suspect> = s.iter().filter(|x| x.hard_case).collect();
    assert!(hard.iter().filter(|h| h.field == Field::Age).count() >= 4, "{}", hard.len());
    for h in &hard {
        assert!(matches!(h.field, Field::Age | Field::Mask));
        assert!(h.note.starts_with("hard case: "), "{}", h.note);
        assert!((h.score - h.confidence * h.reliability * HARD_CASE_FACTOR).abs() < 1e-12);
        assert!(h.reliability > 0.5 && h.reliability <= 1.0);
        assert!(s.iter().position(|x| std::ptr::eq(x, *h)).unwrap() > last_planted.max(planted.len() - 1));
    }
}

#[test]
fn an_error_free_set_has_no_high_score_suspects() {
    for seed in [1, 2, 3] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut people = population(200, &mut rng);
        add_hard_cases(&mut people, &[5, 15, 25, 35, 45, 55]);
        let rows = oof(&people, seed + 100);
        let result = audit(&rows, &infos(&people), &AuditOptions::default()).unwrap();
        assert!(!result.suspects.is_empty(), "hard cases and unclear genders are suspects, with low scores");
        let high: Vec<&Suspect> = result.suspects.iter().filter(|s| s.score >= DEFAULT_MIN_SCORE).collect();
        assert!(high.is_empty(), "seed {seed}: {:?}", high.iter().map(|s| (&s.person, s.field, s.score)).collect::<Vec<_>>());
    }
}

#[test]
fn a_relabelled_swap_is_judged_by_the_labels_not_the_file_names() {
    // Training applied a swap: the file named normal is labelled Incorrect and shows an incorrect
    // mask. The model agrees, so nothing is suspect.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut people = population(40, &mut rng);
    people[2].swapped = true;
    let mut rows = oof(&people, 9);
    for r in rows.iter_mut().filter(|r| r.person == people[2].folder()) {
        let c = Class::decode(r.truth).unwrap();
        let mask = match c.mask {
            Mask::NotWear => Mask::Incorrect,
            Mask::Incorrect => Mask::NotWear,
            m => m,
        };
        r.truth = Class::new(mask, c.gender, c.age).encode();
    }
    let result = audit(&rows, &infos(&people), &AuditOptions::default()).unwrap();
    assert!(!result.suspects.iter().any(|s| s.person == people[2].folder() && matches!(s.field, Field::Swap | Field::Mask)));
}

#[test]
fn bad_rows_are_errors_naming_them() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let people = population(4, &mut rng);
    let mut rows = oof(&people, 9);
    let g = Class::decode(rows[3].truth).unwrap();
    rows[3].truth = Class::new(g.mask, Gender::from_index(1 - g.gender.index()).unwrap(), g.age).encode();
    let err = audit(&rows, &infos(&people), &AuditOptions::default()).unwrap_err().to_string();
    assert!(err.contains(&people[0].folder()) && err.contains("disagree on gender"), "{err}");
    let mut rows = oof(&people, 9);
    rows[5].probs = [0.0; NUM_CLASSES];
    let err = audit(&rows, &infos(&people), &AuditOptions::default()).unwrap_err().to_string();
    assert!(err.contains(&rows[5].path) && err.contains("not a distribution"), "{err}");
    assert!(audit(&[], &BTreeMap::new(), &AuditOptions::default()).is_err());
}

#[test]
fn folder_names_ages_and_bands() {
    assert_eq!(PersonInfo::from_folder("001498-1_female_Asian_45"), PersonInfo { id: "001498-1".into(), age: Some(45), gender: Some(Gender::Female) });
    assert_eq!(PersonInfo::from_folder("x"), PersonInfo { id: "x".into(), age: None, gender: None });
    let b = bounds();
    assert_eq!(years_outside(29, AgeBand::Middle, &b), 1);
    assert_eq!(years_outside(28, AgeBand::Middle, &b), 2);
    assert_eq!(years_outside(61, AgeBand::Middle, &b), 2);
    assert_eq!(years_outside(45, AgeBand::Middle, &b), 0);
    assert_eq!(years_outside(25, AgeBand::Old, &b), 35);
    assert_eq!(nearest_age_in(AgeBand::Middle, 64, &b), 59);
    assert_eq!(nearest_age_in(AgeBand::Old, 20, &AgeBounds::new(30, 59).unwrap()), 59);
    assert_eq!(nearest_age_in(AgeBand::Young, 64, &b), 29);
}

fn suspect(folder: &str, id: &str, field: Field, value: &str) -> Suspect {
    Suspect {
        person: folder.into(),
        id: id.into(),
        field,
        photo: None,
        given: String::new(),
        suggested: String::new(),
        score: 0.9,
        confidence: 0.9,
        baseline: 0.0,
        reliability: 1.0,
        hard_case: false,
        disagreeing: 7,
        considered: 7,
        flagged: 7,
        evidence: String::new(),
        photos: Vec::new(),
        relabel: Some(RelabelRow { id: id.into(), field: field.name().into(), true_value: value.into() }),
        note: String::new(),
    }
}

#[test]
fn drafts_name_suffixed_ids_whole_and_leave_out_rows_that_would_change_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let info = |id: &str, g: Gender, age: u32| PersonInfo { id: id.into(), age: Some(age), gender: Some(g) };
    let people: BTreeMap<String, PersonInfo> = [
        ("000003_male_Asian_40", info("000003", Gender::Male, 40)),
        ("000003-1_male_Asian_33", info("000003-1", Gender::Male, 33)),
        ("000008_male_White_30", info("000008", Gender::Male, 30)),
        ("000008_female_Black_50", info("000008", Gender::Female, 50)),
    ]
    .into_iter()
    .map(|(f, i)| (f.to_string(), i))
    .collect();
    let suspects = [
        suspect("000003-1_male_Asian_33", "000003-1", Field::Gender, "female"),
        // Harmless for the other 000008 folder, which is female already.
        suspect("000008_male_White_30", "000008", Field::Gender, "female"),
        // Would move the other 000008 folder's age too.
        suspect("000008_male_White_30", "000008", Field::Age, "60"),
        suspect("000008_female_Black_50", "000008", Field::Swap, "normal<->incorrect_mask"),
        Suspect { relabel: None, note: "the person's age is unknown".into(), ..suspect("000009_male_x", "000009", Field::Age, "") },
    ];
    let kept = vec![crate::data::relabel::Relabel { id: "000001".into(), correction: crate::data::relabel::Correction::Age(61), line: 2 }];
    let path = dir.path().join("draft.csv");
    let refs: Vec<&Suspect> = suspects.iter().collect();
    let d = write_draft(&path, &kept, &refs, &people).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "id,field,true_value\n000001,age,61\n000003-1,gender,female\n000008,gender,female\n");
    assert_eq!(d.kept_rows, 1);
    assert_eq!(d.written.len(), 2);
    assert_eq!(d.left_out.len(), 3);
    assert!(d.left_out[0].contains("id 000008 also names 000008_female_Black_50"), "{}", d.left_out[0]);
    assert!(d.left_out[1].starts_with("swap") && d.left_out[1].contains("000008_male_White_30"), "{}", d.left_out[1]);
    assert!(d.left_out[2].contains("age unknown") || d.left_out[2].contains("unknown"), "{}", d.left_out[2]);
    // The draft reads back as a relabel list.
    let back = crate::data::relabel::read_relabels(&path).unwrap();
    assert_eq!(back.len(), 3);
}

#[test]
fn a_draft_applied_to_demo_data_changes_only_the_folders_it_means() {
    use crate::data::dataset::{read_train, ReadOptions};
    let dir = tempfile::tempdir().unwrap();
    crate::demo::write_demo(dir.path(), &crate::demo::DemoOptions { train_people: 14, eval_people: 4, width: 16, height: 20, seed: 3 }).unwrap();
    let plain = read_train(dir.path(), &ReadOptions { no_relabel: true, ..Default::default() }).unwrap();
    let people: BTreeMap<String, PersonInfo> =
        plain.people.iter().map(|p| (p.folder.clone(), PersonInfo { id: p.id.clone(), age: Some(p.age), gender: Some(p.gender) })).collect();
    let suffixed = plain.people.iter().find(|p| p.id.ends_with("-1")).expect("the demo has a suffixed id");
    let shared: Vec<_> = plain.people.iter().filter(|p| plain.people.iter().filter(|q| q.id == p.id).count() > 1).collect();
    assert_eq!(shared.len(), 2, "the demo has one duplicated id");
    let flip = |g: Gender| Gender::from_index(1 - g.index()).unwrap();
    let suspects = [
        suspect(&suffixed.folder, &suffixed.id, Field::Gender, flip(suffixed.gender).word()),
        suspect(&shared[0].folder, &shared[0].id, Field::Swap, "normal<->incorrect_mask"),
    ];
    let path = dir.path().join("draft.csv");
    let refs: Vec<&Suspect> = suspects.iter().collect();
    let d = write_draft(&path, &[], &refs, &people).unwrap();
    assert_eq!(d.written.len(), 1);
    assert_eq!(d.left_out.len(), 1);
    let fixed = read_train(dir.path(), &ReadOptions { relabel: Some(path), ..Default::default() }).unwrap();
    for (before, after) in plain.people.iter().zip(&fixed.people) {
        assert_eq!(before.folder, after.folder);
        let masks = |p: &crate::data::dataset::Person| p.images.iter().map(|i| i.mask).collect::<Vec<_>>();
        assert_eq!(masks(before), masks(after), "no folder was swapped");
        if before.folder == suffixed.folder {
            assert_eq!(after.gender, flip(before.gender));
        } else {
            assert_eq!(after.gender, before.gender, "{} changed", before.folder);
        }
    }
}
