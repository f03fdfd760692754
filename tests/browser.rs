//! The web page in a real browser: headless Chromium driven over WebDriver (chromedriver +
//! fantoccini) while `mbtd` replays the bundled demo clip in real time with the bundled model.
//! Asserts that the live page's scores change, the camera frame and the log-mel strip draw,
//! the demo's events appear on the events page with their key frame and audio, and the
//! timeline draws lines, thresholds and events; then that a threshold typed on the live page
//! and a label switched off reach mbtd, and that "wrong" on an event card lands in
//! `labels.csv`. Saves a screenshot of each page (`docs/screenshots/`, shown in the README).
//!
//! Ignored by default (needs Chromium and about a minute):
//! `scripts/test-browser.sh` installs `chromium` and `chromium-driver` when missing and runs it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::{temp_dir, ROOT};
use crate::harness::Daemon;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn chromedriver() -> (Driver, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (scripts/test-browser.sh installs chromium-driver)");
    (Driver(child), port)
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required"]
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        match b.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Polls `script` (JavaScript returning a boolean) until it is true, or fails naming `what`.
async fn until(c: &Client, what: &str, timeout: Duration, script: &str) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if js(c, script).await == serde_json::Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let dir = std::path::Path::new(ROOT).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

#[test]
#[ignore = "needs Chromium and ~1 min: scripts/test-browser.sh"]
fn live_events_and_timeline_pages_in_headless_chromium() {
    let state = temp_dir("browser");
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(ROOT).join("models/demo/timeline.json")).unwrap(),
    )
    .unwrap();
    let labels: Vec<String> = truth["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap().to_string())
        .collect();
    let paced = ["--set", "replay.realtime=true", "--set", "web.linger_s=120"];
    let d = Daemon::start(&[&crate::common::DEMO[..], &paced].concat(), &state);
    let base = format!("http://{}", d.addr);
    let (_driver, port) = chromedriver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(port).await;

        // Live: scores arrive and change, the frame loads, the strip draws.
        c.goto(&format!("{base}/")).await.unwrap();
        c.wait().for_element(Locator::Css("#scores tbody tr")).await.unwrap();
        until(&c, "a first window", Duration::from_secs(60),
              "return document.getElementById('window').textContent !== '–'").await;
        let snapshot = "return [...document.querySelectorAll('#scores .fused')].map(e => e.textContent).join(',')";
        let first = js(&c, snapshot).await;
        let first_window = js(&c, "return document.getElementById('window').textContent").await;
        until(&c, "the next window", Duration::from_secs(30),
              &format!("return document.getElementById('window').textContent !== {first_window}")).await;
        let mut changed = false;
        for _ in 0..20 {
            if js(&c, snapshot).await != first {
                changed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(changed, "the scores never changed from {first}");
        until(&c, "the camera frame", Duration::from_secs(20),
              "const i = document.getElementById('frame'); return i.complete && i.naturalWidth > 0").await;
        until(&c, "the log-mel strip", Duration::from_secs(20), r#"
            const cv = document.getElementById('mel');
            const d = cv.getContext('2d').getImageData(cv.width - 20, 0, 20, cv.height).data;
            for (let i = 0; i < d.length; i += 4) if (d[i] > 0 || d[i + 2] < 255 && d[i + 2] > 0) return true;
            return false;"#).await;
        let states = js(&c, "return document.getElementById('audio-state').textContent + '/' + document.getElementById('video-state').textContent").await;
        assert_eq!(states, "live/live");
        screenshot(&c, "live.png").await;

        // Events: every label of the demo's timeline appears, with a key frame that loads and
        // an audio clip the server serves as WAV. (Waits for the clip to play through.)
        c.goto(&format!("{base}/events")).await.unwrap();
        let want = serde_json::to_string(&labels).unwrap();
        until(&c, "the demo's event labels", Duration::from_secs(90), &format!(
            "const want = {want}; const have = new Set([...document.querySelectorAll('.card')].map(c => c.dataset.label)); return want.every(l => have.has(l));"
        )).await;
        until(&c, "key frames loaded", Duration::from_secs(20),
              "const imgs = [...document.querySelectorAll('.card img')]; return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)").await;
        let audio = js(&c, r#"
            const a = document.querySelector('.card audio');
            return a ? a.getAttribute('src') : null;"#).await;
        let src = audio.as_str().expect("an audio player on an event card").to_string();
        let wav = crate::web::request(d.addr, "GET", &src, &[]);
        assert_eq!(wav.status, 200, "{src}");
        assert_eq!(&wav.body[..4], b"RIFF");
        screenshot(&c, "events.png").await;

        // Timeline: a lane per label with a score line, a threshold and the events shaded.
        c.goto(&format!("{base}/timeline")).await.unwrap();
        until(&c, "the timeline", Duration::from_secs(20), r#"
            const lanes = document.querySelectorAll('.lane');
            const line = document.querySelector('.lane polyline');
            return lanes.length > 0 && line && line.getAttribute('points').split(' ').length > 10
                && document.querySelectorAll('.lane rect.event').length > 0
                && document.querySelectorAll('.lane line').length === lanes.length;"#).await;
        screenshot(&c, "timeline.png").await;

        // Tuning from the live page (after the clip's events, so they are not changed): a
        // threshold typed in and a label switched off reach mbtd (its API says so).
        c.goto(&format!("{base}/")).await.unwrap();
        c.wait().for_element(Locator::Css("#scores tbody tr .thr")).await.unwrap();
        let label = js(&c, r#"
            const tr = document.querySelector('#scores tbody tr');
            const i = tr.querySelector('.thr'); i.value = '0.77'; i.dispatchEvent(new Event('change'));
            const on = tr.querySelector('.on'); on.checked = false; on.dispatchEvent(new Event('change'));
            return tr.id.slice(4);"#).await;
        let label = label.as_str().unwrap().to_string();
        until(&c, "the change saved", Duration::from_secs(20),
              "return document.getElementById('tune-msg').textContent.includes('off (saved)')").await;
        let labels = crate::web::request(d.addr, "GET", "/api/labels", &[]).json();
        let tuned = labels["labels"].as_array().unwrap().iter().find(|s| s["label"] == label.as_str()).cloned().unwrap();
        assert!((tuned["threshold"].as_f64().unwrap() - 0.77).abs() < 1e-6, "{tuned}");
        assert_eq!(tuned["enabled"], false, "{tuned}");

        // Marking from the events page: "wrong" on the first card, written to labels.csv.
        c.goto(&format!("{base}/events")).await.unwrap();
        c.wait().for_element(Locator::Css(".card .marks button")).await.unwrap();
        let id = js(&c, r#"
            const m = document.querySelector('.card .marks');
            m.querySelector('button[data-v=wrong]').click();
            return m.dataset.id;"#).await;
        let id = id.as_str().unwrap().to_string();
        until(&c, "the mark shown", Duration::from_secs(20),
              "return document.querySelector('.card .marks').textContent.includes('marked wrong')").await;
        let csv = std::fs::read_to_string(state.join("mbtd/evidence/labels.csv")).unwrap();
        assert!(csv.contains(&format!("{id},none")), "{csv}");
        c.close().await.unwrap();
    });
    drop(d);
}
