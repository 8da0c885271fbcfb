//! The decision engine: per route, evidence in and decision out, as a pure state machine.

pub mod harness;
pub mod view;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::{Mode, Policy};
use view::CandidateView;

/// Where a route stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Off,
    Paused,
    Collecting,
    Watching,
    Recommending,
    Cooldown,
    Probation,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Off,
        State::Paused,
        State::Collecting,
        State::Watching,
        State::Recommending,
        State::Cooldown,
        State::Probation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Off => "off",
            State::Paused => "paused",
            State::Collecting => "collecting",
            State::Watching => "watching",
            State::Recommending => "recommending",
            State::Cooldown => "cooldown",
            State::Probation => "probation",
        }
    }
}

/// What the engine wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Promote { to: String, reason: String },
    Recommend { to: String, reason: String },
    Rollback { to: String, reason: String },
}

/// A new leader under watch after an automatic promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct Probation {
    pub previous: String,
    pub since_ms: i64,
}

/// Per-route memory of the engine.
#[derive(Debug, Clone, Default)]
pub struct Decider {
    pub paused: bool,
    pub changed_at_ms: Option<i64>,
    pub probation: Option<Probation>,
    /// The leader before the last change, for operator rollbacks.
    pub previous: Option<String>,
    /// Models that failed probation, with their config fingerprint at the time.
    pub held_back: BTreeMap<String, String>,
    /// The candidate last recommended, so a recommendation is recorded once.
    pub recommended: Option<String>,
}

/// What one step looks at.
pub struct Input<'a> {
    pub now_ms: i64,
    pub policy: &'a Policy,
    pub views: &'a [CandidateView],
    /// Current config fingerprint of each model (url and upstream model name).
    pub fingerprints: &'a HashMap<String, String>,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: State,
    pub reasons: Vec<String>,
    pub action: Action,
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

impl Decider {
    /// Models currently held back, still with the config they failed with.
    pub fn held_back(&self) -> Vec<String> {
        self.held_back.keys().cloned().collect()
    }

    /// One decision step.
    pub fn step(&mut self, input: &Input<'_>) -> Outcome {
        let p = input.policy;
        self.held_back.retain(|model, fp| input.fingerprints.get(model) == Some(fp));
        let outcome = |state, reasons, action| Outcome { state, reasons, action };
        if p.mode == Mode::Off {
            return outcome(State::Off, vec!["mode off: observing only".into()], Action::None);
        }
        if self.paused {
            return outcome(State::Paused, vec!["paused by an operator".into()], Action::None);
        }
        if let Some(prob) = self.probation.clone() {
            if input.now_ms < prob.since_ms + ms(p.probation) {
                let failed: Vec<String> = input
                    .views
                    .iter()
                    .filter(|v| v.model == prob.previous)
                    .flat_map(|v| v.leader_degraded.clone())
                    .collect();
                if !failed.is_empty() {
                    let reason = format!("probation failed against {}: {}", prob.previous, failed.join("; "));
                    return outcome(
                        State::Probation,
                        vec![reason.clone()],
                        Action::Rollback { to: prob.previous, reason },
                    );
                }
                let left = (prob.since_ms + ms(p.probation) - input.now_ms) / 1000;
                return outcome(
                    State::Probation,
                    vec![format!("new leader on probation for {left}s more; gates hold")],
                    Action::None,
                );
            }
            self.probation = None;
        }
        if let Some(at) = self.changed_at_ms {
            if input.now_ms < at + ms(p.cooldown) {
                let left = (at + ms(p.cooldown) - input.now_ms) / 1000;
                return outcome(
                    State::Cooldown,
                    vec![format!("cooldown after the last leader change: {left}s left")],
                    Action::None,
                );
            }
        }
        let qualified: Vec<&CandidateView> = input.views.iter().filter(|v| v.qualified).collect();
        let degraded: Vec<String> = qualified.iter().flat_map(|v| v.leader_degraded.iter().cloned()).collect();
        let mut reasons: Vec<String> = input
            .views
            .iter()
            .map(|v| {
                let failing: Vec<&str> = v.gates.iter().filter(|g| !g.pass).map(|g| g.why.as_str()).collect();
                if failing.is_empty() {
                    format!("{}: qualified", v.model)
                } else {
                    format!("{}: {}", v.model, failing.join("; "))
                }
            })
            .collect();
        if let (false, Some(best)) = (degraded.is_empty(), qualified.iter().max_by(|a, b| a.score.total_cmp(&b.score)))
        {
            let reason = format!("leader degraded: {}; best qualified candidate: {}", degraded.join("; "), best.model);
            reasons.insert(0, reason.clone());
            let to = best.model.clone();
            return match p.mode {
                Mode::Auto => outcome(State::Watching, reasons, Action::Promote { to, reason }),
                _ => {
                    let fresh = self.recommended.as_deref() != Some(to.as_str());
                    self.recommended = Some(to.clone());
                    let action = if fresh { Action::Recommend { to, reason } } else { Action::None };
                    outcome(State::Recommending, reasons, action)
                }
            };
        }
        self.recommended = None;
        if !qualified.is_empty() {
            reasons.insert(0, "leader healthy: no degradation against the qualified candidates".into());
        }
        let collecting = input.views.iter().any(|v| v.samples < p.min_samples);
        outcome(
            if collecting && qualified.is_empty() { State::Collecting } else { State::Watching },
            reasons,
            Action::None,
        )
    }

    /// Records a leader change; an automatic promotion starts probation.
    pub fn changed(&mut self, from: &str, now_ms: i64, automatic: bool) {
        self.changed_at_ms = Some(now_ms);
        self.previous = Some(from.to_string());
        self.recommended = None;
        self.probation = automatic.then(|| Probation { previous: from.to_string(), since_ms: now_ms });
    }

    /// Holds back a model that failed probation until its config changes.
    pub fn hold_back(&mut self, model: &str, fingerprint: &str) {
        self.held_back.insert(model.to_string(), fingerprint.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::view::{CandidateView, Gate};
    use super::*;
    use std::time::Duration;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            min_samples: 100,
            margin: 0.02,
            agreement_margin: 0.1,
            confidence: 0.99,
            max_latency_ratio: 1.25,
            max_error_rate: 0.02,
            cooldown: Duration::from_secs(60),
            probation: Duration::from_secs(30),
        }
    }

    fn view(model: &str, qualified: bool, degraded: bool) -> CandidateView {
        CandidateView {
            model: model.into(),
            samples: 200,
            quality: None,
            gates: vec![Gate {
                pass: qualified,
                why: if qualified { "ok".into() } else { "worse by 5 points".into() },
            }],
            qualified,
            leader_degraded: if degraded { vec!["judge win rate 0.7".into()] } else { vec![] },
            score: 0.1,
        }
    }

    fn step(d: &mut Decider, p: &Policy, now: i64, views: &[CandidateView]) -> Outcome {
        d.step(&Input { now_ms: now, policy: p, views, fingerprints: &HashMap::new() })
    }

    #[test]
    fn promotes_only_a_qualified_candidate_against_a_degraded_leader() {
        let p = policy(Mode::Auto);
        let mut d = Decider::default();
        assert_eq!(step(&mut d, &p, 0, &[view("q", true, false)]).action, Action::None);
        assert_eq!(step(&mut d, &p, 0, &[view("q", false, true)]).action, Action::None);
        let o = step(&mut d, &p, 0, &[view("q", true, true)]);
        assert!(matches!(o.action, Action::Promote { ref to, .. } if to == "q"), "{o:?}");
    }

    #[test]
    fn recommend_mode_records_once_and_never_promotes() {
        let p = policy(Mode::Recommend);
        let mut d = Decider::default();
        let o = step(&mut d, &p, 0, &[view("q", true, true)]);
        assert_eq!(o.state, State::Recommending);
        assert!(matches!(o.action, Action::Recommend { .. }));
        assert_eq!(step(&mut d, &p, 1, &[view("q", true, true)]).action, Action::None);
        assert_eq!(step(&mut d, &p, 2, &[view("q", true, false)]).state, State::Watching);
        assert!(matches!(step(&mut d, &p, 3, &[view("q", true, true)]).action, Action::Recommend { .. }));
    }

    #[test]
    fn cooldown_probation_and_rollback() {
        let p = policy(Mode::Auto);
        let mut d = Decider::default();
        d.changed("old", 1_000, true);
        // During probation, a degraded new leader (against the old one) is rolled back.
        let o = step(&mut d, &p, 2_000, &[view("old", false, true)]);
        assert!(matches!(o.action, Action::Rollback { ref to, .. } if to == "old"), "{o:?}");
        // Healthy during probation: nothing; after probation, cooldown still holds promotions.
        let mut d = Decider::default();
        d.changed("old", 1_000, true);
        assert_eq!(step(&mut d, &p, 2_000, &[view("old", false, false)]).state, State::Probation);
        let o = step(&mut d, &p, 40_000, &[view("x", true, true)]);
        assert_eq!((o.state, o.action), (State::Cooldown, Action::None));
        assert!(matches!(step(&mut d, &p, 62_000, &[view("x", true, true)]).action, Action::Promote { .. }));
    }

    #[test]
    fn off_and_paused_only_observe() {
        let mut d = Decider::default();
        assert_eq!(step(&mut d, &policy(Mode::Off), 0, &[view("q", true, true)]).action, Action::None);
        d.paused = true;
        assert_eq!(step(&mut d, &policy(Mode::Auto), 0, &[view("q", true, true)]).state, State::Paused);
    }

    #[test]
    fn held_back_until_the_model_changes() {
        let mut d = Decider::default();
        d.hold_back("q", "url|m1");
        let mut fp = HashMap::new();
        fp.insert("q".to_string(), "url|m1".to_string());
        let p = policy(Mode::Auto);
        d.step(&Input { now_ms: 0, policy: &p, views: &[], fingerprints: &fp });
        assert_eq!(d.held_back(), vec!["q".to_string()]);
        fp.insert("q".to_string(), "url|m2".to_string());
        d.step(&Input { now_ms: 0, policy: &p, views: &[], fingerprints: &fp });
        assert!(d.held_back().is_empty());
    }
}
