//! Coverage under continuous monitoring, widths, mSPRT and CUSUM, by simulation with fixed seeds.

use super::*;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn bernoulli(&mut self, p: f64) -> f64 {
        if self.uniform() < p {
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

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn welford_matches_two_pass() {
    let mut rng = SplitMix64(1);
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
    let mut rng = SplitMix64(2);
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
    assert_eq!(rate_bounds(&r, 0.05, 300.0), Some((0.0, 1.0)));
    assert_eq!(confidence_sequence(&r, 1.0, 0.0, 0.05, 300.0), None);
    assert_eq!(confidence_sequence(&r, 1.0, 1.0, 0.05, 300.0), Some((1.0, 1.0)));
    assert_eq!(confidence_sequence(&r, 0.0, 1.0, f64::NAN, 300.0), Some((0.0, 1.0)));
    let mut rng = SplitMix64(3);
    for _ in 0..5000 {
        r.push(rng.bernoulli(0.9));
    }
    let (lo, hi) = rate_bounds(&r, 0.05, 300.0).unwrap();
    assert!(lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
    assert!((lo..=hi).contains(&r.mean), "{lo} {hi}");
    let (lo2, hi2) = rate_bounds(&r, 0.001, 300.0).unwrap();
    assert!(lo2 <= lo && hi2 >= hi, "smaller alpha must widen");
    for bad in [f64::NAN, 0.0, -5.0, f64::INFINITY] {
        assert!(rate_bounds(&r, 0.05, bad).is_some());
    }
}

#[test]
fn coverage_under_continuous_monitoring() {
    let (runs, steps, p, alpha): (u32, u32, f64, f64) = (300, 2000, 0.7, 0.05);
    let mut rng = SplitMix64(4);
    let mut missed = 0;
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..steps {
            r.push(rng.bernoulli(p));
            let (lo, hi) = rate_bounds(&r, alpha, 300.0).unwrap();
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
    let mut rng = SplitMix64(5);
    let mut r = Running::default();
    let mut w100 = 0.0;
    for _ in 0..10_000 {
        r.push(rng.bernoulli(0.7));
        if r.n == 100 {
            let (lo, hi) = rate_bounds(&r, 0.05, 300.0).unwrap();
            w100 = hi - lo;
        }
    }
    let (lo, hi) = rate_bounds(&r, 0.05, 300.0).unwrap();
    let w10k = hi - lo;
    assert!(w10k < w100 / 5.0, "width {w100} at n=100, {w10k} at n=10000");
    assert!(w10k > 0.0);
}

#[test]
fn msprt_controls_false_alarms_and_detects_a_shift() {
    let (alpha, sd, steps): (f64, f64, u32) = (0.05, 0.3, 2000);
    let threshold = (1.0 / alpha).ln();
    // The floor stands for the noise baseline's variance, as the router is meant to supply it.
    let floor = sd * sd;
    let tau2 = mixture_tau2(floor, alpha, 300.0);
    let mut rng = SplitMix64(6);

    let runs: u32 = 300;
    let mut false_alarms = 0_u32;
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..steps {
            r.push(rng.gauss(0.0, sd));
            if msprt_log_lambda(&r, 0.0, tau2, floor) >= threshold {
                false_alarms += 1;
                break;
            }
        }
    }
    let rate = false_alarms as f64 / runs as f64;
    assert!(rate <= alpha + 0.025, "H0 crossed in {false_alarms}/{runs} runs");

    let runs: u32 = 200;
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..steps {
            r.push(rng.gauss(0.1, sd));
            if msprt_log_lambda(&r, 0.0, tau2, floor) >= threshold {
                times.push(r.n);
                break;
            }
        }
    }
    let hits = times.len();
    let med = median(times);
    assert!(
        (hits as f64) >= 0.98 * f64::from(runs),
        "shift 0.1/sd 0.3 detected in {hits}/{runs} runs, median n = {med}"
    );
    assert!(med <= 300, "median crossing time {med} ({hits}/{runs} detected)");
}

#[test]
fn msprt_degenerate_input_gives_no_evidence() {
    let mut r = Running::default();
    assert_eq!(msprt_log_lambda(&r, 0.0, 0.01, 0.01), 0.0);
    r.push(0.5);
    assert_eq!(msprt_log_lambda(&r, 0.0, 0.0, 0.01), 0.0);
    assert_eq!(msprt_log_lambda(&r, 0.0, 0.01, 0.0), 0.0);
    assert!(msprt_log_lambda(&r, 0.0, 0.01, 0.01).is_finite());
}

#[test]
fn bounded_evidence_is_valid_for_skewed_scores_and_still_detects() {
    let (alpha, steps): (f64, u32) = (0.05, 1000);
    let threshold = (1.0 / alpha).ln();
    let mut rng = SplitMix64(7);
    // Mean zero but skewed, like paired judge scores: long runs of −0.1, rare +0.9.
    let runs: u32 = 100;
    let mut false_alarms = 0_u32;
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..steps {
            r.push(if rng.uniform() < 0.1 { 0.9 } else { -0.1 });
            if bounded_log_evidence(&r, -1.0, 1.0, 0.0, 300.0) >= threshold {
                false_alarms += 1;
                break;
            }
        }
    }
    assert!(f64::from(false_alarms) <= (alpha + 0.03) * f64::from(runs), "H0 crossed in {false_alarms}/{runs} runs");

    let runs: usize = 50;
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut r = Running::default();
        for _ in 0..2000 {
            r.push(rng.gauss(0.1, 0.3).clamp(-1.0, 1.0));
            if bounded_log_evidence(&r, -1.0, 1.0, 0.0, 300.0) >= threshold {
                times.push(r.n);
                break;
            }
        }
    }
    let hits = times.len();
    let med = median(times);
    assert!(hits >= runs - 1, "detected in {hits}/{runs} runs, median n = {med}");
    assert!(med <= 600, "median crossing time {med}");
    assert_eq!(bounded_log_evidence(&Running::default(), -1.0, 1.0, 0.0, 300.0), 0.0);
}

#[test]
fn evidence_agrees_with_the_interval() {
    let mut rng = SplitMix64(8);
    let mut r = Running::default();
    for _ in 0..500 {
        r.push(rng.bernoulli(0.7));
    }
    let (lo, hi) = rate_bounds(&r, 0.05, 300.0).unwrap();
    let level = (1.0 / 0.05_f64).ln();
    // Well outside the interval the e-process must have crossed; at the mean it must not have.
    assert!(bounded_log_evidence(&r, 0.0, 1.0, (lo - 0.02).max(0.0), 300.0) >= level);
    assert!(bounded_log_evidence(&r, 0.0, 1.0, (hi + 0.02).min(1.0), 300.0) >= level);
    assert!(bounded_log_evidence(&r, 0.0, 1.0, r.mean, 300.0) < level);
}

#[test]
fn cusum_hand_worked() {
    let mut c = Cusum::default();
    // target 1.0, k 0.1: increments are 0.9 − x.
    let expected: [(f64, f64); 6] = [(1.0, 0.0), (0.5, 0.4), (0.6, 0.7), (1.2, 0.4), (2.0, 0.0), (0.0, 0.9)];
    for (x, s) in expected {
        let got = c.push(x, 1.0, 0.1);
        assert!((got - s).abs() < 1e-12, "after {x}: {got} != {s}");
        assert_eq!(got, c.s);
    }
    assert_eq!(c.n, 6);
    assert_eq!(c.push(f64::NAN, 1.0, 0.1), c.s);
    assert_eq!(c.n, 6);
    c.reset();
    assert_eq!(c, Cusum::default());
    assert!((c.push(0.4, 1.0, 0.1) - 0.5).abs() < 1e-12);
    assert_eq!(c.n, 1);
}

#[test]
fn normal_quantile_known_values() {
    let cases: [(f64, f64); 6] = [
        (0.5, 0.0),
        (0.975, 1.959_963_984_540_054),
        (0.025, -1.959_963_984_540_054),
        (0.01, -2.326_347_874_040_841),
        (0.999, 3.090_232_306_167_813),
        (1e-10, -6.361_340_902_404_056),
    ];
    for (p, z) in cases {
        let got = normal_quantile(p);
        assert!((got - z).abs() < 1e-8, "Φ⁻¹({p}) = {got}, expected {z}");
    }
    assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
    assert_eq!(normal_quantile(1.0), f64::INFINITY);
    assert!(normal_quantile(1.5).is_nan());
    assert!(normal_quantile(f64::NAN).is_nan());
}
