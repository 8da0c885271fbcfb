//! What the decision engine looks at: each candidate's gates computed from the route's evaluation (pure).

use serde::Serialize;

use crate::config::Policy;
use crate::evaluate::evidence::latency_ratio;
use crate::evaluate::stats::Running;
use crate::evaluate::{Arm, Epoch, Estimate, RouteEval};

/// How a candidate's quality is judged on this route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QualitySignal {
    /// Pairwise judge win rate against the leader (0.5 = as good).
    Judge,
    /// Agreement with the leader compared with the leader's agreement with itself.
    Agreement,
    /// Nothing comparable (speech, images without a judge): latency and errors decide.
    None,
}

/// One gate's result, with the words an on-call engineer reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub pass: bool,
    pub why: String,
}

/// A candidate seen by the decision engine.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    pub model: String,
    pub samples: u64,
    pub quality: Option<Estimate>,
    pub gates: Vec<Gate>,
    pub qualified: bool,
    /// Why the leader counts as degraded against this candidate (empty when it does not).
    pub leader_degraded: Vec<String>,
    /// How much better the candidate looks, to pick the best of several.
    pub score: f64,
}

fn alpha(policy: &Policy) -> f64 {
    (1.0 - policy.confidence) / 2.0
}

fn est(r: &Running, lo: f64, hi: f64, policy: &Policy) -> Option<Estimate> {
    Estimate::of(r, lo, hi, alpha(policy), policy.min_samples as f64)
}

/// Degradation has up to seven estimates behind it (judge, agreement and noise drift,
/// errors, latency); each gets an eighth of 1 − confidence so together they stay below it.
fn est_degraded(r: &Running, lo: f64, hi: f64, policy: &Policy) -> Option<Estimate> {
    Estimate::of(r, lo, hi, (1.0 - policy.confidence) / 8.0, 4.0 * policy.min_samples as f64)
}

/// The "not worse" tolerance for a signal.
fn margin(signal: QualitySignal, policy: &Policy) -> f64 {
    match signal {
        QualitySignal::Agreement => policy.agreement_margin,
        _ => policy.margin,
    }
}

/// Segments need this many samples before their own gate applies.
pub fn segment_min(policy: &Policy) -> u64 {
    (policy.min_samples / 3).max(20)
}

/// Quality of an arm as a number where 0 means "as good as the leader":
/// judge win rate − 0.5, or agreement − noise agreement over the baselines.
fn quality(signal: QualitySignal, arm: &Arm, noise: &Running, policy: &Policy) -> Option<Estimate> {
    match signal {
        QualitySignal::Judge => est(&arm.judge, 0.0, 1.0, policy).map(|e| Estimate {
            mean: e.mean - 0.5,
            lower: e.lower - 0.5,
            upper: e.upper - 0.5,
            ..e
        }),
        QualitySignal::Agreement => {
            let a = est(&arm.agreement, 0.0, 1.0, policy)?;
            let n = est(noise, 0.0, 1.0, policy)?;
            Some(Estimate::minus(a, n))
        }
        QualitySignal::None => None,
    }
}

fn points(x: f64) -> f64 {
    (x * 100.0).round()
}

/// Computes every candidate's gates and the leader's degradation against it.
pub fn candidates(
    eval: &RouteEval,
    names: &[String],
    policy: &Policy,
    signal: QualitySignal,
    held_back: &[String],
) -> Vec<CandidateView> {
    names.iter().map(|name| candidate(eval, name, policy, signal, held_back.contains(name))).collect()
}

fn candidate(eval: &RouteEval, name: &str, policy: &Policy, signal: QualitySignal, held_back: bool) -> CandidateView {
    // A candidate with no evidence yet reads as an empty one (built only then: it holds histograms).
    let empty;
    let c = match eval.candidates.get(name) {
        Some(c) => c,
        None => {
            empty = Default::default();
            &empty
        }
    };
    let arm = &c.overall;
    let samples = match signal {
        QualitySignal::Judge => arm.judge.n,
        QualitySignal::Agreement => arm.agreement.n,
        QualitySignal::None => arm.shadowed,
    };
    let mut gates = Vec::new();
    let mut gate = |pass: bool, why: String| gates.push(Gate { pass, why });
    if held_back {
        gate(false, "held back: it failed probation; change its model or config to try again".into());
    }
    gate(
        samples >= policy.min_samples,
        if samples >= policy.min_samples {
            format!("{samples} samples")
        } else {
            format!("needs {} more samples", policy.min_samples - samples)
        },
    );
    let q = quality(signal, arm, &eval.noise, policy);
    let m = margin(signal, policy);
    match (signal, q) {
        (QualitySignal::None, _) => {}
        (_, None) => gate(false, "quality: no evidence yet".into()),
        (_, Some(q)) => {
            if q.lower >= -m {
                gate(
                    true,
                    format!(
                        "quality not worse than the leader ({:+.0} points, bound {:+.0})",
                        points(q.mean),
                        points(q.lower)
                    ),
                );
            } else if q.upper < -m {
                gate(
                    false,
                    format!(
                        "worse than the leader by {:.0} points [{:.0}, {:.0}]",
                        -points(q.mean),
                        -points(q.upper),
                        -points(q.lower)
                    ),
                );
            } else {
                gate(
                    false,
                    format!(
                        "quality inconclusive ({:+.0} points [{:+.0}, {:+.0}])",
                        points(q.mean),
                        points(q.lower),
                        points(q.upper)
                    ),
                );
            }
        }
    }
    if signal == QualitySignal::Judge && arm.judge_inconclusive > arm.judge.n {
        gate(
            false,
            format!(
                "judge mostly inconclusive ({} of {})",
                arm.judge_inconclusive,
                arm.judge_inconclusive + arm.judge.n
            ),
        );
    }
    for (segment, seg_arm) in &c.segments {
        let seg_noise = eval.noise_segments.get(segment).copied().unwrap_or_default();
        let seg_n = match signal {
            QualitySignal::Judge => seg_arm.judge.n,
            _ => seg_arm.agreement.n,
        };
        if seg_n < segment_min(policy) || c.segments.len() < 2 {
            continue;
        }
        if let Some(sq) = quality(signal, seg_arm, &seg_noise, policy) {
            // A clear point estimate is enough to block: one locale must never pay for the rest.
            if sq.upper < -m || sq.mean < -2.0 * m - 0.03 {
                let label = segment.split('=').nth(1).unwrap_or(segment);
                gate(false, format!("blocked: {label} worse by {:.0} points", -points(sq.mean)));
            }
        }
    }
    if let Some(r) = arm.latency_ratio(true, 0.95) {
        let ok = r <= policy.max_latency_ratio;
        gate(
            ok,
            format!(
                "p95 latency x{r:.2} of the leader{}",
                if ok { String::new() } else { format!(", above {:.2}", policy.max_latency_ratio) }
            ),
        );
    }
    if let Some(e) = est(&arm.errors, 0.0, 1.0, policy) {
        let ok = e.mean <= policy.max_error_rate && e.lower <= policy.max_error_rate;
        gate(
            ok,
            format!(
                "error rate {:.1}%{}",
                e.mean * 100.0,
                if ok { String::new() } else { format!(" above {:.1}%", policy.max_error_rate * 100.0) }
            ),
        );
    }
    let qualified = !gates.is_empty() && gates.iter().all(|g| g.pass);
    let leader_degraded = degradation(eval, arm, signal, policy);
    let score =
        q.map(|q| q.lower).unwrap_or(0.0) - latency_ratio(arm, policy).map(|r| r.mean.ln() * 0.01).unwrap_or(0.0);
    CandidateView { model: name.to_string(), samples, quality: q, gates, qualified, leader_degraded, score }
}

/// The first estimate, over all of history or over the current epoch, that shows `degraded`:
/// half of the test's alpha goes to the whole stream, half is spent across epochs.
fn degraded_in(
    all: &Running,
    epoch: &Epoch,
    lo: f64,
    hi: f64,
    policy: &Policy,
    degraded: impl Fn(&Estimate) -> bool,
) -> Option<Estimate> {
    let alpha = (1.0 - policy.confidence) / 8.0 / 2.0;
    let tuned = policy.min_samples as f64;
    let whole = Estimate::of(all, lo, hi, alpha, 4.0 * tuned).filter(&degraded);
    whole.or_else(|| Estimate::of(&epoch.current, lo, hi, epoch.alpha(alpha), 2.0 * tuned).filter(&degraded))
}

/// The ways the leader can be degraded relative to a candidate (SPEC section 7).
fn degradation(eval: &RouteEval, arm: &Arm, signal: QualitySignal, policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let est = |r: &Running, lo: f64, hi: f64| est_degraded(r, lo, hi, policy);
    if signal == QualitySignal::Judge {
        if let Some(j) = degraded_in(&arm.judge, &arm.judge_epoch, 0.0, 1.0, policy, |e| e.lower > 0.5) {
            out.push(format!(
                "leader quality fell below the candidate's: judge win rate {:.2} [{:.2}, {:.2}]",
                j.mean, j.lower, j.upper
            ));
        }
    }
    if signal == QualitySignal::Agreement {
        // Drift against the baseline taken when this leader started: the pair, or the leader alone.
        let drift = |base: &Running, recent: &Running| match (est(base, 0.0, 1.0), est(recent, 0.0, 1.0)) {
            (Some(b), Some(r)) if r.upper < b.lower - policy.margin => Some((b.mean, r.mean)),
            _ => None,
        };
        if let Some((b, r)) = drift(&arm.agreement_baseline, &arm.agreement_recent) {
            out.push(format!("leader agreement with the candidate fell from {b:.2} to {r:.2}"));
        }
        if let Some((b, r)) = drift(&eval.noise_baseline, &eval.noise_recent) {
            out.push(format!("leader agreement with itself (noise floor) fell from {b:.2} to {r:.2}"));
        }
    }
    let max_errors = policy.max_error_rate;
    if let Some(e) =
        degraded_in(&eval.leader_errors, &eval.leader_errors_epoch, 0.0, 1.0, policy, |e| e.lower > max_errors)
    {
        out.push(format!("leader error rate {:.1}% above {:.1}%", e.mean * 100.0, max_errors * 100.0));
    }
    // The candidate is faster than the leader beyond the allowed ratio, with confidence.
    let faster = |e: &Estimate| e.upper.exp() < 1.0 / policy.max_latency_ratio;
    if let Some(e) = degraded_in(&arm.log_latency_ratio, &arm.latency_epoch, -5.0, 5.0, policy, faster) {
        out.push(format!(
            "leader latency x{:.2} of the candidate's, above {:.2}",
            (-e.mean).exp(),
            policy.max_latency_ratio
        ));
    }
    out
}
