//! What the web page shows, kept current by the pipeline.
//!
//! The events task calls [`Live::window`] once per scored window and [`Live::events`] with the
//! events it delivers; the windower reports source states ([`Live::source`]). Everything is
//! bounded (the timeline by minutes, near misses and events by count) and nothing here can
//! block the pipeline: the live stream is a `broadcast` channel, whose `send` never waits for
//! a receiver (a subscriber that falls behind skips messages, [`crate::web::routes`]), and the
//! state lock is held only to copy a few vectors.
//!
//! The values it hands out (what the page and the JSON API serialise) are [`super::views`].
//!
//! The log-mel strip is the tokenizer's own output ([`AudioTokenizer::spectrogram`] with the
//! model's audio settings, the code the detector runs), computed only while someone watches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mbt_core::audio::AudioTokenizer;
use mbt_core::event::{Event, EventKind};
use mbt_media::RgbFrame;
use tokio::sync::broadcast;

use super::views::{
    dbfs, encode_jpeg, mode, quantize, tail, throughput, upsert, EventView, Info, NearMiss, Point,
    SourceInfo, Status, Throughput, Tick,
};
use crate::detector::WindowMedia;
use crate::sink::WindowScores;
use crate::stats::Report;

/// Bounds of the state.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeline_windows: usize,
    pub near_misses: usize,
    pub events: usize,
    /// `web.watch_ratio`: near-miss level as a fraction of the threshold.
    pub watch_ratio: f32,
}

struct Inner {
    /// Event id -> the user's mark (`labels.csv`).
    marks: std::collections::BTreeMap<String, String>,
    frame: Option<(u64, Arc<RgbFrame>)>,
    jpeg: Option<(u64, Arc<Vec<u8>>)>,
    points: VecDeque<Point>,
    near: VecDeque<NearMiss>,
    events: VecDeque<EventView>,
    audio_state: &'static str,
    video_state: &'static str,
    throughput: Throughput,
    level_dbfs: Option<f32>,
    /// (wall time, windows so far) samples for the rate.
    rate: VecDeque<(Instant, u64)>,
    /// The mel strip's top value, decaying towards the recent maximum.
    mel_top: Option<f32>,
    /// Writes failing now (from the report of the latest window).
    storage_errors: Vec<String>,
}

/// The shared live state (one per daemon; `Arc` it).
pub struct Live {
    info: Mutex<Arc<Info>>,
    limits: Limits,
    tokenizer: Option<AudioTokenizer>,
    silence: f32,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<str>>,
    started: Instant,
}

/// Messages a subscriber may fall behind by before it skips (about a minute at a 1 s hop).
const CHANNEL: usize = 64;

impl Live {
    pub fn new(info: Info, limits: Limits, tokenizer: Option<AudioTokenizer>) -> Self {
        let silence = tokenizer
            .as_ref()
            .map(|t| t.config().silence())
            .unwrap_or(0.0);
        let state = |s: &SourceInfo| {
            if s.kind == "none" {
                "absent"
            } else {
                "waiting"
            }
        };
        let inner = Inner {
            marks: Default::default(),
            frame: None,
            jpeg: None,
            points: VecDeque::new(),
            near: VecDeque::new(),
            events: VecDeque::new(),
            audio_state: state(&info.audio),
            video_state: state(&info.video),
            throughput: Throughput::default(),
            level_dbfs: None,
            rate: VecDeque::new(),
            mel_top: None,
            storage_errors: Vec::new(),
        };
        Live {
            info: Mutex::new(Arc::new(info)),
            limits,
            tokenizer,
            silence,
            inner: Mutex::new(inner),
            tx: broadcast::channel(CHANNEL).0,
            started: Instant::now(),
        }
    }

    pub fn info(&self) -> Arc<Info> {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_info(&self, f: impl FnOnce(&mut Info)) {
        let mut g = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let mut info = (**g).clone();
        f(&mut info);
        *g = Arc::new(info);
    }

    /// New thresholds or switches (run-time tuning).
    pub fn tuning(&self, eff: &crate::shared::Effective) {
        let ratio = self.limits.watch_ratio;
        self.set_info(|i| {
            if i.labels != eff.labels {
                return;
            }
            i.thresholds = eff.thresholds();
            i.watch = i.thresholds.iter().map(|t| t * ratio).collect();
            i.fires = eff.fires();
        });
    }

    /// Another model runs now: its labels, version and thresholds. The timeline and near
    /// misses start over (their score columns were the old model's labels); events stay.
    pub fn model(&self, eff: &crate::shared::Effective, backend: &str) {
        let ratio = self.limits.watch_ratio;
        self.set_info(|i| {
            i.labels = eff.labels.clone();
            i.model_version = eff.model_version.clone();
            i.backend = backend.to_string();
            i.thresholds = eff.thresholds();
            i.watch = i.thresholds.iter().map(|t| t * ratio).collect();
            i.fires = eff.fires();
        });
        let mut g = self.lock();
        g.points.clear();
        g.near.clear();
    }

    /// A receiver of the per-window messages (JSON).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Live subscribers now.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A source's state as the windower sees it.
    pub fn source(&self, audio: bool, state: crate::window::StreamState) {
        use crate::window::StreamState as S;
        let s = match state {
            S::Absent => "absent",
            S::Waiting => "waiting",
            S::Up => "live",
            S::Down => "reconnecting",
            S::Ended => "ended",
        };
        let mut g = self.lock();
        if audio {
            g.audio_state = s;
        } else {
            g.video_state = s;
        }
    }

    /// Seeds the event list (oldest first), e.g. from the evidence store's records at start.
    pub fn seed_events(&self, events: impl IntoIterator<Item = Event>) {
        let views: Vec<EventView> = events.into_iter().map(|e| self.view(&e)).collect();
        let mut g = self.lock();
        for v in views {
            upsert(&mut g.events, v, self.limits.events);
        }
    }

    /// Events a previous run left open (it was killed before their `end`): shown as
    /// `interrupted`, not as still happening.
    pub fn close_stale(&self) {
        let mut g = self.lock();
        for e in g.events.iter_mut().filter(|e| e.state == "open") {
            e.state = "interrupted";
        }
    }

    fn view(&self, e: &Event) -> EventView {
        let info = self.info();
        let threshold = info
            .labels
            .iter()
            .position(|l| *l == e.label)
            .and_then(|k| info.thresholds.get(k).copied())
            .unwrap_or(f32::INFINITY);
        let mut fired = Vec::new();
        if e.score_audio.is_some_and(|s| s >= threshold) {
            fired.push("audio");
        }
        if e.score_video.is_some_and(|s| s >= threshold) {
            fired.push("video");
        }
        let url =
            |p: &Option<String>, ext: &str| p.as_ref().map(|_| format!("/evidence/{}.{ext}", e.id));
        let ev = e.evidence.as_ref();
        EventView {
            id: e.id.clone(),
            label: e.label.clone(),
            state: if e.kind == EventKind::End {
                "ended"
            } else {
                "open"
            },
            score: e.score,
            score_audio: e.score_audio,
            score_video: e.score_video,
            modalities: e.modalities,
            fired,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            start_s: e.start_s,
            end_s: e.end_s,
            model_version: e.model_version.clone(),
            jpeg: ev.and_then(|v| url(&v.jpeg, "jpg")),
            wav: ev.and_then(|v| url(&v.wav, "wav")),
            mark: self.lock().marks.get(&e.id).cloned(),
        }
    }

    /// The marks read from `labels.csv` at start.
    pub fn seed_marks(&self, marks: std::collections::BTreeMap<String, String>) {
        let mut g = self.lock();
        for e in g.events.iter_mut() {
            e.mark = marks.get(&e.id).cloned();
        }
        g.marks = marks;
    }

    /// Sets or clears an event's mark (after `labels.csv` was written).
    pub fn mark(&self, id: &str, label: Option<&str>) {
        let mut g = self.lock();
        match label {
            Some(l) => g.marks.insert(id.to_string(), l.to_string()),
            None => g.marks.remove(id),
        };
        for e in g.events.iter_mut().filter(|e| e.id == id) {
            e.mark = label.map(str::to_string);
        }
    }

    /// The event with this id, if the page knows it.
    pub fn event(&self, id: &str) -> Option<EventView> {
        self.lock().events.iter().find(|e| e.id == id).cloned()
    }

    /// One scored window: timeline, near misses, level, frame, and the live message.
    pub fn window(
        &self,
        ws: &WindowScores,
        media: &WindowMedia,
        report: &Report,
        events: &[Event],
    ) {
        let point = Point {
            index: ws.index,
            start_s: ws.start_s,
            end_s: ws.end_s,
            modalities: ws.modalities,
            fused: ws.fused.iter().map(|(_, p)| *p).collect(),
            audio: ws
                .audio
                .as_ref()
                .map(|v| v.iter().map(|(_, p)| *p).collect()),
            video: ws
                .video
                .as_ref()
                .map(|v| v.iter().map(|(_, p)| *p).collect()),
        };
        let watching = self.clients() > 0;
        let views: Vec<EventView> = events.iter().map(|e| self.view(e)).collect();
        // The newest part of the window: what the previous window did not hold.
        let new_fraction = {
            let g = self.lock();
            match g.points.back() {
                Some(prev) if prev.end_s < point.end_s && point.end_s > point.start_s => {
                    ((point.end_s - prev.end_s) / (point.end_s - point.start_s)).clamp(0.0, 1.0)
                }
                _ => 1.0,
            }
        };
        let level = media
            .audio
            .as_ref()
            .and_then(|(_, s)| dbfs(tail(s, new_fraction)));
        let mel_raw = if watching {
            media
                .audio
                .as_ref()
                .and_then(|(rate, s)| self.mel(s, *rate, new_fraction))
        } else {
            None
        };

        let mut g = self.lock();
        if let Some(f) = &media.key_frame {
            g.frame = Some((ws.index, f.clone()));
        }
        g.level_dbfs = level;
        for v in &views {
            upsert(&mut g.events, v.clone(), self.limits.events);
        }
        self.near_misses(&mut g, &point);
        g.throughput = throughput(&mut g.rate, report);
        g.storage_errors.clone_from(&report.storage_errors);
        let mel = mel_raw.map(|(frames, bins, data)| {
            let top_now = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // Decays by 1 % per window towards what is loud now: a quiet room brightens
            // slowly, a loud bang never saturates the strip for long.
            let top = match g.mel_top {
                Some(t) if t > top_now => t - 0.01 * (t - top_now),
                _ => top_now,
            };
            g.mel_top = Some(top);
            quantize(frames, bins, &data, self.silence, top)
        });
        g.points.push_back(point);
        while g.points.len() > self.limits.timeline_windows {
            g.points.pop_front();
        }
        let Some(point) = g.points.back() else {
            return;
        };
        if !watching {
            return;
        }
        let near_now: Vec<NearMiss> = g
            .near
            .iter()
            .rev()
            .take_while(|n| n.end_s >= point.end_s)
            .cloned()
            .collect();
        let info = self.info();
        let tick = Tick {
            window: point,
            model_version: &info.model_version,
            thresholds: &info.thresholds,
            level_dbfs: g.level_dbfs,
            mel,
            audio_state: g.audio_state,
            video_state: g.video_state,
            mode: mode(point.modalities),
            throughput: &g.throughput,
            near_misses: &near_now,
            events: &views,
            storage_errors: &g.storage_errors,
        };
        if let Ok(json) = serde_json::to_string(&tick) {
            // No receiver: nothing to do; a lagging one skips (never waits).
            let _ = self.tx.send(json.into());
        }
    }

    fn mel(
        &self,
        samples: &[f32],
        rate: u32,
        new_fraction: f64,
    ) -> Option<(usize, usize, Vec<f32>)> {
        let tok = self.tokenizer.as_ref()?;
        let spec = tok.spectrogram(samples, rate).ok()?;
        let keep = ((spec.frames as f64 * new_fraction).round() as usize).clamp(1, spec.frames);
        let from = spec.frames - keep;
        Some((
            keep,
            spec.bins,
            spec.data[from * spec.bins..spec.frames * spec.bins].to_vec(),
        ))
    }

    fn near_misses(&self, g: &mut Inner, p: &Point) {
        let open: Vec<&str> = g
            .events
            .iter()
            .filter(|e| e.state == "open")
            .map(|e| e.label.as_str())
            .collect();
        let mut found = Vec::new();
        let info = self.info();
        for (k, label) in info.labels.iter().enumerate() {
            let (Some(&score), Some(&t), Some(&w), Some(&fires)) = (
                p.fused.get(k),
                info.thresholds.get(k),
                info.watch.get(k),
                info.fires.get(k),
            ) else {
                continue;
            };
            if !fires || score < w || score >= t || open.contains(&label.as_str()) {
                continue;
            }
            found.push(NearMiss {
                label: label.clone(),
                score,
                threshold: t,
                start_s: p.start_s,
                end_s: p.end_s,
            });
        }
        for n in found {
            // Overlapping windows of one label are one near miss (its highest score).
            if let Some(prev) = g
                .near
                .iter_mut()
                .rev()
                .find(|m| m.label == n.label && m.end_s >= n.start_s)
            {
                prev.end_s = n.end_s;
                prev.score = prev.score.max(n.score);
                continue;
            }
            g.near.push_back(n);
            while g.near.len() > self.limits.near_misses {
                g.near.pop_front();
            }
        }
    }

    /// The latest camera frame as JPEG (encoded once per window, on demand).
    pub fn latest_jpeg(&self) -> Option<Arc<Vec<u8>>> {
        let (index, frame) = {
            let g = self.lock();
            let (index, frame) = g.frame.clone()?;
            if let Some((i, j)) = &g.jpeg {
                if *i == index {
                    return Some(j.clone());
                }
            }
            (index, frame)
        };
        let jpeg = Arc::new(encode_jpeg(&frame)?);
        self.lock().jpeg = Some((index, jpeg.clone()));
        Some(jpeg)
    }

    pub fn status(&self) -> Status {
        let g = self.lock();
        let last = g.points.back().cloned();
        Status {
            info: (*self.info()).clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs_f64(),
            audio_state: g.audio_state,
            video_state: g.video_state,
            mode: last.as_ref().map(|p| mode(p.modalities)).unwrap_or("none"),
            throughput: g.throughput.clone(),
            level_dbfs: g.level_dbfs,
            last_window: last,
            near_misses: g.near.iter().rev().cloned().collect(),
            open_events: g
                .events
                .iter()
                .filter(|e| e.state == "open")
                .map(|e| e.id.clone())
                .collect(),
            clients: self.clients(),
            storage_errors: g.storage_errors.clone(),
        }
    }

    /// Events newest first: those starting after `since_ms` (if given) and before
    /// `before_ms` (if given; the page's "older" link), at most `limit`.
    pub fn events(
        &self,
        since_ms: Option<u64>,
        before_ms: Option<u64>,
        limit: usize,
    ) -> Vec<EventView> {
        let g = self.lock();
        let mut out: Vec<EventView> = g
            .events
            .iter()
            .filter(|e| since_ms.is_none_or(|s| e.start_ms > s))
            .filter(|e| before_ms.is_none_or(|b| e.start_ms < b))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.start_ms.cmp(&a.start_ms).then(b.id.cmp(&a.id)));
        out.truncate(limit);
        out
    }

    /// The timeline: windows ending in the last `minutes`, and the events overlapping them.
    pub fn timeline(&self, minutes: Option<f64>) -> (Vec<Point>, Vec<EventView>) {
        let g = self.lock();
        let Some(last) = g.points.back() else {
            return (Vec::new(), Vec::new());
        };
        let from = minutes
            .map(|m| last.end_s - m * 60.0)
            .unwrap_or(f64::NEG_INFINITY);
        let points: Vec<Point> = g
            .points
            .iter()
            .filter(|p| p.end_s >= from)
            .cloned()
            .collect();
        let events = g
            .events
            .iter()
            .filter(|e| e.end_s.is_none_or(|end| end >= from))
            .cloned()
            .collect();
        (points, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mbt_core::event::Modalities;

    fn live3() -> Live {
        let labels: Vec<String> = ["glass", "door", "none"].map(String::from).to_vec();
        let src = SourceInfo {
            kind: "synthetic".into(),
            name: String::new(),
        };
        Live::new(
            Info {
                backend: "t".into(),
                model_version: "m".into(),
                thresholds: vec![0.5, 0.5, 0.5],
                watch: vec![0.25, 0.25, 0.25],
                fires: vec![true, true, false],
                labels,
                audio: src.clone(),
                video: src,
                window_s: 2.0,
                hop_s: 1.0,
            },
            Limits {
                timeline_windows: 3,
                near_misses: 10,
                events: 2,
                watch_ratio: 0.5,
            },
            None,
        )
    }

    fn scores(k: u64, glass: f32, door: f32) -> WindowScores {
        let none = 1.0 - glass - door;
        WindowScores {
            index: k,
            start_s: k as f64,
            end_s: k as f64 + 2.0,
            modalities: Modalities {
                audio: true,
                video: true,
            },
            fused: vec![
                ("glass".into(), glass),
                ("door".into(), door),
                ("none".into(), none),
            ],
            audio: None,
            video: None,
        }
    }

    #[test]
    fn near_misses_merge_over_windows_and_skip_hits_and_none() {
        let l = live3();
        let m = WindowMedia::default();
        let r = Report::default();
        // glass 0.3 then 0.4: one near miss (0-3 s, peak 0.4); 0.6 is a hit, not a miss; door
        // 0.1 is below its watch level; `none` (up to 0.6) never fires.
        for (k, (g, d)) in [(0.3, 0.1), (0.4, 0.1), (0.6, 0.1), (0.1, 0.3)]
            .iter()
            .enumerate()
        {
            l.window(&scores(k as u64, *g, *d), &m, &r, &[]);
        }
        let near = l.status().near_misses;
        assert_eq!(
            near,
            vec![
                NearMiss {
                    label: "door".into(),
                    score: 0.3,
                    threshold: 0.5,
                    start_s: 3.0,
                    end_s: 5.0
                },
                NearMiss {
                    label: "glass".into(),
                    score: 0.4,
                    threshold: 0.5,
                    start_s: 0.0,
                    end_s: 3.0
                },
            ]
        );
        // The timeline keeps the last 3 windows.
        let (points, _) = l.timeline(None);
        assert_eq!(
            points.iter().map(|p| p.index).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn the_status_and_the_stream_show_failing_writes_until_they_clear() {
        let l = live3();
        let m = WindowMedia::default();
        let mut rx = l.subscribe();
        let r = Report {
            storage_errors: vec!["spool mqtt: 3 event(s) held in memory".into()],
            ..Default::default()
        };
        l.window(&scores(0, 0.1, 0.1), &m, &r, &[]);
        assert_eq!(l.status().storage_errors, r.storage_errors);
        let tick = rx.try_recv().unwrap();
        assert!(tick.contains("3 event(s) held in memory"), "{tick}");
        l.window(&scores(1, 0.1, 0.1), &m, &Report::default(), &[]);
        assert!(l.status().storage_errors.is_empty());
    }

    #[test]
    fn events_are_upserted_by_id_keep_their_evidence_and_stay_bounded() {
        let l = live3();
        let ev = |id: &str, kind: EventKind, start_ms: u64| Event {
            schema: 2,
            id: id.into(),
            kind,
            label: "glass".into(),
            score: 0.9,
            score_audio: Some(0.7),
            score_video: Some(0.2),
            modalities: Modalities {
                audio: true,
                video: true,
            },
            start_ms,
            end_ms: None,
            start_s: 0.0,
            end_s: None,
            model_version: "m".into(),
            evidence: (kind == EventKind::New).then(|| mbt_core::event::Evidence {
                jpeg: Some("/x/a.jpg".into()),
                wav: None,
            }),
        };
        l.seed_events([ev("a", EventKind::New, 10)]);
        let got = l.events(None, None, 10);
        assert_eq!(got[0].state, "open");
        assert_eq!(
            got[0].fired,
            vec!["audio"],
            "audio 0.7 >= 0.5, video 0.2 < 0.5"
        );
        assert_eq!(got[0].jpeg.as_deref(), Some("/evidence/a.jpg"));
        l.seed_events([ev("a", EventKind::End, 10)]);
        let got = l.events(None, None, 10);
        assert_eq!((got.len(), got[0].state), (1, "ended"));
        assert_eq!(
            got[0].jpeg.as_deref(),
            Some("/evidence/a.jpg"),
            "kept on end"
        );
        l.seed_events([ev("b", EventKind::New, 20), ev("c", EventKind::New, 30)]);
        let ids: Vec<String> = l.events(None, None, 10).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["c", "b"], "newest first, at most 2 kept");
        let ids: Vec<String> = l
            .events(Some(20), None, 10)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["c"]);
        let ids: Vec<String> = l
            .events(None, Some(30), 10)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["b"]);
        l.close_stale();
        assert!(l
            .events(None, None, 10)
            .iter()
            .all(|e| e.state == "interrupted"));
    }
}
