//! The routing snapshot: everything a request reads, behind one ArcSwap that only control writes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Uri};
use prometheus::{Counter, Histogram, IntCounter};

use crate::client::{Client, ClientError, Origin, Outgoing, UpstreamResponse};
use crate::config::{Candidate, Config, ConfigErrors, Model, Price, Route};
use crate::metrics::Metrics;
use crate::proxy::capture::Usage;
use crate::proxy::modality::{Endpoint, Modality};
use crate::raw_headers::RawHeaders;
use crate::rng::NameMap;

/// A model with the client that reaches it.
#[derive(Clone)]
pub struct Upstream {
    pub model: Arc<Model>,
    pub client: Client,
    /// A separate pool for shadow, noise and judge calls, so they never hold the client's connections.
    pub shadow_client: Client,
    pub wire: Arc<Wire>,
}

impl Upstream {
    /// Sends a request (its target from [`Wire::target`], its headers from [`Wire::headers`])
    /// to the model, on the client's pool or, for shadow, noise and judge calls, the background pool.
    pub async fn send(&self, req: Outgoing<'_>, background: bool) -> Result<UpstreamResponse, ClientError> {
        let Some(origin) = &self.wire.origin else {
            return Err(ClientError::Connect(format!("bad upstream URL: {}", self.model.url)));
        };
        let client = if background { &self.shadow_client } else { &self.client };
        client.request(origin, req).await
    }
}

/// What every request to a model repeats, built once per swap rather than per request: the
/// target of each endpoint, the Host header, the model's key as a header and its name for
/// `x-shadowroute-model`.
pub struct Wire {
    origin: Option<Origin>,
    /// Each endpoint's path under the model's URL (`/v1/chat/completions`).
    targets: Vec<(Endpoint, String)>,
    host: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    pub name: Option<HeaderValue>,
}

impl Wire {
    fn new(model: &Model) -> Wire {
        let base: Option<Uri> = model.url.parse().ok();
        let origin = base.as_ref().and_then(Origin::of);
        let base_path = base.as_ref().map(|b| b.path().trim_end_matches('/').to_string()).unwrap_or_default();
        let targets = Endpoint::ALL.iter().map(|e| (*e, format!("{base_path}{}", e.path()))).collect();
        let host = base.as_ref().and_then(|u| {
            let host = u.host()?;
            let default = if u.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
            let value = match u.port_u16() {
                Some(port) if port != default => format!("{host}:{port}"),
                _ => host.to_string(),
            };
            HeaderValue::from_str(&value).ok()
        });
        let authorization = model.api_key.as_ref().and_then(|key| {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Wire { origin, targets, host, authorization, name: HeaderValue::from_str(&model.name).ok() }
    }

    /// The request target (origin-form) of `endpoint`, with the client's query string if any
    /// (both already valid: the model's URL parsed, the query came in a parsed URI).
    pub fn target(&self, endpoint: Endpoint, query: Option<&str>) -> Cow<'_, str> {
        let path = self.targets.iter().find(|(e, _)| *e == endpoint).map_or("", |(_, p)| p.as_str());
        match query {
            None => Cow::Borrowed(path),
            Some(q) => Cow::Owned(format!("{path}?{q}")),
        }
    }

    /// The request's own header lines: `first` (at most three), then the Host header and the
    /// model's own key.
    pub fn headers<'a, const N: usize>(&'a self, first: [(&'static str, &'a [u8]); N]) -> OwnLines<'a> {
        const { assert!(N <= 3) };
        let mut out = OwnLines { lines: [("", &[]); 5], len: 0 };
        let host = self.host.iter().map(|h| ("host", h.as_bytes()));
        let key = self.authorization.iter().map(|a| ("authorization", a.as_bytes()));
        for line in first.into_iter().chain(host).chain(key) {
            out.lines[out.len] = line;
            out.len += 1;
        }
        out
    }
}

/// A request's own header lines ([`Wire::headers`]), held in place rather than in a list
/// allocated per request.
pub struct OwnLines<'a> {
    lines: [(&'static str, &'a [u8]); 5],
    len: usize,
}

impl<'a> std::ops::Deref for OwnLines<'a> {
    type Target = [(&'static str, &'a [u8])];

    fn deref(&self) -> &Self::Target {
        &self.lines[..self.len]
    }
}

/// A route as currently served: its config and its current leader.
pub struct RouteState {
    pub route: Arc<Route>,
    pub leader: String,
    pub candidates: Vec<Candidate>,
    /// Metric handles for each model that can serve this route, resolved once per swap
    /// so the request path never hashes label values.
    pub series: NameMap<String, Arc<ModelSeries>>,
    /// `match.headers` as header names and values, parsed once per swap; a name or value
    /// that no request can carry makes the route unmatchable (`None`).
    match_headers: Option<Vec<(HeaderName, HeaderValue)>>,
}

/// The request path's metric series for one (route, model).
pub struct ModelSeries {
    /// The route and model names, shared rather than copied per request.
    pub route: Arc<str>,
    pub model: Arc<str>,
    pub duration: Histogram,
    pub ttfb: Histogram,
    pub tokens_in: IntCounter,
    pub tokens_out: IntCounter,
    pub cost: Counter,
    /// `requests_total{code="200"}` by modality, the common case.
    pub ok: Vec<(Modality, IntCounter)>,
}

impl ModelSeries {
    /// Resolves the series of `model` on `route` for the given modalities.
    pub fn new(m: &Metrics, route: &str, modalities: &[Modality], model: &str) -> ModelSeries {
        ModelSeries {
            route: Arc::from(route),
            model: Arc::from(model),
            duration: m.duration.with_label_values(&[route, model]),
            ttfb: m.ttfb.with_label_values(&[route, model]),
            tokens_in: m.tokens.with_label_values(&[route, model, "input"]),
            tokens_out: m.tokens.with_label_values(&[route, model, "output"]),
            cost: m.cost.with_label_values(&[route, model]),
            ok: modalities
                .iter()
                .map(|md| (*md, m.requests.with_label_values(&[route, md.as_str(), model, "200"])))
                .collect(),
        }
    }

    /// Counts an answer's tokens and their cost.
    pub fn meter(&self, usage: &Usage, price: Option<&Price>) {
        self.tokens_in.inc_by(usage.input_tokens);
        self.tokens_out.inc_by(usage.output_tokens);
        if let Some(price) = price {
            self.cost.inc_by(price.cost(usage.input_tokens, usage.output_tokens));
        }
    }

    /// The `requests_total` counter for this outcome.
    pub fn requests(&self, m: &Metrics, route: &str, modality: Modality, model: &str, code: u16) -> IntCounter {
        match self.ok.iter().find(|(md, _)| *md == modality) {
            Some((_, c)) if code == 200 => c.clone(),
            _ => m.requests.with_label_values(&[route, modality.as_str(), model, &code.to_string()]),
        }
    }
}

/// How the last reload went, for `/admin/config`.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub error: Option<ConfigErrors>,
}

/// One immutable view of the router's configuration and leaders.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: Vec<RouteState>,
    pub upstreams: NameMap<String, Upstream>,
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub last_reload: ReloadStatus,
}

impl Snapshot {
    /// The first route that serves this modality and whose header match holds.
    pub fn route_for(&self, modality: Modality, headers: &RawHeaders) -> Option<&RouteState> {
        self.routes.iter().find(|r| {
            r.route.modalities.contains(&modality)
                && r.match_headers
                    .as_ref()
                    .is_some_and(|m| m.iter().all(|(name, value)| headers.get(name.as_str()) == Some(value.as_bytes())))
        })
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.get(name)
    }

    /// Every route has a leader that can be called: what readiness means.
    pub fn ready(&self) -> bool {
        !self.routes.is_empty() && self.routes.iter().all(|r| self.upstreams.contains_key(&r.leader))
    }
}

/// Builds clients; keeps one per connect timeout so reloads keep their pooled connections.
#[derive(Default)]
pub struct ClientPool {
    clients: HashMap<(Duration, bool), Client>,
}

impl ClientPool {
    pub fn client(&mut self, connect_timeout: Duration, shadow: bool) -> Client {
        self.clients.entry((connect_timeout, shadow)).or_insert_with(|| Client::new(connect_timeout)).clone()
    }
}

/// Prepares a complete snapshot for a config: everything that can fail happens here,
/// before the swap. `leaders` carries leaders chosen at run time (by route name).
pub fn prepare(
    config: Arc<Config>,
    pool: &mut ClientPool,
    metrics: &Metrics,
    leaders: &HashMap<String, String>,
    generation: u64,
    last_reload: ReloadStatus,
) -> Snapshot {
    let upstreams = config
        .models
        .iter()
        .map(|(name, model)| {
            let client = pool.client(model.timeouts.connect, false);
            let shadow_client = pool.client(model.timeouts.connect, true);
            let wire = Arc::new(Wire::new(model));
            (name.clone(), Upstream { model: model.clone(), client, shadow_client, wire })
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|route| {
            let leader = leaders
                .get(&route.name)
                .filter(|l| config.models.contains_key(*l))
                .cloned()
                .unwrap_or_else(|| route.leader.clone());
            let mut candidates: Vec<Candidate> =
                route.candidates.iter().filter(|c| c.model != leader).cloned().collect();
            // A replaced leader stays on as a candidate, shadowed like the one that replaced it.
            if leader != route.leader {
                let template =
                    route.candidates.iter().find(|c| c.model == leader).or_else(|| route.candidates.first()).cloned();
                if let Some(t) = template {
                    candidates.push(Candidate { model: route.leader.clone(), ..t });
                }
            }
            let series = std::iter::once(&leader)
                .chain(&route.fallbacks)
                .map(|m| (m.clone(), Arc::new(ModelSeries::new(metrics, &route.name, &route.modalities, m))))
                .collect();
            let match_headers = route
                .match_headers
                .iter()
                .map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
                .collect();
            RouteState { route: route.clone(), leader, candidates, series, match_headers }
        })
        .collect();
    Snapshot { config, routes, upstreams, generation, loaded_at: SystemTime::now(), last_reload }
}
