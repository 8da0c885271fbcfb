//! The sections of routes.yaml: server, models, routes and their candidates, evaluation and policy.

use super::*;

impl Ctx<'_> {
    pub(super) fn config(&mut self, doc: &Node) -> Option<Config> {
        let top = self.fields(doc, "the file", TOP)?;
        let server = match top.get("server") {
            Some(node) => self.server(node),
            None => self.server(&Node { pos: doc.pos, value: Value::Null }),
        };
        let models = self.required(&top, "models", "the file").map(|n| self.models(n)).unwrap_or_default();
        let routes = self.required(&top, "routes", "the file").map(|n| self.routes(n, &models)).unwrap_or_default();
        Some(Config { server: server?, models, routes, hash: String::new() })
    }

    fn server(&mut self, node: &Node) -> Option<Server> {
        let f = self.fields(node, "`server`", SERVER)?;
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let default_admin = SocketAddr::from(([127, 0, 0, 1], 9090));
        let listen = self.opt(&f, "listen", default_listen, Self::addr);
        let admin_listen = self.opt(&f, "admin_listen", default_admin, Self::addr);
        let admin_token = match (f.get("admin_token_env"), f.get("admin_token_file")) {
            (Some(a), Some(_)) => {
                self.err(a.pos, "set only one of `admin_token_env` and `admin_token_file`");
                AdminToken::None
            }
            (Some(n), None) => self.string(n, "admin_token_env").map(AdminToken::Env).unwrap_or(AdminToken::None),
            (None, Some(n)) => {
                self.string(n, "admin_token_file").map(|p| AdminToken::File(self.path(&p))).unwrap_or(AdminToken::None)
            }
            (None, None) => AdminToken::None,
        };
        let max_body = self.opt(&f, "max_body", 32 * 1024 * 1024, Self::size);
        let state = self.opt(&f, "state", "shadowroute-state.db".to_string(), Self::string);
        let state = self.path(&state);
        let drain_timeout = self.opt(&f, "drain_timeout", Duration::from_secs(30), Self::duration);
        let shutdown_delay = self.opt(&f, "shutdown_delay", Duration::ZERO, Self::duration);
        let retention_max_age = self.opt(&f, "retention_max_age", Duration::from_secs(7 * 86400), Self::duration);
        let retention_max_records = self.opt(&f, "retention_max_records", 1_000_000, |cx, n, w| cx.count(n, w, 1));
        Some(Server {
            listen,
            admin_listen,
            admin_token,
            max_body,
            state,
            drain_timeout,
            shutdown_delay,
            retention_max_age,
            retention_max_records,
        })
    }

    fn models(&mut self, node: &Node) -> BTreeMap<String, Arc<Model>> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            self.err(node.pos, format!("`models` must be a mapping of names to models, found {}", node.value.kind()));
            return out;
        };
        let mut first_seen: HashMap<String, Pos> = HashMap::new();
        for (k, v) in entries {
            let Some(name) = self.string(k, "model name") else { continue };
            if let Some(first) = first_seen.get(&name) {
                self.err(k.pos, format!("duplicate model name `{name}` (first defined at line {})", first.line));
                continue;
            }
            first_seen.insert(name.clone(), k.pos);
            if let Some(model) = self.model(&name, v) {
                out.insert(name, Arc::new(model));
            }
        }
        out
    }

    fn model(&mut self, name: &str, node: &Node) -> Option<Model> {
        let what = format!("model `{name}`");
        let f = self.fields(node, &what, MODEL)?;
        let url = self.required(&f, "url", &what).and_then(|n| self.url(n));
        let model = self.required(&f, "model", &what).and_then(|n| self.string(n, "model"));
        let api_key = match (f.get("api_key_env"), f.get("api_key_file")) {
            (Some(a), Some(_)) => {
                self.err(a.pos, "set only one of `api_key_env` and `api_key_file`");
                None
            }
            (Some(n), None) => self.secret_from_env(n, "api_key_env"),
            (None, Some(n)) => self.secret_from_file(n, "api_key_file"),
            (None, None) => None,
        };
        let total = self.opt(&f, "timeout", Duration::from_secs(300), Self::duration);
        let timeouts = Timeouts {
            connect: self.opt(&f, "connect_timeout", Duration::from_secs(5), Self::duration),
            first_byte: self.opt(&f, "first_byte_timeout", total, Self::duration),
            idle: self.opt(&f, "idle_timeout", Duration::from_secs(60), Self::duration),
            total,
        };
        let price = f.get("price").and_then(|n| self.price(n));
        Some(Model { name: name.to_string(), url: url?, model: model?, api_key, timeouts, price })
    }

    fn url(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "url")?;
        let ok = match text.parse::<http::Uri>() {
            Ok(uri) => {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() && uri.query().is_none()
            }
            Err(_) => false,
        };
        if !ok {
            self.err(
                node.pos,
                format!("`url` must be an http:// or https:// base URL without a query, found {text:?}"),
            );
            return None;
        }
        Some(text.trim_end_matches('/').to_string())
    }

    fn price(&mut self, node: &Node) -> Option<Price> {
        let f = self.fields(node, "`price`", PRICE)?;
        let input = self.opt(&f, "input_per_mtok", 0.0, |cx, n, w| cx.ranged(n, w, 0.0, 1e6));
        let output = self.opt(&f, "output_per_mtok", 0.0, |cx, n, w| cx.ranged(n, w, 0.0, 1e6));
        Some(Price { input_per_mtok: input, output_per_mtok: output })
    }

    /// A reference to a model, which must be defined under `models:`.
    fn model_ref(&mut self, name: &str, pos: Pos, models: &BTreeMap<String, Arc<Model>>) -> bool {
        if models.contains_key(name) {
            return true;
        }
        self.err(pos, format!("undefined model `{name}` (define it under `models:`)"));
        false
    }

    fn routes(&mut self, node: &Node, models: &BTreeMap<String, Arc<Model>>) -> Vec<Arc<Route>> {
        let Value::Seq(items) = &node.value else {
            self.err(node.pos, format!("`routes` must be a list, found {}", node.value.kind()));
            return Vec::new();
        };
        if items.is_empty() {
            self.err(node.pos, "`routes` is empty: define at least one route");
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut out = Vec::new();
        for item in items {
            if let Some(route) = self.route(item, models, &mut seen) {
                out.push(Arc::new(route));
            }
        }
        out
    }

    fn route(
        &mut self,
        node: &Node,
        models: &BTreeMap<String, Arc<Model>>,
        seen: &mut HashMap<String, Pos>,
    ) -> Option<Route> {
        let f = self.fields(node, "a route", ROUTE)?;
        let name_node = self.required(&f, "name", "a route");
        let name = name_node.and_then(|n| self.string(n, "name"));
        if let (Some(name), Some(n)) = (&name, name_node) {
            if let Some(first) = seen.get(name) {
                self.err(n.pos, format!("duplicate route name `{name}` (first defined at line {})", first.line));
            } else {
                seen.insert(name.clone(), n.pos);
            }
        }
        let what = format!("route `{}`", name.as_deref().unwrap_or("?"));
        let modalities = self.required(&f, "modality", &what).map(|n| self.modalities(n)).unwrap_or_default();
        let match_headers = f.get("match").map(|n| self.match_headers(n)).unwrap_or_default();
        let leader = match self.required(&f, "leader", &what) {
            Some(n) => self.string(n, "leader").filter(|l| self.model_ref(l, n.pos, models)),
            None => None,
        };
        let mut fallbacks = Vec::new();
        if let Some(n) = f.get("fallbacks") {
            for (m, pos) in self.strings(n, "fallbacks") {
                if !self.model_ref(&m, pos, models) {
                    continue;
                }
                if Some(&m) == leader.as_ref() || fallbacks.contains(&m) {
                    self.err(pos, format!("`{m}` is listed twice among the leader and fallbacks"));
                    continue;
                }
                fallbacks.push(m);
            }
        }
        let candidates = f.get("candidates").map(|n| self.candidates(n, leader.as_deref(), models)).unwrap_or_default();
        let evaluate = match f.get("evaluate") {
            Some(n) => self.evaluate(n, models),
            None => self.evaluate(&Node { pos: f.pos, value: Value::Null }, models),
        };
        let policy = match f.get("policy") {
            Some(n) => self.policy(n),
            None => self.policy(&Node { pos: f.pos, value: Value::Null }),
        };
        if modalities.is_empty() {
            return None;
        }
        Some(Route {
            name: name?,
            modalities,
            match_headers,
            leader: leader?,
            fallbacks,
            candidates,
            evaluate: evaluate?,
            policy: policy?,
        })
    }

    fn modalities(&mut self, node: &Node) -> Vec<Modality> {
        let mut out = Vec::new();
        for (text, pos) in self.strings(node, "modality") {
            match text.parse::<Modality>() {
                Ok(m) if !out.contains(&m) => out.push(m),
                Ok(_) => self.err(pos, format!("modality `{text}` is listed twice")),
                Err(e) => self.err(pos, e),
            }
        }
        if out.is_empty() && self.errors.last().map(|e| e.pos) != Some(node.pos) {
            self.err(node.pos, "`modality` must name at least one modality");
        }
        out
    }

    fn match_headers(&mut self, node: &Node) -> Vec<(String, String)> {
        let Some(f) = self.fields(node, "`match`", MATCH) else { return Vec::new() };
        let Some(headers) = f.get("headers") else { return Vec::new() };
        let Value::Map(entries) = &headers.value else {
            self.err(headers.pos, "`headers` must be a mapping of header names to values");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(name) = self.header_name(k) else { continue };
            match v.value.as_text() {
                Some(value) => out.push((name, value)),
                None => self.err(v.pos, format!("header `{name}` must match a string value")),
            }
        }
        out
    }

    fn header_name(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node, "header name")?.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.err(node.pos, format!("`{name}` is not a valid header name"));
            return None;
        }
        Some(name)
    }

    fn candidates(
        &mut self,
        node: &Node,
        leader: Option<&str>,
        models: &BTreeMap<String, Arc<Model>>,
    ) -> Vec<Candidate> {
        let Value::Seq(items) = &node.value else {
            self.err(node.pos, format!("`candidates` must be a list, found {}", node.value.kind()));
            return Vec::new();
        };
        let mut out: Vec<Candidate> = Vec::new();
        for item in items {
            let Some(f) = self.fields(item, "a candidate", CANDIDATE) else { continue };
            let Some(model_node) = self.required(&f, "model", "a candidate") else { continue };
            let Some(model) = self.string(model_node, "model") else { continue };
            // Check every field even when the model is wrong, so all errors show at once.
            let mut valid = self.model_ref(&model, model_node.pos, models);
            if valid && Some(model.as_str()) == leader {
                self.err(model_node.pos, format!("`{model}` is the leader; it cannot also be a candidate"));
                valid = false;
            }
            if valid && out.iter().any(|c| c.model == model) {
                self.err(model_node.pos, format!("candidate `{model}` is listed twice"));
                valid = false;
            }
            let sample = self.opt(&f, "sample", 0.05, |cx, n, w| cx.ranged(n, w, 0.0, 1.0));
            let max_inflight = self.opt(&f, "max_inflight", 32, |cx, n, w| cx.count(n, w, 1)) as usize;
            let timeout = self.opt(&f, "timeout", Duration::from_secs(120), Self::duration);
            let budget_per_hour = f.get("budget_per_hour").and_then(|n| self.ranged(n, "budget_per_hour", 0.0, 1e9));
            if !valid {
                continue;
            }
            out.push(Candidate { model, sample, max_inflight, timeout, budget_per_hour });
        }
        out
    }

    fn evaluate(&mut self, node: &Node, models: &BTreeMap<String, Arc<Model>>) -> Option<Evaluate> {
        let f = self.fields(node, "`evaluate`", EVALUATE)?;
        let agreement = match f.get("agreement") {
            Some(n) => self.agreement(n, models)?,
            None => Agreement::Pure(crate::config::Comparator::TokenF1),
        };
        let noise_sample = self.opt(&f, "noise_sample", 0.1, |cx, n, w| cx.ranged(n, w, 0.0, 1.0));
        let judge = f.get("judge").and_then(|n| self.judge(n, models));
        let segment_by = match f.get("segment_by") {
            Some(n) => {
                let names = self.strings(n, "segment_by");
                names.into_iter().filter_map(|(s, pos)| self.header_name(&Node { pos, value: Value::Str(s) })).collect()
            }
            None => Vec::new(),
        };
        let max_segments = self.opt(&f, "max_segments", 8, |cx, n, w| cx.count(n, w, 1)) as usize;
        let store_payloads = match f.get("store_payloads") {
            Some(n) => match self.string(n, "store_payloads").as_deref() {
                Some("none") | None => StorePayloads::None,
                Some("redacted") => StorePayloads::Redacted,
                Some("full") => StorePayloads::Full,
                Some(other) => {
                    self.err(n.pos, format!("`store_payloads` must be none, redacted or full, found {other:?}"));
                    StorePayloads::None
                }
            },
            None => StorePayloads::None,
        };
        Some(Evaluate { agreement, noise_sample, judge, segment_by, max_segments, store_payloads })
    }

    fn agreement(&mut self, node: &Node, models: &BTreeMap<String, Arc<Model>>) -> Option<Agreement> {
        let text = self.string(node, "agreement")?;
        let pure = crate::config::Comparator::CONFIGURABLE.into_iter().find(|c| c.name() == text);
        let parsed = match (pure, text.as_str()) {
            (Some(c), _) => Agreement::Pure(c),
            (None, other) => match other.strip_prefix("embedding:") {
                Some(model) if self.model_ref(model, node.pos, models) => Agreement::Embedding(model.to_string()),
                Some(_) => return None,
                None => {
                    self.err(node.pos, format!(
                        "unknown agreement `{other}` (expected exact, normalized, token_f1, rouge_l, json, wer or embedding:<model>)"
                    ));
                    return None;
                }
            },
        };
        Some(parsed)
    }

    fn judge(&mut self, node: &Node, models: &BTreeMap<String, Arc<Model>>) -> Option<Judge> {
        let f = self.fields(node, "`judge`", JUDGE)?;
        let model_node = self.required(&f, "model", "`judge`")?;
        let model = self.string(model_node, "model")?;
        let defined = self.model_ref(&model, model_node.pos, models);
        let sample = self.opt(&f, "sample", 0.1, |cx, n, w| cx.ranged(n, w, 0.0, 1.0));
        let (prompt_file, prompt) = match f.get("prompt_file") {
            Some(n) => {
                let text = self.string(n, "prompt_file")?;
                let path = self.path(&text);
                match self.env.read_file(&path) {
                    Ok(text) if text.contains("{response_a}") && text.contains("{response_b}") => {
                        (Some(path), Some(text))
                    }
                    Ok(_) => {
                        self.err(n.pos, "the judge prompt must contain the placeholders {response_a} and {response_b}");
                        return None;
                    }
                    Err(e) => {
                        self.err(n.pos, format!("`prompt_file` {} cannot be read: {e}", path.display()));
                        return None;
                    }
                }
            }
            None => (None, Some(DEFAULT_JUDGE_PROMPT.to_string())),
        };
        defined.then_some(Judge { model, sample, prompt_file, prompt })
    }

    fn policy(&mut self, node: &Node) -> Option<Policy> {
        let f = self.fields(node, "`policy`", POLICY)?;
        let mode = match f.get("mode") {
            Some(n) => match self.string(n, "mode").as_deref() {
                Some("off") => Mode::Off,
                Some("recommend") => Mode::Recommend,
                Some("auto") => Mode::Auto,
                Some(other) => {
                    self.err(n.pos, format!("`mode` must be off, recommend or auto, found {other:?}"));
                    Mode::Recommend
                }
                None => Mode::Recommend,
            },
            None => Mode::Recommend,
        };
        Some(Policy {
            mode,
            min_samples: self.opt(&f, "min_samples", 300, |cx, n, w| cx.count(n, w, 1)),
            margin: self.opt(&f, "margin", 0.02, |cx, n, w| cx.ranged(n, w, 0.0, 0.5)),
            agreement_margin: self.opt(&f, "agreement_margin", 0.1, |cx, n, w| cx.ranged(n, w, 0.0, 0.5)),
            confidence: self.opt(&f, "confidence", 0.99, |cx, n, w| cx.ranged(n, w, 0.5, 0.9999)),
            max_latency_ratio: self.opt(&f, "max_latency_ratio", 1.25, |cx, n, w| cx.ranged(n, w, 1.0, 100.0)),
            max_error_rate: self.opt(&f, "max_error_rate", 0.02, |cx, n, w| cx.ranged(n, w, 0.0, 1.0)),
            cooldown: self.opt(&f, "cooldown", Duration::from_secs(3600), Self::duration),
            probation: self.opt(&f, "probation", Duration::from_secs(1800), Self::duration),
        })
    }
}
