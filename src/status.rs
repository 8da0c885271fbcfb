//! `shadowroute status|promote|rollback`: operator commands over the admin API, and the status table.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Calls the admin API; returns the status code and the JSON body.
async fn call(method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> Result<(u16, Value), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = req.header(header::CONTENT_TYPE, "application/json").body(Full::new(bytes)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within 10s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, json))
}

fn error_message(v: &Value) -> String {
    v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// `shadowroute status`: the routes table.
pub async fn status(admin: &str) -> Result<String, String> {
    let (code, routes) =
        call(Method::GET, &format!("{}/admin/routes", admin.trim_end_matches('/')), None, None).await?;
    if code != 200 {
        return Err(error_message(&routes));
    }
    Ok(render(&routes))
}

/// `shadowroute promote ROUTE MODEL` and `rollback ROUTE` (and pause/resume).
pub async fn operate(admin: &str, route: &str, verb: &str, model: Option<&str>) -> Result<String, String> {
    let token = std::env::var("SHADOWROUTE_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err("set SHADOWROUTE_ADMIN_TOKEN to the router's admin token".into());
    };
    let url = format!("{}/admin/routes/{route}/{verb}", admin.trim_end_matches('/'));
    let body = model.map(|m| serde_json::json!({ "model": m }));
    let (code, v) = call(Method::POST, &url, Some(&token), body).await?;
    if code == 200 {
        Ok(v["message"].as_str().unwrap_or("ok").to_string())
    } else {
        Err(format!("{code}: {}", error_message(&v)))
    }
}

fn bounds(e: &Value, scale: f64, unit: &str) -> String {
    match (e["mean"].as_f64(), e["lower"].as_f64(), e["upper"].as_f64()) {
        (Some(m), Some(l), Some(u)) => format!("{:.2}{unit} [{:.2}, {:.2}]", m * scale, l * scale, u * scale),
        _ => "-".into(),
    }
}

/// Renders `/admin/routes` as the table an on-call engineer reads (pure).
pub fn render(routes: &Value) -> String {
    let mut out = String::new();
    for r in routes["routes"].as_array().into_iter().flatten() {
        let decision = &r["decision"];
        let state = decision["state"].as_str().unwrap_or("starting");
        let leader = r["leader"].as_str().unwrap_or("?");
        let configured = r["configured_leader"].as_str().unwrap_or("?");
        let note = if leader == configured { String::new() } else { format!(" (routes.yaml says {configured})") };
        let _ = writeln!(
            out,
            "route {}  [{}]  mode {}  state {}",
            r["name"].as_str().unwrap_or("?"),
            join(&r["modalities"]),
            r["mode"].as_str().unwrap_or("?"),
            state.to_uppercase()
        );
        let _ = writeln!(
            out,
            "  leader {leader}{note}; comparator {}; noise floor {}",
            r["comparator"].as_str().unwrap_or("?"),
            bounds(&r["evidence"]["noise_agreement"], 1.0, "")
        );
        let cands = r["evidence"]["candidates"].as_array().cloned().unwrap_or_default();
        if !cands.is_empty() {
            let _ = writeln!(
                out,
                "  {:<14} {:>7}  {:<24} {:<24} {:>8} {:>7}  status",
                "candidate", "samples", "agreement", "judge win rate", "p95 lat", "errors"
            );
        }
        for c in &cands {
            let model = c["model"].as_str().unwrap_or("?");
            let view = decision["candidates"].as_array().and_then(|v| v.iter().find(|x| x["model"] == model));
            let status = match view {
                Some(v) if v["qualified"] == true => "qualified".to_string(),
                Some(v) => v["gates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|g| g["pass"] == false)
                    .filter_map(|g| g["why"].as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                None => c["summary"].as_str().unwrap_or("").to_string(),
            };
            let lat =
                c["latency_ratio"]["total_p95"].as_f64().map(|x| format!("x{x:.2}")).unwrap_or_else(|| "-".into());
            let errors =
                c["error_rate"]["mean"].as_f64().map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
            let samples = view.and_then(|v| v["samples"].as_u64()).or_else(|| c["compared"].as_u64()).unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<14} {:>7}  {:<24} {:<24} {:>8} {:>7}  {}",
                model,
                samples,
                bounds(&c["agreement"], 1.0, ""),
                bounds(&c["judge_win_rate"], 1.0, ""),
                lat,
                errors,
                status
            );
        }
        for reason in decision["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|r| !cands.iter().any(|c| r.starts_with(&format!("{}:", c["model"].as_str().unwrap_or("")))))
        {
            let _ = writeln!(out, "  why: {reason}");
        }
        out.push('\n');
    }
    out
}

fn join(v: &Value) -> String {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_who_leads_and_why() {
        let routes = serde_json::json!({"routes": [{
            "name": "chat", "modalities": ["text"], "mode": "auto", "leader": "qwen", "configured_leader": "gpt", "comparator": "token_f1",
            "evidence": {"noise_agreement": {"mean": 0.9, "lower": 0.85, "upper": 0.94}, "candidates": [
                {"model": "gemini", "compared": 40, "agreement": {"mean": 0.8, "lower": 0.6, "upper": 0.9}, "judge_win_rate": null,
                 "latency_ratio": {"total_p95": 1.1}, "error_rate": {"mean": 0.0}}]},
            "decision": {"state": "probation", "reasons": ["new leader on probation for 30s more; gates hold"], "candidates": [
                {"model": "gemini", "samples": 40, "qualified": false, "gates": [{"pass": false, "why": "needs 260 more samples"}, {"pass": false, "why": "blocked: de-ch worse by 6 points"}]}]}
        }]});
        let t = render(&routes);
        assert!(t.contains("route chat") && t.contains("PROBATION"), "{t}");
        assert!(t.contains("leader qwen (routes.yaml says gpt)"), "{t}");
        assert!(t.contains("needs 260 more samples; blocked: de-ch worse by 6 points"), "{t}");
        assert!(t.contains("why: new leader on probation"), "{t}");
        assert!(t.contains("x1.10"), "{t}");
    }
}
