//! End-to-end: every modality reaches its leader over real sockets, rewritten, with the right key.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};

const SIMS: &str = r#"
servers:
  - { name: text-a, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 1ms } }
  - { name: text-b, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 1ms } }
  - { name: vision, behavior: { ttft: 1ms } }
  - { name: audio, behavior: { accuracy: 1.0, ttft: 1ms } }
  - { name: speech, behavior: { ttft: 1ms } }
  - { name: embed, behavior: { ttft: 1ms } }
  - { name: image, behavior: { ttft: 1ms } }
"#;

const ROUTES: &str = r#"
server: { listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0" }
models:
  text-a: { url: "{text-a}", model: upstream-text, api_key_env: SR_TEST_KEY_TEXT }
  text-b: { url: "{text-b}", model: upstream-premium, api_key_env: SR_TEST_KEY_PREMIUM }
  vision: { url: "{vision}", model: upstream-vision, api_key_env: SR_TEST_KEY_VISION }
  audio:  { url: "{audio}", model: upstream-whisper, api_key_env: SR_TEST_KEY_AUDIO }
  speech: { url: "{speech}", model: upstream-tts }
  embed:  { url: "{embed}", model: upstream-embed, api_key_env: SR_TEST_KEY_EMBED }
  image:  { url: "{image}", model: upstream-image }
routes:
  - { name: premium, modality: text, match: { headers: { x-tenant: premium } }, leader: text-b }
  - { name: chat, modality: text, leader: text-a }
  - { name: vision, modality: vision, leader: vision }
  - { name: audio, modality: audio, leader: audio }
  - { name: speech, modality: speech, leader: speech }
  - { name: embeddings, modality: embeddings, leader: embed }
  - { name: images, modality: image, leader: image }
"#;

fn set_keys() {
    for (k, v) in [
        ("SR_TEST_KEY_TEXT", "sk-text-key"),
        ("SR_TEST_KEY_PREMIUM", "sk-premium-key"),
        ("SR_TEST_KEY_VISION", "sk-vision-key"),
        ("SR_TEST_KEY_AUDIO", "sk-audio-key"),
        ("SR_TEST_KEY_EMBED", "sk-embed-key"),
    ] {
        // Every test in this binary sets identical values, so concurrent writes agree.
        std::env::set_var(k, v);
    }
}

#[tokio::test]
async fn every_modality_reaches_its_leader_rewritten_with_its_own_key() {
    set_keys();
    let sims = sims(SIMS).await;
    let router = router(&with_urls(ROUTES, &sims), None).await;
    let c = client();
    let base = format!("http://{}/v1", router.addr);
    let client_key = [
        ("authorization", "Bearer sk-client-secret"),
        ("x-api-key", "client-x"),
        ("cookie", "session=1"),
        ("X-Client-Trace", "t-1"),
    ];

    // text, and text for the premium tenant
    let r = post_json(&c, &format!("{base}/chat/completions"), &chat("What is 2 + 2?"), &client_key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-shadowroute-model"], "text-a");
    assert!(r.headers.contains_key("x-request-id"));
    let mut premium = client_key.to_vec();
    premium.push(("x-tenant", "premium"));
    let r = post_json(&c, &format!("{base}/chat/completions"), &chat("hello"), &premium).await;
    assert_eq!(r.headers["x-shadowroute-model"], "text-b");

    // vision: an image part
    let vision = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let r = post_json(&c, &format!("{base}/chat/completions"), &vision, &client_key).await;
    assert_eq!(r.headers["x-shadowroute-model"], "vision", "{}", r.text());

    // audio: an input_audio part on chat, and a multipart transcription upload
    let audio_chat = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
    let r = post_json(&c, &format!("{base}/chat/completions"), &audio_chat, &client_key).await;
    assert_eq!(r.headers["x-shadowroute-model"], "audio", "{}", r.text());
    let (ct, body) = multipart(&[("model", "whisper-1")], ("file", "hello.wav", b"the quick brown fox"));
    let mut h = client_key.to_vec();
    h.push(("content-type", &ct));
    let r = send(&c, Method::POST, &format!("{base}/audio/transcriptions"), &h, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], "the quick brown fox");

    // speech, embeddings, images
    let r = post_json(
        &c,
        &format!("{base}/audio/speech"),
        &json!({"model": "tts-1", "input": "hi there", "voice": "alloy"}),
        &client_key,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-shadowroute-model"], "speech");
    assert!(!r.body.is_empty());
    let r =
        post_json(&c, &format!("{base}/embeddings"), &json!({"model": "e", "input": ["a", "b"]}), &client_key).await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let r = post_json(
        &c,
        &format!("{base}/images/generations"),
        &json!({"model": "dall-e", "prompt": "a cat"}),
        &client_key,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-shadowroute-model"], "image");

    // What each upstream saw: its own model name, its own key, never the client's credentials.
    let expect = [
        ("text-a", "upstream-text", Some("Bearer sk-text-key")),
        ("text-b", "upstream-premium", Some("Bearer sk-premium-key")),
        ("vision", "upstream-vision", Some("Bearer sk-vision-key")),
        ("audio", "upstream-whisper", Some("Bearer sk-audio-key")),
        ("speech", "upstream-tts", None),
        ("embed", "upstream-embed", Some("Bearer sk-embed-key")),
        ("image", "upstream-image", None),
    ];
    for (sim, model, key) in expect {
        let seen = sim_requests(&c, &sims, sim).await;
        assert!(!seen.is_empty(), "{sim} got no request");
        for req in seen {
            assert_eq!(req["model"], model, "{sim}: {req}");
            let headers = &req["headers"];
            assert_eq!(headers.get("authorization").and_then(|v| v.as_str()), key, "{sim}: {req}");
            for banned in ["x-api-key", "cookie"] {
                assert!(headers.get(banned).is_none(), "{sim} saw {banned}: {req}");
            }
            assert!(!req.to_string().contains("sk-client-secret"), "{sim} saw the client's key");
            assert!(headers.get("x-request-id").is_some());
            // The client's own end-to-end headers cross as they were sent.
            assert_eq!(headers.get("x-client-trace").and_then(|v| v.as_str()), Some("t-1"), "{sim}: {req}");
        }
    }
    router.shutdown().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn models_list_and_request_id_kept() {
    set_keys();
    let sims = sims(SIMS).await;
    let router = router(&with_urls(ROUTES, &sims), None).await;
    let c = client();
    let r = get(&c, &format!("http://{}/v1/models", router.addr)).await;
    let ids: Vec<String> =
        r.json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["audio", "chat", "embeddings", "images", "premium", "speech", "vision"]);
    let r = post_json(
        &c,
        &format!("http://{}/v1/chat/completions", router.addr),
        &chat("hi"),
        &[("x-request-id", "my-trace-42")],
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "my-trace-42");
    let seen = sim_requests(&c, &sims, "text-a").await;
    assert_eq!(seen.last().unwrap()["headers"]["x-request-id"], "my-trace-42");
    assert_eq!(seen.last().unwrap()["query"], Value::Null);
    // A query string (Azure's api-version, say) reaches the upstream as the client sent it.
    let url = format!("http://{}/v1/chat/completions?api-version=2024-06-01&x=a%20b", router.addr);
    assert_eq!(post_json(&c, &url, &chat("hi"), &[]).await.status, 200);
    let seen = sim_requests(&c, &sims, "text-a").await;
    assert_eq!(seen.last().unwrap()["path"], "/v1/chat/completions");
    assert_eq!(seen.last().unwrap()["query"], "api-version=2024-06-01&x=a%20b");
    router.shutdown().await;
}

#[tokio::test]
async fn sse_chunks_reach_the_client_before_the_upstream_finishes() {
    let sims =
        sims("servers:\n  - { name: slow, behavior: { ttft: 10ms, per_token: 60ms, jitter: 0, words: 10 } }\n").await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }\nmodels:\n  slow: { url: \"{slow}\", model: m }\nroutes:\n  - { name: chat, modality: text, leader: slow }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let c = client();
    let mut body = chat("What is 3 + 4?");
    body["stream"] = json!(true);
    let req = http::Request::post(format!("http://{}/v1/chat/completions", router.addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let started = Instant::now();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push(started.elapsed());
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let total = *arrivals.last().unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(arrivals.len() >= 5, "chunks were merged: {} frames", arrivals.len());
    // Tokens come 60 ms apart for 10+ words: the first chunk must be here long before the end.
    assert!(total >= Duration::from_millis(500), "stream too fast to judge: {total:?}");
    assert!(arrivals[0] < total / 3, "first chunk at {:?} of {total:?}: the stream was buffered", arrivals[0]);
    // usage from the last SSE event was metered
    let page = metrics(&c, router.admin_addr).await;
    assert!(
        metric(&page, "shadowroute_tokens_total{direction=\"output\",model=\"slow\",route=\"chat\"}") > 0.0,
        "{page}"
    );
    router.shutdown().await;
}

/// An upstream that answers every request on a connection with `head` and a small JSON body.
async fn canned_upstream(head: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request per read is enough for this test's small requests.
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        log.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
                        buf.clear();
                        let body = r#"{"choices":[{"index":0,"message":{"content":"ok"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
                        let reply = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn client_headers_cross_as_sent_except_credentials_hop_by_hop_and_the_routers_own() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (url, seen) = canned_upstream("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n").await;
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }}\nmodels:\n  up: {{ url: \"{url}\", model: m }}\n  up2: {{ url: \"{url}\", model: m2 }}\nroutes:\n  - {{ name: premium, modality: text, match: {{ headers: {{ x-tenant: premium }} }}, leader: up2 }}\n  - {{ name: chat, modality: text, leader: up }}\n"
    );
    let router = router(&routes, None).await;
    // Written by hand, so the names keep the case a client chose (HTTP clients in tests lower-case them).
    let body = r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
    let head = [
        "POST /v1/chat/completions?api-version=2024-06-01 HTTP/1.1",
        "Host: router",
        "AUTHORIZATION: Bearer sk-client-secret",
        "X-Api-Key: k",
        "Cookie: c=1",
        "Connection: keep-alive, X-Hop-Only",
        "X-Hop-Only: 1",
        "TE: trailers",
        "Proxy-Authorization: Basic eA==",
        "Accept-Encoding: gzip",
        "X-Shadowroute-Modality: text",
        "X-Client-Trace: T-1",
        "X-TENANT: premium",
        "Content-Type: application/json",
    ]
    .join("\r\n");
    let mut s = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    s.write_all(format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    while !resp.ends_with(b"}}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&resp));
        resp.extend_from_slice(&chunk[..n]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&resp));
    let sent = seen.lock().unwrap().last().cloned().unwrap();
    let lower = sent.to_ascii_lowercase();
    assert!(sent.starts_with("POST /v1/chat/completions?api-version=2024-06-01 HTTP/1.1\r\n"), "{sent}");
    // The client's own end-to-end headers cross as they were written.
    assert!(sent.contains("\r\nX-Client-Trace: T-1\r\n") && sent.contains("\r\nContent-Type: application/json\r\n"));
    for banned in [
        "authorization",
        "x-api-key",
        "cookie",
        "connection",
        "x-hop-only",
        "\r\nte:",
        "accept-encoding",
        "x-shadowroute",
        "sk-client-secret",
    ] {
        assert!(!lower.contains(banned), "{banned} reached the upstream: {sent}");
    }
    let host = url.trim_start_matches("http://").trim_end_matches("/v1");
    assert_eq!(lower.matches("\r\nhost:").count(), 1, "{sent}");
    assert!(sent.contains(&format!("\r\nhost: {host}\r\n")), "{sent}");
    assert_eq!(lower.matches("\r\ncontent-length:").count(), 1, "{sent}");
    assert_eq!(lower.matches("\r\nx-request-id:").count(), 1, "{sent}");
    // The route matched on `X-TENANT` whatever its case, and its model's name went upstream.
    assert!(sent.contains(r#""model":"m2""#), "{sent}");

    // A chunked request on the same connection goes upstream with a length, never chunked.
    let chunked = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    s.write_all(chunked.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    while !resp.ends_with(b"}}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&resp));
        resp.extend_from_slice(&chunk[..n]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&resp));
    let sent = seen.lock().unwrap().last().cloned().unwrap().to_ascii_lowercase();
    assert!(!sent.contains("transfer-encoding"), "{sent}");
    assert_eq!(sent.matches("\r\ncontent-length:").count(), 1, "{sent}");
    assert!(sent.contains(r#""model":"m""#), "{sent}");
}

#[tokio::test]
async fn upstream_headers_are_passed_on_as_they_arrived_except_hop_by_hop_and_the_routers_own() {
    let (url, _) = canned_upstream(concat!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nOpenAI-Processing-Ms: 12\r\n",
        "X-Request-Id: upstream-id\r\nConnection: keep-alive, X-Hop\r\nX-Hop: private\r\n",
        "Keep-Alive: timeout=5\r\nDate: Sun, 29 Nov 2026 10:00:00 GMT\r\nX-Multi: a\r\nX-Multi: b\r\n",
    ))
    .await;
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }}\nmodels:\n  up: {{ url: \"{url}\", model: m }}\nroutes:\n  - {{ name: chat, modality: text, leader: up }}\n"
    );
    let router = router(&routes, None).await;
    let c = client();
    let r = post_json(&c, &format!("http://{}/v1/chat/completions", router.addr), &chat("hi"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "ok");
    assert_eq!(r.headers["openai-processing-ms"], "12");
    assert_eq!(r.headers["content-type"], "application/json");
    let multi: Vec<_> = r.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    // One date, the upstream's; one request id, the router's; nothing hop-by-hop.
    let dates: Vec<_> = r.headers.get_all("date").iter().collect();
    assert_eq!(dates, ["Sun, 29 Nov 2026 10:00:00 GMT"]);
    let ids: Vec<_> = r.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], "upstream-id");
    assert_eq!(r.headers["x-shadowroute-model"], "up");
    assert!(!r.headers.contains_key("x-hop") && !r.headers.contains_key("keep-alive"));
    let lengths: Vec<_> = r.headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, [r.body.len().to_string().as_str()]);
}
