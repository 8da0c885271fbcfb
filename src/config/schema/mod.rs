//! The routes.yaml schema: walks the node tree, applies defaults and collects every error.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::units::{parse_duration, parse_size};
use crate::config::yaml::{Node, Pos, Value};
use crate::config::{
    AdminToken, Agreement, Candidate, Config, ConfigError, Environment, Evaluate, Judge, Mode, Model, Policy, Price,
    Route, Secret, Server, StorePayloads, Timeouts,
};
use crate::proxy::modality::Modality;

const TOP: &[&str] = &["server", "models", "routes"];
const SERVER: &[&str] = &[
    "listen",
    "admin_listen",
    "admin_token_env",
    "admin_token_file",
    "max_body",
    "state",
    "drain_timeout",
    "shutdown_delay",
    "retention_max_age",
    "retention_max_records",
];
const MODEL: &[&str] = &[
    "url",
    "model",
    "api_key_env",
    "api_key_file",
    "timeout",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "price",
];
const PRICE: &[&str] = &["input_per_mtok", "output_per_mtok"];
const ROUTE: &[&str] = &["name", "modality", "match", "leader", "fallbacks", "candidates", "evaluate", "policy"];
const MATCH: &[&str] = &["headers"];
const CANDIDATE: &[&str] = &["model", "sample", "max_inflight", "timeout", "budget_per_hour"];
const EVALUATE: &[&str] = &["agreement", "noise_sample", "judge", "segment_by", "max_segments", "store_payloads"];
const JUDGE: &[&str] = &["model", "sample", "prompt_file"];
const POLICY: &[&str] = &[
    "mode",
    "min_samples",
    "margin",
    "agreement_margin",
    "confidence",
    "max_latency_ratio",
    "max_error_rate",
    "cooldown",
    "probation",
];

/// The judge prompt used when `prompt_file` is not set.
pub const DEFAULT_JUDGE_PROMPT: &str = "You are comparing two answers to the same request.\n\
<input>{input}</input>\n<response_a>{response_a}</response_a>\n<response_b>{response_b}</response_b>\n\
Which response is better: more correct, more helpful, and following the request? \
Answer with exactly one word: A, B or TIE.";

/// Builds a config from a document, or returns every error found.
pub fn build(doc: &Node, base: &Path, env: &dyn Environment) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx { errors: Vec::new(), base, env };
    let config = cx.config(doc);
    let mut errors = cx.errors;
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            errors.sort_by_key(|e| e.pos);
            if errors.is_empty() {
                errors.push(ConfigError { pos: doc.pos, message: "invalid configuration".into() });
            }
            Err(errors)
        }
    }
}

struct Ctx<'a> {
    errors: Vec<ConfigError>,
    base: &'a Path,
    env: &'a dyn Environment,
}

/// A mapping whose keys were checked against the schema.
struct Fields<'a> {
    pos: Pos,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<'a> Ctx<'a> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError { pos, message: message.into() });
    }

    /// The entries of a mapping, reporting non-string, unknown and duplicate keys.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let entries = match &node.value {
            Value::Null => return Some(Fields { pos: node.pos, entries: Vec::new() }),
            Value::Map(entries) => entries,
            other => {
                self.err(node.pos, format!("{what} must be a mapping, found {}", other.kind()));
                return None;
            }
        };
        let mut out: Vec<(&'n str, &'n Node)> = Vec::new();
        for (k, v) in entries {
            let Value::Str(key) = &k.value else {
                self.err(k.pos, format!("keys in {what} must be strings"));
                continue;
            };
            if !allowed.contains(&key.as_str()) {
                self.err(k.pos, format!("unknown key `{key}` in {what} (expected one of: {})", allowed.join(", ")));
            } else if out.iter().any(|(seen, _)| *seen == key) {
                self.err(k.pos, format!("duplicate key `{key}` in {what}"));
            } else {
                out.push((key.as_str(), v));
            }
        }
        Some(Fields { pos: node.pos, entries: out })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let node = f.get(key);
        if node.is_none() {
            self.err(f.pos, format!("missing `{key}` in {what}"));
        }
        node
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Str(_) => {
                self.err(node.pos, format!("`{what}` must not be empty"));
                None
            }
            other => {
                self.err(node.pos, format!("`{what}` must be a string, found {}", other.kind()));
                None
            }
        }
    }

    fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        match node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            ref other => {
                self.err(node.pos, format!("`{what}` must be a number, found {}", other.kind()));
                None
            }
        }
    }

    /// A number within `[lo, hi]`.
    fn ranged(&mut self, node: &Node, what: &str, lo: f64, hi: f64) -> Option<f64> {
        let v = self.number(node, what)?;
        if v < lo || v > hi {
            self.err(node.pos, format!("`{what}` must be between {lo} and {hi}, found {v}"));
            return None;
        }
        Some(v)
    }

    fn count(&mut self, node: &Node, what: &str, min: u64) -> Option<u64> {
        match node.value {
            Value::Int(i) if i >= 0 && i as u64 >= min => Some(i as u64),
            _ => {
                self.err(node.pos, format!("`{what}` must be a whole number of at least {min}"));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let parsed = node.value.as_text().map(|t| parse_duration(&t));
        match parsed {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                self.err(node.pos, format!("`{what}`: {e}"));
                None
            }
            None => {
                self.err(node.pos, format!("`{what}` must be a duration like 30s, found {}", node.value.kind()));
                None
            }
        }
    }

    fn size(&mut self, node: &Node, what: &str) -> Option<u64> {
        match node.value.as_text().map(|t| parse_size(&t)) {
            Some(Ok(n)) if n > 0 => Some(n),
            Some(Ok(_)) => {
                self.err(node.pos, format!("`{what}` must be larger than zero"));
                None
            }
            Some(Err(e)) => {
                self.err(node.pos, format!("`{what}`: {e}"));
                None
            }
            None => {
                self.err(node.pos, format!("`{what}` must be a size like 32MiB, found {}", node.value.kind()));
                None
            }
        }
    }

    fn addr(&mut self, node: &Node, what: &str) -> Option<SocketAddr> {
        let text = self.string(node, what)?;
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(node.pos, format!("`{what}` must be an address like 127.0.0.1:8080, found {text:?}"));
                None
            }
        }
    }

    /// A list of strings; a single string is a list of one.
    fn strings(&mut self, node: &Node, what: &str) -> Vec<(String, Pos)> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![node],
            other => {
                self.err(node.pos, format!("`{what}` must be a list, found {}", other.kind()));
                return Vec::new();
            }
        };
        items.into_iter().filter_map(|n| self.string(n, what).map(|s| (s, n.pos))).collect()
    }

    fn opt<T>(
        &mut self,
        f: &Fields<'_>,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Self, &Node, &str) -> Option<T>,
    ) -> T {
        match f.get(key) {
            Some(node) => read(self, node, key).unwrap_or(default),
            None => default,
        }
    }

    fn secret_from_env(&mut self, node: &Node, what: &str) -> Option<Secret> {
        let var = self.string(node, what)?;
        match self.env.var(&var) {
            Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().to_string())),
            _ => {
                self.err(node.pos, format!("environment variable `{var}` named by `{what}` is not set"));
                None
            }
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = PathBuf::from(text);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn secret_from_file(&mut self, node: &Node, what: &str) -> Option<Secret> {
        let text = self.string(node, what)?;
        let path = self.path(&text);
        match self.env.read_file(&path) {
            Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().to_string())),
            Ok(_) => {
                self.err(node.pos, format!("`{what}` file {} is empty", path.display()));
                None
            }
            Err(e) => {
                self.err(node.pos, format!("`{what}` file {} cannot be read: {e}", path.display()));
                None
            }
        }
    }
}

mod sections;
