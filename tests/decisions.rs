//! End-to-end: the decision engine replaces a degraded leader, only recommends in recommend mode,
//! stays put under noise, rolls back a bad promotion, and its overrides survive restarts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::Value;
use shadowroute::sim::{tasks, Behavior};

/// Sends `n` task questions, 8 at a time; prompts for even requests carry `(de)` when asked.
async fn drive(addr: SocketAddr, n: u64, offset: u64, german_half: bool) {
    let mut workers = Vec::new();
    for w in 0..8u64 {
        workers.push(tokio::spawn(async move {
            let c = client();
            for i in (w..n).step_by(8) {
                let id = offset + i;
                let (prompt, lang) = if german_half && id % 2 == 0 {
                    (format!("(de) {}", tasks::task(id).prompt), "de-CH")
                } else {
                    (tasks::task(id).prompt, "en-US")
                };
                let r = post_json(
                    &c,
                    &format!("http://{addr}/v1/chat/completions"),
                    &chat(&prompt),
                    &[("accept-language", lang)],
                )
                .await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

const SIMS: &str = r#"
servers:
  - { name: gpt,   behavior: { accuracy: 0.35, ttft: 15ms, per_token: 0ms, jitter: 0.05, words: 0 } }
  - { name: qwen,  behavior: { accuracy: 0.95, ttft: 15ms, per_token: 0ms, jitter: 0.05, words: 0 } }
  - { name: other, behavior: { accuracy: 0.9, ttft: 15ms, per_token: 0ms, jitter: 0.05, words: 0 } }
  - { name: judge, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 0ms } }
"#;

fn routes(mode: &str, leader: &str, state: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token_env: SR_DECISION_TEST_TOKEN, state: "{}" }}
models:
  gpt:   {{ url: "{{gpt}}", model: m }}
  qwen:  {{ url: "{{qwen}}", model: m }}
  other: {{ url: "{{other}}", model: m }}
  judge: {{ url: "{{judge}}", model: j }}
routes:
  - name: chat
    modality: text
    leader: {leader}
    candidates: [{{ model: qwen, sample: 1.0, max_inflight: 64 }}]
    evaluate: {{ agreement: exact, noise_sample: 0.5, judge: {{ model: judge, sample: 1.0 }}, segment_by: [accept-language] }}
    policy: {{ mode: {mode}, min_samples: 60, confidence: 0.95, max_latency_ratio: 2.0, cooldown: 1h, probation: 10m }}
"#,
        state.display()
    )
}

async fn served_by(c: &TestClient, addr: SocketAddr) -> String {
    let r = post_json(c, &format!("http://{addr}/v1/chat/completions"), &chat("What is 1 + 1?"), &[]).await;
    r.headers["x-shadowroute-model"].to_str().unwrap().to_string()
}

async fn decisions(c: &TestClient, admin: SocketAddr) -> Vec<Value> {
    get(c, &format!("http://{admin}/admin/decisions")).await.json()["decisions"].as_array().cloned().unwrap_or_default()
}

async fn route(c: &TestClient, admin: SocketAddr) -> Value {
    get(c, &format!("http://{admin}/admin/routes")).await.json()["routes"][0].clone()
}

fn token() {
    std::env::set_var("SR_DECISION_TEST_TOKEN", "decide-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_leader_is_replaced_in_auto_mode_and_a_bad_promotion_rolled_back() {
    token();
    let sims = sims(SIMS).await;
    let dir = scratch("auto");
    let router = router(&with_urls(&routes("auto", "gpt", &dir.join("state.db")), &sims), None).await;
    let c = client();
    let admin = router.admin_addr;
    let mut sent = 0;
    while served_by(&c, router.addr).await == "gpt" {
        assert!(sent < 1200, "no replacement after {sent} requests: {}", route(&c, admin).await);
        drive(router.addr, 100, sent, false).await;
        sent += 100;
    }
    let d = decisions(&c, admin).await;
    let promote = d.iter().find(|d| d["kind"] == "promote").expect("a promote decision");
    assert_eq!((promote["from"].as_str(), promote["to"].as_str()), (Some("gpt"), Some("qwen")));
    assert!(promote["reason"].as_str().unwrap().contains("judge win rate"), "{promote}");
    assert!(
        promote["evidence"]["qualified"] == true && promote["evidence"]["samples"].as_u64().unwrap() >= 60,
        "{promote}"
    );
    let r = route(&c, admin).await;
    assert_eq!(r["leader"], "qwen");
    assert_eq!(r["decision"]["state"], "probation", "{r}");
    // The old leader is now a shadowed candidate.
    assert_eq!(r["candidates"][0]["model"], "gpt", "{r}");
    let page = metrics(&c, admin).await;
    assert_eq!(metric(&page, "shadowroute_leader_changes_total{reason=\"degraded\",route=\"chat\"}"), 1.0);
    assert_eq!(metric(&page, "shadowroute_leader_info{model=\"qwen\",route=\"chat\"}"), 1.0);
    assert_eq!(metric(&page, "shadowroute_decision_state{route=\"chat\",state=\"probation\"}"), 1.0);

    // The new leader goes bad during probation: it is rolled back and held back.
    assert!(sims.set_behavior(
        "qwen",
        Behavior {
            accuracy: 0.05,
            ttft: Duration::from_millis(15),
            per_token: Duration::ZERO,
            words: 0,
            ..Behavior::default()
        }
    ));
    while served_by(&c, router.addr).await == "qwen" {
        assert!(sent < 4000, "no rollback after {sent} requests: {}", route(&c, admin).await);
        drive(router.addr, 100, sent, false).await;
        sent += 100;
    }
    let d = decisions(&c, admin).await;
    let rollback = d.iter().find(|d| d["kind"] == "rollback").expect("a rollback decision");
    assert_eq!((rollback["from"].as_str(), rollback["to"].as_str()), (Some("qwen"), Some("gpt")));
    assert!(rollback["reason"].as_str().unwrap().starts_with("probation failed"), "{rollback}");
    let r = route(&c, admin).await;
    assert_eq!(r["leader"], "gpt");
    assert_eq!(r["decision"]["held_back"], serde_json::json!(["qwen"]), "{r}");
    assert_eq!(
        metric(&metrics(&c, admin).await, "shadowroute_leader_changes_total{reason=\"rollback\",route=\"chat\"}"),
        1.0
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_mode_records_the_decision_but_never_swaps() {
    token();
    let sims = sims(SIMS).await;
    let dir = scratch("recommend");
    let router = router(&with_urls(&routes("recommend", "gpt", &dir.join("state.db")), &sims), None).await;
    let c = client();
    let admin = router.admin_addr;
    let mut sent = 0;
    loop {
        drive(router.addr, 100, sent, false).await;
        sent += 100;
        if decisions(&c, admin).await.iter().any(|d| d["kind"] == "recommend") {
            break;
        }
        assert!(sent < 1200, "no recommendation after {sent}: {}", route(&c, admin).await);
    }
    assert_eq!(served_by(&c, router.addr).await, "gpt");
    let r = route(&c, admin).await;
    assert_eq!(r["decision"]["state"], "recommending", "{r}");
    assert_eq!(
        metric(&metrics(&c, admin).await, "shadowroute_decision_state{route=\"chat\",state=\"recommending\"}"),
        1.0
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_models_never_trigger_a_replacement_and_a_worse_locale_blocks_one() {
    token();
    // gpt and other are equally good: nothing may happen.
    let sims = sims(&SIMS.replace("accuracy: 0.35", "accuracy: 0.9")).await;
    let dir = scratch("noise");
    let text = with_urls(&routes("auto", "gpt", &dir.join("state.db")), &sims)
        .replace("model: qwen, sample", "model: other, sample");
    let router = router(&text, None).await;
    let c = client();
    drive(router.addr, 600, 0, false).await;
    let r = route(&c, router.admin_addr).await;
    assert_eq!(r["leader"], "gpt");
    assert!(decisions(&c, router.admin_addr).await.iter().all(|d| d["kind"] != "promote"));
    assert!(matches!(r["decision"]["state"].as_str(), Some("watching" | "collecting")), "{r}");
    router.shutdown().await;

    // qwen is far better overall but bad at German prompts: the de-CH segment blocks it.
    let sims = common::sims(&SIMS.replace("accuracy: 0.35", "accuracy: 0.6").replace(
        "{ name: qwen,  behavior: { accuracy: 0.95,",
        "{ name: qwen,  behavior: { prompt_accuracy: [{ contains: \"(de)\", accuracy: 0.05 }], accuracy: 0.99,",
    ))
    .await;
    let router = common::router(&with_urls(&routes("auto", "gpt", &dir.join("state2.db")), &sims), None).await;
    drive(router.addr, 600, 0, true).await;
    let c = client();
    let admin = router.admin_addr;
    eventually("the segment gate is reported", Duration::from_secs(10), || async {
        route(&c, admin).await["decision"]["candidates"][0]["gates"].to_string().contains("blocked: de-ch worse by")
    })
    .await;
    let r = route(&c, admin).await;
    assert_eq!(r["leader"], "gpt", "{r}");
    assert_eq!(r["decision"]["candidates"][0]["qualified"], false);
    router.shutdown().await;
}

#[tokio::test]
async fn overrides_survive_a_restart_an_sre_edit_wins_and_writes_need_the_token() {
    token();
    let sims = sims(SIMS).await;
    let dir = scratch("overrides");
    let state = dir.join("state.db");
    let file = dir.join("routes.yaml");
    let router1 = router(&with_urls(&routes("recommend", "gpt", &state), &sims), Some(&file)).await;
    let c = client();
    let promote = format!("http://{}/admin/routes/chat/promote", router1.admin_addr);
    let body = serde_json::to_vec(&serde_json::json!({"model": "qwen"})).unwrap();
    assert_eq!(send(&c, Method::POST, &promote, &[], body.clone()).await.status, 401);
    assert_eq!(send(&c, Method::POST, &promote, &[("authorization", "Bearer nope")], body.clone()).await.status, 401);
    let r = send(&c, Method::POST, &promote, &[("authorization", "Bearer decide-token")], body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&c, router1.addr).await, "qwen");
    let unknown = serde_json::to_vec(&serde_json::json!({"model": "ghost"})).unwrap();
    assert_eq!(
        send(&c, Method::POST, &promote, &[("authorization", "Bearer decide-token")], unknown).await.status,
        400
    );
    router1.shutdown().await;

    // Restart on the same state file: the override still leads.
    let router2 = common::router(&with_urls(&routes("recommend", "gpt", &state), &sims), Some(&file)).await;
    assert_eq!(served_by(&c, router2.addr).await, "qwen");
    assert!(decisions(&c, router2.admin_addr).await.iter().any(|d| d["kind"] == "manual_promote"));
    // An SRE edits the route's leader in routes.yaml: the file wins over the override.
    std::fs::write(&file, with_urls(&routes("recommend", "other", &state), &sims)).unwrap();
    let r = send(
        &c,
        Method::POST,
        &format!("http://{}/admin/reload", router2.admin_addr),
        &[("authorization", "Bearer decide-token")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&c, router2.addr).await, "other");
    let d = decisions(&c, router2.admin_addr).await;
    assert!(
        d.iter().any(|d| d["kind"] == "sre_override" && d["reason"].as_str().unwrap().contains("the file wins")),
        "{d:?}"
    );
    router2.shutdown().await;
    // And after another restart the override is gone for good.
    let router3 = common::router(&with_urls(&routes("recommend", "other", &state), &sims), Some(&file)).await;
    assert_eq!(served_by(&c, router3.addr).await, "other");
    // Operator rollback returns to the configured leader when nothing else is left.
    let rb = format!("http://{}/admin/routes/chat/rollback", router3.admin_addr);
    assert_eq!(send(&c, Method::POST, &rb, &[("authorization", "Bearer decide-token")], "").await.status, 409);
    router3.shutdown().await;
}
