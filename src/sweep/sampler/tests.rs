use super::*;
use crate::sweep::space::Params;
use crate::sweep::trial::EpochValue;

fn space() -> SearchSpace {
    let text = r#"
"optim.lr" = { float = [1e-5, 1e-1], log = true }
"augment.dropout" = { float = [0.0, 0.5] }
"model.width" = { int = [1, 64], log = true }
"train.epochs" = { int = [2, 9] }
"model.arch" = { choices = ["a", "b", "c", "d"] }
"#;
    SearchSpace::from_toml(&text.parse().unwrap()).unwrap()
}

/// A smooth synthetic objective (maximised; 0 at lr 1e-3, dropout 0.15, width 12, 6 epochs, arch "b").
fn objective(p: &Params) -> f64 {
    let f = |k: &str| match &p[k] {
        ParamValue::Float(x) => *x,
        ParamValue::Int(i) => *i as f64,
        other => panic!("{k} = {other:?}"),
    };
    let arch = match &p["model.arch"] {
        ParamValue::Text(a) => ["a", "b", "c", "d"].iter().position(|x| x == a).unwrap(),
        other => panic!("{other:?}"),
    };
    -(f("optim.lr").log10() + 3.0).powi(2) - 20.0 * (f("augment.dropout") - 0.15).powi(2) - 0.5 * (f("model.width").ln() - 12f64.ln()).powi(2)
        - 0.05 * (f("train.epochs") - 6.0).powi(2)
        - [0.5, 0.0, 1.0, 1.0][arch]
}

fn complete(number: usize, params: Params, value: f64) -> Trial {
    Trial {
        number,
        params,
        status: TrialStatus::Complete,
        epochs: Vec::new(),
        value: Some(value),
        attempts: 1,
        worker: "test:1".into(),
        started: 0.0,
        finished: Some(0.0),
        note: None,
    }
}

/// The best value found in `budget` trials run one after another.
fn best_of(sampler: &dyn Sampler, budget: usize) -> f64 {
    let space = space();
    let mut trials: Vec<Trial> = Vec::new();
    for number in 0..budget {
        let params = sampler.suggest(&space, &trials, Direction::Maximize, number).unwrap();
        assert!(space.admits(&params), "{params:?}");
        let value = objective(&params);
        trials.push(complete(number, params, value));
    }
    trials.iter().filter_map(|t| t.value).fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn random_draws_stay_in_their_domains_and_repeat_per_trial_number() {
    let space = space();
    let sampler = RandomSampler { seed: 1 };
    let draws: Vec<Params> = (0..200).map(|n| sampler.suggest(&space, &[], Direction::Maximize, n).unwrap()).collect();
    assert!(draws.iter().all(|p| space.admits(p)));
    assert_eq!(sampler.suggest(&space, &[], Direction::Maximize, 7).unwrap(), draws[7]);
    assert_ne!(draws[7], draws[8]);
    assert_ne!(RandomSampler { seed: 2 }.suggest(&space, &[], Direction::Maximize, 7).unwrap(), draws[7]);
    // Log-uniform: about as many learning rates below 1e-3 as above (uniform would put 99% above).
    let below = draws.iter().filter(|p| matches!(p["optim.lr"], ParamValue::Float(x) if x < 1e-3)).count();
    assert!((70..=130).contains(&below), "{below} of 200 below 1e-3");
    // Every integer and every choice comes up, the ends included.
    for key in ["train.epochs", "model.arch"] {
        let seen: std::collections::BTreeSet<String> = draws.iter().map(|p| p[key].to_string()).collect();
        assert_eq!(seen.len(), if key == "train.epochs" { 8 } else { 4 }, "{key}: {seen:?}");
    }
}

#[test]
fn tpe_draws_at_random_until_its_startup_trials_are_done() {
    let space = space();
    let tpe = TpeSampler { seed: 3, startup_trials: 10, candidates: 24 };
    let random = RandomSampler { seed: 3 };
    let mut trials = Vec::new();
    for n in 0..10 {
        let p = tpe.suggest(&space, &trials, Direction::Maximize, n).unwrap();
        assert_eq!(p, random.suggest(&space, &trials, Direction::Maximize, n).unwrap());
        trials.push(complete(n, p.clone(), objective(&p)));
    }
    let next = tpe.suggest(&space, &trials, Direction::Maximize, 10).unwrap();
    assert_ne!(next, random.suggest(&space, &trials, Direction::Maximize, 10).unwrap());
    assert!(space.admits(&next));
    // The same history gives the same suggestion (any process, any time).
    assert_eq!(tpe.suggest(&space, &trials, Direction::Maximize, 10).unwrap(), next);
}

/// TPE against random search on the synthetic objective, 40 trials each, over 8 seeds.
#[test]
fn tpe_beats_random_search_on_average() {
    let (mut tpe_total, mut random_total, mut tpe_wins) = (0.0, 0.0, 0);
    let seeds = 8;
    for seed in 0..seeds {
        let tpe = best_of(&TpeSampler { seed, startup_trials: 10, candidates: 24 }, 40);
        let random = best_of(&RandomSampler { seed }, 40);
        tpe_total += tpe;
        random_total += random;
        tpe_wins += (tpe > random) as usize;
    }
    let (tpe, random) = (tpe_total / seeds as f64, random_total / seeds as f64);
    eprintln!("mean best of 40 trials: TPE {tpe:.3}, random {random:.3}; TPE better on {tpe_wins} of {seeds} seeds");
    assert!(tpe > random + 0.1 && tpe_wins >= 6, "TPE {tpe:.3} vs random {random:.3}, {tpe_wins} wins");
}

#[test]
fn tpe_ranks_complete_then_pruned_by_depth_then_running_and_leaves_out_failures() {
    let p = Params::new();
    let mut trials = vec![
        complete(0, p.clone(), 0.5),
        complete(1, p.clone(), 0.9),
        complete(2, p.clone(), 0.7),
    ];
    let pruned = |number: usize, values: &[f64]| Trial {
        status: TrialStatus::Pruned,
        value: None,
        epochs: values.iter().enumerate().map(|(i, &value)| EpochValue { epoch: i + 1, value, at: 0.0 }).collect(),
        ..complete(number, p.clone(), 0.0)
    };
    trials.push(pruned(3, &[0.2]));
    trials.push(pruned(4, &[0.1, 0.3]));
    trials.push(pruned(5, &[0.4]));
    trials.push(Trial { status: TrialStatus::Running, value: None, ..complete(6, p.clone(), 0.0) });
    trials.push(Trial { status: TrialStatus::Failed, value: None, ..complete(7, p.clone(), 0.0) });
    let order = |d: Direction| rank(&trials, d).iter().map(|t| t.number).collect::<Vec<_>>();
    assert_eq!(order(Direction::Maximize), vec![1, 2, 0, 4, 5, 3, 6]);
    assert_eq!(order(Direction::Minimize), vec![0, 2, 1, 4, 3, 5, 6]);
}

#[test]
fn internal_scales_keep_the_ends_and_round_trip() {
    let float = Domain::Float { low: 1e-4, high: 1e-1, log: true };
    let scale = Scale::of(&float);
    for v in [1e-4, 1e-3, 1e-1] {
        let x = scale.internal(&ParamValue::Float(v)).unwrap();
        let (start, end) = scale.bounds();
        assert!(start <= x && x < end);
        match scale.external(x) {
            ParamValue::Float(back) => assert!((back - v).abs() <= 1e-12 * v, "{v} -> {back}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(scale.internal(&ParamValue::Int(1)), None);
    let int = Domain::Int { low: 1, high: 64, log: true };
    let scale = Scale::of(&int);
    for i in [1, 2, 63, 64] {
        assert_eq!(scale.external(scale.internal(&ParamValue::Int(i)).unwrap()), ParamValue::Int(i));
    }
    // The ends of the internal interval round to the ends of the range.
    let (start, end) = scale.bounds();
    assert_eq!((scale.external(start), scale.external(end.next_down())), (ParamValue::Int(1), ParamValue::Int(64)));
    let choices = Domain::Choices(vec![ParamValue::Bool(false), ParamValue::Bool(true)]);
    let scale = Scale::of(&choices);
    assert_eq!(scale.internal(&ParamValue::Bool(true)), Some(1.0));
    assert_eq!(scale.external(1.7), ParamValue::Bool(true));
    assert_eq!(scale.internal(&ParamValue::Int(1)), None);
}
