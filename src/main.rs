//! The `shadowroute` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// mimalloc instead of the C library's malloc: the request path allocates small, short-lived
// buffers, where glibc's allocator took about 15 % of a core under load (docs/performance.md).
// On Linux it is linked with its `override` feature as `malloc` itself, so Rust's default
// allocator reaches its plain entry (`mi_malloc`, not the aligned one the crate's `MiMalloc`
// wrapper calls) and SQLite's allocations use it too (tests/cli.rs checks the binary). Elsewhere
// the override is not what Rust's default allocator calls (Windows) or is untested (macOS): the
// wrapper.
#[cfg(target_os = "linux")]
use mimalloc as _;
#[cfg(not(target_os = "linux"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "shadowroute",
    version,
    about = "OpenAI-compatible router with shadow evaluation and automatic leader replacement"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router.
    Serve {
        #[arg(long, default_value = "routes.yaml")]
        config: PathBuf,
    },
    /// Check a config without opening sockets: prints `ok`, or every error as FILE:LINE:COL: message.
    Validate {
        #[arg(default_value = "routes.yaml")]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Simulated models, the router and live traffic on loopback, shown in the terminal.
    Demo {
        /// How long the traffic runs, e.g. 70s.
        #[arg(long, default_value = "70s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Requests per second.
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        /// When the simulated text leader degrades, e.g. 20s.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        degrade_at: std::time::Duration,
    },
    /// A table of routes: leader, candidates, evidence with bounds, decision state and why.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Make MODEL the leader of ROUTE now (needs SHADOWROUTE_ADMIN_TOKEN).
    Promote {
        route: String,
        model: String,
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Return ROUTE to its previous leader (needs SHADOWROUTE_ADMIN_TOKEN).
    Rollback {
        route: String,
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Stop automatic leader changes on ROUTE (needs SHADOWROUTE_ADMIN_TOKEN).
    Pause {
        route: String,
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Allow automatic leader changes on ROUTE again (needs SHADOWROUTE_ADMIN_TOKEN).
    Resume {
        route: String,
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Run simulated OpenAI-compatible model servers on loopback.
    Sim {
        /// A sim YAML file; without it the built-in servers (the models of the example routes.yaml) start.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    shadowroute::config::units::parse_duration(s)
}

fn init_logging() {
    let level = std::env::var("SHADOWROUTE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).init();
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file, format } => validate(&file, format),
        Command::Serve { config } => {
            init_logging();
            run(shadowroute::cli::serve(config))
        }
        Command::Demo { duration, rate, degrade_at } => {
            if std::env::var_os("SHADOWROUTE_LOG").is_some() {
                init_logging();
            }
            run(async move {
                let summary = shadowroute::demo::run(shadowroute::demo::Options { duration, rate, degrade_at }).await?;
                println!("{summary}");
                Ok(())
            })
        }
        Command::Status { admin } => run(async move {
            println!("{}", shadowroute::status::status(&admin).await?);
            Ok(())
        }),
        Command::Promote { route, model, admin } => operate(admin, route, "promote", Some(model)),
        Command::Rollback { route, admin } => operate(admin, route, "rollback", None),
        Command::Pause { route, admin } => operate(admin, route, "pause", None),
        Command::Resume { route, admin } => operate(admin, route, "resume", None),
        Command::Sim { config } => {
            init_logging();
            run(shadowroute::cli::sim(config))
        }
    }
}

#[allow(clippy::print_stdout)]
fn operate(admin: String, route: String, verb: &'static str, model: Option<String>) -> ExitCode {
    run(async move {
        let message = shadowroute::status::operate(&admin, &route, verb, model.as_deref()).await?;
        println!("{message}");
        Ok(())
    })
}

fn run(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    // One worker (a pinned single-core deployment) runs on the current thread: no work
    // stealing, no cross-thread wake-ups. Otherwise one worker per core (TOKIO_WORKER_THREADS).
    let one = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    let mut builder =
        if one { tokio::runtime::Builder::new_current_thread() } else { tokio::runtime::Builder::new_multi_thread() };
    // The config poll reads the file on the blocking pool every `POLL`: a pool thread kept a
    // little past that period serves the next poll, where the default ten seconds started and
    // ended a thread each time (about 2 MiB of RSS for each ten-second life, a sawtooth in the
    // soak). Other idle pool threads (the upstream client's name lookups) stay that long too.
    builder.thread_keep_alive(shadowroute::config::watch::POLL + std::time::Duration::from_secs(10));
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shadowroute: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowroute: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn validate(file: &std::path::Path, format: Format) -> ExitCode {
    let result = shadowroute::config::load(file);
    match (format, &result) {
        (Format::Text, Ok(_)) => println!("ok"),
        (Format::Text, Err(errors)) => eprintln!("{errors}"),
        (Format::Json, Ok(config)) => println!(
            "{}",
            serde_json::json!({"ok": true, "file": file.display().to_string(), "hash": config.hash, "errors": []})
        ),
        (Format::Json, Err(errors)) => println!(
            "{}",
            serde_json::json!({"ok": false, "file": file.display().to_string(), "errors": errors.to_json()})
        ),
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
