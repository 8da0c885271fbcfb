//! What the demo prints: a text table of traffic by modality and of each route's leader and candidates.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::traffic::KindStats;
use crate::state::Snapshot;

/// Renders the live view (pure: the same inputs give the same text).
pub fn render(
    elapsed: Duration,
    total: Duration,
    traffic: &BTreeMap<&'static str, KindStats>,
    snap: &Snapshot,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shadowroute demo  {:>4.0}s / {:.0}s   (all models simulated on loopback)\n",
        elapsed.as_secs_f64(),
        total.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<11} {:>6} {:>6} {:>6} {:>9} {:>9}  served by",
        "modality", "sent", "ok", "errors", "p50 ms", "p95 ms"
    );
    for (kind, s) in traffic {
        let (p50, p95) = s
            .latency_us
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.95) as f64 / 1000.0))
            .unwrap_or((0.0, 0.0));
        let served: Vec<String> = s.served_by.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let _ = writeln!(
            out,
            "{:<11} {:>6} {:>6} {:>6} {:>9.1} {:>9.1}  {}",
            kind,
            s.sent,
            s.ok,
            s.errors,
            p50,
            p95,
            served.join(", ")
        );
    }
    let _ = writeln!(out, "\n{:<12} {:<18} {:<10} candidates", "route", "modalities", "leader");
    for r in &snap.routes {
        let modalities: Vec<&str> = r.route.modalities.iter().map(|m| m.as_str()).collect();
        let candidates: Vec<String> =
            r.candidates.iter().map(|c| format!("{} ({:.0}%)", c.model, c.sample * 100.0)).collect();
        let _ = writeln!(
            out,
            "{:<12} {:<18} {:<10} {}",
            r.route.name,
            modalities.join(","),
            r.leader,
            candidates.join(", ")
        );
    }
    out
}
