//! routes.yaml: the validated domain types and how a file becomes one.

mod schema;
pub mod units;
pub mod watch;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::compare::Comparator;
use crate::proxy::modality::Modality;

pub use schema::DEFAULT_JUDGE_PROMPT;
pub use yaml::Pos;

/// A whole, valid configuration. Only ever built by [`parse`], so every instance is valid.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    /// Upstreams by name; the only place URLs come from.
    pub models: BTreeMap<String, Arc<Model>>,
    /// In file order: the first match wins.
    pub routes: Vec<Arc<Route>>,
    /// Hex digest of the file's bytes, shown by `/admin/config`.
    pub hash: String,
}

/// The `server:` section.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: AdminToken,
    pub max_body: u64,
    pub state: PathBuf,
    /// How long SIGTERM waits for in-flight requests and streams before closing them.
    pub drain_timeout: Duration,
    /// How long readiness fails before the listener stops accepting, so load balancers notice.
    pub shutdown_delay: Duration,
    /// Comparison records older than this are deleted.
    pub retention_max_age: Duration,
    /// At most this many comparison records are kept.
    pub retention_max_records: u64,
}

/// Where the admin bearer token comes from; `None` refuses every admin write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    None,
    Env(String),
    File(PathBuf),
}

/// A secret read at load time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One upstream model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    /// Base URL without a trailing slash; the request path after `/v1` is appended.
    pub url: String,
    /// The `model` field sent upstream.
    pub model: String,
    pub api_key: Option<Secret>,
    pub timeouts: Timeouts,
    pub price: Option<Price>,
}

/// The four clocks of an upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the response headers (includes connect).
    pub first_byte: Duration,
    /// Longest silence between two body chunks.
    pub idle: Duration,
    /// The whole exchange, body included.
    pub total: Duration,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1e6
    }
}

/// One entry of `routes:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub modalities: Vec<Modality>,
    /// Lowercase header name and exact value; all must match.
    pub match_headers: Vec<(String, String)>,
    pub leader: String,
    pub fallbacks: Vec<String>,
    pub candidates: Vec<Candidate>,
    pub evaluate: Evaluate,
    pub policy: Policy,
}

/// A shadow candidate and the bounds on its shadow work.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub model: String,
    pub sample: f64,
    pub max_inflight: usize,
    pub timeout: Duration,
    /// Optional spend ceiling in USD per hour for this candidate's shadow calls.
    pub budget_per_hour: Option<f64>,
}

/// How outputs are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluate {
    pub agreement: Agreement,
    pub noise_sample: f64,
    pub judge: Option<Judge>,
    /// Lowercase header names.
    pub segment_by: Vec<String>,
    /// Bound on distinct values per segment header; the rest is "other".
    pub max_segments: usize,
    pub store_payloads: StorePayloads,
}

/// The agreement comparator: a pure one, or cosine through an embeddings model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreement {
    Pure(Comparator),
    Embedding(String),
}

impl Agreement {
    pub fn name(&self) -> String {
        match self {
            Agreement::Pure(c) => c.name().to_string(),
            Agreement::Embedding(m) => format!("embedding:{m}"),
        }
    }
}

/// Whether comparison records keep request and response text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorePayloads {
    None,
    Redacted,
    Full,
}

/// The pairwise judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Judge {
    pub model: String,
    pub sample: f64,
    pub prompt_file: Option<PathBuf>,
    /// The template text (the built-in default when no file is given).
    pub prompt: Option<String>,
}

/// When a candidate may replace the leader.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    pub min_samples: u64,
    pub margin: f64,
    /// The "not worse" tolerance when quality is judged by agreement with the leader
    /// (no judge): agreement is a similarity, so it needs a wider band than a win rate.
    pub agreement_margin: f64,
    pub confidence: f64,
    pub max_latency_ratio: f64,
    pub max_error_rate: f64,
    pub cooldown: Duration,
    pub probation: Duration,
}

/// What the decision engine may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Recommend,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Recommend => "recommend",
            Mode::Auto => "auto",
        }
    }
}

/// One validation error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub pos: Pos,
    pub message: String,
}

/// Every error found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, e.pos.line, e.pos.col, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The errors as JSON objects for `validate --format json` and `/admin/config`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.errors
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "file": self.file, "line": e.pos.line, "column": e.pos.col, "message": e.message
                    })
                })
                .collect(),
        )
    }
}

/// Where a config's environment and files come from; tests pass their own.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> Result<String, String>;
}

/// The real process environment and file system.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read_file(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
}

/// Reads and validates a file; relative paths inside it resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: file.clone(),
        errors: vec![ConfigError { pos: Pos { line: 1, col: 1 }, message: format!("cannot read file: {e}") }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, base, &ProcessEnv)
}

/// Parses and validates config text, reporting every error at once.
pub fn parse(text: &str, file: &str, base: &Path, env: &dyn Environment) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors { file: file.to_string(), errors };
    let doc = yaml::parse(text).map_err(|e| fail(vec![ConfigError { pos: e.pos, message: e.message }]))?;
    let mut config = schema::build(&doc, base, env).map_err(fail)?;
    config.hash = hash_hex(text.as_bytes());
    Ok(config)
}

/// FNV-1a 64, enough to tell two files apart in `/admin/config`.
pub fn hash_hex(bytes: &[u8]) -> String {
    format!("{:016x}", crate::rng::fnv1a(bytes))
}

impl Config {
    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }
}
