//! The page on the board (`[web]`): what the camera sees now, what the model scores now, what
//! it detected with the picture and the sound, the last minutes of every label's score; and the
//! JSON behind it for scripts and Home Assistant's REST sensors.
//!
//! Why in the daemon: installers set thresholds, check a camera's framing and place
//! microphones by looking (Frigate and BirdNET-Go users expect that page); doing it from
//! `mbt timeline` on a recording is too slow a loop. Why axum: a real HTTP/1 stack from the
//! tokio world the daemon already runs on; the pages are plain HTML, CSS and a little
//! JavaScript embedded in the binary (boards are offline: no CDN).
//!
//! Routes ([`routes`]): `/` live, `/events`, `/timeline` (pages); `/api/status`,
//! `/api/scores` (Server-Sent Events, one message per window), `/api/latest.jpg`,
//! `/api/events?since=&before=&limit=`, `/api/timeline?minutes=`, `/evidence/<id>.jpg|wav`,
//! `/metrics` (Prometheus, with `[metrics]` on) and `/healthz`.
//!
//! Changes (`POST`, JSON bodies): `/api/labels/<label>` sets a label's threshold, switches
//! it on or off, or resets it (run-time tuning, [`crate::tuning`]: a state file, never the
//! TOML); `/api/events/<id>/verdict` marks an event right, wrong or as another label, written
//! to `labels.csv` in the evidence directory, the file `mbt data import` reads. `GET
//! /api/labels` lists the tuning in force.
//!
//! Security: loopback by default. Any other address needs a token ([`auth`]), checked on
//! every route but `/healthz`, changes included. Changes need `Content-Type:
//! application/json` (which a cross-site HTML form cannot send without a CORS preflight this
//! server never grants) and, when the browser sends an `Origin`, one naming this host.
//! Nothing here touches the configuration file. Bounded: live subscribers
//! (`web.max_clients`), request bodies (1 KiB), URL length; a slow client only skips
//! messages, it never slows the pipeline ([`live`]).

pub mod auth;
pub mod live;
pub mod routes;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
pub use live::{Limits, Live};
pub use views::{Info, SourceInfo};

/// A bound web server, not yet serving.
pub struct Web {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
    pub live: Arc<Live>,
    token: Option<String>,
    max_clients: usize,
    /// `web.linger_s`: how long the page stays up after the sources ended.
    pub linger: std::time::Duration,
}

impl Web {
    /// Binds `web.listen` now (a port in use stops the daemon at start, naming the field) and
    /// resolves the token (`"generate"`: made once and kept in the state directory).
    pub fn bind(cfg: &Config, live: Arc<Live>) -> anyhow::Result<Self> {
        let addr = cfg.web.addr()?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("invalid setting `web.listen`: cannot listen on {addr}"))?;
        listener
            .set_nonblocking(true)
            .context("web.listen: setting the socket non-blocking")?;
        let addr = listener.local_addr().unwrap_or(addr);
        let token = match cfg.web.token.as_deref() {
            Some("generate") => Some(auth::generated_token(
                &mbt_publish::config::state_dir().join("web-token"),
            )?),
            other => other.map(str::to_string),
        };
        let shown = if addr.ip().is_unspecified() {
            format!("http://<this board>:{}/", addr.port())
        } else {
            format!("http://{addr}/")
        };
        tracing::info!(
            "web: {shown}{}",
            if token.is_some() {
                " (token required: ?token=... once, or Authorization: Bearer)"
            } else {
                ""
            }
        );
        Ok(Web {
            listener,
            addr,
            live,
            token,
            max_clients: cfg.web.max_clients,
            linger: std::time::Duration::from_secs_f64(cfg.web.linger_s),
        })
    }

    /// Serves until `stop` turns true. Live streams end then too.
    pub fn serve(
        self,
        evidence: Option<Arc<mbt_publish::evidence::EvidenceStore>>,
        metrics: Option<mbt_publish::metrics::Registry>,
        controls: Arc<dyn crate::shared::Tuning>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .context("web.listen: handing the socket to the runtime")?;
        let app = routes::router(routes::AppState {
            live: self.live,
            token: self.token,
            evidence,
            metrics,
            controls: Some(controls),
            clients: Arc::new(tokio::sync::Semaphore::new(self.max_clients)),
            stop: stop.clone(),
        });
        Ok(tokio::spawn(serve_until(listener, app, stop)))
    }
}

/// Runs `app` on `listener` until `stop` turns true (connections still open then are left to
/// the runtime's shutdown; live streams end on `stop` themselves).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => if let Err(e) = r {
            tracing::warn!("web: server stopped: {e}");
        },
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// The Prometheus endpoint alone on its own address (`[metrics] listen`): for scrape configs
/// that predate the web page. Same handler as the page's `/metrics`.
pub fn serve_metrics(
    listener: std::net::TcpListener,
    registry: mbt_publish::metrics::Registry,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("metrics.listen: handing the socket to the runtime")?;
    Ok(tokio::spawn(serve_until(
        listener,
        routes::metrics_router(registry),
        stop,
    )))
}
