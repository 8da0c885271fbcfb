//! End-to-end: shadow traffic is mirrored in isolation, compared against the leader's noise, and its numbers are right.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use serde_json::{json, Value};
use shadowroute::sim::tasks;

fn route_evidence(routes: &Value, route: &str) -> Value {
    routes["routes"].as_array().unwrap().iter().find(|r| r["name"] == route).unwrap()["evidence"].clone()
}

fn candidate<'a>(evidence: &'a Value, model: &str) -> &'a Value {
    evidence["candidates"].as_array().unwrap().iter().find(|c| c["model"] == model).unwrap()
}

#[tokio::test]
async fn candidates_get_the_rewritten_body_with_their_own_key_and_no_client_header() {
    std::env::set_var("SR_SHADOW_TEST_KEY", "sk-candidate-own");
    let sims = sims("servers:\n  - { name: lead, behavior: { ttft: 1ms } }\n  - { name: cand, behavior: { ttft: 1ms } }\n  - { name: wlead }\n  - { name: wcand }\n").await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"/dev/null/none.db\" }\nmodels:\n  lead: { url: \"{lead}\", model: m-lead }\n  cand: { url: \"{cand}\", model: m-cand, api_key_env: SR_SHADOW_TEST_KEY }\n  wlead: { url: \"{wlead}\", model: w-lead }\n  wcand: { url: \"{wcand}\", model: w-cand }\nroutes:\n  - { name: chat, modality: text, leader: lead, candidates: [{ model: cand, sample: 1.0 }] }\n  - { name: audio, modality: audio, leader: wlead, candidates: [{ model: wcand, sample: 1.0 }], evaluate: { agreement: wer } }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let c = client();
    let base = format!("http://{}/v1", router.addr);
    let secret = [("authorization", "Bearer sk-client-secret"), ("x-custom", "client-only"), ("cookie", "a=b")];
    let mut answered_tokens = 0.0;
    for stream in [false, true] {
        let mut body = chat("What is 2 + 3?");
        body["stream"] = json!(stream);
        let r = post_json(&c, &format!("{base}/chat/completions"), &body, &secret).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-shadowroute-model"], "lead");
        // The usage the client saw: the answer's, or the stream's last chunk's.
        let usage = match stream {
            false => r.json()["usage"].clone(),
            true => {
                let text = r.text();
                let chunks = text.lines().filter_map(|l| l.strip_prefix("data: "));
                let mut with_usage =
                    chunks.filter_map(|c| serde_json::from_str::<Value>(c).ok()).filter(|c| c["usage"].is_object());
                with_usage.next_back().unwrap()["usage"].clone()
            }
        };
        let tokens = usage["completion_tokens"].as_f64().unwrap();
        assert!(tokens > 0.0, "{usage}");
        answered_tokens += tokens;
    }
    // The shadow job reads a mirrored request's answer once the client has it, and meters it:
    // both answers' tokens, the streamed one's too.
    eventually("the leader's tokens are metered", Duration::from_secs(10), || async {
        let page = metrics(&c, router.admin_addr).await;
        metric(&page, "shadowroute_tokens_total{direction=\"output\",model=\"lead\",route=\"chat\"}") == answered_tokens
    })
    .await;
    let (ct, body) = multipart(&[("model", "whisper-1")], ("file", "clip.wav", b"one two three four"));
    let mut h = secret.to_vec();
    h.push(("content-type", &ct));
    let r = send(&c, Method::POST, &format!("{base}/audio/transcriptions"), &h, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually("shadow requests arrive", Duration::from_secs(10), || async {
        sim_requests(&c, &sims, "cand").await.len() == 2 && sim_requests(&c, &sims, "wcand").await.len() == 1
    })
    .await;
    for (sim, model, key) in [("cand", "m-cand", Some("Bearer sk-candidate-own")), ("wcand", "w-cand", None)] {
        for req in sim_requests(&c, &sims, sim).await {
            assert_eq!(req["model"], model, "{req}");
            let headers = req["headers"].as_object().unwrap();
            assert_eq!(headers.get("x-shadowroute-shadow").and_then(Value::as_str), Some("1"), "{req}");
            assert_eq!(headers.get("authorization").and_then(Value::as_str), key, "{req}");
            for banned in ["x-custom", "cookie"] {
                assert!(!headers.contains_key(banned), "{sim} got client header {banned}: {req}");
            }
            assert!(!req.to_string().contains("sk-client-secret"));
        }
    }
    // The transcription shadow compared the two transcripts with WER; both are exact here.
    eventually("audio comparison recorded", Duration::from_secs(10), || async {
        let routes = get(&c, &format!("http://{}/admin/routes", router.admin_addr)).await.json();
        candidate(&route_evidence(&routes, "audio"), "wcand")["compared"] == 1
    })
    .await;
    // The state file could not be opened: serving went on and the failure is counted.
    let page = metrics(&c, router.admin_addr).await;
    assert!(metric(&page, "shadowroute_store_errors_total{op=\"open\"}") >= 1.0, "{page}");
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_agreement_noise_and_judge_win_rate_match_the_configured_truth() {
    // Leader always right, candidate right 60% of the time, judge always right.
    // exact agreement truth: 0.6. Noise truth (leader vs itself): 1.0.
    // Judge truth: candidate right -> tie (0.5), wrong -> loss (0): 0.6 * 0.5 = 0.3.
    let sims = sims(
        "servers:\n  - { name: lead, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 0ms, words: 0 } }\n  - { name: cand, seed: 7, behavior: { accuracy: 0.6, ttft: 1ms, per_token: 0ms, words: 0 } }\n  - { name: judge, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 0ms } }\n",
    )
    .await;
    let dir = scratch("truth");
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"{}\" }}\nmodels:\n  lead: {{ url: \"{{lead}}\", model: m }}\n  cand: {{ url: \"{{cand}}\", model: m }}\n  judge: {{ url: \"{{judge}}\", model: j }}\nroutes:\n  - name: chat\n    modality: text\n    leader: lead\n    candidates: [{{ model: cand, sample: 1.0, max_inflight: 64 }}]\n    evaluate: {{ agreement: exact, noise_sample: 0.5, judge: {{ model: judge, sample: 1.0 }}, segment_by: [accept-language] }}\n    policy: {{ confidence: 0.95, min_samples: 100 }}\n",
        dir.join("state.db").display()
    );
    let router = router(&with_urls(&routes, &sims), None).await;
    let addr = router.addr;
    let n = 400u64;
    let mut workers = Vec::new();
    for w in 0..8u64 {
        workers.push(tokio::spawn(async move {
            let c = client();
            for i in (w..n).step_by(8) {
                let lang = if i % 2 == 0 { "de-CH" } else { "en-US" };
                let r = post_json(
                    &c,
                    &format!("http://{addr}/v1/chat/completions"),
                    &chat(&tasks::task(i).prompt),
                    &[("accept-language", lang)],
                )
                .await;
                assert_eq!(r.status, 200);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let c = client();
    let admin = router.admin_addr;
    eventually("every shadow comparison recorded", Duration::from_secs(30), || async {
        let routes = get(&c, &format!("http://{admin}/admin/routes")).await.json();
        candidate(&route_evidence(&routes, "chat"), "cand")["compared"].as_u64() == Some(n)
    })
    .await;
    let routes = get(&c, &format!("http://{admin}/admin/routes")).await.json();
    let ev = route_evidence(&routes, "chat");
    let cand = candidate(&ev, "cand");
    let within = |e: &Value, truth: f64| {
        let (lo, hi) = (e["lower"].as_f64().unwrap(), e["upper"].as_f64().unwrap());
        assert!(lo <= truth && truth <= hi, "truth {truth} outside [{lo}, {hi}]: {e}");
    };
    within(&cand["agreement"], 0.6);
    within(&cand["judge_win_rate"], 0.3);
    assert!(
        cand["judge_win_rate"]["upper"].as_f64().unwrap() < 0.5,
        "the judge should clearly prefer the leader: {cand}"
    );
    let noise = &ev["noise_agreement"];
    assert_eq!(noise["mean"], 1.0, "{ev}");
    assert!(noise["n"].as_u64().unwrap() > 100, "{ev}");
    assert!(cand["agreement_minus_noise"]["upper"].as_f64().unwrap() < 0.0, "{cand}");
    let summary = cand["summary"].as_str().unwrap();
    assert!(summary.contains("disagrees with the leader") && summary.contains("judge prefers the leader"), "{summary}");
    // Both segments were evaluated separately.
    let segments = cand["segments"].as_object().unwrap();
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert!(segments.contains_key("accept-language=de-ch") && segments.contains_key("accept-language=en-us"));
    within(&segments["accept-language=de-ch"]["agreement"], 0.6);
    // Exported as metrics at the decision engine's next tick.
    let mean = cand["agreement"]["mean"].as_f64().unwrap();
    eventually("evidence gauges exported", Duration::from_secs(5), || async {
        let agreement = metric(&metrics(&c, admin).await, "shadowroute_agreement{candidate=\"cand\",route=\"chat\"}");
        (agreement - mean).abs() < 1e-3
    })
    .await;
    let page = metrics(&c, admin).await;
    assert_eq!(metric(&page, "shadowroute_noise_agreement{route=\"chat\"}"), 1.0);
    assert!(metric(&page, "shadowroute_judge_win_rate_upper{candidate=\"cand\",route=\"chat\"}") < 0.5);
    assert_eq!(
        metric(&page, "shadowroute_shadow_requests_total{candidate=\"cand\",outcome=\"ok\",route=\"chat\"}"),
        n as f64
    );
    router.shutdown().await;

    // Every comparison was written to the store, without payloads by default.
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let (rows, payloads): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), COUNT(payload_request) FROM comparisons WHERE route = 'chat' AND candidate = 'cand'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, payloads), (n as i64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_failing_and_slow_candidates_never_touch_the_client() {
    let sims = sims(
        "servers:\n  - { name: lead, behavior: { ttft: 5ms, per_token: 0ms, jitter: 0 } }\n  - { name: hang, behavior: { hang: true } }\n  - { name: fail, behavior: { error_rate: 1.0, ttft: 1ms } }\n  - { name: slow, behavior: { ttft: 50ms, per_token: 0ms, jitter: 0 } }\n",
    )
    .await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"/dev/null/none.db\" }\nmodels:\n  lead: { url: \"{lead}\", model: m }\n  hang: { url: \"{hang}\", model: m }\n  fail: { url: \"{fail}\", model: m }\n  slow: { url: \"{slow}\", model: m }\nroutes:\n  - { name: plain, modality: text, match: { headers: { x-mode: plain } }, leader: lead }\n  - name: shadowed\n    modality: text\n    leader: lead\n    candidates:\n      - { model: hang, sample: 1.0, max_inflight: 4, timeout: 1s }\n      - { model: fail, sample: 1.0 }\n      - { model: slow, sample: 1.0, max_inflight: 8 }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let addr = router.addr;
    // Interleave shadowed and unshadowed requests from the same clients, same run.
    let lat = Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
    let mut workers = Vec::new();
    for w in 0..4 {
        let lat = lat.clone();
        workers.push(tokio::spawn(async move {
            let c = client();
            for i in 0..60 {
                let plain = (i + w) % 2 == 0;
                let headers: &[(&str, &str)] = if plain { &[("x-mode", "plain")] } else { &[] };
                let started = Instant::now();
                let r = post_json(&c, &format!("http://{addr}/v1/chat/completions"), &chat("What is 9 + 9?"), headers)
                    .await;
                let took = started.elapsed();
                assert_eq!(r.status, 200, "{}", r.text());
                assert!(r.json()["choices"][0]["message"]["content"].as_str().unwrap().starts_with("The answer is"));
                let mut l = lat.lock().unwrap();
                if plain {
                    l.0.push(took)
                } else {
                    l.1.push(took)
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (mut off, mut on) = lat.lock().unwrap().clone();
    off.sort();
    on.sort();
    let q = |v: &Vec<Duration>, p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    let (p50_off, p50_on, p99_off, p99_on) = (q(&off, 0.5), q(&on, 0.5), q(&off, 0.99), q(&on, 0.99));
    println!("client latency with shadowing off: p50 {p50_off:?} p99 {p99_off:?}; on: p50 {p50_on:?} p99 {p99_on:?}");
    // The slow candidate takes 10x the leader's time; none of it may show up for the client.
    assert!(p50_on < p50_off + Duration::from_millis(10), "p50 moved: {p50_off:?} -> {p50_on:?}");
    assert!(p99_on < p99_off * 2 + Duration::from_millis(20), "p99 moved: {p99_off:?} -> {p99_on:?}");
    assert!(p99_on < Duration::from_millis(45), "shadowed requests waited for the 50 ms candidate: p99 {p99_on:?}");

    let c = client();
    let page = metrics(&c, router.admin_addr).await;
    assert!(
        metric(&page, "shadowroute_shadow_dropped_total{candidate=\"hang\",reason=\"inflight\",route=\"shadowed\"}")
            > 0.0,
        "{page}"
    );
    assert!(
        metric(&page, "shadowroute_shadow_requests_total{candidate=\"fail\",outcome=\"error\",route=\"shadowed\"}")
            > 0.0
    );
    // After the load stops every background task ends: hanging calls time out, nothing leaks.
    let app = router.app.clone();
    eventually("all shadow work finished", Duration::from_secs(10), || async { app.tasks.is_empty() }).await;
    let page = metrics(&c, router.admin_addr).await;
    let timeouts =
        metric(&page, "shadowroute_shadow_requests_total{candidate=\"hang\",outcome=\"timeout\",route=\"shadowed\"}");
    let dropped =
        metric(&page, "shadowroute_shadow_dropped_total{candidate=\"hang\",reason=\"inflight\",route=\"shadowed\"}");
    assert_eq!(timeouts + dropped, 120.0, "every hanging shadow request either timed out or was dropped");
    router.shutdown().await;
}

#[tokio::test]
async fn feedback_attaches_to_served_requests_and_bad_feedback_is_refused() {
    let sims = sims("servers:\n  - { name: lead, behavior: { ttft: 1ms } }\n").await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"/dev/null/none.db\" }\nmodels:\n  lead: { url: \"{lead}\", model: m }\nroutes:\n  - { name: chat, modality: text, leader: lead }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let c = client();
    let base = format!("http://{}/v1", router.addr);
    let r = post_json(&c, &format!("{base}/chat/completions"), &chat("hi"), &[]).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let ok = post_json(&c, &format!("{base}/feedback"), &json!({"request_id": id, "score": 0.75}), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["model"], "lead");
    let unknown =
        post_json(&c, &format!("{base}/feedback"), &json!({"request_id": "never-served", "score": 1}), &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "unknown_request_id");
    let bad = post_json(&c, &format!("{base}/feedback"), &json!({"request_id": id, "score": 7}), &[]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "invalid_feedback");
    let routes = get(&c, &format!("http://{}/admin/routes", router.admin_addr)).await.json();
    assert_eq!(route_evidence(&routes, "chat")["feedback"]["mean"], 0.75);
    router.shutdown().await;
}

#[tokio::test]
async fn payloads_are_stored_redacted_when_asked() {
    let sims = sims("servers:\n  - { name: lead, behavior: { ttft: 1ms } }\n  - { name: cand, behavior: { ttft: 1ms } }\n  - { name: ea }\n  - { name: eb }\n").await;
    let dir = scratch("payloads");
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"{}\" }}\nmodels:\n  lead: {{ url: \"{{lead}}\", model: m }}\n  cand: {{ url: \"{{cand}}\", model: m }}\n  ea: {{ url: \"{{ea}}\", model: e }}\n  eb: {{ url: \"{{eb}}\", model: e }}\nroutes:\n  - {{ name: chat, modality: text, leader: lead, candidates: [{{ model: cand, sample: 1.0 }}], evaluate: {{ store_payloads: redacted }} }}\n  - {{ name: emb, modality: embeddings, leader: ea, candidates: [{{ model: eb, sample: 1.0 }}] }}\n",
        dir.join("state.db").display()
    );
    let router = router(&with_urls(&routes, &sims), None).await;
    let c = client();
    let r = post_json(
        &c,
        &format!("http://{}/v1/chat/completions", router.addr),
        &chat("mail jane.doe@example.com or call +41 44 668 18 00"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let batch = json!({"input": ["the cat sat", "a cat sat down", "stock markets fell", "bonds and stocks"]});
    let r = post_json(&c, &format!("http://{}/v1/embeddings", router.addr), &batch, &[]).await;
    assert_eq!(r.status, 200);
    let admin = router.admin_addr;
    eventually("both comparisons recorded", Duration::from_secs(10), || async {
        let routes = get(&c, &format!("http://{admin}/admin/routes")).await.json();
        candidate(&route_evidence(&routes, "chat"), "cand")["compared"] == 1
            && candidate(&route_evidence(&routes, "emb"), "eb")["compared"] == 1
    })
    .await;
    // Neighbourhood agreement of two embedding models on one batch is a rank correlation in [0, 1].
    let routes = get(&c, &format!("http://{admin}/admin/routes")).await.json();
    let emb = candidate(&route_evidence(&routes, "emb"), "eb")["agreement"]["mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&emb));
    router.shutdown().await;
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let request: String =
        db.query_row("SELECT payload_request FROM comparisons WHERE route = 'chat'", [], |r| r.get(0)).unwrap();
    assert_eq!(request, "mail [EMAIL] or call [PHONE]");
}
