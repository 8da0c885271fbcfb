//! End-to-end: routes.yaml reloads (file watch, admin API) are atomic, and a bad file changes nothing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::Method;

const SIMS: &str = "servers:\n  - { name: a, behavior: { ttft: 1ms, per_token: 0ms } }\n  - { name: b, behavior: { ttft: 1ms, per_token: 0ms } }\n";

fn routes(leader: &str, token_file: &str) -> String {
    format!(
        "server:\n  listen: \"127.0.0.1:0\"\n  admin_listen: \"127.0.0.1:0\"\n  admin_token_file: {token_file}\nmodels:\n  a: {{ url: \"{{a}}\", model: model-a }}\n  b: {{ url: \"{{b}}\", model: model-b }}\nroutes:\n  - name: chat\n    modality: text\n    leader: {leader}\n"
    )
}

/// The sims, and a router serving leader `a` whose routes.yaml (admin token read from `token`,
/// holding `secret`) is watched in a scratch directory of its own.
async fn watched(
    name: &str,
    secret: &str,
) -> (shadowroute::sim::RunningSim, std::path::PathBuf, shadowroute::router::Router) {
    let sims = sims(SIMS).await;
    let dir = scratch(name);
    std::fs::write(dir.join("token"), secret).unwrap();
    let file = dir.join("routes.yaml");
    let router = router(&with_urls(&routes("a", "token"), &sims), Some(&file)).await;
    (sims, file, router)
}

async fn served_by(c: &TestClient, addr: std::net::SocketAddr) -> String {
    let r = post_json(c, &format!("http://{addr}/v1/chat/completions"), &chat("hi"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.headers["x-shadowroute-model"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn file_edits_reload_and_bad_files_change_nothing() {
    let (sims, file, router) = watched("reload", "s3cret\n").await;
    let c = client();
    let admin = router.admin_addr;
    assert_eq!(served_by(&c, router.addr).await, "a");
    let first_hash = get(&c, &format!("http://{admin}/admin/config")).await.json()["hash"].clone();

    // A good edit is picked up by the directory watch.
    std::fs::write(&file, with_urls(&routes("b", "token"), &sims)).unwrap();
    eventually("the watcher reloads the new leader", Duration::from_secs(10), || async {
        served_by(&c, router.addr).await == "b"
    })
    .await;
    let config = get(&c, &format!("http://{admin}/admin/config")).await.json();
    assert_ne!(config["hash"], first_hash);
    assert_eq!(config["last_reload"]["ok"], true);

    // A bad edit: unknown key and undefined model. The old config keeps serving.
    let bad = with_urls(&routes("b", "token"), &sims).replace("leader: b", "leader: nobody\n    colour: blue");
    std::fs::write(&file, &bad).unwrap();
    eventually("the failed reload is reported", Duration::from_secs(10), || async {
        get(&c, &format!("http://{admin}/admin/config")).await.json()["last_reload"]["ok"] == false
    })
    .await;
    let config = get(&c, &format!("http://{admin}/admin/config")).await.json();
    let errors = config["last_reload"]["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2, "{config}");
    assert!(errors.iter().all(|e| e["line"].as_u64().unwrap() > 0 && e["column"].as_u64().unwrap() > 0), "{config}");
    let text = config["last_reload"]["error"].as_str().unwrap();
    assert!(text.contains("undefined model `nobody`") && text.contains("unknown key `colour`"), "{text}");
    assert_eq!(served_by(&c, router.addr).await, "b");
    let page = metrics(&c, admin).await;
    assert!(metric(&page, "shadowroute_config_reloads_total{result=\"error\"}") >= 1.0, "{page}");
    assert_eq!(metric(&page, "shadowroute_config_last_reload_success"), 0.0);
    assert_eq!(metric(&page, "shadowroute_leader_info{model=\"b\",route=\"chat\"}"), 1.0, "{page}");

    // The same bad file written again: the watch's reload finds the same errors, which are not
    // logged and counted anew.
    let failed = "shadowroute_config_reloads_total{result=\"error\"}";
    let counted = metric(&page, failed);
    // A negative check: the count is read until well after the watch's 300 ms settling and the
    // reload, and must not move at any reading.
    std::fs::write(&file, &bad).unwrap();
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        assert_eq!(metric(&metrics(&c, admin).await, failed), counted);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The admin API reports a bad file with 422 and its errors, every time.
    let r = send(&c, Method::POST, &format!("http://{admin}/admin/reload"), &[("authorization", "Bearer s3cret")], "")
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["errors"].as_array().is_some_and(|e| e.len() == 2));
    assert_eq!(metric(&metrics(&c, admin).await, failed), counted + 1.0);

    // Fixing the file recovers.
    std::fs::write(&file, with_urls(&routes("a", "token"), &sims)).unwrap();
    let r = send(&c, Method::POST, &format!("http://{admin}/admin/reload"), &[("authorization", "Bearer s3cret")], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&c, router.addr).await, "a");
    assert_eq!(metric(&metrics(&c, admin).await, "shadowroute_config_last_reload_success"), 1.0);
    router.shutdown().await;
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let (sims, file, router) = watched("reload-load", "tok").await;
    let addr = router.addr;
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.is_cancelled() {
                let r = post_json(&c, &format!("http://{addr}/v1/chat/completions"), &chat("hi"), &[]).await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }
    let c = client();
    for i in 0..20 {
        let leader = if i % 2 == 0 { "b" } else { "a" };
        std::fs::write(&file, with_urls(&routes(leader, "token"), &sims)).unwrap();
        let r = send(
            &c,
            Method::POST,
            &format!("http://{}/admin/reload", router.admin_addr),
            &[("authorization", "Bearer tok")],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let before = ok.load(Ordering::Relaxed);
        eventually("traffic flows after a reload", Duration::from_secs(5), || async {
            ok.load(Ordering::Relaxed) > before + 5
        })
        .await;
    }
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(ok.load(Ordering::Relaxed) > 100);
    router.shutdown().await;
}

#[tokio::test]
async fn admin_writes_need_the_token_and_are_refused_without_one() {
    let sims = sims(SIMS).await;
    let dir = scratch("admin-auth");
    std::fs::write(dir.join("token"), "right").unwrap();
    let router = router(&with_urls(&routes("a", "token"), &sims), Some(&dir.join("routes.yaml"))).await;
    let c = client();
    let url = format!("http://{}/admin/reload", router.admin_addr);
    assert_eq!(send(&c, Method::POST, &url, &[], "").await.status, 401);
    assert_eq!(send(&c, Method::POST, &url, &[("authorization", "Bearer wrong")], "").await.status, 401);
    assert_eq!(send(&c, Method::POST, &url, &[("authorization", "Bearer right")], "").await.status, 200);
    router.shutdown().await;

    // No token configured at all: writes are refused, never open.
    let open = with_urls(&routes("a", "token"), &sims).replace("  admin_token_file: token\n", "");
    let router = common::router(&open, Some(&dir.join("routes-open.yaml"))).await;
    let r = send(
        &c,
        Method::POST,
        &format!("http://{}/admin/reload", router.admin_addr),
        &[("authorization", "Bearer ")],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(get(&c, &format!("http://{}/readyz", router.admin_addr)).await.status, 200);
    assert_eq!(get(&c, &format!("http://{}/healthz", router.admin_addr)).await.status, 200);
    router.shutdown().await;
}

#[tokio::test]
async fn a_file_rewritten_without_pause_is_still_reloaded() {
    let (sims, file, router) = watched("reload-busy", "tok").await;
    let c = client();
    assert_eq!(served_by(&c, router.addr).await, "a");

    // A writer rewriting the file every 100 ms for 6 s: the events never pause for the 300 ms
    // the watch waits for, and the reload must still come, after at most 2 s of settling.
    let writing = Arc::new(AtomicUsize::new(1));
    let (text, path, flag) = (with_urls(&routes("b", "token"), &sims), file.clone(), writing.clone());
    let writer = tokio::spawn(async move {
        for _ in 0..60 {
            std::fs::write(&path, &text).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        flag.store(0, Ordering::SeqCst);
    });
    eventually("the reload comes while the writes go on", Duration::from_secs(5), || async {
        served_by(&c, router.addr).await == "b"
    })
    .await;
    assert_eq!(writing.load(Ordering::SeqCst), 1, "the reload waited for the writes to stop");
    writer.await.unwrap();
    router.shutdown().await;
}
