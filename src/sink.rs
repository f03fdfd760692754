//! Where events go: one [`Sink`] trait; JSON lines on stdout here, MQTT, postcard frames and
//! GPIO (through the durable spool where the other side can be away) in [`crate::publish`].
//!
//! The trait is async (a broker or a socket is I/O) and fallible (delivery can fail: the
//! pipeline counts the failure and goes on; the spool will keep what could not be delivered).
//! It is object-safe, so the pipeline holds a list of boxed sinks, each method returning a
//! boxed future.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use mbt_core::event::Event;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::clock::us_to_secs;
use crate::detector::Scored;

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}`: {reason}")]
pub struct SinkError {
    pub sink: String,
    pub reason: String,
    /// Whether trying again later may succeed (a broker away) or not (an event it refuses).
    pub retryable: bool,
}

/// A window's scores by label, for sinks that show them (`sink.stdout_scores`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowScores {
    pub index: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub modalities: mbt_core::event::Modalities,
    pub fused: Vec<(String, f32)>,
    pub audio: Option<Vec<(String, f32)>>,
    pub video: Option<Vec<(String, f32)>>,
}

impl WindowScores {
    pub fn new(s: &Scored, labels: &[String]) -> Self {
        let named = |p: &[f32]| -> Vec<(String, f32)> {
            labels.iter().cloned().zip(p.iter().copied()).collect()
        };
        WindowScores {
            index: s.index,
            start_s: us_to_secs(s.start_us),
            end_s: us_to_secs(s.end_us),
            modalities: s.modalities,
            fused: named(&s.fused),
            audio: s.audio.as_deref().map(named),
            video: s.video.as_deref().map(named),
        }
    }
}

pub trait Sink: Send {
    fn name(&self) -> String;
    /// Delivers one event (new, update or end).
    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a>;
    /// A window was scored; most sinks ignore it.
    fn scores<'a>(&'a mut self, _scores: &'a WindowScores) -> SinkFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    /// What is wrong with the sink's storage now (a spool on a disk that refuses writes),
    /// for the web page's status; `None` when nothing is, or the sink stores nothing.
    fn storage_error(&self) -> Option<String> {
        None
    }
    /// Pushes out anything buffered (may be called any time).
    fn flush(&mut self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    /// The last call, at shutdown: flush, then let go of connections and tasks (an MQTT sink
    /// waits a bounded time for its backlog, says `offline` and disconnects). An error says
    /// what was left undelivered. By default just [`Sink::flush`].
    fn close(&mut self) -> SinkFuture<'_> {
        self.flush()
    }
}

/// One JSON object per line on stdout, flushed per line (a reader piping `mbtd` sees each
/// event as it happens).
pub struct StdoutSink {
    out: tokio::io::Stdout,
    scores: bool,
}

impl StdoutSink {
    pub fn new(scores: bool) -> Self {
        StdoutSink {
            out: tokio::io::stdout(),
            scores,
        }
    }

    async fn line<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SinkError> {
        let err = |reason: String| SinkError {
            sink: "stdout".into(),
            reason,
            retryable: false,
        };
        let mut text = serde_json::to_string(v).map_err(|e| err(e.to_string()))?;
        text.push('\n');
        self.out
            .write_all(text.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
        self.out.flush().await.map_err(|e| err(e.to_string()))
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        Box::pin(self.line(event))
    }

    fn scores<'a>(&'a mut self, scores: &'a WindowScores) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.scores {
                #[derive(Serialize)]
                struct Line<'b> {
                    window: &'b WindowScores,
                }
                self.line(&Line { window: scores }).await
            } else {
                Ok(())
            }
        })
    }

    fn flush(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            self.out.flush().await.map_err(|e| SinkError {
                sink: "stdout".into(),
                reason: e.to_string(),
                retryable: false,
            })
        })
    }
}

/// Keeps everything in memory: for tests, and for programs that embed the pipeline.
#[derive(Clone, Default)]
pub struct MemorySink {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub windows: Arc<Mutex<Vec<WindowScores>>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn windows(&self) -> Vec<WindowScores> {
        self.windows.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> String {
        "memory".into()
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        if let Ok(mut v) = self.events.lock() {
            v.push(event.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn scores<'a>(&'a mut self, scores: &'a WindowScores) -> SinkFuture<'a> {
        if let Ok(mut v) = self.windows.lock() {
            v.push(scores.clone());
        }
        Box::pin(async { Ok(()) })
    }
}
