//! Leader changes: the decision tick, operator actions, and leader overrides that survive restarts.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::{Control, Operator};
use crate::config::{Config, Route};
use crate::decide::view::{self, CandidateView, QualitySignal};
use crate::decide::{Action, Input, State};
use crate::proxy::modality::Modality;
use crate::store::{now_ms, DecisionRecord, Override, Write};

/// What `/admin/routes` and `shadowroute status` show about decisions.
#[derive(Default)]
pub struct Board {
    pub routes: HashMap<String, RouteStatus>,
    /// Recent decisions, oldest first.
    pub log: VecDeque<DecisionRecord>,
}

const LOG_CAPACITY: usize = 500;

/// A route's decision state after the last tick.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub state: State,
    pub reasons: Vec<String>,
    pub candidates: Vec<CandidateView>,
    pub held_back: Vec<String>,
    pub paused: bool,
}

/// Which signal judges quality on a route.
fn signal_for(route: &Route) -> QualitySignal {
    if route.evaluate.judge.is_some() {
        QualitySignal::Judge
    } else if route.modalities.iter().all(|m| matches!(m, Modality::Speech | Modality::Image)) {
        QualitySignal::None
    } else {
        QualitySignal::Agreement
    }
}

/// Keeps the stored overrides that still apply to `config`; an SRE's edit of a route's
/// `leader` since the override was set wins. Returns the kept overrides and notes on the dropped.
pub fn reconcile(config: &Config, stored: Vec<Override>) -> (HashMap<String, Override>, Vec<DecisionRecord>) {
    let mut kept = HashMap::new();
    let mut notes = Vec::new();
    for o in stored {
        let route = config.routes.iter().find(|r| r.name == o.route);
        let why = match route {
            None => Some(format!("route {} no longer exists", o.route)),
            Some(_) if !config.models.contains_key(&o.model) => Some(format!("model {} is no longer defined", o.model)),
            Some(r) if r.leader != o.configured_leader => Some(format!(
                "routes.yaml changed the leader from {} to {}; the file wins over the automatic choice of {}",
                o.configured_leader, r.leader, o.model
            )),
            Some(_) => None,
        };
        match why {
            None => {
                kept.insert(o.route.clone(), o);
            }
            Some(reason) => notes.push(DecisionRecord {
                at_ms: now_ms(),
                route: o.route.clone(),
                kind: "sre_override".into(),
                from: o.model.clone(),
                to: route.map(|r| r.leader.clone()).unwrap_or_default(),
                reason,
                evidence: serde_json::Value::Null,
            }),
        }
    }
    (kept, notes)
}

fn fingerprints(config: &Config) -> HashMap<String, String> {
    config.models.iter().map(|(n, m)| (n.clone(), format!("{}|{}", m.url, m.model))).collect()
}

impl Control {
    /// Logs, stores and shows a decision.
    fn record(&self, d: DecisionRecord) {
        tracing::warn!(route = %d.route, kind = %d.kind, from = %d.from, to = %d.to, reason = %d.reason, "decision");
        self.app.store.send(Write::Decision(d.clone()));
        let mut board = self.app.board();
        board.log.push_back(d);
        while board.log.len() > LOG_CAPACITY {
            board.log.pop_front();
        }
    }

    /// Drops overrides that a reloaded config no longer allows (an SRE edit wins).
    pub(super) fn reconcile_overrides(&mut self, config: &Config) {
        let stored: Vec<Override> = self.overrides.values().cloned().collect();
        let (kept, notes) = reconcile(config, stored);
        for note in notes {
            self.leaders.remove(&note.route);
            self.app.store.send(Write::Override { route: note.route.clone(), value: None });
            self.app.metrics.leader_changes.with_label_values(&[&note.route, "sre_edit"]).inc();
            self.record(note);
        }
        self.overrides = kept;
    }

    /// Makes `model` the leader of `route`, persisting it unless it is the configured leader.
    fn set_leader(&mut self, route: &str, model: &str, config: &Config) {
        let configured = config.routes.iter().find(|r| r.name == route).map(|r| r.leader.clone()).unwrap_or_default();
        let value = if model == configured {
            self.leaders.remove(route);
            self.overrides.remove(route);
            None
        } else {
            self.leaders.insert(route.to_string(), model.to_string());
            let o = Override {
                route: route.to_string(),
                model: model.to_string(),
                configured_leader: configured,
                at_ms: now_ms(),
            };
            self.overrides.insert(route.to_string(), o.clone());
            Some(o)
        };
        self.app.store.send(Write::Override { route: route.to_string(), value });
    }

    /// One pass of the decision engine over every route.
    pub(super) fn tick(&mut self) {
        let snap = self.app.snapshot();
        let now = now_ms();
        let prints = fingerprints(&snap.config);
        let mut actions = Vec::new();
        {
            let evals = self.app.shadow.evaluations();
            let mut statuses = Vec::new();
            for r in &snap.routes {
                let name = &r.route.name;
                if let Some(e) = evals.get(name).filter(|e| e.leader == r.leader) {
                    self.export(name, e, &r.route.policy);
                }
                let decider = self.deciders.entry(name.clone()).or_default();
                let names: Vec<String> = r.candidates.iter().map(|c| c.model.clone()).collect();
                let views = match evals.get(name) {
                    Some(e) if e.leader == r.leader => {
                        view::candidates(e, &names, &r.route.policy, signal_for(&r.route), &decider.held_back())
                    }
                    _ => Vec::new(),
                };
                let outcome =
                    decider.step(&Input { now_ms: now, policy: &r.route.policy, views: &views, fingerprints: &prints });
                for s in State::ALL {
                    self.app
                        .metrics
                        .decision_state
                        .with_label_values(&[name, s.as_str()])
                        .set(i64::from(s == outcome.state));
                }
                let status = RouteStatus {
                    state: outcome.state,
                    reasons: outcome.reasons,
                    candidates: views.clone(),
                    held_back: decider.held_back(),
                    paused: decider.paused,
                };
                statuses.push((name.clone(), status));
                if outcome.action != Action::None {
                    actions.push((name.clone(), r.leader.clone(), outcome.action, views));
                }
            }
            drop(evals);
            let mut board = self.app.board();
            board.routes = statuses.into_iter().collect();
        }
        for (route, from, action, views) in actions {
            let evidence =
                |model: &str| serde_json::to_value(views.iter().find(|v| v.model == model)).unwrap_or_default();
            let decision = |kind: &str, to: &str, reason: &str| DecisionRecord {
                at_ms: now,
                route: route.clone(),
                kind: kind.into(),
                from: from.clone(),
                to: to.to_string(),
                reason: reason.to_string(),
                evidence: evidence(to),
            };
            match action {
                Action::None => {}
                Action::Recommend { to, reason } => self.record(decision("recommend", &to, &reason)),
                Action::Promote { to, reason } => {
                    self.set_leader(&route, &to, &snap.config);
                    self.deciders.entry(route.clone()).or_default().changed(&from, now, true);
                    self.app.metrics.leader_changes.with_label_values(&[&route, "degraded"]).inc();
                    self.record(decision("promote", &to, &reason));
                    self.swap(snap.config.clone(), snap.last_reload.error.clone());
                    self.show(&route, State::Probation, format!("promoted {to} over {from}: {reason}"));
                }
                Action::Rollback { to, reason } => {
                    let mut d = decision("rollback", &to, &reason);
                    d.evidence = evidence(&to);
                    self.set_leader(&route, &to, &snap.config);
                    let decider = self.deciders.entry(route.clone()).or_default();
                    if let Some(fp) = prints.get(&from) {
                        decider.hold_back(&from, fp);
                    }
                    decider.changed(&from, now, false);
                    self.app.metrics.leader_changes.with_label_values(&[&route, "rollback"]).inc();
                    self.record(d);
                    self.swap(snap.config.clone(), snap.last_reload.error.clone());
                    self.show(&route, State::Cooldown, format!("rolled back to {to}: {reason}"));
                }
            }
        }
    }

    /// Sets a route's evidence gauges (at the tick's pace, not per sample: quantiles and
    /// label lookups stay off the shadow jobs).
    fn export(&self, route: &str, eval: &crate::evaluate::RouteEval, policy: &crate::config::Policy) {
        let m = &self.app.metrics;
        let (alpha, tuned) = (1.0 - policy.confidence, policy.min_samples as f64);
        if eval.noise.n > 0 {
            m.noise_agreement.with_label_values(&[route]).set(eval.noise.mean);
        }
        for (model, c) in &eval.candidates {
            let arm = &c.overall;
            if arm.agreement.n > 0 {
                m.agreement.with_label_values(&[route, model]).set(arm.agreement.mean);
            }
            if let Some(e) = crate::evaluate::Estimate::of(&arm.judge, 0.0, 1.0, alpha, tuned) {
                m.judge_win_rate.with_label_values(&[route, model]).set(e.mean);
                m.judge_win_rate_lower.with_label_values(&[route, model]).set(e.lower);
                m.judge_win_rate_upper.with_label_values(&[route, model]).set(e.upper);
            }
            for (label, total, q) in [
                ("ttft_p50", false, 0.5),
                ("ttft_p95", false, 0.95),
                ("total_p50", true, 0.5),
                ("total_p95", true, 0.95),
            ] {
                if let Some(r) = arm.latency_ratio(total, q) {
                    m.latency_ratio.with_label_values(&[route, model, label]).set(r);
                }
            }
        }
    }

    /// Shows a route's state right after a change, before the next tick has new evidence.
    fn show(&self, route: &str, state: State, reason: String) {
        for s in State::ALL {
            self.app.metrics.decision_state.with_label_values(&[route, s.as_str()]).set(i64::from(s == state));
        }
        let held_back = self.deciders.get(route).map(|d| d.held_back()).unwrap_or_default();
        let paused = self.deciders.get(route).is_some_and(|d| d.paused);
        let status = RouteStatus { state, reasons: vec![reason], candidates: Vec::new(), held_back, paused };
        self.app.board().routes.insert(route.to_string(), status);
    }

    /// An operator's action on a route.
    pub(super) fn operate(&mut self, route: &str, action: Operator) -> Result<String, (u16, String)> {
        let snap = self.app.snapshot();
        let Some(r) = snap.routes.iter().find(|r| r.route.name == route) else {
            return Err((404, format!("unknown route `{route}`")));
        };
        let from = r.leader.clone();
        let now = now_ms();
        let record = |kind: &str, to: &str, reason: &str| DecisionRecord {
            at_ms: now,
            route: route.to_string(),
            kind: kind.into(),
            from: from.clone(),
            to: to.to_string(),
            reason: reason.to_string(),
            evidence: serde_json::Value::Null,
        };
        let (kind, to, message) = match action {
            Operator::Pause | Operator::Resume => {
                let pause = action == Operator::Pause;
                self.deciders.entry(route.to_string()).or_default().paused = pause;
                let kind = if pause { "pause" } else { "resume" };
                self.record(record(kind, &from, "operator"));
                return Ok(format!("route {route} {}", if pause { "paused: no automatic changes" } else { "resumed" }));
            }
            Operator::Promote(model) => {
                if !snap.config.models.contains_key(&model) {
                    return Err((400, format!("undefined model `{model}`")));
                }
                if model == from {
                    return Err((409, format!("`{model}` already leads route {route}")));
                }
                ("manual_promote", model.clone(), format!("promoted {model} to leader of {route} (was {from})"))
            }
            Operator::Rollback => {
                let decider = self.deciders.entry(route.to_string()).or_default();
                let previous = decider.previous.clone().filter(|p| p != &from && snap.config.models.contains_key(p));
                let to = previous.or_else(|| (r.route.leader != from).then(|| r.route.leader.clone()));
                let Some(to) = to else {
                    return Err((409, format!("nothing to roll back: {from} is the configured leader of {route}")));
                };
                ("manual_rollback", to.clone(), format!("rolled back {route} from {from} to {to}"))
            }
        };
        self.set_leader(route, &to, &snap.config);
        self.deciders.entry(route.to_string()).or_default().changed(&from, now, false);
        self.app.metrics.leader_changes.with_label_values(&[route, "manual"]).inc();
        self.record(record(kind, &to, "operator"));
        self.swap(snap.config.clone(), snap.last_reload.error.clone());
        Ok(message)
    }
}
