//! Evidence for people: each candidate's numbers with bounds, per segment, and one sentence that sums them up.

use serde_json::{json, Value};

use super::stats::Running;
use super::{Arm, Estimate, RouteEval};
use crate::config::Policy;

/// The level of each interval: the union of two intervals (candidate and noise) must hold at `confidence`.
fn alpha(policy: &Policy) -> f64 {
    (1.0 - policy.confidence) / 2.0
}

fn est(r: &Running, lo: f64, hi: f64, policy: &Policy) -> Option<Estimate> {
    Estimate::of(r, lo, hi, alpha(policy), policy.min_samples as f64)
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn est_json(e: Option<Estimate>) -> Value {
    match e {
        Some(e) => json!({"n": e.n, "mean": round(e.mean), "lower": round(e.lower), "upper": round(e.upper)}),
        None => Value::Null,
    }
}

/// Agreement of an arm minus the noise floor, with bounds.
pub fn agreement_vs_noise(arm: &Arm, noise: &Running, policy: &Policy) -> Option<Estimate> {
    Some(Estimate::minus(est(&arm.agreement, 0.0, 1.0, policy)?, est(noise, 0.0, 1.0, policy)?))
}

/// Geometric-mean latency ratio candidate/leader with bounds.
pub fn latency_ratio(arm: &Arm, policy: &Policy) -> Option<Estimate> {
    let e = est(&arm.log_latency_ratio, -5.0, 5.0, policy)?;
    Some(Estimate { n: e.n, mean: e.mean.exp(), lower: e.lower.exp(), upper: e.upper.exp() })
}

fn arm_json(arm: &Arm, noise: &Running, policy: &Policy) -> Value {
    let ratio = |total: bool, q: f64| arm.latency_ratio(total, q).map(round);
    json!({
        "shadowed": arm.shadowed,
        "compared": arm.agreement.n,
        "agreement": est_json(est(&arm.agreement, 0.0, 1.0, policy)),
        "noise_agreement": est_json(est(noise, 0.0, 1.0, policy)),
        "agreement_minus_noise": est_json(agreement_vs_noise(arm, noise, policy)),
        "judge_win_rate": est_json(est(&arm.judge, 0.0, 1.0, policy)),
        "judge_inconclusive": arm.judge_inconclusive,
        "latency_ratio": {
            "ttft_p50": ratio(false, 0.5), "ttft_p95": ratio(false, 0.95),
            "total_p50": ratio(true, 0.5), "total_p95": ratio(true, 0.95),
            "geometric_mean": est_json(latency_ratio(arm, policy)),
        },
        "error_rate": est_json(est(&arm.errors, 0.0, 1.0, policy)),
        "tokens": {"input": arm.tokens_in, "output": arm.tokens_out},
        "cost_usd": round(arm.cost_usd),
    })
}

/// One sentence an on-call engineer can read: how sure, which way, by how much.
pub fn summary(arm: &Arm, noise: &Running, policy: &Policy) -> String {
    let n = arm.agreement.n.max(arm.judge.n);
    if arm.shadowed == 0 {
        return "no shadow samples yet".into();
    }
    let mut parts = Vec::new();
    if n < policy.min_samples {
        parts.push(format!("needs {} more samples", policy.min_samples - n));
    }
    match agreement_vs_noise(arm, noise, policy) {
        Some(d) if d.upper < -policy.margin => parts.push(format!(
            "disagrees with the leader more than the leader with itself, by {:.0} points [{:.0}, {:.0}]",
            -d.mean * 100.0,
            -d.upper * 100.0,
            -d.lower * 100.0
        )),
        Some(d) if d.lower >= -policy.margin => {
            parts.push(format!("agrees with the leader within its noise ({:+.0} points)", d.mean * 100.0))
        }
        Some(d) => parts.push(format!("agreement vs noise still inconclusive ({:+.0} points)", d.mean * 100.0)),
        None if arm.agreement.n > 0 => parts.push("no noise floor yet (raise noise_sample)".into()),
        None => {}
    }
    if let Some(j) = est(&arm.judge, 0.0, 1.0, policy) {
        let verdict = if j.lower > 0.5 {
            "judge prefers the candidate"
        } else if j.upper < 0.5 {
            "judge prefers the leader"
        } else {
            "judge undecided"
        };
        parts.push(format!("{verdict} (win rate {:.2} [{:.2}, {:.2}])", j.mean, j.lower, j.upper));
    }
    if let Some(r) = arm.latency_ratio(true, 0.95) {
        parts.push(format!("p95 latency x{r:.2}"));
    }
    if let Some(e) = est(&arm.errors, 0.0, 1.0, policy) {
        if e.lower > policy.max_error_rate {
            parts.push(format!(
                "error rate {:.1}% above the {:.1}% bound",
                e.mean * 100.0,
                policy.max_error_rate * 100.0
            ));
        }
    }
    parts.join("; ")
}

/// The evidence of one route as JSON, candidates in the given order.
pub fn route_json(eval: &RouteEval, candidates: &[String], policy: &Policy) -> Value {
    let cands: Vec<Value> = candidates
        .iter()
        .map(|name| {
            let Some(c) = eval.candidates.get(name) else {
                return json!({"model": name, "summary": "no shadow samples yet", "shadowed": 0});
            };
            let mut v = arm_json(&c.overall, &eval.noise, policy);
            v["model"] = json!(name);
            v["summary"] = json!(summary(&c.overall, &eval.noise, policy));
            v["dropped"] = json!(c.dropped);
            let segments: serde_json::Map<String, Value> = c
                .segments
                .iter()
                .map(|(seg, arm)| {
                    let noise = eval.noise_segments.get(seg).copied().unwrap_or_default();
                    (seg.clone(), arm_json(arm, &noise, policy))
                })
                .collect();
            v["segments"] = Value::Object(segments);
            v
        })
        .collect();
    json!({
        "leader": eval.leader,
        "noise_agreement": est_json(est(&eval.noise, 0.0, 1.0, policy)),
        "feedback": est_json(est(&eval.feedback, 0.0, 1.0, policy)),
        "candidates": cands,
    })
}
