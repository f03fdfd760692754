//! `mbtd` command line. Exit codes: 0 clean shutdown (SIGINT/SIGTERM, or a replayed clip
//! ended), 1 an error (bad config, missing or unusable model, a configuration the model cannot
//! take; the message names the field or file), 2 a usage error (clap).
//!
//! Logs go to stderr (`RUST_LOG=debug` for more); events go to the sinks (stdout by default),
//! so `mbtd | jq` sees only events.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "mbtd",
    version,
    about = "mbt-edge daemon: offline sound-plus-vision event detection (camera + microphone -> MBT model -> events)"
)]
struct Cli {
    /// Configuration file (TOML); built-in defaults apply to everything it leaves out
    #[arg(long, short, value_name = "TOML", env = "MBTD_CONFIG")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set model.backend=cpu (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    print_config: bool,
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once (status 130).
async fn signals(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers: SIGINT/SIGTERM will not shut down cleanly");
        return;
    };
    for n in 0.. {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        if n == 0 {
            tracing::info!("{name}: shutting down");
            let _ = tx.send(true);
        } else {
            tracing::warn!("{name} again: exiting without finishing");
            std::process::exit(130);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = mbtd::load_config(cli.config.as_deref(), &cli.overrides)?;
    if cli.print_config {
        // Run-time changes (web page, MQTT) win over the file: show what is in force.
        let path = cfg.events.tuning_path();
        let runtime = mbtd::tuning::load(&path)?;
        let mut shown = cfg.clone();
        shown.events = mbtd::tuning::overlay(&cfg.events, &runtime);
        if !runtime.is_empty() {
            println!(
                "# events.labels include run-time changes from {} (labels: {}); reset them from the web page or MQTT",
                path.display(),
                runtime.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        print!("{}", toml::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !cfg.model.path.exists() {
        anyhow::bail!(
            "model.path: {} does not exist (export one with `mbt export`, or point model.path at a model file)",
            cfg.model.path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("mbtd")
        .build()?;
    let report = rt.block_on(async {
        let (tx, rx) = watch::channel(false);
        // Installed before the model loads, so a SIGTERM during startup is clean too.
        let sig = tokio::spawn(signals(tx));
        let clock = mbtd::clock::Clock::start();
        let pipeline = mbtd::pipeline::build(&cfg, clock)?;
        let report = mbtd::pipeline::run(pipeline, rx).await;
        sig.abort();
        report
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    tracing::info!(
        "done: {}",
        serde_json::to_string(&report).unwrap_or_default()
    );
    if let Some(hint) = report.no_event_hint() {
        tracing::info!("{hint}");
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbtd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
