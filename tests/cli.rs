//! End-to-end through the binary: validate, serve with SIGHUP and SIGTERM, the drain, and the allocator it is linked with.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_shadowroute");

#[test]
fn validate_reports_every_error_at_once_with_positions() {
    let dir = scratch("validate");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "server:\n  listen: 127.0.0.1:8080\n  max_body: lots\nmodels:\n  gpt: { url: http://x/v1, model: m, api_key_env: SR_SURELY_UNSET_VAR }\n  gpt2: { url: ftp://x, model: m, timeout: soon }\nroutes:\n  - name: chat\n    modality: text\n    leader: gpt\n    candidates: [{ model: ghost, sample: 1.5 }, { model: gpt2, sample: 1.5 }]\n    colour: red\n  - name: chat\n    modality: smell\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let f = file.display().to_string();
    let expect = [
        (3, "`max_body`"),
        (5, "environment variable `SR_SURELY_UNSET_VAR`"),
        (6, "`url` must be an http"),
        (6, "`timeout`"),
        (11, "undefined model `ghost`"),
        (11, "`sample` must be between 0 and 1"),
        (11, "undefined model `gpt2`"),
        (12, "unknown key `colour`"),
        (13, "duplicate route name `chat`"),
        (13, "missing `leader`"),
        (14, "unknown modality `smell`"),
    ];
    for (line, text) in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{f}:{line}:")) && l.contains(text)),
            "missing error at line {line} containing {text:?}:\n{stderr}"
        );
    }
    // Both candidates have a bad sample.
    assert_eq!(lines.len(), expect.len() + 1, "{stderr}");

    let out = Command::new(BIN).args(["validate", "--format", "json"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"].as_array().unwrap().len(), expect.len() + 1);
    assert!(report["errors"][0]["line"].is_u64() && report["errors"][0]["column"].is_u64());

    let good = dir.join("good.yaml");
    std::fs::write(&good, "models:\n  a: { url: http://127.0.0.1:1/v1, model: m }\nroutes:\n  - { name: chat, modality: text, leader: a }\n").unwrap();
    let out = Command::new(BIN).arg("validate").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn the_shipped_routes_yaml_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml");
    let out = Command::new(BIN).arg("validate").arg(file).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{}", String::from_utf8_lossy(&out.stderr));
}

/// A router process; its addresses are read from its log.
struct Process {
    child: Child,
    addr: String,
    admin: String,
}

#[allow(clippy::zombie_processes)] // the caller waits for the exit it tests
fn spawn_router(config: &std::path::Path) -> Process {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "router did not report its address");
        let line = lines.next().expect("router exited early").unwrap();
        if let Some(rest) = line.strip_prefix("shadowroute: listening on http://") {
            let (addr, admin) = rest.split_once(" (admin http://").unwrap();
            let admin = admin.trim_end_matches(')').to_string();
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return Process { child, addr: addr.to_string(), admin };
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_drains_streams_before_exit() {
    let sims = sims("servers:\n  - { name: a, behavior: { ttft: 1ms, per_token: 40ms, jitter: 0, words: 20 } }\n  - { name: b, behavior: { ttft: 1ms, per_token: 1ms } }\n").await;
    let dir = scratch("serve");
    let file = dir.join("routes.yaml");
    let text = |leader: &str| {
        with_urls(&format!("server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", shutdown_delay: 300ms }}\nmodels:\n  a: {{ url: \"{{a}}\", model: ma }}\n  b: {{ url: \"{{b}}\", model: mb }}\nroutes:\n  - {{ name: chat, modality: text, leader: {leader} }}\n"), &sims)
    };
    std::fs::write(&file, text("b")).unwrap();
    let mut p = spawn_router(&file);
    let c = client();
    let url = format!("http://{}/v1/chat/completions", p.addr);
    let r = post_json(&c, &url, &chat("hi"), &[]).await;
    assert_eq!(r.headers["x-shadowroute-model"], "b");

    // SIGHUP: reload even if the watcher were silent.
    std::fs::write(&file, text("a")).unwrap();
    signal(&p.child, "-HUP");
    eventually("SIGHUP reload", Duration::from_secs(10), || async {
        post_json(&c, &url, &chat("hi"), &[]).await.headers["x-shadowroute-model"] == "a"
    })
    .await;

    // SIGTERM in the middle of a ~1 s stream: readiness fails, the stream still completes.
    let mut body = chat("What is 5 + 6?");
    body["stream"] = json!(true);
    let req = http::Request::post(&url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let mut stream = resp.into_body();
    let first = stream.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    signal(&p.child, "-TERM");
    let admin = p.admin.clone();
    eventually("readiness fails while draining", Duration::from_secs(5), || async {
        get(&client(), &format!("http://{admin}/readyz")).await.status == 503
    })
    .await;
    let rest = stream.collect().await.expect("the stream was cut during the drain").to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "router did not exit after SIGTERM");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.tick().await;
        tick.tick().await;
    };
    assert!(status.success(), "{status:?}");
}

/// On Linux the binary's `malloc` is mimalloc's (its `override` feature, src/main.rs): were the
/// crate dropped from the link, the C library's allocator would take over without a word.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_allocates_with_mimalloc() {
    let out = Command::new("nm").args(["--defined-only", BIN]).output().expect("nm (binutils) runs");
    assert!(out.status.success(), "nm failed: {}", String::from_utf8_lossy(&out.stderr));
    let symbols = String::from_utf8_lossy(&out.stdout);
    let address = |name: &str| {
        symbols.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _kind, sym) = (f.next()?, f.next()?, f.next()?);
            (sym == name).then(|| addr.to_string())
        })
    };
    let malloc = address("malloc").expect("the binary defines malloc");
    assert_eq!(Some(malloc), address("mi_malloc"), "malloc is not mimalloc's");
}
