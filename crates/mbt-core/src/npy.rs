//! NumPy `.npy` (format 1.0) encoding and decoding, bytes only.
//!
//! `mbt tokenize` writes its matrices in this format so they open with `numpy.load`, and the
//! golden tests read the torchaudio reference outputs through [`decode_f32`]. Only what those
//! uses need: little-endian `<f4` / `<f8`, C order, any rank.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum NpyError {
    #[error("not a .npy file: expected the magic bytes \\x93NUMPY")]
    Magic,
    #[error("unsupported .npy version {0}.{1}: expected 1.x, 2.x or 3.x")]
    Version(u8, u8),
    #[error("truncated .npy file: {0}")]
    Truncated(&'static str),
    #[error("unsupported .npy header `{header}`: {reason}")]
    Header {
        header: String,
        reason: &'static str,
    },
}

/// An array read from a `.npy` file, converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Encodes a C-order `f32` array.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad with spaces so magic + len + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        rest.find(')').map(|e| &rest[..=e])
    } else {
        rest.find([',', '}']).map(|e| rest[..e].trim())
    }
}

/// Decodes a little-endian `<f4` or `<f8` C-order array into `f32`.
pub fn decode_f32(bytes: &[u8]) -> Result<Array, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(NpyError::Magic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(NpyError::Truncated("header length"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    let header_bytes = bytes
        .get(hstart..hstart + hlen)
        .ok_or(NpyError::Truncated("header"))?;
    let header = String::from_utf8_lossy(header_bytes).into_owned();
    let bad = |reason| NpyError::Header {
        header: header.clone(),
        reason,
    };
    let descr = header_value(&header, "descr")
        .ok_or_else(|| bad("no descr"))?
        .trim_matches(['\'', '"']);
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        _ => return Err(bad("expected dtype <f4 or <f8")),
    };
    if header_value(&header, "fortran_order") != Some("False") {
        return Err(bad("expected fortran_order False"));
    }
    let shape_txt = header_value(&header, "shape").ok_or_else(|| bad("no shape"))?;
    let shape = shape_txt
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("shape is not a tuple of integers"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    if body.len() < count.saturating_mul(width) {
        return Err(NpyError::Truncated("data"));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .take(count)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .take(count)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    };
    Ok(Array { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        assert_eq!((bytes.len() - 6 * 4) % 64, 0, "header padded to 64 bytes");
        let a = decode_f32(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1., 2., 3., 4., 5., 6.]);
        let a = decode_f32(&encode_f32(&[3], &[1., 2., 3.])).unwrap();
        assert_eq!(a.shape, vec![3]);
        let a = decode_f32(&encode_f32(&[0, 128], &[])).unwrap();
        assert_eq!(a.shape, vec![0, 128]);
    }

    #[test]
    fn header_matches_numpy_byte_for_byte() {
        // numpy.save of np.zeros((2, 3), np.float32) writes exactly this 128-byte prefix.
        let bytes = encode_f32(&[2, 3], &[0.0; 6]);
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert_eq!(
            header.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert_eq!(&bytes[8..10], &118u16.to_le_bytes());
    }

    #[test]
    fn errors() {
        assert_eq!(decode_f32(b"hello world"), Err(NpyError::Magic));
        let mut b = encode_f32(&[4], &[1., 2., 3., 4.]);
        b.truncate(b.len() - 1);
        assert_eq!(decode_f32(&b), Err(NpyError::Truncated("data")));
        let b = encode_f32(&[4], &[1., 2., 3., 4.]);
        assert_eq!(decode_f32(&b[..20]), Err(NpyError::Truncated("header")));
    }
}
