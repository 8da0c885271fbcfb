//! Shared test harness: simulated upstreams, a router over them, and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use shadowroute::router::Router;
use shadowroute::sim::{self, RunningSim, SimConfig};

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Starts sims from YAML.
pub async fn sims(yaml: &str) -> RunningSim {
    let cfg = SimConfig::from_yaml(yaml).unwrap();
    sim::start(cfg).await.unwrap()
}

/// A routes.yaml whose `{name}` placeholders are replaced by the sims' base URLs.
pub fn with_urls(template: &str, sims: &RunningSim) -> String {
    let mut text = template.to_string();
    for (name, _) in sims.servers() {
        text = text.replace(&format!("{{{name}}}"), &sims.base_url(&name).unwrap());
    }
    text
}

/// A unique scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % 1_000_000
}

/// Starts a router from config text; with `file`, the text is written there and watched.
pub async fn router(text: &str, file: Option<&Path>) -> Router {
    let config = match file {
        Some(path) => {
            std::fs::write(path, text).unwrap();
            shadowroute::config::load(path).unwrap()
        }
        None => {
            shadowroute::config::parse(text, "test.yaml", Path::new("."), &shadowroute::config::ProcessEnv).unwrap()
        }
    };
    Router::start(config, file.map(Path::to_path_buf)).await.unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    c: &TestClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c.request(b.body(Full::new(body.into())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

pub async fn post_json(c: &TestClient, url: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(c, Method::POST, url, &h, serde_json::to_vec(body).unwrap()).await
}

pub async fn get(c: &TestClient, url: &str) -> Reply {
    send(c, Method::GET, url, &[], Bytes::new()).await
}

/// A multipart/form-data body with text fields and one file.
pub fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "----shadowroute-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    let (name, filename, data) = file;
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What a sim received, most recent last.
pub async fn sim_requests(c: &TestClient, sims: &RunningSim, name: &str) -> Vec<Value> {
    let addr = sims.addr(name).unwrap();
    let reply = get(c, &format!("http://{addr}/sim/requests")).await;
    reply.json().as_array().cloned().unwrap_or_default()
}

/// The value of a metric series in a Prometheus text page (0 if absent); label order does not matter.
pub fn metric(page: &str, series: &str) -> f64 {
    let want = normalize(series);
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (normalize(name) == want).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn normalize(series: &str) -> (String, Vec<String>) {
    match series.split_once('{') {
        Some((name, labels)) => {
            let mut l: Vec<String> =
                labels.trim_end_matches('}').split("\",").map(|s| s.trim_end_matches('"').to_string()).collect();
            l.sort();
            (name.to_string(), l)
        }
        None => (series.to_string(), Vec::new()),
    }
}

pub async fn metrics(c: &TestClient, admin: SocketAddr) -> String {
    get(c, &format!("http://{admin}/metrics")).await.text()
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.tick().await;
        tick.tick().await;
    }
}

/// A chat request body.
pub fn chat(content: &str) -> Value {
    serde_json::json!({"model": "anything", "messages": [{"role": "user", "content": content}]})
}
