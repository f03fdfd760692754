//! Motion JPEG: a clip's frames as JPEG images one after another (`.mjpeg`).
//!
//! Why: the data set's clips were uncompressed Y4M (602 KB for 16 frames of 112 x 112); at the
//! data v2 sizes (18,000 clips) that is 11 GB. JPEG at quality 90 keeps them 5x smaller, and a
//! camera's own MJPEG is what the daemon meets anyway. The stream is plain concatenated JPEG
//! files (`ffmpeg -f mjpeg -framerate 8 -i ID.mjpeg` plays it); our encoder puts the frame rate
//! in a comment segment (`COM "mbt-mjpeg fps=8"`) of each frame, so a clip is self-describing.
//!
//! Frames are split by walking each JPEG's segment structure (lengths up to the scan, then the
//! entropy-coded data up to its EOI marker), not by searching for byte patterns, so a table
//! value that happens to look like a marker cannot cut a frame.

use std::path::Path;

use crate::{MediaError, RgbFrame};

const COMMENT: &str = "mbt-mjpeg fps=";

/// Encodes `frames` as Motion JPEG at `quality` (1-100), each frame carrying `fps`.
pub fn encode(frames: &[RgbFrame], fps: u32, quality: u8) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    let name = Path::new("<mjpeg>");
    for (i, f) in frames.iter().enumerate() {
        let img = image::RgbImage::from_raw(f.width as u32, f.height as u32, f.data.clone())
            .ok_or_else(|| {
                MediaError::format(name, format!("frame {i}: buffer does not match its size"))
            })?;
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
            .encode_image(&img)
            .map_err(|e| MediaError::format(name, format!("frame {i}: {e}")))?;
        // SOI, then our comment segment, then the encoder's segments.
        let text = format!("{COMMENT}{fps}");
        out.extend_from_slice(&jpeg[..2]);
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&jpeg[2..]);
    }
    Ok(out)
}

/// One JPEG image's byte range in the stream, and the frame rate its comment names.
fn next_image(b: &[u8], start: usize, name: &Path) -> Result<(usize, Option<u32>), MediaError> {
    let bad = |what: String| MediaError::format(name, format!("byte {start}: {what}"));
    if b.len() < start + 4 || b[start] != 0xFF || b[start + 1] != 0xD8 {
        return Err(bad("expected a JPEG start (FF D8)".into()));
    }
    let mut i = start + 2;
    let mut fps = None;
    loop {
        // Segment: FF, marker, then (except for markers without payload) a 2-byte length.
        while i < b.len() && b[i] == 0xFF && b.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        if i + 4 > b.len() || b[i] != 0xFF {
            return Err(bad(format!(
                "truncated or corrupt JPEG segment at byte {i}"
            )));
        }
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if len < 2 || i + 2 + len > b.len() {
            return Err(bad(format!("segment at byte {i} runs past the end")));
        }
        if marker == 0xFE {
            let text = String::from_utf8_lossy(&b[i + 4..i + 2 + len]);
            if let Some(v) = text.strip_prefix(COMMENT) {
                fps = v.trim().parse().ok();
            }
        }
        i += 2 + len;
        if marker == 0xDA {
            break; // start of scan: entropy-coded data follows
        }
    }
    // Entropy-coded data: FF 00 is a stuffed byte and FF D0..D7 restart markers; any other
    // marker ends the scan (a second scan of a progressive JPEG starts with a segment again).
    loop {
        if i + 1 >= b.len() {
            return Err(bad("the image has no end (FF D9)".into()));
        }
        if b[i] != 0xFF {
            i += 1;
            continue;
        }
        match b[i + 1] {
            0x00 | 0xD0..=0xD7 | 0xFF => i += if b[i + 1] == 0xFF { 1 } else { 2 },
            0xD9 => return Ok((i + 2, fps)),
            _ => {
                // Another segment (progressive scans, DHT between scans): skip it.
                if i + 4 > b.len() {
                    return Err(bad("truncated segment inside the image".into()));
                }
                let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                if len < 2 {
                    return Err(bad(format!("bad segment length at byte {i}")));
                }
                i += 2 + len;
            }
        }
    }
}

/// Decodes a Motion JPEG stream; returns the frames and the frame rate our encoder recorded
/// (`None` for a stream from elsewhere).
pub fn decode(bytes: &[u8], name: &Path) -> Result<(Vec<RgbFrame>, Option<u32>), MediaError> {
    let mut frames = Vec::new();
    let mut fps = None;
    let mut at = 0;
    while at < bytes.len() {
        let (end, f) = next_image(bytes, at, name)?;
        fps = fps.or(f);
        let img = image::load_from_memory_with_format(&bytes[at..end], image::ImageFormat::Jpeg)
            .map_err(|e| MediaError::format(name, format!("frame {}: {e}", frames.len())))?
            .to_rgb8();
        frames.push(RgbFrame {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.into_raw(),
        });
        at = end;
    }
    if frames.is_empty() {
        return Err(MediaError::format(
            name,
            "the Motion JPEG file holds no frames",
        ));
    }
    Ok((frames, fps))
}

/// Reads a `.mjpeg` file.
pub fn read(path: &Path) -> Result<(Vec<RgbFrame>, Option<u32>), MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    decode(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<RgbFrame> {
        (0..3)
            .map(|k| RgbFrame {
                width: 40,
                height: 24,
                data: (0..40 * 24 * 3)
                    .map(|i| ((i * 7 + k * 50) % 256) as u8)
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn frames_round_trip_with_their_rate() {
        let f = frames();
        let bytes = encode(&f, 8, 95).unwrap();
        let (back, fps) = decode(&bytes, Path::new("x.mjpeg")).unwrap();
        assert_eq!(fps, Some(8));
        assert_eq!(back.len(), 3);
        for (a, b) in f.iter().zip(&back) {
            assert_eq!((a.width, a.height), (b.width, b.height));
            // Lossy: each frame close to its original (a smooth-ish ramp at quality 95), and
            // each decoded frame is its own, not a neighbour's.
            let err: f64 = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum::<f64>()
                / a.data.len() as f64;
            assert!(err < 12.0, "mean abs error {err}");
        }
        // Plain JPEGs from elsewhere (no comment) decode too, without a rate.
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 80)
            .encode_image(&image::RgbImage::new(8, 8))
            .unwrap();
        let two = [plain.clone(), plain].concat();
        let (back, fps) = decode(&two, Path::new("y.mjpeg")).unwrap();
        assert_eq!((back.len(), fps), (2, None));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_errors_naming_the_file() {
        let bytes = encode(&frames(), 8, 90).unwrap();
        for cut in [bytes.len() - 1, bytes.len() / 2, 3] {
            let e = decode(&bytes[..cut], Path::new("clip.mjpeg")).unwrap_err();
            assert!(e.to_string().starts_with("clip.mjpeg:"), "{e}");
        }
        let e = decode(b"RIFF....", Path::new("clip.mjpeg")).unwrap_err();
        assert!(e.to_string().contains("FF D8"), "{e}");
        let e = decode(b"", Path::new("clip.mjpeg")).unwrap_err();
        assert!(e.to_string().contains("no frames"), "{e}");
    }
}
