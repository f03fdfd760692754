//! The daemon's evidence writer: the key frame and audio of the window that opens or raises an
//! event, written through `mbt_publish::evidence::EvidenceStore` before any sink sees the event,
//! and named in it. A disk that refuses the writes (full, read-only) never stops an event: the
//! failure is counted (`evidence_write_failures`), shown on the web page's status while it
//! lasts, and logged at most once a minute with the count since the last message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mbt_core::event::{Event, EventKind, Evidence};
use mbt_publish::evidence::{AudioRef, EvidenceStore, FrameRef};
use mbt_publish::throttle::Throttle;

use crate::detector::WindowMedia;
use crate::stats::Stats;

/// Writes the evidence of events as they come out of the event tracker, before any sink sees
/// them, and names the files in the event (`evidence`, schema 2). The files are named by the
/// event id (`<id>.jpg`, `<id>.wav` in the evidence directory), so the MQTT snapshot publisher
/// and a user can also find them from the id alone.
pub struct EvidenceWriter {
    store: Arc<EvidenceStore>,
    /// What each open event's files are, for its later records (an `end` has no media).
    open: HashMap<String, Evidence>,
    /// Failed writes (`evidence_write_failures`) and the latest reason, for the web page.
    stats: Arc<Stats>,
    /// A full disk fails every write: logged once a minute, with the count.
    warn: Arc<Mutex<Throttle>>,
}

impl EvidenceWriter {
    pub fn new(store: Arc<EvidenceStore>, stats: Arc<Stats>) -> Self {
        EvidenceWriter {
            store,
            open: HashMap::new(),
            stats,
            warn: Arc::default(),
        }
    }

    /// Counts a failed write and logs it if a minute passed since the last message.
    fn failed(stats: &Stats, warn: &Mutex<Throttle>, what: &str, err: &dyn std::fmt::Display) {
        Stats::inc(&stats.evidence_write_failures);
        stats.set_storage_error("evidence", err.to_string());
        let due = warn.lock().ok().and_then(|mut t| t.failed(Instant::now()));
        if let Some(n) = due {
            tracing::warn!(
                "{what}: {err} ({n} evidence write(s) failed since the last message; events \
                 go out without new evidence; logged at most once a minute)"
            );
        }
    }

    fn succeeded(stats: &Stats, warn: &Mutex<Throttle>) {
        stats.clear_storage_error("evidence");
        let recovered = warn.lock().map(|mut t| t.succeeded()).unwrap_or(false);
        if recovered {
            tracing::info!("evidence: writes succeed again");
        }
    }

    /// `new` and `update` events take the window's media as their evidence (an update means a
    /// higher peak: a better picture of it); `end` events keep what they had. Encoding runs
    /// off the runtime's threads. A failed write is logged and the event goes out anyway
    /// (with the evidence it had before, if any): a full disk must not stop events.
    pub async fn write(&mut self, events: &mut [Event], media: &WindowMedia) {
        let have_media = media.key_frame.is_some() || media.audio.is_some();
        for e in events.iter_mut() {
            if e.kind == EventKind::End {
                e.evidence = self.open.remove(&e.id);
                continue;
            }
            if have_media {
                let (store, id, media) = (self.store.clone(), e.id.clone(), media.clone());
                let saved = tokio::task::spawn_blocking(move || {
                    let frame = media.key_frame.as_deref().map(|f| FrameRef {
                        width: f.width,
                        height: f.height,
                        rgb: &f.data,
                    });
                    let audio = media.audio.as_ref().map(|(rate, s)| AudioRef {
                        rate: *rate,
                        samples: s,
                    });
                    store.save(&id, frame, audio)
                })
                .await;
                match saved {
                    Ok(Ok(s)) => {
                        let path = |p: Option<std::path::PathBuf>| {
                            p.map(|p| p.to_string_lossy().into_owned())
                        };
                        let ev = Evidence {
                            jpeg: path(s.jpeg),
                            wav: path(s.wav),
                        };
                        tracing::debug!("event {}: evidence {ev:?}", e.id);
                        self.open.insert(e.id.clone(), ev);
                        Self::succeeded(&self.stats, &self.warn);
                    }
                    Ok(Err(err)) => {
                        Self::failed(&self.stats, &self.warn, &format!("event {}", e.id), &err)
                    }
                    Err(err) => tracing::warn!("event {}: evidence task failed: {err}", e.id),
                }
            }
            e.evidence = self.open.get(&e.id).cloned();
        }
        self.save_records(events).await;
    }

    /// Each event's latest record beside its media (`<id>.json`): what the web page lists
    /// after a restart. A failed write is logged; the event goes out anyway.
    async fn save_records(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let records: Vec<(String, Vec<u8>)> = events
            .iter()
            .filter_map(|e| Some((e.id.clone(), serde_json::to_vec(e).ok()?)))
            .collect();
        let (store, stats, warn) = (self.store.clone(), self.stats.clone(), self.warn.clone());
        let saved = tokio::task::spawn_blocking(move || {
            for (id, json) in records {
                match store.save_record(&id, &json) {
                    Ok(()) => Self::succeeded(&stats, &warn),
                    Err(err) => Self::failed(&stats, &warn, &format!("event {id}: record"), &err),
                }
            }
        })
        .await;
        if let Err(err) = saved {
            tracing::warn!("evidence records task failed: {err}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mbt_core::event::{Modalities, EVENT_SCHEMA};

    /// An event of `kind` for `label` with fixed other fields (also the publish tests' event).
    pub(crate) fn event(kind: EventKind, label: &str) -> Event {
        Event {
            schema: EVENT_SCHEMA,
            id: "1-0001".into(),
            kind,
            label: label.into(),
            score: 0.9,
            score_audio: None,
            score_video: None,
            modalities: Modalities {
                audio: true,
                video: true,
            },
            start_ms: 0,
            end_ms: None,
            start_s: 0.0,
            end_s: None,
            model_version: "t".into(),
            evidence: None,
        }
    }

    fn media() -> WindowMedia {
        WindowMedia {
            key_frame: Some(Arc::new(mbt_media::RgbFrame {
                width: 4,
                height: 2,
                data: vec![128; 24],
            })),
            audio: Some((16_000, Arc::new(vec![0.1; 1600]))),
        }
    }

    /// `new` writes `<id>.jpg` and `<id>.wav` and names them in the event; `end` writes
    /// nothing and repeats its event's files (none for an event this writer never saw).
    #[tokio::test]
    async fn evidence_is_written_under_the_event_id() {
        let dir = std::env::temp_dir().join(format!("mbtd-unit-evidence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = mbt_publish::config::EvidenceConfig {
            dir: Some(dir.clone()),
            ..Default::default()
        };
        let mut w = EvidenceWriter::new(
            Arc::new(EvidenceStore::open(&cfg).unwrap()),
            Arc::new(Stats::default()),
        );
        let media = media();
        let mut end = event(EventKind::End, "glass_breaking");
        end.id = "1-0002".into();
        let mut batch = [event(EventKind::New, "glass_breaking"), end];
        w.write(&mut batch, &media).await;
        assert!(dir.join("1-0001.jpg").is_file() && dir.join("1-0001.wav").is_file());
        assert!(!dir.join("1-0002.jpg").exists());
        let named = batch[0]
            .evidence
            .clone()
            .expect("evidence named in the event");
        assert_eq!(
            named.jpeg.as_deref(),
            Some(dir.join("1-0001.jpg").to_string_lossy().as_ref())
        );
        assert_eq!(batch[1].evidence, None);
        // The end of 1-0001, with no media: the files of its new.
        let mut end = [event(EventKind::End, "glass_breaking")];
        w.write(&mut end, &WindowMedia::default()).await;
        assert_eq!(end[0].evidence, Some(named));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A disk that refuses writes: the events still go out (without new evidence), every
    /// failure is counted, the web page's status names it, and it clears when writes succeed.
    #[tokio::test]
    async fn a_full_disk_is_counted_shown_and_cleared_and_events_still_go_out() {
        use mbt_publish::storage::Faulty;
        let dir = tempfile::tempdir().unwrap();
        let cfg = mbt_publish::config::EvidenceConfig {
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let faulty = Faulty::new();
        let store = EvidenceStore::open(&cfg)
            .unwrap()
            .with_storage(faulty.clone());
        let stats = Arc::new(Stats::default());
        let mut w = EvidenceWriter::new(Arc::new(store), stats.clone());
        faulty.fail(libc::ENOSPC);
        for k in 1..=3 {
            let mut e = event(EventKind::New, "glass_breaking");
            e.id = format!("1-000{k}");
            let mut batch = [e];
            w.write(&mut batch, &media()).await;
            assert_eq!(batch[0].evidence, None, "no files to name");
        }
        let r = stats.snapshot();
        // Per event: the media and the record.
        assert_eq!(r.evidence_write_failures, 6, "{r:?}");
        assert_eq!(r.storage_errors.len(), 1, "{r:?}");
        assert!(
            r.storage_errors[0].starts_with("evidence: ")
                && r.storage_errors[0].contains("No space"),
            "{r:?}"
        );
        faulty.heal();
        let mut batch = [event(EventKind::New, "dog_barking")];
        batch[0].id = "1-0009".into();
        w.write(&mut batch, &media()).await;
        assert!(batch[0].evidence.is_some());
        assert!(stats.snapshot().storage_errors.is_empty());
    }
}
