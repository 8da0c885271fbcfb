//! `shadowroute demo`: simulated models, a router over them and live traffic, shown in the terminal.

mod traffic;
mod view;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{self, ProcessEnv};
use crate::router::Router;
use crate::sim::{self, Phase, SimConfig};

/// The demo's routes: every modality, candidates with different quality.
const ROUTES: &str = r#"
server: { listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", drain_timeout: 5s }
models:
  gpt:          { url: "{gpt}", model: gpt-sim, price: { input_per_mtok: 1.25, output_per_mtok: 10.0 } }
  gemini:       { url: "{gemini}", model: gemini-sim, price: { input_per_mtok: 1.0, output_per_mtok: 8.0 } }
  qwen:         { url: "{qwen}", model: qwen-sim, price: { input_per_mtok: 0.2, output_per_mtok: 0.6 } }
  judge:        { url: "{judge}", model: judge-sim }
  embed-a:      { url: "{embed-a}", model: embed-a-sim }
  embed-b:      { url: "{embed-b}", model: embed-b-sim }
  whisper:      { url: "{whisper}", model: whisper-sim }
  whisper-lite: { url: "{whisper-lite}", model: whisper-lite-sim }
  tts:          { url: "{tts}", model: tts-sim }
  img:          { url: "{img}", model: img-sim }
routes:
  - name: chat
    modality: [text, vision]
    leader: gpt
    fallbacks: [gemini]
    candidates: [{ model: gemini, sample: 0.5 }, { model: qwen, sample: 0.5 }]
    evaluate: { agreement: token_f1, noise_sample: 0.3, judge: { model: judge, sample: 0.5 }, segment_by: [accept-language] }
    policy: { mode: auto, min_samples: 60, margin: 0.02, confidence: 0.95, cooldown: 20s, probation: 20s }
  - name: transcribe
    modality: audio
    leader: whisper
    candidates: [{ model: whisper-lite, sample: 0.5 }]
    evaluate: { agreement: wer }
  - name: embeddings
    modality: embeddings
    leader: embed-a
    candidates: [{ model: embed-b, sample: 0.5 }]
  - { name: speech, modality: speech, leader: tts }
  - { name: images, modality: image, leader: img }
"#;

/// Demo settings from the command line.
pub struct Options {
    pub duration: Duration,
    pub rate: f64,
    /// When the simulated text leader's accuracy drops from 0.9 to 0.35.
    pub degrade_at: Duration,
}

/// Runs the demo, writing the live view to stdout, and returns the final summary.
pub async fn run(opts: Options) -> Result<String, String> {
    let mut sim_cfg = SimConfig::builtin();
    for s in &mut sim_cfg.servers {
        s.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // The text leader degrades a third of the way in; the router has to notice.
        if s.name == "gpt" {
            s.schedule = vec![Phase { at: opts.degrade_at, accuracy: Some(0.35), ..Phase::default() }];
        }
    }
    let sims = sim::start(sim_cfg).await.map_err(|e| format!("cannot start the simulated models: {e}"))?;
    let mut text = ROUTES.to_string();
    for (name, _) in sims.servers() {
        if let Some(url) = sims.base_url(&name) {
            text = text.replace(&format!("{{{name}}}"), &url);
        }
    }
    let config = config::parse(&text, "demo-routes.yaml", Path::new("."), &ProcessEnv).map_err(|e| e.to_string())?;
    let router = Router::start(config, None).await.map_err(|e| e.to_string())?;

    let stats = traffic::Stats::default();
    let stop = CancellationToken::new();
    let load = tokio::spawn(traffic::run(router.addr, opts.rate, 64, stats.clone(), stop.clone()));
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_print = Instant::now() - Duration::from_secs(60);
    while started.elapsed() < opts.duration {
        tick.tick().await;
        let frame = render(&stats, started.elapsed(), opts.duration, &router);
        if tty {
            print_out(&format!("\x1b[2J\x1b[H{frame}"));
        } else if last_print.elapsed() >= Duration::from_secs(10) {
            print_out(&format!("{frame}\n"));
            last_print = Instant::now();
        }
    }
    stop.cancel();
    let _ = load.await;
    let mut summary = format!("== summary ==\n{}", render(&stats, started.elapsed(), opts.duration, &router));
    summary.push_str(&decisions(&router));
    router.shutdown().await;
    sims.shutdown().await;
    Ok(summary)
}

fn render(stats: &traffic::Stats, elapsed: Duration, total: Duration, router: &Router) -> String {
    let routes = crate::admin::routes_view(&router.app);
    match stats.lock() {
        Ok(s) => view::render(elapsed, total, &s, &routes),
        Err(_) => String::from("(stats unavailable)\n"),
    }
}

/// The decisions taken during the run, with their evidence.
fn decisions(router: &Router) -> String {
    let board = router.app.board();
    if board.log.is_empty() {
        return "decisions: none\n".into();
    }
    let mut out = String::from("decisions:\n");
    for d in &board.log {
        out.push_str(&format!("  {} {}: {} -> {}\n    why: {}\n", d.kind, d.route, d.from, d.to, d.reason));
        if let Some(gates) = d.evidence["gates"].as_array() {
            let gates: Vec<&str> = gates.iter().filter_map(|g| g["why"].as_str()).collect();
            out.push_str(&format!("    evidence: {}\n", gates.join("; ")));
        }
    }
    out
}

fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
