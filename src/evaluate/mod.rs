//! Evaluation: per route, candidate and segment, what shadow comparisons have shown, with anytime-valid bounds.

pub mod evidence;
pub mod segments;
pub mod stats;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::compare::judge::JudgeOutcome;
use stats::Running;

/// How a shadow request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Both answered; outputs compared.
    Compared,
    /// The candidate failed (status, transport or stream error).
    CandidateError,
    /// The candidate did not finish within its timeout.
    CandidateTimeout,
    /// The leader's own answer failed or was cut, so there is nothing to compare with.
    LeaderFailed,
}

impl ShadowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::Compared => "ok",
            ShadowOutcome::CandidateError => "error",
            ShadowOutcome::CandidateTimeout => "timeout",
            ShadowOutcome::LeaderFailed => "leader_failed",
        }
    }
}

/// Time to first byte and total, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    pub ttft_us: u64,
    pub total_us: u64,
}

/// One finished shadow comparison.
#[derive(Debug, Clone)]
pub struct Sample {
    pub segment: String,
    pub outcome: ShadowOutcome,
    pub agreement: Option<f64>,
    pub judge: Option<JudgeOutcome>,
    pub leader: Timing,
    pub candidate: Option<Timing>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

/// Latency histograms of paired requests (leader and candidate on the same request).
#[derive(Debug, Clone)]
struct Latency {
    leader_ttft: Histogram<u64>,
    cand_ttft: Histogram<u64>,
    leader_total: Histogram<u64>,
    cand_total: Histogram<u64>,
}

impl Latency {
    fn new() -> Option<Latency> {
        let h = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).ok();
        Some(Latency { leader_ttft: h()?, cand_ttft: h()?, leader_total: h()?, cand_total: h()? })
    }

    fn record(&mut self, leader: Timing, cand: Timing) {
        let _ = self.leader_ttft.record(leader.ttft_us.max(1));
        let _ = self.cand_ttft.record(cand.ttft_us.max(1));
        let _ = self.leader_total.record(leader.total_us.max(1));
        let _ = self.cand_total.record(cand.total_us.max(1));
    }

    fn ratio(cand: &Histogram<u64>, leader: &Histogram<u64>, q: f64) -> Option<f64> {
        let l = leader.value_at_quantile(q);
        (!cand.is_empty() && l > 0).then(|| cand.value_at_quantile(q) as f64 / l as f64)
    }
}

/// What one candidate (or one segment of it) has shown.
#[derive(Debug, Clone)]
pub struct Arm {
    /// Shadow requests that finished, whatever the outcome (leader failures excluded).
    pub shadowed: u64,
    pub errors: Running,
    pub agreement: Running,
    /// Agreement over the first `baseline_n` comparisons under this leader, then frozen.
    pub agreement_baseline: Running,
    /// Agreement after the baseline froze: a drop against the baseline means the pair drifted.
    pub agreement_recent: Running,
    pub judge: Running,
    pub judge_epoch: Epoch,
    pub judge_inconclusive: u64,
    /// ln(candidate total / leader total), clamped, per paired request.
    pub log_latency_ratio: Running,
    pub latency_epoch: Epoch,
    latency: Option<Latency>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

impl Default for Arm {
    fn default() -> Self {
        Arm {
            shadowed: 0,
            errors: Running::default(),
            agreement: Running::default(),
            agreement_baseline: Running::default(),
            agreement_recent: Running::default(),
            judge: Running::default(),
            judge_epoch: Epoch::default(),
            judge_inconclusive: 0,
            log_latency_ratio: Running::default(),
            latency_epoch: Epoch::default(),
            latency: Latency::new(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
        }
    }
}

impl Arm {
    fn push(&mut self, s: &Sample, baseline_n: u64) {
        if s.outcome == ShadowOutcome::LeaderFailed {
            return;
        }
        self.shadowed += 1;
        let failed = matches!(s.outcome, ShadowOutcome::CandidateError | ShadowOutcome::CandidateTimeout);
        self.errors.push(if failed { 1.0 } else { 0.0 });
        if let Some(a) = s.agreement {
            self.agreement.push(a);
            if self.agreement_baseline.n < baseline_n {
                self.agreement_baseline.push(a);
            } else {
                self.agreement_recent.push(a);
            }
        }
        match s.judge {
            Some(JudgeOutcome::Score(x)) => {
                self.judge.push(x);
                // A few points of win rate need more samples than an error burst: longer epochs.
                self.judge_epoch.push(x, 3 * baseline_n);
            }
            Some(JudgeOutcome::Inconclusive) => self.judge_inconclusive += 1,
            None => {}
        }
        if let (Some(c), true) = (s.candidate, s.outcome == ShadowOutcome::Compared) {
            if let Some(lat) = self.latency.as_mut() {
                lat.record(s.leader, c);
            }
            let ratio = (c.total_us.max(1) as f64 / s.leader.total_us.max(1) as f64).ln().clamp(-5.0, 5.0);
            self.log_latency_ratio.push(ratio);
            self.latency_epoch.push(ratio, baseline_n);
        }
        self.tokens_in += s.tokens_in;
        self.tokens_out += s.tokens_out;
        self.cost_usd += s.cost_usd;
    }

    /// Latency ratio candidate/leader at a quantile of TTFT or total time.
    pub fn latency_ratio(&self, total: bool, q: f64) -> Option<f64> {
        let l = self.latency.as_ref()?;
        if total {
            Latency::ratio(&l.cand_total, &l.leader_total, q)
        } else {
            Latency::ratio(&l.cand_ttft, &l.leader_ttft, q)
        }
    }
}

/// A candidate's record: overall and per segment, plus what was dropped.
#[derive(Debug, Clone, Default)]
pub struct CandidateEval {
    pub overall: Arm,
    pub segments: BTreeMap<String, Arm>,
    pub dropped: BTreeMap<String, u64>,
}

/// Everything known about one route under its current leader.
#[derive(Debug, Default)]
pub struct RouteEval {
    pub leader: String,
    /// How many comparisons form each baseline (the policy's `min_samples`).
    pub baseline_n: u64,
    /// Whether the leader's answer to a shadowed request failed (1) or not (0).
    pub leader_errors: Running,
    pub leader_errors_epoch: Epoch,
    pub noise_baseline: Running,
    pub noise_recent: Running,
    pub candidates: BTreeMap<String, CandidateEval>,
    pub segmenter: segments::Segmenter,
    /// The leader's agreement with itself (same request sent twice): overall and per segment.
    pub noise: Running,
    pub noise_segments: BTreeMap<String, Running>,
    /// Application feedback on the leader's served requests.
    pub feedback: Running,
}

impl RouteEval {
    /// A fresh evaluation for `leader`; baselines take the first `4 × min_samples` samples,
    /// enough for the drift tests to resolve a drop of a few points.
    pub fn new(leader: &str, min_samples: u64) -> RouteEval {
        RouteEval { leader: leader.to_string(), baseline_n: min_samples.saturating_mul(4), ..RouteEval::default() }
    }

    pub fn record(&mut self, candidate: &str, sample: &Sample) {
        let n = self.baseline_n;
        let c = self.candidates.entry(candidate.to_string()).or_default();
        c.overall.push(sample, n);
        c.segments.entry(sample.segment.clone()).or_default().push(sample, n);
    }

    /// Whether the leader's own answer to a shadowed request succeeded.
    pub fn record_leader(&mut self, ok: bool) {
        let x = if ok { 0.0 } else { 1.0 };
        self.leader_errors.push(x);
        self.leader_errors_epoch.push(x, self.baseline_n);
    }

    pub fn dropped(&mut self, candidate: &str, reason: &str) {
        let c = self.candidates.entry(candidate.to_string()).or_default();
        *c.dropped.entry(reason.to_string()).or_default() += 1;
    }

    pub fn record_noise(&mut self, segment: &str, agreement: f64) {
        self.noise.push(agreement);
        if self.noise_baseline.n < self.baseline_n {
            self.noise_baseline.push(agreement);
        } else {
            self.noise_recent.push(agreement);
        }
        self.noise_segments.entry(segment.to_string()).or_default().push(agreement);
    }
}

/// The recent part of a stream: samples since the current epoch began. Epochs restart every
/// `len` samples, so a change after a long stable period shows up within about one epoch
/// instead of being diluted by all of history. Epoch k is tested at alpha·6/(π²k²), which
/// sums to alpha over all epochs, so looking at every epoch forever stays within alpha.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Epoch {
    pub current: Running,
    pub index: u64,
}

impl Epoch {
    pub fn push(&mut self, x: f64, len: u64) {
        if self.index == 0 || self.current.n >= len.max(1) {
            self.index += 1;
            self.current = Running::default();
        }
        self.current.push(x);
    }

    /// This epoch's share of `alpha`.
    pub fn alpha(&self, alpha: f64) -> f64 {
        let k = self.index.max(1) as f64;
        alpha * 6.0 / (std::f64::consts::PI * std::f64::consts::PI * k * k)
    }
}

/// A mean with its anytime-valid bounds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Estimate {
    pub n: u64,
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Estimate {
    pub fn of(r: &Running, lo: f64, hi: f64, alpha: f64, tuned_n: f64) -> Option<Estimate> {
        let (lower, upper) = stats::confidence_sequence(r, lo, hi, alpha, tuned_n)?;
        Some(Estimate { n: r.n, mean: r.mean, lower, upper })
    }

    /// `a − b` with bounds from both intervals; valid at level alpha_a + alpha_b by the union bound.
    pub fn minus(a: Estimate, b: Estimate) -> Estimate {
        Estimate { n: a.n.min(b.n), mean: a.mean - b.mean, lower: a.lower - b.upper, upper: a.upper - b.lower }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_restart_and_spend_at_most_alpha_in_total() {
        let mut e = Epoch::default();
        for i in 0..25 {
            e.push(f64::from(i % 2), 10);
        }
        assert_eq!((e.index, e.current.n), (3, 5));
        let mut total = 0.0;
        for k in 1..100_000u64 {
            total += Epoch { current: Running::default(), index: k }.alpha(0.01);
        }
        assert!(total <= 0.01 && total > 0.0099, "{total}");
    }
}
