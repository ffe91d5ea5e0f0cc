//! What the bootstrap over people (metrics::bootstrap) costs: the median time of the intervals of
//! one prediction set and of a paired comparison of two, on generated predictions of PEOPLE
//! people with 7 photos each (about 85% right, mistakes shared within a person).
//!
//!     cargo run --release --example bootstrap_cost -- [PEOPLE] [RESAMPLES]
//!
//! 591 people x 7 = 4,137 images is the full stand-in data set.
use masklab::metrics::bootstrap::{compare, score_intervals, ImageOutcome, Resampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Rows (person, truth, prediction): each person's accuracy is drawn once, so their mistakes go together.
fn generate(people: usize, seed: u64) -> Vec<(String, usize, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for i in 0..people {
        let (gender, age) = (rng.gen_range(0..2), rng.gen_range(0..3));
        let skill = [0.95, 0.85, 0.6][rng.gen_range(0..3)];
        for mask in [0, 0, 0, 0, 0, 1, 2] {
            let truth = mask * 6 + gender * 3 + age;
            let pred = if rng.gen_bool(skill) { truth } else { rng.gen_range(0..18) };
            rows.push((format!("person{i:05}"), truth, pred));
        }
    }
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let people: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(591);
    let resamples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (rows_a, rows_b) = (generate(people, 1), generate(people, 2));
    let a: Vec<ImageOutcome> = rows_a.iter().map(|(person, truth, pred)| ImageOutcome { person, fold: 0, truth: *truth, pred: *pred }).collect();
    // B: the same people and truths as A (so the comparison is paired), other predictions.
    let b: Vec<ImageOutcome> = a.iter().zip(&rows_b).map(|(image, (_, _, pred))| ImageOutcome { pred: *pred, ..*image }).collect();
    let resampling = Resampling { resamples, seed: 0 };
    let time = |f: &dyn Fn()| median((0..5).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).collect());
    let intervals = time(&|| { score_intervals(&a, resampling).unwrap(); });
    let paired = time(&|| { compare(&a, &b, resampling).unwrap(); });
    let f1 = score_intervals(&a, resampling).unwrap().f1;
    println!(
        "{people} people, {} images, {resamples} resamples: intervals {:.1} ms, paired comparison {:.1} ms (f1 {:.4} [{:.4}, {:.4}])",
        a.len(),
        intervals * 1e3,
        paired * 1e3,
        f1.estimate,
        f1.low,
        f1.high
    );
}
