//! Decision quality by simulation (deterministic seeds): false replacements under no difference,
//! detection delay under real drops. The suite runs 40 seeds per scenario; the published table
//! (docs/decisions.md) comes from `SHADOWROUTE_SIM_RUNS=400 cargo test --release --test decision_quality -- --nocapture`.

use shadowroute::decide::harness::{policy, summarize, Scenario, Summary};
use shadowroute::decide::view::QualitySignal;

const TICK: u64 = 10;

fn runs() -> usize {
    std::env::var("SHADOWROUTE_SIM_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

fn row(name: &str, signal: QualitySignal, confidence: f64, s: &Summary) -> String {
    let fmt = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let rate = |n: usize| format!("{n}/{} ({:.1}%)", s.runs, 100.0 * n as f64 / s.runs as f64);
    format!(
        "| {name} | {signal:?} | {confidence} | {} | {} | {} | {} |",
        rate(s.promoted - s.early),
        rate(s.early),
        fmt(s.median_delay),
        fmt(s.p95_delay)
    )
}

/// A leader that was as good as the candidate, changing after 3,000 compared requests.
fn changed(signal: QualitySignal, samples: u64) -> Scenario {
    Scenario { change_at: 3000, samples, ..Scenario::null(signal, samples) }
}

#[test]
fn false_replacements_stay_below_one_minus_confidence_and_real_drops_are_caught() {
    let runs = runs();
    let mut table = vec![
        "| scenario | quality signal | confidence | replaced after the change | replaced without cause | median delay | p95 delay |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let cases = [
        (QualitySignal::Judge, 0.95, 6000),
        (QualitySignal::Judge, 0.99, 6000),
        (QualitySignal::Agreement, 0.95, 10000),
    ];
    for (signal, confidence, samples) in cases {
        let p = policy(confidence, 300);
        let allowed = ((1.0 - confidence) * runs as f64).floor() as usize;
        let null = summarize(&Scenario::null(signal, samples), &p, runs, TICK);
        table.push(row(&format!("no difference, {samples} compared"), signal, confidence, &null));
        assert!(
            null.promoted <= allowed,
            "{signal:?} at {confidence}: {} of {runs} runs replaced an equal leader",
            null.promoted
        );
        let scenarios = [
            ("leader quality -10 points", Scenario { leader_after: 0.75, ..changed(signal, samples) }),
            ("leader latency x2", Scenario { leader_latency_after: 2.0, ..changed(signal, samples) }),
            ("leader errors 10%", Scenario { leader_errors_after: 0.10, ..changed(signal, samples) }),
        ];
        for (name, scenario) in scenarios {
            let s = summarize(&scenario, &p, runs, TICK);
            table.push(row(name, signal, confidence, &s));
            assert!(s.early <= allowed, "{name} {signal:?}: {} replacements before the change", s.early);
            let caught = s.promoted - s.early;
            assert!(caught * 100 >= runs * 95, "{name} {signal:?} at {confidence}: only {caught} of {runs} caught");
        }
    }
    // After a long stable period the change must still be caught: recent epochs carry evidence.
    let p = policy(0.95, 300);
    let late =
        Scenario { leader_after: 0.75, change_at: 20_000, samples: 32_000, ..Scenario::null(QualitySignal::Judge, 0) };
    let s = summarize(&late, &p, runs, TICK);
    table.push(row("leader quality -10 points after 20,000 stable", QualitySignal::Judge, 0.95, &s));
    assert!(s.early * 100 <= runs * 5, "{} replacements before the late change", s.early);
    assert!((s.promoted - s.early) * 100 >= runs * 95, "late drop: only {} of {runs} caught", s.promoted - s.early);
    println!("{}", table.join("\n"));
}
