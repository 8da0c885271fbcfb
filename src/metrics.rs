//! The Prometheus registry: every series of SPEC section 9, registered at start.

use prometheus::{
    exponential_buckets, CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the router exports. Labels only ever carry config values.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub overhead: Histogram,
    pub upstream_errors: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub tokens: IntCounterVec,
    pub cost: CounterVec,
    pub shadow_requests: IntCounterVec,
    pub shadow_dropped: IntCounterVec,
    pub agreement: GaugeVec,
    pub noise_agreement: GaugeVec,
    pub judge_win_rate: GaugeVec,
    pub judge_win_rate_lower: GaugeVec,
    pub judge_win_rate_upper: GaugeVec,
    pub latency_ratio: GaugeVec,
    pub leader_info: IntGaugeVec,
    pub leader_changes: IntCounterVec,
    pub decision_state: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: IntGauge,
    pub store_errors: IntCounterVec,
}

/// Latency buckets from 1 ms to about 5 minutes.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 19).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> Result<T, prometheus::Error> {
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let gauge = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let hist = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(latency_buckets()), labels)
        };
        let overhead_buckets = exponential_buckets(0.000_005, 2.0, 16)?;
        Ok(Metrics {
            requests: reg(
                &r,
                counter(
                    "shadowroute_requests_total",
                    "Client requests by route, modality, served model and status code.",
                    &["route", "modality", "model", "code"],
                )?,
            )?,
            duration: reg(
                &r,
                hist(
                    "shadowroute_request_duration_seconds",
                    "Client request duration until the last byte.",
                    &["route", "model"],
                )?,
            )?,
            ttfb: reg(
                &r,
                hist("shadowroute_ttfb_seconds", "Time until the upstream's response headers.", &["route", "model"])?,
            )?,
            overhead: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "shadowroute_overhead_seconds",
                        "Time spent in the router itself per request, excluding upstream time.",
                    )
                    .buckets(overhead_buckets),
                )?,
            )?,
            upstream_errors: reg(
                &r,
                counter(
                    "shadowroute_upstream_errors_total",
                    "Failed upstream calls by model and kind.",
                    &["model", "kind"],
                )?,
            )?,
            fallbacks: reg(
                &r,
                counter(
                    "shadowroute_fallbacks_total",
                    "Requests moved to a fallback model.",
                    &["route", "from", "to"],
                )?,
            )?,
            tokens: reg(
                &r,
                counter(
                    "shadowroute_tokens_total",
                    "Tokens reported by upstream usage, by direction (input|output).",
                    &["route", "model", "direction"],
                )?,
            )?,
            cost: reg(
                &r,
                CounterVec::new(
                    Opts::new("shadowroute_cost_usd_total", "Cost in USD from usage and configured prices."),
                    &["route", "model"],
                )?,
            )?,
            shadow_requests: reg(
                &r,
                counter(
                    "shadowroute_shadow_requests_total",
                    "Shadow requests by outcome.",
                    &["route", "candidate", "outcome"],
                )?,
            )?,
            shadow_dropped: reg(
                &r,
                counter(
                    "shadowroute_shadow_dropped_total",
                    "Shadow requests dropped before they were sent.",
                    &["route", "candidate", "reason"],
                )?,
            )?,
            agreement: reg(
                &r,
                gauge(
                    "shadowroute_agreement",
                    "Mean agreement of a candidate with the leader.",
                    &["route", "candidate"],
                )?,
            )?,
            noise_agreement: reg(
                &r,
                gauge(
                    "shadowroute_noise_agreement",
                    "Mean agreement of the leader with itself (noise floor).",
                    &["route"],
                )?,
            )?,
            judge_win_rate: reg(
                &r,
                gauge(
                    "shadowroute_judge_win_rate",
                    "Judge win rate of a candidate against the leader.",
                    &["route", "candidate"],
                )?,
            )?,
            judge_win_rate_lower: reg(
                &r,
                gauge(
                    "shadowroute_judge_win_rate_lower",
                    "Lower confidence bound of the judge win rate.",
                    &["route", "candidate"],
                )?,
            )?,
            judge_win_rate_upper: reg(
                &r,
                gauge(
                    "shadowroute_judge_win_rate_upper",
                    "Upper confidence bound of the judge win rate.",
                    &["route", "candidate"],
                )?,
            )?,
            latency_ratio: reg(
                &r,
                gauge(
                    "shadowroute_latency_ratio",
                    "Candidate latency over leader latency by quantile.",
                    &["route", "candidate", "quantile"],
                )?,
            )?,
            leader_info: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("shadowroute_leader_info", "1 for the current leader of each route."),
                    &["route", "model"],
                )?,
            )?,
            leader_changes: reg(
                &r,
                counter("shadowroute_leader_changes_total", "Leader changes by reason.", &["route", "reason"])?,
            )?,
            decision_state: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("shadowroute_decision_state", "1 for the current decision state of each route."),
                    &["route", "state"],
                )?,
            )?,
            config_reloads: reg(
                &r,
                counter("shadowroute_config_reloads_total", "Config reloads by result (success|error).", &["result"])?,
            )?,
            config_last_reload_success: reg(
                &r,
                IntGauge::new("shadowroute_config_last_reload_success", "1 if the last config reload succeeded.")?,
            )?,
            store_errors: reg(
                &r,
                counter(
                    "shadowroute_store_errors_total",
                    "State store operations that failed, by operation.",
                    &["op"],
                )?,
            )?,
            registry: r,
        })
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; an encoding error leaves a partial page.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
