//! What the demo prints: traffic by modality, then the same route table as `shadowroute status`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::traffic::KindStats;

/// Renders the live view (pure: the same inputs give the same text).
pub fn render(
    elapsed: Duration,
    total: Duration,
    traffic: &BTreeMap<&'static str, KindStats>,
    routes: &serde_json::Value,
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
    out.push('\n');
    out.push_str(&crate::status::render(routes));
    out
}
