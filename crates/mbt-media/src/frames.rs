//! Still images and image sequences as RGB frames.
//!
//! `load` accepts what a user debugging the tokenizer has at hand: one PNG/JPEG, a directory of
//! them (taken in file-name order, like an `ffmpeg -i %04d.png` export), a `.y4m` video or a
//! Motion JPEG stream (`.mjpeg`, the data set's clips).

use std::path::{Path, PathBuf};

use crate::{y4m, MediaError, RgbFrame};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Decodes one PNG or JPEG file to RGB (grey and alpha are converted).
pub fn read_image(path: &Path) -> Result<RgbFrame, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    decode_image(&bytes, path)
}

/// Decodes PNG or JPEG bytes; `name` is used in errors.
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<RgbFrame, MediaError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| MediaError::format(name, format!("not a readable PNG/JPEG image: {e}")))?;
    let rgb = img.to_rgb8();
    Ok(RgbFrame {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        data: rgb.into_raw(),
    })
}

/// Loads frames from an image file, a directory of images, or a Y4M file.
pub fn load(path: &Path) -> Result<Vec<RgbFrame>, MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?;
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| MediaError::io(path, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| IMAGE_EXTENSIONS.contains(&extension(p).as_str()))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(MediaError::format(
                path,
                "directory holds no .png/.jpg/.jpeg files",
            ));
        }
        return files.iter().map(|f| read_image(f)).collect();
    }
    match extension(path).as_str() {
        "y4m" => y4m::read(path),
        "mjpeg" => crate::mjpeg::read(path).map(|(frames, _)| frames),
        e if IMAGE_EXTENSIONS.contains(&e) => Ok(vec![read_image(path)?]),
        other => Err(MediaError::format(path, format!("unknown frame source type `.{other}`: expected .png, .jpg, .jpeg, .y4m, .mjpeg or a directory of images"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_and_grey_conversion() {
        let dir = std::env::temp_dir().join(format!("mbt-media-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rgb =
            image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        rgb.save(dir.join("b.png")).unwrap();
        image::GrayImage::from_pixel(3, 2, image::Luma([99]))
            .save(dir.join("a.png"))
            .unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let frames = load(&dir).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data[..3], [99, 99, 99]); // a.png first, grey -> RGB
        assert_eq!(frames[1].data[3..6], [10, 0, 7]); // pixel (1, 0)
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let e = decode_image(b"\x89PNG garbage", Path::new("x.png"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.png:"), "{e}");
        let e = load(Path::new("/nonexistent.png")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent.png"), "{e}");
    }
}
