//! Smoke: loadgen drives a router over a simulated upstream for a few seconds, open and closed
//! loop, plain and SSE, and reports without errors.

use std::path::Path;
use std::process::Command;

use shadowroute::config::{self, ProcessEnv};
use shadowroute::router::Router;
use shadowroute::sim::{self, SimConfig};

fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_reports_without_errors() {
    let sims = sim::start(
        SimConfig::from_yaml(
            "servers:\n  - { name: up, behavior: { ttft: 2ms, per_token: 1ms, jitter: 0, words: 6 } }\n  - { name: drain, behavior: { ttft: 2ms, per_token: 1ms, jitter: 0, words: 6 } }\n",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let routes = format!(
        "server: {{ listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"/dev/null/x.db\" }}\nmodels:\n  up: {{ url: \"{}\", model: m }}\n  cand: {{ url: \"{}\", model: c }}\nroutes:\n  - {{ name: all, modality: [text, vision, embeddings], leader: up, candidates: [{{ model: cand, sample: 0.1 }}] }}\n",
        sims.base_url("up").unwrap(),
        sims.base_url("up").unwrap()
    );
    let config = config::parse(&routes, "smoke.yaml", Path::new("."), &ProcessEnv).unwrap();
    let router = Router::start(config, None).await.unwrap();
    let url = format!("http://{}", router.addr);
    let mix = concat!(env!("CARGO_MANIFEST_DIR"), "/mix/chat.jsonl");
    let stream = concat!(env!("CARGO_MANIFEST_DIR"), "/mix/stream.jsonl");
    let report_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-report.json");
    let (url2, mix2, rp) = (url.clone(), mix.to_string(), report_path.display().to_string());
    let closed = tokio::task::spawn_blocking(move || {
        loadgen(&[
            "--url",
            &url2,
            "--mode",
            "closed",
            "--concurrency",
            "8",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--mix",
            &mix2,
            "--name",
            "smoke",
            "--json",
            &rp,
        ])
    })
    .await
    .unwrap();
    assert_eq!(closed["errors"], 0, "{closed}");
    assert!(closed["ok"].as_u64().unwrap() > 50, "{closed}");
    assert!(closed["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(written, closed);
    // The stream through the router, paired with the same requests sent straight to the upstream.
    let upstream = sims.base_url("up").unwrap().trim_end_matches("/v1").to_string();
    let open = tokio::task::spawn_blocking(move || {
        loadgen(&[
            "--url",
            &url,
            "--mode",
            "open",
            "--rate",
            "100",
            "--concurrency",
            "64",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--mix",
            stream,
            "--baseline-url",
            &upstream,
        ])
    })
    .await
    .unwrap();
    assert_eq!(open["errors"], 0, "{open}");
    assert!(open["ttft"]["p50_ms"].as_f64().unwrap() >= 2.0, "SSE TTFT includes the upstream's 2 ms: {open}");
    assert!(open["ttft"]["p50_ms"].as_f64() < open["latency"]["p50_ms"].as_f64(), "{open}");
    let baseline = &open["baseline"];
    assert_eq!(baseline["errors"], 0, "{open}");
    assert!(baseline["ttft"]["p50_ms"].as_f64().unwrap() >= 2.0, "{open}");
    let (ok, base_ok) = (open["ok"].as_i64().unwrap(), baseline["ok"].as_i64().unwrap());
    assert!(ok > 100 && (ok - base_ok).abs() <= 5, "both see the same schedule: {open}");
    // Draining, a closed loop lets its last requests finish and counts them: the upstream
    // received exactly the requests the report counts (sent straight to a sim of its own, which
    // nothing else calls).
    let sim = sims.addr("drain").unwrap();
    let received = move || -> u64 {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(sim).unwrap();
        conn.write_all(b"GET /sim/stats HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str::<serde_json::Value>(body).unwrap()["requests"].as_u64().unwrap()
    };
    let (direct, mix3) = (sims.base_url("drain").unwrap().trim_end_matches("/v1").to_string(), mix.to_string());
    let drained = tokio::task::spawn_blocking(move || {
        let before = received();
        let report = loadgen(&[
            "--url",
            &direct,
            "--mode",
            "closed",
            "--concurrency",
            "16",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--drain",
            "--mix",
            &mix3,
        ]);
        (received() - before, report)
    })
    .await
    .unwrap();
    assert_eq!(drained.1["errors"], 0, "{}", drained.1);
    assert_eq!(drained.0, drained.1["ok"].as_u64().unwrap(), "{}", drained.1);
    // A baseline needs a schedule to share.
    let refused = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", "http://127.0.0.1:9", "--mix", stream, "--baseline-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    // Draining is for the closed loop.
    let refused = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", "http://127.0.0.1:9", "--mix", stream, "--mode", "open", "--drain"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    router.shutdown().await;
    sims.shutdown().await;
}
