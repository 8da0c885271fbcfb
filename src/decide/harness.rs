//! A deterministic simulation of the decision engine on synthetic evidence: false replacements and detection delay.

use std::collections::HashMap;
use std::time::Duration;

use crate::compare::judge::JudgeOutcome;
use crate::config::{Mode, Policy};
use crate::evaluate::{RouteEval, Sample, ShadowOutcome, Timing};
use crate::rng::Rng;

use super::view::{self, QualitySignal};
use super::{Action, Decider, Input};

/// One simulated world: what the leader and the candidate really are, and when the leader changes.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub samples: u64,
    /// The candidate's and the leader's accuracy; the leader's becomes `leader_after` at `change_at`.
    pub candidate_accuracy: f64,
    pub leader_accuracy: f64,
    pub leader_after: f64,
    /// Leader latency multiplier and error rate after the change.
    pub leader_latency_after: f64,
    pub leader_errors_after: f64,
    pub change_at: u64,
    pub signal: QualitySignal,
    pub noise_sample: f64,
}

impl Scenario {
    /// No real difference between leader and candidate, ever.
    pub fn null(signal: QualitySignal, samples: u64) -> Scenario {
        Scenario {
            name: "no difference",
            samples,
            candidate_accuracy: 0.85,
            leader_accuracy: 0.85,
            leader_after: 0.85,
            leader_latency_after: 1.0,
            leader_errors_after: 0.0,
            change_at: u64::MAX,
            signal,
            noise_sample: 0.5,
        }
    }
}

/// What one run ended with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    /// Compared requests after the change (or from the start) until the engine promoted.
    pub promoted_after: Option<u64>,
}

/// Latency around `median` µs with a lognormal-ish spread.
fn latency(rng: &mut Rng, median: f64) -> u64 {
    let z = (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) * 2.0;
    (median * (0.25 * z).exp()) as u64
}

/// The policy the harness runs with (the product defaults, faster cadence).
pub fn policy(confidence: f64, min_samples: u64) -> Policy {
    Policy {
        mode: Mode::Auto,
        min_samples,
        margin: 0.02,
        agreement_margin: 0.1,
        confidence,
        max_latency_ratio: 1.25,
        max_error_rate: 0.02,
        cooldown: Duration::from_secs(3600),
        probation: Duration::from_secs(1800),
    }
}

/// Runs one scenario once; the decision engine looks at the evidence every `tick` samples.
pub fn run(s: &Scenario, policy: &Policy, seed: u64, tick: u64) -> RunResult {
    let mut rng = Rng::new(seed);
    let mut eval = RouteEval::new("leader", policy.min_samples);
    let mut decider = Decider::default();
    let names = vec!["candidate".to_string()];
    let prints = HashMap::new();
    for i in 0..s.samples {
        let changed = i >= s.change_at;
        let leader_acc = if changed { s.leader_after } else { s.leader_accuracy };
        let leader_fails = changed && rng.chance(s.leader_errors_after);
        eval.record_leader(!leader_fails);
        let leader_right = rng.chance(leader_acc);
        let cand_right = rng.chance(s.candidate_accuracy);
        // Two wrong answers rarely coincide.
        let agree = |a: bool, b: bool, rng: &mut Rng| {
            let same = (a && b) || (!a && !b && rng.chance(0.1));
            if same {
                1.0
            } else {
                0.0
            }
        };
        let segment = if i % 2 == 0 { "lang=a" } else { "lang=b" };
        if rng.chance(s.noise_sample) {
            let again = rng.chance(leader_acc);
            let n = agree(leader_right, again, &mut rng);
            eval.record_noise(segment, n);
        }
        let judge = match s.signal {
            QualitySignal::Judge => {
                // A judge that is right 95% of the time, else a coin.
                let truth = match (cand_right, leader_right) {
                    (true, false) => 1.0,
                    (false, true) => 0.0,
                    _ => 0.5,
                };
                let score = if rng.chance(0.95) { truth } else { [0.0, 0.5, 1.0][(rng.next_u64() % 3) as usize] };
                Some(JudgeOutcome::Score(score))
            }
            _ => None,
        };
        let lat_mult = if changed { s.leader_latency_after } else { 1.0 };
        let leader_total = latency(&mut rng, 100_000.0 * lat_mult);
        let cand_total = latency(&mut rng, 100_000.0);
        let sample = Sample {
            segment: segment.to_string(),
            outcome: if leader_fails { ShadowOutcome::LeaderFailed } else { ShadowOutcome::Compared },
            agreement: Some(agree(leader_right, cand_right, &mut rng)),
            judge,
            leader: Timing { ttft_us: leader_total / 4, total_us: leader_total },
            candidate: Some(Timing { ttft_us: cand_total / 4, total_us: cand_total }),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
        };
        eval.record("candidate", &sample);
        if (i + 1) % tick == 0 {
            let views = view::candidates(&eval, &names, policy, s.signal, &[]);
            let input = Input { now_ms: i as i64, policy, views: &views, fingerprints: &prints };
            if let Action::Promote { .. } = decider.step(&input).action {
                let after = i.saturating_sub(if s.change_at == u64::MAX { 0 } else { s.change_at });
                return RunResult { promoted_after: Some(if changed || s.change_at == u64::MAX { after } else { 0 }) };
            }
        }
    }
    RunResult { promoted_after: None }
}

/// Summary of many runs of one scenario.
#[derive(Debug, Clone)]
pub struct Summary {
    pub runs: usize,
    pub promoted: usize,
    /// Promotions before the change happened (false alarms in a change scenario).
    pub early: usize,
    pub median_delay: Option<u64>,
    pub p95_delay: Option<u64>,
}

/// Runs a scenario `runs` times with seeds 1..=runs.
pub fn summarize(s: &Scenario, policy: &Policy, runs: usize, tick: u64) -> Summary {
    let mut delays = Vec::new();
    let mut early = 0;
    let mut promoted = 0;
    for seed in 1..=runs as u64 {
        let mut scenario = s.clone();
        scenario.change_at = s.change_at;
        if let Some(after) = run(&scenario, policy, seed.wrapping_mul(7919), tick).promoted_after {
            promoted += 1;
            if s.change_at != u64::MAX && after == 0 {
                early += 1;
            } else {
                delays.push(after);
            }
        }
    }
    delays.sort_unstable();
    let q = |p: f64| (!delays.is_empty()).then(|| delays[((delays.len() - 1) as f64 * p).round() as usize]);
    Summary { runs, promoted, early, median_delay: q(0.5), p95_delay: q(0.95) }
}
