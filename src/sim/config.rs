//! Simulator configuration: YAML schema, defaults, validation and the built-in server set.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// All simulated servers started by one `shadowroute sim`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub servers: Vec<ServerConfig>,
}

/// One simulated model server on its own port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub behavior: Behavior,
    #[serde(default)]
    pub schedule: Vec<Phase>,
    #[serde(default)]
    pub seed: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// How a server answers: quality, latency and failure modes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behavior {
    pub accuracy: f64,
    #[serde(deserialize_with = "de_duration")]
    pub ttft: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub per_token: Duration,
    pub jitter: f64,
    pub error_rate: f64,
    pub error_status: u16,
    pub hang: bool,
    pub words: usize,
    /// Accuracy for prompts containing a marker, e.g. a language: `[{ contains: "(de)", accuracy: 0.3 }]`.
    pub prompt_accuracy: Vec<PromptAccuracy>,
}

/// An accuracy that applies to prompts containing `contains`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptAccuracy {
    pub contains: String,
    pub accuracy: f64,
}

impl Behavior {
    /// The accuracy for this prompt: the first matching `prompt_accuracy`, else `accuracy`.
    pub fn accuracy_for(&self, prompt: &str) -> f64 {
        self.prompt_accuracy.iter().find(|p| prompt.contains(&p.contains)).map(|p| p.accuracy).unwrap_or(self.accuracy)
    }
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            accuracy: 0.9,
            ttft: Duration::from_millis(20),
            per_token: Duration::from_millis(2),
            jitter: 0.1,
            error_rate: 0.0,
            error_status: 500,
            hang: false,
            words: 12,
            prompt_accuracy: Vec::new(),
        }
    }
}

/// A behaviour change that takes effect `at` after the sim started; `None` fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(deserialize_with = "de_duration")]
    pub at: Duration,
    #[serde(default)]
    pub accuracy: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub ttft: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub per_token: Option<Duration>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub hang: Option<bool>,
}

impl Phase {
    pub(crate) fn apply(&self, b: &mut Behavior) {
        if let Some(v) = self.accuracy {
            b.accuracy = v;
        }
        if let Some(v) = self.ttft {
            b.ttft = v;
        }
        if let Some(v) = self.per_token {
            b.per_token = v;
        }
        if let Some(v) = self.error_rate {
            b.error_rate = v;
        }
        if let Some(v) = self.hang {
            b.hang = v;
        }
    }
}

/// Upper bound on filler words, so a typo cannot make every answer megabytes long.
const MAX_WORDS: usize = 10_000;

impl SimConfig {
    /// Parses and validates a YAML sim config.
    pub fn from_yaml(text: &str) -> Result<SimConfig, String> {
        let cfg: SimConfig = serde_saphyr::from_str(text).map_err(|e| format!("invalid sim config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks value ranges and name uniqueness; `start` calls this too, for configs built in code.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("sim config has no servers".to_string());
        }
        let mut names = HashSet::new();
        for s in &self.servers {
            if s.name.trim().is_empty() || s.name.chars().any(char::is_whitespace) {
                return Err(format!("sim server name {:?} must be non-empty without whitespace", s.name));
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("sim server name '{}' is used twice", s.name));
            }
            validate_behavior(&s.name, &s.behavior)?;
            for (i, p) in s.schedule.iter().enumerate() {
                let what = format!("server '{}' schedule[{i}]", s.name);
                if let Some(v) = p.accuracy {
                    unit_interval(&what, "accuracy", v)?;
                }
                if let Some(v) = p.error_rate {
                    unit_interval(&what, "error_rate", v)?;
                }
            }
        }
        Ok(())
    }

    /// The default fleet for `shadowroute sim` without `--config`: one server per modality the router
    /// handles, with competing chat models of different quality and a strong judge.
    pub fn builtin() -> SimConfig {
        // (name, accuracy, ttft ms, per_token ms)
        const FLEET: &[(&str, f64, u64, u64)] = &[
            ("gpt", 0.9, 40, 3),
            ("gemini", 0.88, 35, 3),
            ("qwen", 0.8, 25, 2),
            ("judge", 0.95, 50, 4),
            ("embed-a", 0.9, 20, 2),
            ("embed-b", 0.9, 25, 2),
            ("whisper", 0.9, 60, 5),
            ("whisper-lite", 0.9, 30, 3),
            ("tts", 0.9, 45, 5),
            ("img", 0.9, 60, 5),
        ];
        let servers = FLEET
            .iter()
            .zip(0u16..)
            .map(|(&(name, accuracy, ttft, per_token), i)| ServerConfig {
                name: name.to_string(),
                listen: SocketAddr::from(([127, 0, 0, 1], 8101 + i)),
                behavior: Behavior {
                    accuracy,
                    ttft: Duration::from_millis(ttft),
                    per_token: Duration::from_millis(per_token),
                    ..Behavior::default()
                },
                schedule: Vec::new(),
                seed: u64::from(i) + 1,
            })
            .collect();
        SimConfig { servers }
    }
}

fn validate_behavior(name: &str, b: &Behavior) -> Result<(), String> {
    let what = format!("server '{name}' behavior");
    unit_interval(&what, "accuracy", b.accuracy)?;
    unit_interval(&what, "error_rate", b.error_rate)?;
    unit_interval(&what, "jitter", b.jitter)?;
    if !(400..=599).contains(&b.error_status) {
        return Err(format!("{what}: error_status {} is not a 4xx/5xx status", b.error_status));
    }
    if b.words > MAX_WORDS {
        return Err(format!("{what}: words {} exceeds {MAX_WORDS}", b.words));
    }
    Ok(())
}

fn unit_interval(what: &str, field: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{what}: {field} {v} must be within [0, 1]"))
    }
}

/// Durations are written as "250ms"/"2s"; bare numbers are read as seconds for convenience.
struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\" or \"2s\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        crate::config::units::parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v).map(Duration::from_secs).map_err(|_| E::custom("a duration must not be negative"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(E::custom)
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Lets serde's own `Option` handling decide null vs value, then reuses the duration visitor.
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_duration(d).map(DurationValue)
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<DurationValue>::deserialize(d).map(|o| o.map(|v| v.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
servers:
  - name: fast
    listen: 127.0.0.1:0
    seed: 7
    behavior:
      accuracy: 0.95
      ttft: 250ms
      per_token: 2ms
      error_status: 429
    schedule:
      - at: 2s
        accuracy: 0.3
        ttft: 1.5s
      - at: 1m
        hang: true
  - name: slow
"#;

    #[test]
    fn parses_sample_with_durations_and_schedule() {
        let cfg = SimConfig::from_yaml(SAMPLE).unwrap();
        assert_eq!(cfg.servers.len(), 2);
        let fast = &cfg.servers[0];
        assert_eq!(fast.seed, 7);
        assert_eq!(fast.behavior.accuracy, 0.95);
        assert_eq!(fast.behavior.ttft, Duration::from_millis(250));
        assert_eq!(fast.behavior.error_status, 429);
        assert_eq!(fast.behavior.words, 12, "unspecified fields keep defaults");
        assert_eq!(fast.schedule.len(), 2);
        assert_eq!(fast.schedule[0].at, Duration::from_secs(2));
        assert_eq!(fast.schedule[0].ttft, Some(Duration::from_millis(1500)));
        assert_eq!(fast.schedule[0].per_token, None);
        assert_eq!(fast.schedule[1].at, Duration::from_secs(60));
        assert_eq!(fast.schedule[1].hang, Some(true));
        let slow = &cfg.servers[1];
        assert_eq!(slow.listen, default_listen());
        assert_eq!(slow.behavior.ttft, Duration::from_millis(20));
    }

    #[test]
    fn phases_apply_in_order() {
        let cfg = SimConfig::from_yaml(SAMPLE).unwrap();
        let mut b = cfg.servers[0].behavior.clone();
        for p in &cfg.servers[0].schedule {
            p.apply(&mut b);
        }
        assert_eq!(b.accuracy, 0.3);
        assert_eq!(b.ttft, Duration::from_millis(1500));
        assert!(b.hang);
    }

    #[test]
    fn rejects_out_of_range_and_unknown_keys() {
        let bad_acc = "servers:\n  - name: a\n    behavior:\n      accuracy: 1.5\n";
        assert!(SimConfig::from_yaml(bad_acc).unwrap_err().contains("accuracy"));
        let unknown = "servers:\n  - name: a\n    behaviour:\n      accuracy: 0.5\n";
        assert!(SimConfig::from_yaml(unknown).is_err());
        let unknown_inner = "servers:\n  - name: a\n    behavior:\n      acuracy: 0.5\n";
        assert!(SimConfig::from_yaml(unknown_inner).is_err());
        let dup = "servers:\n  - name: a\n  - name: a\n";
        assert!(SimConfig::from_yaml(dup).unwrap_err().contains("twice"));
        assert!(SimConfig::from_yaml("servers: []\n").is_err());
        let bad_phase = "servers:\n  - name: a\n    schedule:\n      - at: 1s\n        error_rate: -0.1\n";
        assert!(SimConfig::from_yaml(bad_phase).is_err());
        let bad_duration = "servers:\n  - name: a\n    behavior:\n      ttft: soon\n";
        assert!(SimConfig::from_yaml(bad_duration).is_err());
    }

    #[test]
    fn builtin_fleet() {
        let cfg = SimConfig::builtin();
        cfg.validate().unwrap();
        let names: Vec<&str> = cfg.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["gpt", "gemini", "qwen", "judge", "embed-a", "embed-b", "whisper", "whisper-lite", "tts", "img"]
        );
        assert_eq!(cfg.servers[0].listen.port(), 8101);
        assert_eq!(cfg.servers[9].listen.port(), 8110);
        assert_eq!(cfg.servers[2].behavior.accuracy, 0.8);
        assert_eq!(cfg.servers[3].behavior.accuracy, 0.95);
    }
}
