//! The camera source above the V4L2 seam, with a fake device (no V4L2 device exists on the
//! build machines): YUYV and MJPEG frames converted to RGB, MJPEG without Huffman tables,
//! corrupt frames skipped and counted, and a camera that disappears being reopened with
//! backoff through the supervisor.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbtd::clock::Clock;
use mbtd::source::v4l2::{
    insert_default_huffman_tables, CameraDevice, CameraFormat, CameraRequest, CameraSource,
    PixelFormat, RawFrame,
};
use mbtd::source::{supervise, Backoff, Data, Format, SkipKind, Source, SourceError, SourceMsg};
use mbtd::stats::Stats;

const W: u32 = 32;
const H: u32 = 16;

/// What the fake does on each call, in order.
enum Step {
    Frame(Vec<u8>),
    Gone,
}

#[derive(Clone)]
struct FakeCamera {
    format: PixelFormat,
    /// Results of successive `open` calls (true = succeeds); succeeds when empty.
    opens: Arc<Mutex<VecDeque<bool>>>,
    steps: Arc<Mutex<VecDeque<Step>>>,
    open_times: Arc<Mutex<Vec<Instant>>>,
}

impl FakeCamera {
    fn new(format: PixelFormat, steps: Vec<Step>, opens: Vec<bool>) -> Self {
        FakeCamera {
            format,
            opens: Arc::new(Mutex::new(opens.into())),
            steps: Arc::new(Mutex::new(steps.into())),
            open_times: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl CameraDevice for FakeCamera {
    fn describe(&self) -> String {
        "fake".into()
    }
    fn open(&mut self, req: &CameraRequest) -> Result<CameraFormat, String> {
        self.open_times.lock().unwrap().push(Instant::now());
        if !self.opens.lock().unwrap().pop_front().unwrap_or(true) {
            return Err("/dev/video9: No such device".into());
        }
        Ok(CameraFormat {
            width: W,
            height: H,
            fps: req.fps as f64,
            format: self.format,
        })
    }
    fn next_frame(&mut self, _timeout: Duration) -> Result<RawFrame, String> {
        match self.steps.lock().unwrap().pop_front() {
            Some(Step::Frame(data)) => Ok(RawFrame { data }),
            Some(Step::Gone) => Err("/dev/video9: No such device".into()),
            None => Err("end of the fake's script".into()),
        }
    }
    fn close(&mut self) {}
}

fn request() -> CameraRequest {
    CameraRequest {
        width: W,
        height: H,
        fps: 15,
        format: None,
    }
}

/// A test picture: smooth gradients (JPEG keeps them well).
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(W, H, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 16) as u8, (128 + x * 2) as u8])
    })
}

fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(img)
        .unwrap();
    out
}

/// Removes every DHT segment, as many UVC cameras send MJPEG.
fn strip_huffman_tables(j: &[u8]) -> Vec<u8> {
    let mut out = j[..2].to_vec();
    let mut i = 2;
    loop {
        let marker = j[i + 1];
        if marker == 0xDA {
            out.extend_from_slice(&j[i..]);
            return out;
        }
        let len = u16::from_be_bytes([j[i + 2], j[i + 3]]) as usize;
        if marker != 0xC4 {
            out.extend_from_slice(&j[i..i + 2 + len]);
        }
        i += 2 + len;
    }
}

/// BT.601 limited range, RGB -> YUYV (the forward transform, written independently of the
/// source's inverse).
fn yuyv(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..H {
        for x in (0..W).step_by(2) {
            let px = |x| {
                let p = img.get_pixel(x, y).0;
                let (r, g, b) = (
                    p[0] as f64 / 255.0,
                    p[1] as f64 / 255.0,
                    p[2] as f64 / 255.0,
                );
                (
                    16.0 + 65.481 * r + 128.553 * g + 24.966 * b,
                    128.0 - 37.797 * r - 74.203 * g + 112.0 * b,
                    128.0 + 112.0 * r - 93.786 * g - 18.214 * b,
                )
            };
            let (y0, u0, v0) = px(x);
            let (y1, u1, v1) = px(x + 1);
            let b = |v: f64| v.round().clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[b(y0), b((u0 + u1) / 2.0), b(y1), b((v0 + v1) / 2.0)]);
        }
    }
    out
}

fn read_rgb(src: &mut dyn Source) -> Result<Vec<u8>, SourceError> {
    match src.read()? {
        Some(Data::Video(f)) => Ok(f.frame.data.clone()),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn yuyv_frames_become_rgb() {
    let img = picture();
    // Pixel pairs share chroma, so compare with the pair-averaged colour's tolerance.
    let cam = FakeCamera::new(PixelFormat::Yuyv, vec![Step::Frame(yuyv(&img))], vec![]);
    let mut src = CameraSource::new(cam, request(), Duration::from_secs(1), Clock::start());
    assert_eq!(
        src.open().unwrap(),
        Format::Video {
            fps: 15.0,
            width: W,
            height: H
        }
    );
    let rgb = read_rgb(&mut src).unwrap();
    assert!(
        max_diff(&rgb, img.as_raw()) <= 6,
        "{}",
        max_diff(&rgb, img.as_raw())
    );
}

#[test]
fn mjpeg_with_and_without_huffman_tables_and_corrupt_frames() {
    let img = picture();
    let full = jpeg(&img);
    let bare = strip_huffman_tables(&full);
    assert!(bare.len() < full.len() && !bare.windows(2).any(|w| w == [0xFF, 0xC4]));
    assert!(
        insert_default_huffman_tables(&full).is_none(),
        "tables present: unchanged"
    );
    let mut truncated = full.clone();
    truncated.truncate(full.len() / 3);
    let wrong_size = jpeg(&image::RgbImage::new(8, 8));
    let cam = FakeCamera::new(
        PixelFormat::Mjpeg,
        vec![
            Step::Frame(full.clone()),
            Step::Frame(bare),
            Step::Frame(b"not a jpeg at all".to_vec()),
            Step::Frame(truncated),
            Step::Frame(wrong_size),
            Step::Frame(full),
        ],
        vec![],
    );
    let mut src = CameraSource::new(cam, request(), Duration::from_secs(1), Clock::start());
    src.open().unwrap();
    let with_tables = read_rgb(&mut src).unwrap();
    assert!(max_diff(&with_tables, img.as_raw()) <= 12);
    // The standard tables inserted decode the stripped frame to the very same pixels (the
    // image crate's encoder uses the Annex K tables).
    assert_eq!(read_rgb(&mut src).unwrap(), with_tables);
    for what in ["garbage", "truncated", "wrong size"] {
        match read_rgb(&mut src) {
            Err(SourceError::Skipped {
                kind: SkipKind::CorruptFrame,
                ..
            }) => {}
            other => panic!("{what}: expected a skipped corrupt frame, got {other:?}"),
        }
    }
    assert_eq!(
        read_rgb(&mut src).unwrap(),
        with_tables,
        "the stream goes on"
    );
}

#[test]
fn a_camera_that_disappears_is_reopened_with_backoff() {
    let frame = || Step::Frame(yuyv(&picture()));
    // 2 frames, the camera vanishes, the next two opens fail, then it is back for 3 frames.
    let cam = FakeCamera::new(
        PixelFormat::Yuyv,
        vec![
            frame(),
            frame(),
            Step::Gone,
            frame(),
            frame(),
            frame(),
            Step::Gone,
        ],
        vec![true, false, false, true, false],
    );
    let open_times = cam.open_times.clone();
    let src = CameraSource::new(cam, request(), Duration::from_secs(1), Clock::start());
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let backoff = Backoff::new(Duration::from_millis(40), Duration::from_millis(200));
    let handle = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::spawn(move || supervise(Box::new(src), tx, stats, stop, backoff))
    };
    let mut log = Vec::new();
    while log.len() < 9 {
        match rx.blocking_recv() {
            Some(SourceMsg::Up(..)) => log.push("up"),
            Some(SourceMsg::Data(_)) => log.push("frame"),
            Some(SourceMsg::Down(..)) => log.push("down"),
            Some(SourceMsg::Ended(_)) => log.push("ended"),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(rx);
    handle.join().unwrap();
    assert_eq!(
        log,
        ["up", "frame", "frame", "down", "up", "frame", "frame", "frame", "down"]
    );
    let t = open_times.lock().unwrap().clone();
    // Opens: ok, fail, fail, ok, then (after the second loss) more attempts.
    let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // Backoff 40 ms, then 80 ms after the first failed reopen, 160 ms after the second.
    assert!(gaps[0] >= 40 && gaps[1] >= 80 && gaps[2] >= 160, "{gaps:?}");
    let r = stats.snapshot();
    assert_eq!(r.source_recoveries, 1);
    assert!(r.source_failures >= 2, "{r:?}");
}
