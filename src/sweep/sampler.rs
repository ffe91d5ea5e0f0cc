//! How a sweep chooses the next trial's parameters, behind one small trait: at random, or by
//! TPE (the `tpe` crate's Parzen estimators, one per parameter, as Optuna's independent TPE).
//!
//! Samplers keep no state: they read the study's trials each time, so any process sharing the
//! study suggests from the same history, and a resumed sweep goes on as if never stopped. Each
//! trial's draws come from a generator seeded by the sweep's seed and the trial's number.
//!
//! TPE, as Optuna's `TPESampler` with its defaults where they apply: random parameters until
//! `startup_trials` (10) trials are complete or pruned; then the "good" trials are the best
//! `min(ceil(0.1 n), 25)` of those n (complete trials ranked by value, then pruned ones, deeper
//! first, then by their last value), all the others are "poor", and trials still running count
//! as poor too (Optuna's constant liar: parallel workers do not all crowd one spot); for each
//! parameter, `candidates` (24) values are drawn from the good trials' density and the one with
//! the highest good/poor density ratio is taken. Log ranges are modelled on the log scale,
//! integers on [low - 0.5, high + 0.5], choices by a histogram. Parameters are modelled one by
//! one, as Optuna's `TPESampler` does by default (`multivariate=False`); unlike it, old trials
//! are not down-weighted.
use super::space::{Domain, ParamValue, Params, SearchSpace};
use super::spec::{Direction, SamplerKind, SamplerSpec};
use super::trial::{Trial, TrialStatus};
use anyhow::{anyhow, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub trait Sampler {
    /// Parameters for trial `number`, given the study's trials so far (running ones included).
    fn suggest(&self, space: &SearchSpace, trials: &[Trial], direction: Direction, number: usize) -> Result<Params>;
}

/// The sampler a sweep file asks for.
pub fn sampler_for(spec: &SamplerSpec) -> Box<dyn Sampler + Send + Sync> {
    match spec.kind {
        SamplerKind::Random => Box::new(RandomSampler { seed: spec.seed }),
        SamplerKind::Tpe => Box::new(TpeSampler { seed: spec.seed, startup_trials: spec.startup_trials, candidates: spec.candidates }),
    }
}

/// Each parameter drawn uniformly (log-uniformly on log ranges).
pub struct RandomSampler {
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn suggest(&self, space: &SearchSpace, _trials: &[Trial], _direction: Direction, number: usize) -> Result<Params> {
        let mut rng = ChaCha8Rng::seed_from_u64(trial_seed(self.seed, number));
        Ok(space.params.iter().map(|(key, domain)| (key.clone(), domain.sample_uniform(&mut rng))).collect())
    }
}

pub struct TpeSampler {
    pub seed: u64,
    pub startup_trials: usize,
    pub candidates: usize,
}

/// Optuna's cap on the number of good trials.
const MAX_GOOD: usize = 25;
/// Optuna's share of good trials.
const GOOD_SHARE: f64 = 0.1;

impl Sampler for TpeSampler {
    fn suggest(&self, space: &SearchSpace, trials: &[Trial], direction: Direction, number: usize) -> Result<Params> {
        let observed = trials.iter().filter(|t| matches!(t.status, TrialStatus::Complete | TrialStatus::Pruned)).count();
        if observed < self.startup_trials || observed == 0 {
            return RandomSampler { seed: self.seed }.suggest(space, trials, direction, number);
        }
        let ranked = rank(trials, direction);
        let good = ((GOOD_SHARE * observed as f64).ceil() as usize).min(MAX_GOOD);
        let mut rng = <rand_for_tpe::rngs::ChaCha8Rng as rand_for_tpe::SeedableRng>::seed_from_u64(trial_seed(self.seed, number));
        let mut params = Params::new();
        for (key, domain) in &space.params {
            let scale = Scale::of(domain);
            let estimator = match domain {
                Domain::Choices(_) => tpe::histogram_estimator(),
                _ => tpe::parzen_estimator(),
            };
            let told: Vec<f64> = ranked.iter().filter_map(|t| t.params.get(key).and_then(|v| scale.internal(v))).collect();
            // The crate sorts what it is told by value and splits at ceil(told * gamma): told each
            // trial's rank as its value, and gamma just under good / told, it splits where Optuna does.
            let gamma = (good as f64 - 0.5) / told.len().max(1) as f64;
            let mut optimizer = tpe::TpeOptimizerBuilder::new()
                .gamma(gamma.clamp(0.0, 1.0))
                .candidates(self.candidates)
                .build(estimator, scale.range()?)
                .map_err(|e| anyhow!("TPE for {key}: {e}"))?;
            for (rank, x) in told.into_iter().enumerate() {
                optimizer.tell(x, rank as f64).map_err(|e| anyhow!("TPE for {key}: {e}"))?;
            }
            let x = optimizer.ask(&mut rng).map_err(|e| anyhow!("TPE for {key}: {e}"))?;
            params.insert(key.clone(), scale.external(x));
        }
        Ok(params)
    }
}

/// The trials TPE learns from, best first: complete trials by value, then pruned ones (those
/// that got further first, then by their last value), then running ones. Failed trials and
/// those without a value are left out.
fn rank(trials: &[Trial], direction: Direction) -> Vec<&Trial> {
    let score = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { direction.oriented(v) };
    let mut complete: Vec<&Trial> = trials.iter().filter(|t| t.status == TrialStatus::Complete && t.value.is_some()).collect();
    complete.sort_by(|a, b| score(b.value.unwrap_or(f64::NAN)).total_cmp(&score(a.value.unwrap_or(f64::NAN))).then(a.number.cmp(&b.number)));
    let mut pruned: Vec<&Trial> = trials.iter().filter(|t| t.status == TrialStatus::Pruned).collect();
    let depth = |t: &Trial| t.last_epoch().map_or((0, f64::NEG_INFINITY), |e| (e.epoch, score(e.value)));
    pruned.sort_by(|a, b| {
        let ((ea, va), (eb, vb)) = (depth(a), depth(b));
        eb.cmp(&ea).then(vb.total_cmp(&va)).then(a.number.cmp(&b.number))
    });
    let running = trials.iter().filter(|t| t.status == TrialStatus::Running);
    complete.into_iter().chain(pruned).chain(running).collect()
}

/// A generator seed per trial, so that trial n draws the same values in whichever process.
fn trial_seed(seed: u64, number: usize) -> u64 {
    seed ^ (number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Where a domain's values live for the density estimators.
enum Scale<'a> {
    Choices(&'a [ParamValue]),
    Int { low: i64, high: i64, log: bool },
    Float { low: f64, high: f64, log: bool },
}

impl<'a> Scale<'a> {
    fn of(domain: &'a Domain) -> Scale<'a> {
        match domain {
            Domain::Choices(c) => Scale::Choices(c),
            Domain::Int { low, high, log } => Scale::Int { low: *low, high: *high, log: *log },
            Domain::Float { low, high, log } => Scale::Float { low: *low, high: *high, log: *log },
        }
    }

    fn warp(log: bool, x: f64) -> f64 {
        if log {
            x.ln()
        } else {
            x
        }
    }

    /// The internal interval `[start, end)`.
    fn bounds(&self) -> (f64, f64) {
        match *self {
            Scale::Choices(c) => (0.0, c.len() as f64),
            Scale::Int { low, high, log } => (Self::warp(log, low as f64 - 0.5), Self::warp(log, high as f64 + 0.5)),
            // The crate's ranges leave out their end: just past `high`, so that `high` itself is in.
            Scale::Float { low, high, log } => (Self::warp(log, low), Self::warp(log, high).next_up()),
        }
    }

    fn range(&self) -> Result<tpe::range::Range> {
        let (start, end) = self.bounds();
        tpe::range(start, end).map_err(|e| anyhow!("range {start}..{end}: {e}"))
    }

    /// A value's internal position (None when it is not of this domain).
    fn internal(&self, value: &ParamValue) -> Option<f64> {
        let x = match (self, value) {
            (Scale::Choices(c), v) => c.iter().position(|x| x == v)? as f64,
            (Scale::Int { log, .. }, ParamValue::Int(i)) => Self::warp(*log, *i as f64),
            (Scale::Float { log, .. }, ParamValue::Float(f)) => Self::warp(*log, *f),
            _ => return None,
        };
        let (start, end) = self.bounds();
        // Kept inside [start, end) whatever ln's last bit does.
        (x.is_finite() && x >= start - 1e-9 && x < end + 1e-9).then(|| x.clamp(start, end.next_down()))
    }

    /// The value at an internal position.
    fn external(&self, x: f64) -> ParamValue {
        let unwarp = |log: bool, x: f64| if log { x.exp() } else { x };
        match *self {
            Scale::Choices(c) => c[(x.floor().max(0.0) as usize).min(c.len() - 1)].clone(),
            Scale::Int { low, high, log } => ParamValue::Int((unwarp(log, x).round() as i64).clamp(low, high)),
            Scale::Float { low, high, log } => ParamValue::Float(unwarp(log, x).clamp(low, high)),
        }
    }
}

#[cfg(test)]
mod tests;
