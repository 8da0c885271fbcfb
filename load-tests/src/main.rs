//! loadgen: drives an OpenAI-compatible endpoint with a request mix, open or closed loop, and reports HdrHistogram percentiles.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A fixed arrival rate; latency counts from each request's intended start (corrects coordinated omission).
    Open,
    /// `concurrency` workers, each sending its next request when the last one ends.
    Closed,
}

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for OpenAI-compatible endpoints")]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Workers (closed loop) or the bound on requests in flight (open loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured time in seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A JSON-lines request mix: {"weight", "path", "body", "stream"}.
    #[arg(long)]
    mix: PathBuf,
    /// A name for this target in the report.
    #[arg(long, default_value = "target")]
    name: String,
    /// Write the JSON report here (it is also printed).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print a Markdown row instead of JSON.
    #[arg(long)]
    markdown: bool,
    /// Extra request headers, `name: value`, repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Closed loop only: at the end, let the requests in flight finish (for up to 30 s) and count
    /// them, rather than abandon them, so a server's work in the run matches the requests
    /// counted; the measured duration then includes that wait.
    #[arg(long)]
    drain: bool,
    /// Open loop only: also send each request of the schedule to this base URL, half an interval
    /// after the target's, and report its percentiles alongside (`baseline`), so a proxy and the
    /// upstream behind it are measured in the same seconds. `--header` lines go to both.
    #[arg(long)]
    baseline_url: Option<String>,
}

/// One kind of request in the mix.
struct Kind {
    weight: u32,
    path: String,
    body: Bytes,
    stream: bool,
}

fn load_mix(path: &PathBuf) -> Result<Vec<Kind>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut kinds = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        kinds.push(Kind {
            weight: v["weight"].as_u64().unwrap_or(1) as u32,
            path: v["path"].as_str().ok_or(format!("line {}: no path", i + 1))?.to_string(),
            body: Bytes::from(v["body"].to_string()),
            stream: v["stream"].as_bool().unwrap_or(false),
        });
    }
    if kinds.is_empty() {
        return Err("empty mix".into());
    }
    Ok(kinds)
}

/// What was measured.
#[derive(Clone)]
struct Stats {
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// Every answered request, warm-up included: what a proxy's CPU time over the run paid for.
    answered: u64,
    recording: bool,
}

impl Stats {
    fn new() -> Stats {
        let h = || {
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
        };
        Stats { latency: h(), ttft: h(), ok: 0, errors: 0, answered: 0, recording: false }
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// Sends one request; returns (ok, ttft) with ttft measured to the first body chunk.
async fn one(
    client: &Http,
    base: &str,
    headers: &[(String, String)],
    kind: &Kind,
    start: Instant,
) -> (bool, Option<Duration>) {
    let mut req = http::Request::post(format!("{base}{}", kind.path))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-loadgen");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(kind.body.clone()));
    let Ok(req) = req else { return (false, None) };
    let Ok(resp) = client.request(req).await else { return (false, None) };
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    let mut ttft = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if f.is_data() && ttft.is_none() {
                    ttft = Some(start.elapsed());
                }
            }
            Err(_) => return (false, ttft),
        }
    }
    (ok, if kind.stream { ttft } else { None })
}

fn pick(kinds: &[Kind], i: u64) -> &Kind {
    let total: u64 = kinds.iter().map(|k| u64::from(k.weight)).sum();
    let mut x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) % total.max(1);
    for k in kinds {
        if x < u64::from(k.weight) {
            return k;
        }
        x -= u64::from(k.weight);
    }
    &kinds[0]
}

fn record(stats: &Rc<RefCell<Stats>>, ok: bool, latency: Duration, ttft: Option<Duration>) {
    let mut s = stats.borrow_mut();
    s.answered += 1;
    if !s.recording {
        return;
    }
    if ok {
        s.ok += 1;
        let _ = s.latency.record(latency.as_micros().max(1) as u64);
        if let Some(t) = ttft {
            let _ = s.ttft.record(t.as_micros().max(1) as u64);
        }
    } else {
        s.errors += 1;
    }
}

/// What one run measured: the target's requests, and the baseline's when there is one.
struct Measured {
    target: Stats,
    baseline: Option<Stats>,
    duration: Duration,
}

fn take(stats: Rc<RefCell<Stats>>) -> Stats {
    Rc::try_unwrap(stats).map(RefCell::into_inner).unwrap_or_else(|rc| rc.borrow().clone())
}

async fn run(args: &Args, kinds: Rc<Vec<Kind>>) -> Measured {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Http =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.concurrency * 2).build(connector);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let base = Rc::new(args.url.trim_end_matches('/').to_string());
    let baseline = args
        .baseline_url
        .as_ref()
        .map(|url| (Rc::new(url.trim_end_matches('/').to_string()), Rc::new(RefCell::new(Stats::new()))));
    let headers: Rc<Vec<(String, String)>> = Rc::new(
        args.headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    );
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    let begin = Instant::now();
    let end = begin + warmup + measure;
    let local = tokio::task::LocalSet::new();
    let counter = Rc::new(RefCell::new(0u64));
    let mut workers = Vec::new();
    match args.mode {
        Mode::Closed => {
            for _ in 0..args.concurrency {
                let (client, stats, base, kinds, counter) =
                    (client.clone(), stats.clone(), base.clone(), kinds.clone(), counter.clone());
                let headers = headers.clone();
                workers.push(local.spawn_local(async move {
                    while Instant::now() < end {
                        let i = {
                            let mut c = counter.borrow_mut();
                            *c += 1;
                            *c
                        };
                        let kind = pick(&kinds, i);
                        let start = Instant::now();
                        let (ok, ttft) = one(&client, &base, &headers, kind, start).await;
                        record(&stats, ok, start.elapsed(), ttft);
                    }
                }));
            }
        }
        Mode::Open => {
            let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency));
            let (client, stats, base, kinds) = (client.clone(), stats.clone(), base.clone(), kinds.clone());
            let headers = headers.clone();
            let baseline = baseline.clone();
            local.spawn_local(async move {
                // With a baseline, each slot of the schedule sends the target's request, then
                // half an interval later the same kind of request to the baseline.
                let slots = if baseline.is_some() { 2 } else { 1 };
                let mut slot = 0u64;
                loop {
                    // Each request has an intended start on a fixed schedule; waiting for a
                    // permit counts against it, so a stalled server cannot hide its latency.
                    let intended = begin + interval.mul_f64(slot as f64 / slots as f64);
                    if intended >= end {
                        break;
                    }
                    tokio::time::sleep_until(intended.into()).await;
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let kind_index = slot / slots + 1;
                    let (url, stats) = match (&baseline, slot % slots) {
                        (Some((url, stats)), 1) => (url.clone(), stats.clone()),
                        _ => (base.clone(), stats.clone()),
                    };
                    slot += 1;
                    let (client, kinds, headers) = (client.clone(), kinds.clone(), headers.clone());
                    tokio::task::spawn_local(async move {
                        let kind = pick(&kinds, kind_index);
                        let (ok, ttft) = one(&client, &url, &headers, kind, intended).await;
                        record(&stats, ok, intended.elapsed(), ttft);
                        drop(permit);
                    });
                }
            });
        }
    }
    let drain = args.drain;
    let flags: Vec<_> = std::iter::once(stats.clone()).chain(baseline.iter().map(|(_, s)| s.clone())).collect();
    let drained_for = local
        .run_until(async move {
            tokio::time::sleep(warmup).await;
            flags.iter().for_each(|f| f.borrow_mut().recording = true);
            tokio::time::sleep(measure).await;
            let drain_start = Instant::now();
            if drain {
                // A request that never ends is abandoned after this, as without draining.
                let _ = tokio::time::timeout(DRAIN_LIMIT, async {
                    for worker in workers {
                        let _ = worker.await;
                    }
                })
                .await;
            }
            flags.iter().for_each(|f| f.borrow_mut().recording = false);
            drain_start.elapsed()
        })
        .await;
    Measured {
        target: take(stats),
        baseline: baseline.map(|(_, s)| take(s)),
        duration: if drain { measure + drained_for } else { measure },
    }
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({
        "p50_ms": ms(h.value_at_quantile(0.5)), "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)), "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()), "count": h.len(),
    })
}

/// How long `--drain` waits for the requests in flight at the end.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

fn main() {
    let args = Args::parse();
    let kinds = match load_mix(&args.mix) {
        Ok(k) => Rc::new(k),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    if args.baseline_url.is_some() && args.mode == Mode::Closed {
        eprintln!("loadgen: --baseline-url needs --mode open");
        std::process::exit(2);
    }
    if args.drain && args.mode == Mode::Open {
        eprintln!("loadgen: --drain needs --mode closed");
        std::process::exit(2);
    }
    let Measured { target: stats, baseline, duration: measured } = rt.block_on(run(&args, kinds));
    let throughput = stats.ok as f64 / measured.as_secs_f64();
    let baseline = match (&args.baseline_url, &baseline) {
        (Some(url), Some(b)) => json!({
            "url": url, "ok": b.ok, "errors": b.errors,
            "latency": percentiles(&b.latency), "ttft": percentiles(&b.ttft),
        }),
        _ => Value::Null,
    };
    let report = json!({
        "target": args.name,
        "mode": if args.mode == Mode::Open { "open" } else { "closed" },
        "offered_rate": if args.mode == Mode::Open { json!(args.rate) } else { Value::Null },
        "concurrency": args.concurrency,
        "duration_s": measured.as_secs_f64(),
        "ok": stats.ok,
        "errors": stats.errors,
        "answered_with_warmup": stats.answered,
        "throughput_rps": (throughput * 10.0).round() / 10.0,
        "latency": percentiles(&stats.latency),
        "ttft": percentiles(&stats.ttft),
        "baseline": baseline,
    });
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, format!("{report}\n")) {
            eprintln!("loadgen: {}: {e}", path.display());
        }
    }
    if args.markdown {
        let l = &report["latency"];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            args.name,
            report["throughput_rps"],
            stats.errors,
            l["p50_ms"],
            l["p90_ms"],
            l["p99_ms"],
            l["p999_ms"],
            l["max_ms"]
        );
    } else {
        println!("{report}");
    }
    if stats.ok == 0 {
        std::process::exit(1);
    }
}
