//! Conformance: the official openai Python SDK, installed into its own venv under target/, drives the router.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Pinned: a known release of the official SDK.
const OPENAI_SDK: &str = "openai==2.8.1";

/// A venv with the SDK, made once and reused by later runs.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-sdk-venv");
    let python = dir.join("bin/python");
    let ready = dir.join(format!(".installed-{OPENAI_SDK}"));
    if ready.exists() {
        return python;
    }
    let status =
        Command::new("python3").args(["-m", "venv"]).arg(&dir).status().expect("python3 is needed for this test");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", OPENAI_SDK])
        .status()
        .unwrap();
    assert!(status.success(), "pip install {OPENAI_SDK} failed");
    std::fs::write(&ready, "").unwrap();
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_through_the_router() {
    let python = tokio::task::spawn_blocking(venv).await.unwrap();
    let sims = sims(
        "servers:\n  - { name: chat, behavior: { accuracy: 1.0, ttft: 1ms, per_token: 1ms } }\n  - { name: embed }\n  - { name: whisper, behavior: { accuracy: 1.0 } }\n  - { name: tts }\n  - { name: img }\n",
    )
    .await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\" }\nmodels:\n  chat: { url: \"{chat}\", model: m-chat }\n  embed: { url: \"{embed}\", model: m-embed }\n  whisper: { url: \"{whisper}\", model: m-whisper }\n  tts: { url: \"{tts}\", model: m-tts }\n  img: { url: \"{img}\", model: m-img }\nroutes:\n  - { name: chat, modality: [text, vision], leader: chat }\n  - { name: embeddings, modality: embeddings, leader: embed }\n  - { name: audio, modality: audio, leader: whisper }\n  - { name: speech, modality: speech, leader: tts }\n  - { name: images, modality: image, leader: img }\n";
    let router = router(&with_urls(routes, &sims), None).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/conformance.py");
    let base = format!("http://{}/v1", router.addr);
    let out =
        tokio::process::Command::new(&python).arg(script).env("SHADOWROUTE_BASE_URL", &base).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SDK conformance failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");

    // The SDK's key never reached an upstream.
    let c = client();
    for sim in ["chat", "embed", "whisper", "tts", "img"] {
        for req in sim_requests(&c, &sims, sim).await {
            assert!(!req.to_string().contains("sk-client-key-must-not-leak"), "{sim} saw the client key: {req}");
        }
    }
    router.shutdown().await;
}
