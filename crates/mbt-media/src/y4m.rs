//! YUV4MPEG2 (`.y4m`) reading and writing: the simplest video container ffmpeg, mpv and
//! GStreamer all open, with no codec. Reading supports the 8-bit `C420*`, `C422`, `C444` and
//! `Cmono` layouts; YUV is converted to RGB with BT.601 limited-range coefficients (what ffmpeg
//! assumes for untagged `yuv420p`). Writing uses `C444` so frames survive the round trip with
//! only the colour-conversion rounding.

use std::path::Path;

use crate::{MediaError, RgbFrame};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chroma {
    C420,
    C422,
    C444,
    Mono,
}

struct Header {
    width: usize,
    height: usize,
    chroma: Chroma,
}

fn parse_header(line: &str, path: &Path) -> Result<Header, MediaError> {
    let mut tokens = line.split_ascii_whitespace();
    if tokens.next() != Some("YUV4MPEG2") {
        return Err(MediaError::format(
            path,
            "not a Y4M file: expected the signature YUV4MPEG2",
        ));
    }
    let (mut width, mut height, mut chroma) = (0usize, 0usize, Chroma::C420);
    for t in tokens {
        let (tag, val) = t.split_at(1);
        match tag {
            "W" => width = val.parse().map_err(|_| MediaError::format(path, format!("bad width `{val}`")))?,
            "H" => height = val.parse().map_err(|_| MediaError::format(path, format!("bad height `{val}`")))?,
            "C" => {
                chroma = match val {
                    "420" | "420jpeg" | "420paldv" | "420mpeg2" => Chroma::C420,
                    "422" => Chroma::C422,
                    "444" => Chroma::C444,
                    "mono" => Chroma::Mono,
                    other => return Err(MediaError::format(path, format!("unsupported Y4M colour space C{other}: expected 8-bit C420, C422, C444 or Cmono"))),
                }
            }
            _ => {}
        }
    }
    if width == 0 || height == 0 {
        return Err(MediaError::format(
            path,
            "Y4M header lacks a positive W and H",
        ));
    }
    Ok(Header {
        width,
        height,
        chroma,
    })
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Reads every frame of a Y4M file.
pub fn read(path: &Path) -> Result<Vec<RgbFrame>, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    decode(&bytes, path)
}

/// Decodes Y4M bytes; `path` is used in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Vec<RgbFrame>, MediaError> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| MediaError::format(path, "not a Y4M file: no header line"))?;
    let h = parse_header(&String::from_utf8_lossy(&bytes[..nl]), path)?;
    let (cw, ch) = match h.chroma {
        Chroma::C420 => (h.width.div_ceil(2), h.height.div_ceil(2)),
        Chroma::C422 => (h.width.div_ceil(2), h.height),
        Chroma::C444 => (h.width, h.height),
        Chroma::Mono => (0, 0),
    };
    let luma = h.width * h.height;
    let frame_len = luma + 2 * cw * ch;
    let mut frames = Vec::new();
    let mut pos = nl + 1;
    while pos < bytes.len() {
        let line_end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| pos + p);
        let line_end = line_end.ok_or_else(|| {
            MediaError::format(
                path,
                format!("frame {}: truncated FRAME header", frames.len()),
            )
        })?;
        if !bytes[pos..line_end].starts_with(b"FRAME") {
            return Err(MediaError::format(
                path,
                format!("frame {}: expected a FRAME header", frames.len()),
            ));
        }
        let start = line_end + 1;
        let plane = bytes.get(start..start + frame_len).ok_or_else(|| {
            MediaError::format(
                path,
                format!(
                    "frame {}: truncated: expected {frame_len} bytes, {} left",
                    frames.len(),
                    bytes.len() - start
                ),
            )
        })?;
        frames.push(to_rgb(plane, &h, cw, ch));
        pos = start + frame_len;
    }
    if frames.is_empty() {
        return Err(MediaError::format(path, "Y4M file holds no frames"));
    }
    Ok(frames)
}

fn to_rgb(plane: &[u8], h: &Header, cw: usize, ch: usize) -> RgbFrame {
    let (w, hh) = (h.width, h.height);
    let (yp, rest) = plane.split_at(w * hh);
    let (up, vp) = rest.split_at(cw * ch);
    let mut data = Vec::with_capacity(w * hh * 3);
    for y in 0..hh {
        for x in 0..w {
            let luma = 1.164_383 * (yp[y * w + x] as f32 - 16.0);
            let (u, v) = if h.chroma == Chroma::Mono {
                (0.0, 0.0)
            } else {
                let (cx, cy) = (x * cw / w, y * ch / hh);
                (
                    up[cy * cw + cx] as f32 - 128.0,
                    vp[cy * cw + cx] as f32 - 128.0,
                )
            };
            data.push(clamp_u8(luma + 1.596_027 * v));
            data.push(clamp_u8(luma - 0.391_762 * u - 0.812_968 * v));
            data.push(clamp_u8(luma + 2.017_232 * u));
        }
    }
    RgbFrame {
        width: w,
        height: hh,
        data,
    }
}

/// Encodes RGB frames as a `C444` Y4M stream at `fps` (all frames must share one size).
pub fn encode(frames: &[RgbFrame], fps: u32) -> Vec<u8> {
    let (w, h) = frames.first().map_or((0, 0), |f| (f.width, f.height));
    let mut out = format!("YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C444\n").into_bytes();
    for f in frames {
        out.extend_from_slice(b"FRAME\n");
        let px = f.data.chunks_exact(3);
        let (mut yp, mut up, mut vp) = (
            Vec::with_capacity(w * h),
            Vec::with_capacity(w * h),
            Vec::with_capacity(w * h),
        );
        for p in px {
            let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
            yp.push(clamp_u8(
                16.0 + 0.256_788 * r + 0.504_129 * g + 0.097_906 * b,
            ));
            up.push(clamp_u8(
                128.0 - 0.148_223 * r - 0.290_993 * g + 0.439_216 * b,
            ));
            vp.push(clamp_u8(
                128.0 + 0.439_216 * r - 0.367_788 * g - 0.071_427 * b,
            ));
        }
        out.extend_from_slice(&yp);
        out.extend_from_slice(&up);
        out.extend_from_slice(&vp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c444_round_trip_within_conversion_rounding() {
        let data: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 23 % 256) as u8).collect();
        let f = RgbFrame {
            width: 4,
            height: 3,
            data,
        };
        let back = decode(&encode(&[f.clone(), f.clone()], 25), Path::new("t.y4m")).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in back[1].data.iter().zip(&f.data) {
            assert!((*a as i32 - *b as i32).abs() <= 2, "{a} vs {b}");
        }
    }

    #[test]
    fn c420_grey_frame() {
        // 2x2 luma 126 (grey ~128 in RGB), chroma neutral.
        let mut b = b"YUV4MPEG2 W2 H2 F25:1 C420jpeg\nFRAME\n".to_vec();
        b.extend_from_slice(&[126, 126, 126, 126, 128, 128]);
        let f = decode(&b, Path::new("g.y4m")).unwrap();
        assert!(f[0].data.iter().all(|&v| v == 128), "{:?}", f[0].data);
    }

    #[test]
    fn truncated_and_bad_files_are_errors() {
        let mut b = b"YUV4MPEG2 W2 H2 C420jpeg\nFRAME\n".to_vec();
        b.extend_from_slice(&[1, 2, 3]);
        let e = decode(&b, Path::new("t.y4m")).unwrap_err().to_string();
        assert!(
            e.contains("t.y4m") && e.contains("frame 0") && e.contains("truncated"),
            "{e}"
        );
        assert!(decode(b"RIFF\n", Path::new("x.y4m")).is_err());
        assert!(decode(b"YUV4MPEG2 W2 H2 C420p10\n", Path::new("x.y4m"))
            .unwrap_err()
            .to_string()
            .contains("C420p10"));
        assert!(decode(b"YUV4MPEG2 W2 H2\n", Path::new("x.y4m"))
            .unwrap_err()
            .to_string()
            .contains("no frames"));
    }
}
