//! Camera capture through V4L2: YUYV or MJPEG, converted to RGB here.
//!
//! The device itself sits behind [`CameraDevice`] (open with a requested format, dequeue the
//! next raw frame, close). [`V4l2Device`] is the real one (the `v4l` crate, memory-mapped
//! buffers). **No V4L2 device exists on the build machines**, so the real device is not
//! exercised by the tests; everything above the seam is: [`CameraSource`] (pixel conversion,
//! corrupt frames skipped and counted, timestamps) is tested with recorded YUYV and MJPEG
//! frames through a fake device, and the reconnect-with-backoff path through the generic
//! [`supervise`](super::supervise) with a fake device that disappears and comes back.
//!
//! MJPEG from UVC webcams often omits the Huffman tables (the "AVI1" convention): frames
//! without a DHT segment get the standard tables of ITU-T T.81 Annex K.3 inserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mbt_media::RgbFrame;

use super::{Data, Format, Modality, SkipKind, Source, SourceError, VideoFrame};
use crate::clock::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Mjpeg,
}

/// What the daemon asks of the camera (`video.*`); the driver may grant something else.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRequest {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// None: MJPEG if the camera offers it (less USB bandwidth), else YUYV.
    pub format: Option<PixelFormat>,
}

/// What the driver granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraFormat {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub format: PixelFormat,
}

/// What the driver granted that differs from the request, as warnings. A driver answers
/// `VIDIOC_S_FMT`/`S_PARM` with the nearest mode it has, silently: a camera asked for 15 fps
/// that runs at 30 (or 5) changes how many frames each window holds, and the frames the
/// model samples from it, so the user must hear about it. Rates within 1 % are the same
/// (drivers report 30000/1001 for "30").
pub fn granted_differs(req: &CameraRequest, got: &CameraFormat) -> Vec<String> {
    let mut out = Vec::new();
    let asked = req.fps as f64;
    if asked > 0.0 && ((got.fps - asked) / asked).abs() > 0.01 {
        out.push(format!(
            "asked for {} fps (video.fps), the driver set {:.2} fps; the windows are cut on the \
             rate it delivers, set video.fps to a rate the camera has (v4l2-ctl --list-formats-ext)",
            req.fps, got.fps
        ));
    }
    if (got.width, got.height) != (req.width, req.height) {
        out.push(format!(
            "asked for {}x{} (video.width, video.height), the driver set {}x{}; frames are \
             resized by the tokenizer, but a mode the camera has avoids the work",
            req.width, req.height, got.width, got.height
        ));
    }
    out
}

/// One dequeued buffer, copied out of the driver's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub data: Vec<u8>,
}

/// The device seam: the real V4L2 device, or a fake in tests.
pub trait CameraDevice: Send {
    fn describe(&self) -> String;
    fn open(&mut self, req: &CameraRequest) -> Result<CameraFormat, String>;
    /// Blocks for the next frame for at most `timeout`; an error means the device is gone.
    fn next_frame(&mut self, timeout: Duration) -> Result<RawFrame, String>;
    fn close(&mut self);
}

/// A camera as a [`Source`]: raw frames -> RGB, stamped on the clock at dequeue time.
pub struct CameraSource<D: CameraDevice> {
    device: D,
    req: CameraRequest,
    timeout: Duration,
    clock: Clock,
    format: Option<CameraFormat>,
}

impl<D: CameraDevice> CameraSource<D> {
    pub fn new(device: D, req: CameraRequest, timeout: Duration, clock: Clock) -> Self {
        CameraSource {
            device,
            req,
            timeout,
            clock,
            format: None,
        }
    }
}

impl<D: CameraDevice> Source for CameraSource<D> {
    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn name(&self) -> String {
        format!("v4l2:{}", self.device.describe())
    }

    fn live(&self) -> bool {
        true
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        self.close();
        let f = self.device.open(&self.req).map_err(SourceError::Failed)?;
        for w in granted_differs(&self.req, &f) {
            tracing::warn!("v4l2:{}: {w}", self.device.describe());
        }
        self.format = Some(f);
        Ok(Format::Video {
            fps: f.fps,
            width: f.width,
            height: f.height,
        })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        let f = self
            .format
            .ok_or_else(|| SourceError::Failed("read before open".into()))?;
        let raw = self
            .device
            .next_frame(self.timeout)
            .map_err(SourceError::Failed)?;
        let t_us = self.clock.now_us();
        let rgb = match f.format {
            PixelFormat::Yuyv => yuyv_to_rgb(&raw.data, f.width as usize, f.height as usize),
            PixelFormat::Mjpeg => mjpeg_to_rgb(&raw.data, f.width as usize, f.height as usize),
        }
        .map_err(|reason| SourceError::Skipped {
            kind: SkipKind::CorruptFrame,
            reason,
        })?;
        Ok(Some(Data::Video(VideoFrame {
            t_us,
            frame: Arc::new(rgb),
        })))
    }

    fn close(&mut self) {
        if self.format.take().is_some() {
            self.device.close();
        }
    }
}

/// YUYV 4:2:2 (Y0 U Y1 V per pixel pair) -> RGB with the BT.601 limited-range matrix that UVC
/// cameras use. Frames of the wrong length are refused (a torn buffer), never guessed at.
pub fn yuyv_to_rgb(data: &[u8], width: usize, height: usize) -> Result<RgbFrame, String> {
    if width == 0 || height == 0 || width % 2 != 0 {
        return Err(format!(
            "YUYV frame {width}x{height}: expected a positive even width"
        ));
    }
    let expected = width * height * 2;
    if data.len() < expected {
        return Err(format!(
            "YUYV frame holds {} bytes: expected {expected} ({width}x{height}x2)",
            data.len()
        ));
    }
    let mut out = Vec::with_capacity(width * height * 3);
    for q in data[..expected].chunks_exact(4) {
        let (u, v) = (q[1] as f32 - 128.0, q[3] as f32 - 128.0);
        for y in [q[0], q[2]] {
            let c = 1.164 * (y as f32 - 16.0);
            out.push(clamp(c + 1.596 * v));
            out.push(clamp(c - 0.392 * u - 0.813 * v));
            out.push(clamp(c + 2.017 * u));
        }
    }
    Ok(RgbFrame {
        width,
        height,
        data: out,
    })
}

fn clamp(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Decodes one MJPEG frame (inserting the standard Huffman tables when the frame has none)
/// and checks it has the negotiated size.
pub fn mjpeg_to_rgb(data: &[u8], width: usize, height: usize) -> Result<RgbFrame, String> {
    let with_tables = insert_default_huffman_tables(data);
    let bytes = with_tables.as_deref().unwrap_or(data);
    let frame = mbt_media::frames::decode_image(bytes, Path::new("mjpeg frame"))
        .map_err(|e| e.to_string())?;
    if (frame.width, frame.height) != (width, height) {
        return Err(format!(
            "MJPEG frame is {}x{}: expected the negotiated {width}x{height}",
            frame.width, frame.height
        ));
    }
    Ok(frame)
}

/// ITU-T T.81 Annex K.3: (class/id, 16 code-length counts, symbols) of the four standard tables.
const STANDARD_TABLES: [(u8, [u8; 16], &[u8]); 4] = [
    (
        0x00,
        [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x01,
        [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ),
    (
        0x10,
        [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
        &[
            0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
            0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1,
            0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18,
            0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
            0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57,
            0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75,
            0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92,
            0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
            0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
            0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8,
            0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
    (
        0x11,
        [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
        &[
            0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
            0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09,
            0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25,
            0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38,
            0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56,
            0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74,
            0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
            0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
            0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA,
            0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6,
            0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2,
            0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
        ],
    ),
];

/// If the JPEG has no DHT segment before its scan, returns a copy with the standard tables
/// inserted just before the SOS marker; `None` when it has tables (or is not a JPEG we can
/// walk, in which case the decoder reports the problem).
pub fn insert_default_huffman_tables(jpeg: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        match marker {
            0xC4 => return None, // has its own tables
            0xDA => {
                let mut out = Vec::with_capacity(jpeg.len() + 432);
                out.extend_from_slice(&jpeg[..i]);
                for (class_id, counts, symbols) in STANDARD_TABLES {
                    let len = 2 + 1 + 16 + symbols.len();
                    out.extend_from_slice(&[0xFF, 0xC4, (len >> 8) as u8, len as u8, class_id]);
                    out.extend_from_slice(&counts);
                    out.extend_from_slice(symbols);
                }
                out.extend_from_slice(&jpeg[i..]);
                return Some(out);
            }
            0xD0..=0xD9 | 0x01 => i += 2,
            _ => {
                let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
                i += 2 + len;
            }
        }
    }
    None
}

/// The real camera: a V4L2 device node through the `v4l` crate (memory-mapped buffers).
pub struct V4l2Device {
    path: PathBuf,
    dev: Option<v4l::Device>,
    stream: Option<v4l::io::mmap::Stream<'static>>,
}

impl V4l2Device {
    pub fn new(path: &Path) -> Self {
        V4l2Device {
            path: path.to_path_buf(),
            dev: None,
            stream: None,
        }
    }
}

impl CameraDevice for V4l2Device {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn open(&mut self, req: &CameraRequest) -> Result<CameraFormat, String> {
        use v4l::video::Capture;
        self.close();
        let p = self.path.display();
        let dev =
            v4l::Device::with_path(&self.path).map_err(|e| format!("{p}: cannot open: {e}"))?;
        let offered: Vec<v4l::FourCC> = dev
            .enum_formats()
            .map_err(|e| format!("{p}: cannot list formats: {e}"))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let (mjpg, yuyv) = (v4l::FourCC::new(b"MJPG"), v4l::FourCC::new(b"YUYV"));
        let pick = match req.format {
            Some(PixelFormat::Mjpeg) => PixelFormat::Mjpeg,
            Some(PixelFormat::Yuyv) => PixelFormat::Yuyv,
            None if offered.contains(&mjpg) => PixelFormat::Mjpeg,
            None => PixelFormat::Yuyv,
        };
        let fourcc = match pick {
            PixelFormat::Mjpeg => mjpg,
            PixelFormat::Yuyv => yuyv,
        };
        if !offered.contains(&fourcc) {
            return Err(format!(
                "{p}: offers {:?}, not {fourcc} (video.format)",
                offered.iter().map(|f| f.to_string()).collect::<Vec<_>>()
            ));
        }
        let mut fmt = dev.format().map_err(|e| format!("{p}: format: {e}"))?;
        fmt.width = req.width;
        fmt.height = req.height;
        fmt.fourcc = fourcc;
        let fmt = dev
            .set_format(&fmt)
            .map_err(|e| format!("{p}: cannot set format: {e}"))?;
        if fmt.fourcc != fourcc {
            return Err(format!(
                "{p}: asked for {fourcc}, the driver set {}",
                fmt.fourcc
            ));
        }
        let params = dev
            .set_params(&v4l::video::capture::Parameters::with_fps(req.fps))
            .map_err(|e| format!("{p}: cannot set {} fps: {e}", req.fps))?;
        let fps = if params.interval.numerator > 0 {
            params.interval.denominator as f64 / params.interval.numerator as f64
        } else {
            req.fps as f64
        };
        let stream = v4l::io::mmap::Stream::with_buffers(&dev, v4l::buffer::Type::VideoCapture, 4)
            .map_err(|e| format!("{p}: cannot map buffers: {e}"))?;
        self.stream = Some(stream);
        self.dev = Some(dev);
        Ok(CameraFormat {
            width: fmt.width,
            height: fmt.height,
            fps,
            format: pick,
        })
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<RawFrame, String> {
        use v4l::io::traits::CaptureStream;
        let p = self.path.display().to_string();
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| format!("{p}: not open"))?;
        stream.set_timeout(timeout);
        let (buf, meta) = stream.next().map_err(|e| format!("{p}: {e}"))?;
        let used = (meta.bytesused as usize).min(buf.len());
        Ok(RawFrame {
            data: buf[..used].to_vec(),
        })
    }

    fn close(&mut self) {
        self.stream = None;
        self.dev = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_mode_that_differs_is_reported() {
        let req = CameraRequest {
            width: 640,
            height: 480,
            fps: 15,
            format: None,
        };
        let got = |width, height, fps| CameraFormat {
            width,
            height,
            fps,
            format: PixelFormat::Yuyv,
        };
        assert!(granted_differs(&req, &got(640, 480, 15.0)).is_empty());
        // 30000/1001 for a requested 30 is the same rate.
        let req30 = CameraRequest {
            fps: 30,
            ..req.clone()
        };
        assert!(granted_differs(&req30, &got(640, 480, 30000.0 / 1001.0)).is_empty());
        let w = granted_differs(&req, &got(640, 480, 30.0));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("asked for 15 fps") && w[0].contains("30.00"),
            "{w:?}"
        );
        let w = granted_differs(&req, &got(320, 240, 5.0));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].contains("320x240"), "{w:?}");
    }

    #[test]
    fn yuyv_known_colours() {
        // BT.601 limited range: Y 235 / 16 with neutral chroma are white / black; (81, 90, 240)
        // is pure red, (145, 54, 34) pure green, (41, 240, 110) pure blue.
        // A pixel pair shares its chroma: one pair per colour.
        let f = yuyv_to_rgb(&[235, 128, 16, 128], 2, 1).unwrap();
        assert_eq!(f.data, vec![255, 255, 255, 0, 0, 0]);
        let red = yuyv_to_rgb(&[81, 90, 81, 240], 2, 1).unwrap();
        let green = yuyv_to_rgb(&[145, 54, 145, 34], 2, 1).unwrap();
        let blue = yuyv_to_rgb(&[41, 240, 41, 110], 2, 1).unwrap();
        for (frame, want) in [
            (red, [255, 0, 0]),
            (green, [0, 255, 0]),
            (blue, [0, 0, 255]),
        ] {
            for px in frame.data.chunks_exact(3) {
                for c in 0..3 {
                    assert!((px[c] as i32 - want[c]).abs() <= 2, "{:?} vs {want:?}", px);
                }
            }
        }
    }

    #[test]
    fn yuyv_wrong_sizes_are_refused() {
        assert!(yuyv_to_rgb(&[0; 7], 2, 2)
            .unwrap_err()
            .contains("expected 8"));
        assert!(yuyv_to_rgb(&[0; 6], 3, 1).is_err());
    }
}
