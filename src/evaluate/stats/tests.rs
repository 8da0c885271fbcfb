//! Coverage under continuous monitoring and width of the confidence sequences, by simulation with fixed seeds.

use super::*;

/// The shared deterministic generator, with the two draws these simulations need.
struct Draws(crate::rng::Rng);

impl Draws {
    fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn bernoulli(&mut self, p: f64) -> f64 {
        if self.0.chance(p) {
            1.0
        } else {
            0.0
        }
    }

    fn gauss(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn welford_matches_two_pass() {
    let mut rng = Draws(crate::rng::Rng::new(1));
    let xs: Vec<f64> = (0..1000).map(|_| rng.gauss(3.0, 2.0)).collect();
    let mut r = Running::default();
    for &x in &xs {
        r.push(x);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    assert_eq!(r.n, 1000);
    assert!(close(r.mean, mean, 1e-12), "{} vs {}", r.mean, mean);
    assert!(close(r.variance(), var, 1e-10), "{} vs {}", r.variance(), var);

    let mut one = Running::default();
    assert_eq!(one.variance(), 0.0);
    one.push(5.0);
    assert_eq!((one.n, one.mean, one.variance()), (1, 5.0, 0.0));
    one.push(f64::NAN);
    one.push(f64::INFINITY);
    assert_eq!(one.n, 1);
}

#[test]
fn merge_equals_pushing_everything() {
    let mut rng = Draws(crate::rng::Rng::new(2));
    let xs: Vec<f64> = (0..999).map(|_| rng.uniform() * 10.0 - 2.0).collect();
    let mut all = Running::default();
    for &x in &xs {
        all.push(x);
    }
    let mut merged = Running::default();
    for chunk in xs.chunks(137) {
        let mut part = Running::default();
        for &x in chunk {
            part.push(x);
        }
        merged.merge(&part);
    }
    merged.merge(&Running::default());
    assert_eq!(merged.n, all.n);
    assert!(close(merged.mean, all.mean, 1e-12));
    assert!(close(merged.variance(), all.variance(), 1e-10));

    // Merging into an empty accumulator is a copy, so its bounds stay as tight as the original's.
    let mut copy = Running::default();
    copy.merge(&all);
    assert_eq!(copy, all);

    // After a real merge the interval falls back to the order-free bound: still valid, a bit wider.
    let a = confidence_sequence(&all, -2.0, 8.0, 0.05, 300.0).unwrap();
    let b = confidence_sequence(&merged, -2.0, 8.0, 0.05, 300.0).unwrap();
    assert!(b.1 - b.0 >= a.1 - a.0 - 1e-9, "{a:?} {b:?}");
}

#[test]
fn interval_edge_cases() {
    let empty = Running::default();
    assert_eq!(confidence_sequence(&empty, 0.0, 1.0, 0.05, 300.0), None);
    let mut r = Running::default();
    r.push(1.0);
    assert_eq!(confidence_sequence(&r, 0.0, 1.0, 0.05, 300.0), Some((0.0, 1.0)));
    assert_eq!(confidence_sequence(&r, 1.0, 0.0, 0.05, 300.0), None);
    assert_eq!(confidence_sequence(&r, 1.0, 1.0, 0.05, 300.0), Some((1.0, 1.0)));
    assert_eq!(confidence_sequence(&r, 0.0, 1.0, f64::NAN, 300.0), Some((0.0, 1.0)));
    let mut rng = Draws(crate::rng::Rng::new(3));
    for _ in 0..5000 {
        r.push(rng.bernoulli(0.9));
    }
    let (lo, hi) = confidence_sequence(&r, 0.0, 1.0, 0.05, 300.0).unwrap();
    assert!(lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
    assert!((lo..=hi).contains(&r.mean), "{lo} {hi}");
    let (lo2, hi2) = confidence_sequence(&r, 0.0, 1.0, 0.001, 300.0).unwrap();
    assert!(lo2 <= lo && hi2 >= hi, "smaller alpha must widen");
    for bad in [f64::NAN, 0.0, -5.0, f64::INFINITY] {
        assert!(confidence_sequence(&r, 0.0, 1.0, 0.05, bad).is_some());
    }
}

#[test]
fn coverage_under_continuous_monitoring() {
    let (runs, steps, p, alpha): (u32, u32, f64, f64) = (300, 2000, 0.7, 0.05);
    let mut rng = Draws(crate::rng::Rng::new(4));
    let mut missed = 0;
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..steps {
            r.push(rng.bernoulli(p));
            let (lo, hi) = confidence_sequence(&r, 0.0, 1.0, alpha, 300.0).unwrap();
            if !(lo..=hi).contains(&p) {
                missed += 1;
                break;
            }
        }
    }
    let rate = missed as f64 / runs as f64;
    // Binomial sd at 5 % over 300 runs is 1.3 points; the bound is conservative (≈ 2 % observed).
    assert!(rate <= alpha + 0.02, "true mean left the interval in {missed}/{runs} runs");
}

#[test]
fn width_shrinks_like_sqrt_log_n_over_n() {
    let mut rng = Draws(crate::rng::Rng::new(5));
    let mut r = Running::default();
    let mut w100 = 0.0;
    for _ in 0..10_000 {
        r.push(rng.bernoulli(0.7));
        if r.n == 100 {
            let (lo, hi) = confidence_sequence(&r, 0.0, 1.0, 0.05, 300.0).unwrap();
            w100 = hi - lo;
        }
    }
    let (lo, hi) = confidence_sequence(&r, 0.0, 1.0, 0.05, 300.0).unwrap();
    let w10k = hi - lo;
    assert!(w10k < w100 / 5.0, "width {w100} at n=100, {w10k} at n=10000");
    assert!(w10k > 0.0);
}
