//! `mbt-publish`: JSON-line events on stdin -> the configured sinks, through the spool.
//!
//! ```sh
//! mbtd | mbt-publish --config publish.toml --labels glass_breaking,dog_barking
//! mbt-publish --config publish.toml < /dev/null     # deliver a spool left behind, then exit
//! ```
//!
//! The config file holds the publishing sections of `mbtd.toml` (`[mqtt]`, `[postcard]`,
//! `[spool]`, ...). Lines that are not events (e.g. `{"window": ...}`) are skipped. At end of
//! input it waits up to `--flush-timeout-s` for the spools to drain.
//!
//! Exit status: 0 everything delivered, 1 an error (bad config: the message names the field),
//! 2 usage, 4 events are still spooled at exit (kept on disk for the next run).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mbt_core::event::Event;
use mbt_publish::backoff::Backoff;
use mbt_publish::config::PublishConfig;
use mbt_publish::mqtt::{MqttContext, MqttSink};
use mbt_publish::postcard_sink::{UdpFrameSink, UnixFrameSink};
use mbt_publish::SinkMetrics;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Parser)]
#[command(
    name = "mbt-publish",
    version,
    about = "Publish JSON-line events from stdin through the spool to MQTT / postcard sinks"
)]
struct Cli {
    /// TOML with the publishing sections ([mqtt], [postcard], [spool], ...)
    #[arg(long, value_name = "TOML")]
    config: PathBuf,
    /// The model's labels, comma-separated (for Home Assistant discovery)
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Wait this long at end of input for the spools to drain
    #[arg(long, default_value_t = 10.0)]
    flush_timeout_s: f64,
    /// Print `spooled <id> <kind>` on stdout once each event is safely in the spool
    #[arg(long)]
    echo: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Msg(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mbt-publish: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(4),
        Err(e) => {
            eprintln!("mbt-publish: error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<bool, Error> {
    let text = std::fs::read_to_string(&cli.config)
        .map_err(|e| Error::Msg(format!("{}: {e}", cli.config.display())))?;
    let cfg = PublishConfig::from_toml(&text)
        .map_err(|e| Error::Msg(format!("{}: {e}", cli.config.display())))?;
    cfg.validate()
        .map_err(|e| Error::Msg(format!("{}: {e}", cli.config.display())))?;

    let mut mqtt = if cfg.mqtt.enabled {
        let ctx = MqttContext {
            labels: cli.labels.clone(),
            evidence_dir: cfg.evidence.enabled.then(|| cfg.evidence.dir()),
            sw_version: env!("CARGO_PKG_VERSION").into(),
            control: None,
        };
        Some(
            MqttSink::start(
                &cfg.mqtt,
                cfg.spool.options_for("mqtt"),
                ctx,
                SinkMetrics::detached(),
            )
            .map_err(|e| Error::Msg(e.to_string()))?,
        )
    } else {
        None
    };
    let mut unix = match &cfg.postcard.unix {
        Some(p) => Some(
            UnixFrameSink::start(
                p.clone(),
                cfg.spool.options_for("postcard-unix"),
                Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
                SinkMetrics::detached(),
            )
            .map_err(|e| Error::Msg(e.to_string()))?,
        ),
        None => None,
    };
    let mut udp = match cfg
        .postcard
        .udp_addr()
        .map_err(|e| Error::Msg(e.to_string()))?
    {
        Some(a) => Some(
            UdpFrameSink::new(a)
                .await
                .map_err(|e| Error::Msg(e.to_string()))?,
        ),
        None => None,
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Msg(format!("installing a SIGTERM handler: {e}")))?;
    let mut timeout = Duration::from_secs_f64(cli.flush_timeout_s.max(0.0));
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = term.recv() => { timeout = Duration::from_millis(500); break }
            _ = tokio::signal::ctrl_c() => { timeout = Duration::from_millis(500); break }
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => return Err(Error::Msg(format!("reading stdin: {e}"))),
        };
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            tracing::debug!("not an event: {line}");
            continue;
        };
        let mut kept = true;
        if let Some(m) = mqtt.as_mut() {
            if let Err(e) = m.deliver(&event).await {
                tracing::warn!("{e}");
                kept = false;
            }
        }
        if let Some(u) = unix.as_mut() {
            if let Err(e) = u.deliver(&event).await {
                tracing::warn!("{e}");
                kept = false;
            }
        }
        if let Some(u) = udp.as_mut() {
            if let Err(e) = u.deliver(&event).await {
                tracing::warn!("{e}");
            }
        }
        if cli.echo && kept {
            let kind = serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = out
                .write_all(format!("spooled {} {kind}\n", event.id).as_bytes())
                .await;
            let _ = out.flush().await;
        }
    }

    let mut all = true;
    if let Some(mut m) = mqtt {
        all &= m.flush(timeout).await.is_ok();
        m.shutdown(Duration::ZERO).await;
    }
    if let Some(mut u) = unix {
        all &= u.flush(timeout).await.is_ok();
        u.shutdown(Duration::ZERO).await;
    }
    Ok(all)
}
