//! The routes: pages (embedded), the JSON API, the live stream, evidence files, metrics.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Semaphore};

use super::auth;
use super::live::{EventView, Live, Point};

/// Longest URL accepted (path + query); longer ones get 414.
pub const MAX_URI: usize = 2048;
/// Most events one `/api/events` answer holds.
pub const MAX_PAGE: usize = 500;

#[derive(Clone)]
pub struct AppState {
    pub live: Arc<Live>,
    pub token: Option<String>,
    pub evidence: Option<Arc<mbt_publish::evidence::EvidenceStore>>,
    pub metrics: Option<mbt_publish::metrics::Registry>,
    /// Permits for live streams (`web.max_clients`).
    pub clients: Arc<Semaphore>,
    pub stop: watch::Receiver<bool>,
}

const INDEX: &str = include_str!("assets/index.html");
const EVENTS: &str = include_str!("assets/events.html");
const TIMELINE: &str = include_str!("assets/timeline.html");
const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/", get(|| page(INDEX)))
        .route("/events", get(|| page(EVENTS)))
        .route("/timeline", get(|| page(TIMELINE)))
        .route(
            "/assets/app.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/app.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
        .route("/api/status", get(status))
        .route("/api/scores", get(scores))
        .route("/api/latest.jpg", get(latest_jpeg))
        .route("/api/events", get(events))
        .route("/api/timeline", get(timeline))
        .route("/evidence/{name}", get(evidence))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(guarded)
        .layer(middleware::from_fn(limits))
        .layer(DefaultBodyLimit::max(1024))
        .with_state(state)
}

/// `/metrics` alone (`[metrics] listen`).
pub fn metrics_router(registry: mbt_publish::metrics::Registry) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let r = registry.clone();
                async move { prometheus_text(r.render()) }
            }),
        )
        .route("/", get(|| async { "mbtd: metrics at /metrics\n" }))
        .fallback(not_found)
        .layer(middleware::from_fn(limits))
        .layer(DefaultBodyLimit::max(1024))
}

fn prometheus_text(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, mbt_publish::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("not found: {}\n", req.uri().path()),
    )
}

/// Only GET and HEAD, no body, a bounded URL: nothing here needs more.
async fn limits(req: Request, next: Next) -> Response {
    let m = req.method();
    if m != axum::http::Method::GET && m != axum::http::Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET: this page changes nothing\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let len = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if len > MAX_URI {
        return text(StatusCode::URI_TOO_LONG, "URL too long\n");
    }
    next.run(req).await
}

/// The token check (when a token is configured).
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(want) = st.token.as_deref() else {
        return next.run(req).await;
    };
    let query = req.uri().query();
    let given = auth::presented(req.headers(), query);
    let ok = given.is_some_and(|g| auth::same(g, want));
    if !ok {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "this page needs its token: open it once with ?token=<web.token> (the browser keeps it), \
             or send `Authorization: Bearer <web.token>`\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mbtd\""),
        );
        return r;
    }
    let from_query = query
        .and_then(auth::query_token)
        .is_some_and(|q| auth::same(q, want));
    let mut resp = next.run(req).await;
    if from_query {
        let cookie = format!("{}={want}; Path=/; HttpOnly; SameSite=Strict", auth::COOKIE);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

async fn asset(body: &'static str, ctype: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn status(State(st): State<AppState>) -> Response {
    Json(st.live.status()).into_response()
}

/// One Server-Sent Event per scored window (JSON: the window's scores per head, thresholds,
/// level, the newest log-mel columns, source states, throughput, near misses, events).
async fn scores(State(st): State<AppState>) -> Response {
    let Ok(permit) = st.clients.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live clients (web.max_clients); close another page\n",
        );
    };
    let rx = st.live.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, st.stop.clone(), permit),
        |(mut rx, mut stop, permit)| async move {
            let ev = tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                m = rx.recv() => match m {
                    Ok(json) => SseEvent::default().event("window").data(json.as_ref()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        SseEvent::default().comment(format!("skipped {n} window(s): this client reads too slowly"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((Ok::<_, Infallible>(ev), (rx, stop, permit)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn latest_jpeg(State(st): State<AppState>) -> Response {
    let live = st.live.clone();
    match tokio::task::spawn_blocking(move || live.latest_jpeg()).await {
        Ok(Some(jpeg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg.as_ref().clone(),
        )
            .into_response(),
        _ => text(StatusCode::NOT_FOUND, "no camera frame yet\n"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events that started after this time (ms since the Unix epoch).
    pub since: Option<u64>,
    /// Only events that started before this time (the next page of older ones).
    pub before: Option<u64>,
    pub limit: Option<usize>,
    /// The token, when given in the URL (checked by the guard).
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
struct EventsPage {
    events: Vec<EventView>,
    /// `before` for the next (older) page, when there may be one.
    older: Option<u64>,
}

async fn events(
    State(st): State<AppState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "/api/events: {e}; expected since=<ms>, before=<ms>, limit=1..={MAX_PAGE}\n"
                ),
            )
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("/api/events: limit {limit} is outside 1..={MAX_PAGE}\n"),
        );
    }
    let events = st.live.events(q.since, q.before, limit);
    let older = (events.len() == limit)
        .then(|| events.last().map(|e| e.start_ms))
        .flatten();
    Json(EventsPage { events, older }).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    pub minutes: Option<f64>,
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
struct TimelineView<'a> {
    labels: &'a [String],
    thresholds: &'a [f32],
    fires: &'a [bool],
    points: Vec<Point>,
    events: Vec<EventView>,
}

async fn timeline(
    State(st): State<AppState>,
    q: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let minutes = match q {
        Ok(Query(q)) => q.minutes,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("/api/timeline: {e}; expected minutes=<number>\n"),
            )
        }
    };
    if minutes.is_some_and(|m| !(m > 0.0 && m.is_finite())) {
        return text(
            StatusCode::BAD_REQUEST,
            "/api/timeline: minutes must be a positive number\n",
        );
    }
    let (points, events) = st.live.timeline(minutes);
    let info = st.live.info();
    Json(TimelineView {
        labels: &info.labels,
        thresholds: &info.thresholds,
        fires: &info.fires,
        points,
        events,
    })
    .into_response()
}

async fn evidence(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(store) = st.evidence.as_ref() else {
        return text(
            StatusCode::NOT_FOUND,
            "evidence is off ([evidence] enabled = false)\n",
        );
    };
    let Some(path) = store.media_path(&name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no evidence file {name} (deleted to stay within evidence.max_bytes?)\n"),
        );
    };
    let ctype = if name.ends_with(".jpg") {
        "image/jpeg"
    } else {
        "audio/wav"
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, ctype)], bytes).into_response(),
        Err(_) => text(StatusCode::NOT_FOUND, format!("no evidence file {name}\n")),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(r) => prometheus_text(r.render()),
        None => text(
            StatusCode::NOT_FOUND,
            "metrics are off ([metrics] enabled = false)\n",
        ),
    }
}
