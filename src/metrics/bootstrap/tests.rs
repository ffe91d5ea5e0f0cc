use super::*;
use rand::Rng;

/// A person's seven photos: five masked, one worn incorrectly, one without a mask (as in the
/// competition's data), as 18-way classes `mask * 6 + gender * 3 + age`.
fn photo_classes(gender: usize, age: usize) -> [usize; 7] {
    [0, 0, 0, 0, 0, 1, 2].map(|mask| mask * 6 + gender * 3 + age)
}

/// Where a wrong prediction of `truth` goes, with probabilities summing to 1: half of the
/// mistakes are the age band (to a neighbouring band), a quarter the mask state, a quarter the gender.
fn mistakes(truth: usize) -> Vec<(usize, f64)> {
    let (mask, gender, age) = (truth / 6, (truth / 3) % 2, truth % 3);
    let class = |m: usize, g: usize, a: usize| m * 6 + g * 3 + a;
    let mut out = Vec::new();
    let ages: Vec<usize> = if age == 1 { vec![0, 2] } else { vec![1] };
    for &a in &ages {
        out.push((class(mask, gender, a), 0.5 / ages.len() as f64));
    }
    for m in (0..3).filter(|&m| m != mask) {
        out.push((class(m, gender, age), 0.125));
    }
    out.push((class(mask, 1 - gender, age), 0.25));
    out
}

/// The simulated population: how often each age band occurs, and people's accuracies with
/// their frequencies (a person's photos share one accuracy: their mistakes go together).
struct Population {
    ages: [f64; 3],
    skills: Vec<(f64, f64)>,
}

impl Population {
    fn typical() -> Population {
        Population { ages: [0.45, 0.4, 0.15], skills: vec![(0.5, 0.95), (0.3, 0.8), (0.2, 0.5)] }
    }

    /// The same people, each `lift` more often right (capped at 0.99).
    fn better(&self, lift: f64) -> Population {
        Population { ages: self.ages, skills: self.skills.iter().map(|&(p, s)| (p, (s + lift).min(0.99))).collect() }
    }

    fn pick<R: Rng>(rng: &mut R, weighted: impl Iterator<Item = (f64, usize)>) -> usize {
        let mut u: f64 = rng.gen();
        let mut last = 0;
        for (w, v) in weighted {
            last = v;
            if u < w {
                return v;
            }
            u -= w;
        }
        last
    }

    /// `people` people: rows (person, truth, prediction), photo by photo.
    fn draw<R: Rng>(&self, rng: &mut R, people: usize, name: &str) -> Vec<(String, usize, usize)> {
        let mut rows = Vec::new();
        for i in 0..people {
            let gender = rng.gen_range(0..2);
            let age = Self::pick(rng, self.ages.iter().copied().zip(0..3));
            let skill = self.skills[Self::pick(rng, self.skills.iter().map(|s| s.0).zip(0..))].1;
            for truth in photo_classes(gender, age) {
                let pred = if rng.gen::<f64>() < skill {
                    truth
                } else {
                    let m = mistakes(truth);
                    m[Self::pick(rng, m.iter().map(|x| x.1).zip(0..))].0
                };
                rows.push((format!("{name}{i:04}"), truth, pred));
            }
        }
        rows
    }

    /// The population's scores: those of its expected confusion (the limit of ever more people).
    fn true_scores(&self) -> Scores {
        let mut expected = [0.0f64; NUM_CLASSES * NUM_CLASSES];
        for gender in 0..2 {
            for (age, &p_age) in self.ages.iter().enumerate() {
                for &(p_skill, skill) in &self.skills {
                    let weight = 0.5 * p_age * p_skill;
                    for truth in photo_classes(gender, age) {
                        expected[truth * NUM_CLASSES + truth] += weight * skill;
                        for (pred, p) in mistakes(truth) {
                            expected[truth * NUM_CLASSES + pred] += weight * (1.0 - skill) * p;
                        }
                    }
                }
            }
        }
        // F1 is a ratio of counts: scaled up and rounded, the expected counts score the same to ~1e-9.
        let conf = Confusion { n: NUM_CLASSES, counts: expected.iter().map(|&e| (e * 1e10).round() as u64).collect() };
        scores(&conf)
    }
}

fn outcomes(rows: &[(String, usize, usize)]) -> Vec<ImageOutcome<'_>> {
    rows.iter().map(|(person, truth, pred)| ImageOutcome { person, fold: 0, truth: *truth, pred: *pred }).collect()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

const FEW: Resampling = Resampling { resamples: 400, seed: 7 };

#[test]
fn each_resample_is_scored_as_metrics_scores_scores_its_photos() {
    let rows = Population::typical().draw(&mut rng(1), 40, "p");
    let images = outcomes(&rows);
    let counts = PeopleCounts::new(&images).unwrap();
    let resampling = Resampling { resamples: 25, seed: 3 };
    let drawn = resample(&[&counts], resampling, 0).pop().unwrap();
    // The same draws again, and each resample's photos listed one by one (a person drawn twice twice).
    let mut again = ChaCha8Rng::seed_from_u64(3);
    again.set_stream(0);
    for scored in &drawn {
        let people: Vec<usize> = (0..counts.len()).map(|_| again.gen_range(0..counts.len())).collect();
        let mut conf = Confusion::new(NUM_CLASSES);
        for &p in &people {
            for image in images.iter().filter(|i| i.person == counts.people[p]) {
                conf.add(image.truth, image.pred);
            }
        }
        assert_eq!(*scored, scores(&conf));
    }
    let mut whole = Confusion::new(NUM_CLASSES);
    images.iter().for_each(|i| whole.add(i.truth, i.pred));
    let intervals = score_intervals(&images, resampling).unwrap();
    assert_eq!(intervals.f1.estimate, scores(&whole).f1);
    assert_eq!(intervals.f1_mask.estimate, scores(&whole).f1_mask);
    assert_eq!(intervals.f1_gender.estimate, scores(&whole).f1_gender);
    assert_eq!(intervals.f1_age.estimate, scores(&whole).f1_age);
}

#[test]
fn intervals_hold_the_estimate_name_their_unit_and_repeat_with_their_seed() {
    let rows = Population::typical().draw(&mut rng(2), 100, "p");
    let images = outcomes(&rows);
    let a = score_intervals(&images, FEW).unwrap();
    for i in [a.f1, a.f1_mask, a.f1_gender, a.f1_age] {
        assert!(i.low < i.estimate && i.estimate < i.high, "{i:?}");
        assert!(i.high - i.low < 0.3, "{i:?}");
        assert_eq!((i.people, i.resamples, i.seed, i.level), (100, 400, 7, 0.95));
    }
    assert_eq!(score_intervals(&images, FEW).unwrap(), a);
    let other = score_intervals(&images, Resampling { seed: 8, ..FEW }).unwrap();
    assert_ne!(other.f1.low, a.f1.low);
    let json = serde_json::to_value(a.f1).unwrap();
    assert_eq!(json["unit"], "person");
    assert_eq!(serde_json::from_value::<ScoreInterval>(json).unwrap(), a.f1);
}

#[test]
fn a_known_difference_is_found_in_either_order() {
    let mut r = rng(3);
    let population = Population::typical();
    let rows_a = population.draw(&mut r, 120, "p");
    // B: the same people and photos, each mistake of A fixed with probability 0.5.
    let rows_b: Vec<(String, usize, usize)> =
        rows_a.iter().map(|(p, t, pred)| (p.clone(), *t, if pred != t && r.gen_bool(0.5) { *t } else { *pred })).collect();
    let (a, b) = (outcomes(&rows_a), outcomes(&rows_b));
    let ab = compare(&a, &b, FEW).unwrap();
    assert_eq!(ab.pairing, Pairing::Paired);
    assert_eq!((ab.people_a, ab.people_b, ab.shared_people), (120, 120, 120));
    assert_eq!(ab.f1.verdict, Verdict::BBetter, "{:?}", ab.f1);
    assert!(ab.f1.difference > 0.0 && ab.f1.low > 0.0 && ab.f1.b_better > 0.975, "{:?}", ab.f1);
    assert!((ab.f1.difference - (ab.f1.b - ab.f1.a)).abs() < 1e-15);
    let ba = compare(&b, &a, FEW).unwrap();
    assert_eq!(ba.f1.verdict, Verdict::ABetter, "{:?}", ba.f1);
    assert!(ba.f1.high < 0.0 && ba.f1.b_better < 0.025);
    // Unpaired: B drawn from a better population, on other people.
    let rows_c = population.better(0.15).draw(&mut r, 300, "q");
    let ac = compare(&a, &outcomes(&rows_c), FEW).unwrap();
    assert_eq!((ac.pairing, ac.shared_people), (Pairing::Unpaired, 0));
    assert_eq!(ac.f1.verdict, Verdict::BBetter, "{:?}", ac.f1);
}

#[test]
fn identical_predictions_are_never_called_different() {
    let population = Population::typical();
    for seed in 0..20 {
        let rows = population.draw(&mut rng(100 + seed), 30 + 10 * seed as usize, "p");
        let images = outcomes(&rows);
        let same = compare(&images, &images, Resampling { resamples: 200, seed }).unwrap();
        assert_eq!(same.pairing, Pairing::Paired);
        for d in [same.f1, same.f1_mask, same.f1_gender, same.f1_age] {
            assert_eq!((d.difference, d.low, d.high, d.b_better, d.verdict), (0.0, 0.0, 0.0, 0.0, Verdict::NoClearDifference));
        }
        // The same outcomes under other names for half of the people: unpaired, and still no difference.
        let renamed: Vec<(String, usize, usize)> =
            rows.iter().map(|(p, t, pred)| (if p.ends_with(['0', '2', '4', '6', '8']) { format!("x{p}") } else { p.clone() }, *t, *pred)).collect();
        let unpaired = compare(&images, &outcomes(&renamed), Resampling { resamples: 200, seed }).unwrap();
        assert_eq!(unpaired.pairing, Pairing::Unpaired);
        assert!(unpaired.shared_people < unpaired.people_a);
        for d in [unpaired.f1, unpaired.f1_mask, unpaired.f1_gender, unpaired.f1_age] {
            assert_eq!(d.difference, 0.0);
            assert_eq!(d.verdict, Verdict::NoClearDifference, "seed {seed}: {d:?}");
        }
    }
}

#[test]
fn pairing_narrows_the_interval_of_a_difference() {
    let mut r = rng(4);
    let rows_a = Population::typical().draw(&mut r, 150, "p");
    let rows_b: Vec<(String, usize, usize)> =
        rows_a.iter().map(|(p, t, pred)| (p.clone(), *t, if pred != t && r.gen_bool(0.2) { *t } else { *pred })).collect();
    let paired = compare(&outcomes(&rows_a), &outcomes(&rows_b), FEW).unwrap();
    // The same predictions with B's people renamed: resampled independently.
    let renamed: Vec<(String, usize, usize)> = rows_b.iter().map(|(p, t, pred)| (format!("x{p}"), *t, *pred)).collect();
    let unpaired = compare(&outcomes(&rows_a), &outcomes(&renamed), FEW).unwrap();
    assert_eq!((paired.pairing, unpaired.pairing), (Pairing::Paired, Pairing::Unpaired));
    assert_eq!(paired.f1.difference, unpaired.f1.difference);
    let width = |d: Difference| d.high - d.low;
    assert!(width(paired.f1) * 2.0 < width(unpaired.f1), "paired {:?} unpaired {:?}", paired.f1, unpaired.f1);
}

/// Many data sets drawn from a population whose scores are known: the 95% intervals hold the
/// population's score in about 95% of them (200 data sets: 90-98% allows for the draw's own
/// noise and for the percentile interval's small-sample bias).
#[test]
fn the_intervals_cover_the_population_scores_about_95_percent_of_the_time() {
    let population = Population::typical();
    let truth = population.true_scores();
    let (sets, people) = (200, 150);
    let mut covered = [0usize; 4];
    let mut r = rng(5);
    for set in 0..sets {
        let rows = population.draw(&mut r, people, "p");
        let got = score_intervals(&outcomes(&rows), Resampling { resamples: 300, seed: set as u64 }).unwrap();
        for (k, (i, t)) in [(got.f1, truth.f1), (got.f1_mask, truth.f1_mask), (got.f1_gender, truth.f1_gender), (got.f1_age, truth.f1_age)].into_iter().enumerate() {
            covered[k] += (i.low <= t && t <= i.high) as usize;
        }
    }
    let rates = covered.map(|c| c as f64 / sets as f64);
    eprintln!("coverage (f1, mask, gender, age): {rates:?}; population scores {truth:?}");
    for rate in rates {
        assert!((0.90..=0.98).contains(&rate), "coverage {rates:?}");
    }
}

fn view(rows: &[(usize, String, usize, usize)]) -> Vec<ImageOutcome<'_>> {
    rows.iter().map(|(fold, person, truth, pred)| ImageOutcome { person, fold: *fold, truth: *truth, pred: *pred }).collect()
}

#[test]
fn per_fold_differences_pair_each_fold_and_refuse_other_folds() {
    let mut r = rng(6);
    let population = Population::typical();
    let mut rows = Vec::new();
    for fold in 1..=3usize {
        rows.extend(population.draw(&mut r, 40, &format!("f{fold}-")).into_iter().map(|(p, t, pred)| (fold, p, t, pred)));
    }
    let b_rows: Vec<(usize, String, usize, usize)> =
        rows.iter().map(|(f, p, t, pred)| (*f, p.clone(), *t, if *f == 2 && pred != t { *t } else { *pred })).collect();
    let (a, b) = (view(&rows), view(&b_rows));
    let folds = compare_per_fold(&a, &b, FEW).unwrap();
    assert_eq!(folds.iter().map(|f| f.fold).collect::<Vec<_>>(), vec![1, 2, 3]);
    for f in &folds {
        assert_eq!((f.comparison.pairing, f.comparison.people_a), (Pairing::Paired, 40));
    }
    // Only fold 2 was improved (every mistake fixed).
    assert_eq!(folds[0].comparison.f1.verdict, Verdict::NoClearDifference);
    assert_eq!(folds[1].comparison.f1.verdict, Verdict::BBetter);
    assert_eq!(folds[1].comparison.f1.b, 1.0);
    assert_eq!(folds[2].comparison.f1.difference, 0.0);
    let json = serde_json::to_value(folds[1]).unwrap();
    assert_eq!((json["fold"].as_u64(), json["pairing"].as_str(), json["f1"]["verdict"].as_str()), (Some(2), Some("paired"), Some("b_better")));

    // Folds that hold out other people, other fold numbers, and rows without a fold are refused.
    let mut moved = b_rows.clone();
    moved.iter_mut().filter(|r| r.1 == "f1-0000").for_each(|r| r.0 = 3);
    let err = format!("{:#}", compare_per_fold(&a, &view(&moved), FEW).unwrap_err());
    assert!(err.contains("fold 1 holds out different people in the two runs (40 in A, 39 in B, 39 in both)"), "{err}");
    let mut overlapping = b_rows.clone();
    overlapping[0].0 = 3;
    let err = format!("{:#}", compare_per_fold(&a, &view(&overlapping), FEW).unwrap_err());
    assert!(err.contains("run B") && err.contains("image 1: person f1-0000 is held out in folds 3 and 1"), "{err}");
    let fewer: Vec<_> = b_rows.iter().filter(|r| r.0 != 3).cloned().collect();
    assert!(format!("{:#}", compare_per_fold(&a, &view(&fewer), FEW).unwrap_err()).contains("different folds"));
    let mut unfolded = b_rows.clone();
    unfolded[5].0 = 0;
    let err = format!("{:#}", compare_per_fold(&a, &view(&unfolded), FEW).unwrap_err());
    assert!(err.contains("run B") && err.contains("image 5") && err.contains("no fold"), "{err}");
}

#[test]
fn bad_input_is_an_error_naming_the_image() {
    let ok = [ImageOutcome { person: "a", fold: 0, truth: 3, pred: 3 }, ImageOutcome { person: "b", fold: 0, truth: 4, pred: 4 }];
    let bad = [ok[0], ImageOutcome { person: "b", fold: 0, truth: 4, pred: 18 }];
    let err = format!("{:#}", score_intervals(&bad, FEW).unwrap_err());
    assert!(err.contains("image 1 (person b)") && err.contains("prediction 18"), "{err}");
    let err = format!("{:#}", compare(&ok, &bad, FEW).unwrap_err());
    assert!(err.starts_with("run B's predictions") && err.contains("image 1"), "{err}");
    assert!(format!("{:#}", score_intervals(&[], FEW).unwrap_err()).contains("no images"));
    let err = format!("{:#}", score_intervals(&ok, Resampling { resamples: 1, seed: 0 }).unwrap_err());
    assert!(err.contains("at least 2 resamples"), "{err}");
}

#[test]
fn percentiles_interpolate_between_order_statistics() {
    let values: Vec<f64> = (0..=100).map(f64::from).collect();
    assert_eq!(percentile_interval(values.iter().rev().copied()), (2.5, 97.5));
    assert_eq!(percentile(&[1.0, 3.0], 0.25), 1.5);
    assert_eq!(percentile(&[4.0], 0.975), 4.0);
}
