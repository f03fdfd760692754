//! The routes: pages (embedded), the JSON API, the live stream, evidence files, metrics.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Semaphore};

use super::auth;
use super::live::Live;
use super::views::{EventView, Point};

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
    /// Run-time tuning (`None`: the change routes answer 404).
    pub controls: Option<Arc<dyn crate::shared::Tuning>>,
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
        .route("/api/labels", get(labels))
        .route("/api/labels/{label}", post(set_label))
        .route("/api/events/{id}/verdict", post(verdict))
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

/// Whether `path` is one of the routes that change something (POST).
fn is_change(path: &str) -> bool {
    path.starts_with("/api/labels/")
        || (path.starts_with("/api/events/") && path.ends_with("/verdict"))
}

/// GET and HEAD everywhere; POST only on the change routes, only with a JSON body and, when
/// the browser names the page's origin, only from this host (no cross-site requests). A
/// bounded URL.
async fn limits(req: Request, next: Next) -> Response {
    let m = req.method();
    let change = m == axum::http::Method::POST && is_change(req.uri().path());
    if m != axum::http::Method::GET && m != axum::http::Method::HEAD && !change {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET here (changes: POST /api/labels/<label>, POST /api/events/<id>/verdict)\n",
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
    if change {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "changes take a JSON body: send Content-Type: application/json\n",
            );
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let o = origin.to_str().unwrap_or("");
            let same = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest == host);
            if !same {
                return text(
                    StatusCode::FORBIDDEN,
                    format!("cross-site change refused: Origin {o} is not this page ({host})\n"),
                );
            }
        }
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

#[derive(Debug, Serialize)]
struct LabelsView<'a> {
    model_version: &'a str,
    /// Where run-time changes are kept.
    tuning_file: String,
    labels: &'a [crate::shared::LabelState],
}

async fn labels(State(st): State<AppState>) -> Response {
    let Some(c) = &st.controls else {
        return text(StatusCode::NOT_FOUND, "no run-time tuning here\n");
    };
    let eff = c.current();
    Json(LabelsView {
        model_version: &eff.model_version,
        tuning_file: c.path().display().to_string(),
        labels: &eff.states,
    })
    .into_response()
}

/// `POST /api/labels/<label>` body: `{"threshold": 0.6}`, `{"enabled": false}` (both may be
/// given) or `{"reset": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    pub threshold: Option<f32>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub reset: bool,
}

const LABEL_CHANGE_HELP: &str =
    "expected a JSON body {\"threshold\": 0.6}, {\"enabled\": false} or {\"reset\": true}";

async fn set_label(
    State(st): State<AppState>,
    Path(label): Path<String>,
    body: Result<Json<LabelChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(c) = st.controls.clone() else {
        return text(StatusCode::NOT_FOUND, "no run-time tuning here\n");
    };
    let b = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            c.rejected();
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "/api/labels/{label}: {}; {LABEL_CHANGE_HELP}\n",
                    e.body_text()
                ),
            );
        }
    };
    let mut changes = Vec::new();
    if b.reset {
        changes.push(crate::shared::Change::Reset);
    }
    if let Some(t) = b.threshold {
        changes.push(crate::shared::Change::Threshold(t));
    }
    if let Some(e) = b.enabled {
        changes.push(crate::shared::Change::Enabled(e));
    }
    if changes.is_empty() || (b.reset && changes.len() > 1) {
        c.rejected();
        return text(
            StatusCode::BAD_REQUEST,
            format!("/api/labels/{label}: nothing to change; {LABEL_CHANGE_HELP}\n"),
        );
    }
    // The file is written before the change takes effect: off the runtime's threads.
    let result = tokio::task::spawn_blocking(move || {
        let mut last = None;
        for ch in changes {
            last = Some(c.set(&label, ch, "web")?);
        }
        Ok::<_, crate::shared::TuneError>(last)
    })
    .await;
    match result {
        Ok(Ok(Some(state))) => Json(state).into_response(),
        Ok(Ok(None)) => text(StatusCode::BAD_REQUEST, "nothing to change\n"),
        Ok(Err(e @ crate::shared::TuneError::UnknownLabel { .. })) => {
            text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        Ok(Err(e)) if e.is_request_error() => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change task failed: {e}\n"),
        ),
    }
}

/// `POST /api/events/<id>/verdict` body: `{"verdict": "right"}`, `{"verdict": "wrong"}`,
/// `{"verdict": "label", "label": "cat_meowing"}` or `{"verdict": "clear"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictBody {
    pub verdict: String,
    pub label: Option<String>,
}

#[derive(Debug, Serialize)]
struct Marked {
    id: String,
    /// The label written to `labels.csv` (`None`: the mark was cleared).
    label: Option<String>,
    file: String,
}

/// Serialises writes of `labels.csv` (read-modify-write).
static MARKS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

async fn verdict(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<VerdictBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let help = "expected {\"verdict\": \"right\" | \"wrong\" | \"clear\"} or {\"verdict\": \"label\", \"label\": \"<label>\"}";
    let Some(store) = st.evidence.clone() else {
        return text(
            StatusCode::CONFLICT,
            "evidence is off ([evidence] enabled = false): marks are kept beside the evidence (labels.csv), which `mbt data import` reads\n",
        );
    };
    if !mbt_publish::evidence::safe_id(&id) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an event id\n"),
        );
    }
    let known = st.live.event(&id);
    let has_media = store.media_path(&format!("{id}.wav")).is_some()
        || store.media_path(&format!("{id}.jpg")).is_some();
    if !has_media {
        return text(
            StatusCode::NOT_FOUND,
            format!("no evidence for event {id} (deleted to stay within evidence.max_bytes, or no such event): nothing to learn from\n"),
        );
    }
    let b = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("verdict: {}; {help}\n", e.body_text()),
            )
        }
    };
    let label = match (b.verdict.as_str(), b.label) {
        ("right", None) => match known {
            Some(e) => Some(e.label),
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("event {id} is not in the page's list: say which label it is with {{\"verdict\": \"label\", \"label\": ...}}\n"),
                )
            }
        },
        ("wrong", None) => Some(crate::events::NO_EVENT_LABEL.to_string()),
        ("clear", None) => None,
        ("label", Some(l)) if crate::marks::valid_label(&l) => Some(l),
        ("label", Some(l)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("label `{l}`: expected 1-64 characters of a-z, 0-9 and _ (labels become MQTT topics and Home Assistant entity ids)\n"),
            )
        }
        _ => return text(StatusCode::BAD_REQUEST, format!("verdict: {help}\n")),
    };
    let file = crate::marks::path(store.dir());
    let (f, i, l) = (file.clone(), id.clone(), label.clone());
    let written = tokio::task::spawn_blocking(move || {
        let _g = MARKS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        crate::marks::write(&f, &i, l.as_deref())
    })
    .await;
    match written {
        Ok(Ok(())) => {
            st.live.mark(&id, label.as_deref());
            store.set_marked(&id, label.is_some());
            Json(Marked {
                id,
                label,
                file: file.display().to_string(),
            })
            .into_response()
        }
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}\n", file.display()),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the write task failed: {e}\n"),
        ),
    }
}
