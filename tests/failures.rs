//! End-to-end: fallbacks, timeouts and the router's own errors, all in the OpenAI shape.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::json;

fn assert_openai_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    let err = &body["error"];
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err["type"].is_string(), "{body}");
    assert!(err.get("param").is_some(), "{body}");
    assert_eq!(err["code"], code, "{body}");
    assert!(r.headers.contains_key("x-request-id"));
}

/// A closed port: bind, note the address, drop the listener.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/v1", l.local_addr().unwrap())
}

#[tokio::test]
async fn router_errors_have_the_openai_shape() {
    let sims =
        sims("servers:\n  - { name: ok, behavior: { ttft: 1ms } }\n  - { name: hang, behavior: { hang: true } }\n")
            .await;
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", max_body: 1KiB }}\nmodels:\n  ok: {{ url: \"{{ok}}\", model: m }}\n  dead: {{ url: \"{}\", model: m }}\n  hang: {{ url: \"{{hang}}\", model: m, first_byte_timeout: 200ms }}\nroutes:\n  - {{ name: chat, modality: text, leader: ok }}\n  - {{ name: embeddings, modality: embeddings, leader: dead }}\n  - {{ name: images, modality: image, leader: hang }}\n",
        dead_url()
    );
    let router = router(&with_urls(&routes, &sims), None).await;
    let c = client();
    let base = format!("http://{}/v1", router.addr);

    let r = send(
        &c,
        Method::POST,
        &format!("{base}/chat/completions"),
        &[("content-type", "application/json")],
        "{not json",
    )
    .await;
    assert_openai_error(&r, 400, "invalid_body");
    let r = send(&c, Method::POST, &format!("{base}/chat/completions"), &[], "[1,2]").await;
    assert_openai_error(&r, 400, "invalid_body");
    let r = post_json(&c, &format!("{base}/chat/completions"), &chat("hi"), &[("x-shadowroute-modality", "telepathy")])
        .await;
    assert_openai_error(&r, 400, "invalid_modality");
    let r = post_json(&c, &format!("{base}/nowhere"), &chat("hi"), &[]).await;
    assert_openai_error(&r, 404, "unknown_url");
    let r = get(&c, &format!("{base}/chat/completions")).await;
    assert_openai_error(&r, 405, "method_not_allowed");
    let big = chat(&"x".repeat(4096));
    let r = post_json(&c, &format!("{base}/chat/completions"), &big, &[]).await;
    assert_openai_error(&r, 413, "request_too_large");
    let r = post_json(&c, &format!("{base}/embeddings"), &json!({"input": "x"}), &[]).await;
    assert_openai_error(&r, 502, "upstream_unavailable");
    let r = post_json(&c, &format!("{base}/images/generations"), &json!({"prompt": "x"}), &[]).await;
    assert_openai_error(&r, 504, "upstream_timeout");
    let r = post_json(&c, &format!("{base}/audio/speech"), &json!({"input": "x"}), &[]).await;
    assert_openai_error(&r, 503, "no_route");
    let (ct, body) = multipart(&[], ("file", "a.wav", b"x"));
    let r = send(
        &c,
        Method::POST,
        &format!("{base}/audio/transcriptions"),
        &[("content-type", "application/json")],
        body.clone(),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_body");
    let _ = ct;

    let page = metrics(&c, router.admin_addr).await;
    assert_eq!(
        metric(&page, "shadowroute_requests_total{code=\"413\",model=\"none\",modality=\"none\",route=\"none\"}"),
        1.0,
        "{page}"
    );
    assert_eq!(metric(&page, "shadowroute_upstream_errors_total{kind=\"connect\",model=\"dead\"}"), 1.0, "{page}");
    assert_eq!(metric(&page, "shadowroute_upstream_errors_total{kind=\"timeout\",model=\"hang\"}"), 1.0, "{page}");
    router.shutdown().await;
}

#[tokio::test]
async fn fallbacks_are_tried_in_order_before_any_byte_reaches_the_client() {
    let sims = sims(
        "servers:\n  - { name: failing, behavior: { error_rate: 1.0, ttft: 1ms } }\n  - { name: limited, behavior: { error_rate: 1.0, error_status: 429, ttft: 1ms } }\n  - { name: good, behavior: { ttft: 1ms } }\n",
    )
    .await;
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }}\nmodels:\n  failing: {{ url: \"{{failing}}\", model: m1 }}\n  dead: {{ url: \"{}\", model: m2 }}\n  limited: {{ url: \"{{limited}}\", model: m3 }}\n  good: {{ url: \"{{good}}\", model: m4 }}\nroutes:\n  - {{ name: chat, modality: text, leader: failing, fallbacks: [dead, limited, good] }}\n  - {{ name: embeddings, modality: embeddings, leader: failing, fallbacks: [limited] }}\n",
        dead_url()
    );
    let router = router(&with_urls(&routes, &sims), None).await;
    let c = client();
    let r = post_json(&c, &format!("http://{}/v1/chat/completions", router.addr), &chat("hi"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-shadowroute-model"], "good");
    assert_eq!(sim_requests(&c, &sims, "good").await.last().unwrap()["model"], "m4");

    // When every target fails with a status, the last upstream's answer is passed through.
    let r = post_json(&c, &format!("http://{}/v1/embeddings", router.addr), &json!({"input": "x"}), &[]).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string());

    let page = metrics(&c, router.admin_addr).await;
    for (from, to) in [("failing", "dead"), ("dead", "limited"), ("limited", "good")] {
        let series = format!("shadowroute_fallbacks_total{{from=\"{from}\",route=\"chat\",to=\"{to}\"}}");
        assert_eq!(metric(&page, &series), 1.0, "{series}\n{page}");
    }
    router.shutdown().await;
}

#[tokio::test]
async fn a_stream_that_goes_silent_is_cut_at_the_idle_timeout() {
    // 400 ms between tokens against a 150 ms idle timeout.
    let sims = sims("servers:\n  - { name: stall, behavior: { ttft: 1ms, per_token: 400ms, jitter: 0 } }\n").await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }\nmodels:\n  stall: { url: \"{stall}\", model: m, idle_timeout: 150ms }\nroutes:\n  - { name: chat, modality: text, leader: stall }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let c = client();
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let req = http::Request::post(format!("http://{}/v1/chat/completions", router.addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let result = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert!(result.is_err(), "the stream should be cut, not completed");
    assert!(started.elapsed() < Duration::from_secs(2));
    let page = metrics(&c, router.admin_addr).await;
    assert_eq!(
        metric(&page, "shadowroute_upstream_errors_total{kind=\"idle_timeout\",model=\"stall\"}"),
        1.0,
        "{page}"
    );
    router.shutdown().await;
}
