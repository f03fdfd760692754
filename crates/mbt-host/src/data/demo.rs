//! `mbt data demo`: the bundled demo recording (`models/demo/`), rendered from permissively
//! licensed pool files only, with its ground-truth timeline.
//!
//! 40 s, one camera view over a real photo (opencv-doc's `home.jpg`, a building). In
//! order: a glass on a shelf breaks, a door near the camera is slammed, a door further away is
//! closed softly, a door closes somewhere off-screen while no door is in view (not an event),
//! a second glass breaks (these five are the v1 demo's), then a dog comes into view and barks,
//! a dog barks off-screen after it has gone (not an event), an alarm clock in view rings, and a
//! cat sits in view without a sound (not an event). Output: `audio.wav` (16 kHz mono),
//! `frames/NNNNNN.jpg` (8 fps, square, `--frame-size` px: 112 by default, small enough to
//! commit; 224 for a model trained on data v3; read by `mbt tokenize video` and the daemon's
//! file source) and `timeline.json`. The view is laid out for 112 px and scaled like the data
//! builder's scenes ([`super::render`]), so every size shows the same scene.
//!
//! Every file is taken from the default pool by its id (`package:path`, `#icon` for an icon of
//! an iconify set), and its licence is the pool's; a file whose licence is not permissive
//! (CC0, CC BY, CC BY-SA, BSD, MIT, Apache) is refused, so the clip can be committed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::dsp;
use super::pool::{Pool, Role, SourceEntry};
use super::render::{self, sample, FPS, RATE, REF_RMS, SIZE};
use super::rng::Rng;
use super::sources::{Image, Sources};
use super::spec::{attenuation_db, NEAR_PX, SLAM_SOURCE_DB, SOFT_SOURCE_DB};

const SECONDS: f64 = 40.0;

const MT: &str = "minetest-data:usr/share/games/minetest/games/minetest_game/mods";

/// The files of the demo: (pool id, crop). Sounds first, then pictures, then the background.
struct Assets {
    glass_snd: String,
    door_snd: String,
    dog_snd: String,
    alarm_snd: String,
    glass_img: String,
    door_img: (String, Option<[u32; 4]>),
    dog_img: String,
    alarm_img: String,
    cat_img: String,
    background: String,
}

fn assets() -> Assets {
    Assets {
        glass_snd: format!("{MT}/default/sounds/default_break_glass.1.ogg"),
        door_snd: format!("{MT}/doors/sounds/doors_glass_door_close.ogg"),
        dog_snd: DOG_SOUND.into(),
        alarm_snd: ALARM_SOUND.into(),
        glass_img: format!("{MT}/default/textures/default_glass.png"),
        door_img: (
            format!("{MT}/doors/textures/doors_door_wood.png"),
            Some([0, 0, 16, 32]),
        ),
        dog_img: DOG_PICTURE.into(),
        alarm_img: ALARM_PICTURE.into(),
        cat_img: CAT_PICTURE.into(),
        background: "opencv-doc:usr/share/doc/opencv-doc/examples/data/home.jpg".into(),
    }
}

const DOG_SOUND: &str = "lugaru-data:usr/share/games/lugaru/Sounds/Bark.ogg";
const ALARM_SOUND: &str =
    "sound-theme-freedesktop:usr/share/sounds/freedesktop/stereo/alarm-clock-elapsed.oga";
const DOG_PICTURE: &str = "@iconify-json/noto:package/icons.json#dog";
const ALARM_PICTURE: &str = "@iconify-json/noto:package/icons.json#alarm-clock";
/// A real photo of a cat (scikit-image's `chelsea`).
const CAT_PICTURE: &str = "scikit-image:skimage/data/chelsea.png";

/// Licences a committed demo may contain (by prefix of the pool's SPDX-like id).
const PERMISSIVE: [&str; 6] = ["CC0", "CC-BY", "BSD", "MIT", "Apache", "public-domain"];

fn permissive(licence: &str) -> bool {
    let l = licence.trim();
    PERMISSIVE.iter().any(|p| l.starts_with(p)) && !l.contains("NC")
}

/// The pool entry that holds `id` (`package:path` or `package:path#icon`), narrowed to that one
/// file and its crop.
fn entry_for(pool: &Pool, id: &str, crop: Option<[u32; 4]>, role: Role) -> Result<SourceEntry> {
    let (file, icon) = match id.split_once('#') {
        Some((f, i)) => (f, Some(i)),
        None => (id, None),
    };
    let Some((package, path)) = file.split_once(':') else {
        bail!("demo source `{id}`: expected package:path");
    };
    let found = pool.sources.iter().find(|s| {
        s.package == package
            && s.path.as_deref() == Some(path)
            && icon.is_none_or(|i| s.icons.as_ref().is_some_and(|v| v.iter().any(|x| x == i)))
    });
    let Some(s) = found else {
        bail!(
            "demo source `{id}` is not in the pool {} (the demo takes its files from the default pool)",
            pool.file.display()
        );
    };
    let mut e = s.clone();
    e.icons = icon.map(|i| vec![i.to_string()]);
    e.crop = crop.or(s.crop);
    e.role = role;
    e.split = "train".into();
    Ok(e)
}

struct Shown {
    img: usize,
    x: f64,
    distance: f64,
    from: f64,
    to: f64,
}

struct Heard {
    snd: usize,
    at: f64,
    level_db: f64,
    /// The event it makes, or `None` for a distractor.
    label: Option<&'static str>,
}

pub fn demo(pool: &Pool, cache: &Path, out: &Path, frame_size: usize) -> Result<()> {
    let size = render::check_frame_size(frame_size)?;
    // Lengths laid out for 112 px, in this frame's pixels (exactly 1 at 112).
    let k = size as f64 / SIZE as f64;
    let a = assets();
    let sound_ids = [&a.glass_snd, &a.door_snd, &a.dog_snd, &a.alarm_snd];
    let picture_ids: [(&String, Option<[u32; 4]>); 5] = [
        (&a.glass_img, None),
        (&a.door_img.0, a.door_img.1),
        (&a.dog_img, None),
        (&a.alarm_img, None),
        (&a.cat_img, None),
    ];
    let mut entries = Vec::new();
    for id in sound_ids {
        entries.push(entry_for(pool, id, None, Role::Sound)?);
    }
    for (id, crop) in picture_ids {
        entries.push(entry_for(pool, id, crop, Role::Object)?);
    }
    entries.push(entry_for(pool, &a.background, None, Role::Background)?);
    let sub = Pool {
        sources: entries,
        ..pool.clone()
    };
    let src = Sources::load(&sub, cache)?;
    for info in &src.infos {
        if !permissive(&info.licence) {
            bail!(
                "demo source {} is licensed `{}`: the committed demo takes only permissively \
                 licensed files (CC0, CC BY, CC BY-SA, BSD, MIT, Apache)",
                info.id,
                info.licence
            );
        }
    }
    let n_sounds = src.sounds.len();
    let images = &src.images[..src.images.len() - 1];
    let bg = &src.images[src.images.len() - 1];

    // The script. Door source levels as in AVE-Intersect (slam 0..-2.5 dB, soft -7.5..-10 dB).
    let (near, far) = (1.25, 4.0);
    let slam = (SLAM_SOURCE_DB.0 + SLAM_SOURCE_DB.1) / 2.0;
    let soft = (SOFT_SOURCE_DB.0 + SOFT_SOURCE_DB.1) / 2.0;
    let (glass, door, dog, alarm) = (0, 1, 2, 3);
    let (glass_i, door_i, dog_i, alarm_i, cat_i) = (0, 1, 2, 3, 4);
    let shown = [
        Shown {
            img: glass_i,
            x: 24.0,
            distance: 3.0,
            from: 0.0,
            to: 3.6,
        },
        Shown {
            img: door_i,
            x: 84.0,
            distance: near,
            from: 5.0,
            to: 9.0,
        },
        Shown {
            img: door_i,
            x: 40.0,
            distance: far,
            from: 9.5,
            to: 13.5,
        },
        Shown {
            img: glass_i,
            x: 60.0,
            distance: 2.5,
            from: 16.0,
            to: 20.1,
        },
        Shown {
            img: dog_i,
            x: 70.0,
            distance: 1.8,
            from: 22.0,
            to: 26.5,
        },
        Shown {
            img: alarm_i,
            x: 36.0,
            distance: 2.2,
            from: 30.0,
            to: 35.0,
        },
        Shown {
            img: cat_i,
            x: 76.0,
            distance: 2.0,
            from: 35.5,
            to: 40.0,
        },
    ];
    let heard = [
        Heard {
            snd: glass,
            at: 3.0,
            level_db: -3.0,
            label: Some("glass_breaking"),
        },
        Heard {
            snd: door,
            at: 7.0,
            level_db: slam - attenuation_db(near),
            label: Some("door_slammed"),
        },
        Heard {
            snd: door,
            at: 11.0,
            level_db: soft - attenuation_db(far),
            label: Some("door_closed_softly"),
        },
        Heard {
            snd: door,
            at: 15.0,
            level_db: -10.0,
            label: None,
        },
        Heard {
            snd: glass,
            at: 19.5,
            level_db: -4.0,
            label: Some("glass_breaking"),
        },
        Heard {
            snd: dog,
            at: 23.0,
            level_db: -4.0,
            label: Some("dog_barking"),
        },
        Heard {
            snd: dog,
            at: 28.0,
            level_db: -9.0,
            label: None,
        },
        Heard {
            snd: alarm,
            at: 31.5,
            level_db: -5.0,
            label: Some("alarm_ringing"),
        },
    ];
    debug_assert!(shown.iter().all(|s| s.img < images.len()));
    debug_assert!(heard.iter().all(|h| h.snd < n_sounds));

    // Audio: the events, a small room, quiet background noise.
    let n = (SECONDS * RATE as f64) as usize;
    let mut mix = vec![0.0f32; n];
    let mut events = Vec::new();
    for h in &heard {
        let mut x = src.sounds[h.snd].samples.clone();
        // At most 3 s of a long recording (an alarm that rings on), with a short fade-out.
        x.truncate(3 * RATE as usize);
        let fade = (RATE as usize / 20).min(x.len());
        let len = x.len();
        for (i, v) in x[len - fade..].iter_mut().enumerate() {
            *v *= 1.0 - i as f32 / fade as f32;
        }
        let g = (REF_RMS * dsp::db_to_gain(h.level_db) / dsp::active_rms(&x).max(1e-9)) as f32;
        let start = (h.at * RATE as f64) as usize;
        if start + x.len() > n {
            bail!("internal: demo sound at {} s runs past the end", h.at);
        }
        for (m, v) in mix[start..].iter_mut().zip(&x) {
            *m += v * g;
        }
        if let Some(label) = h.label {
            events.push(
                json!({"label": label, "start": h.at, "end": h.at + x.len() as f64 / RATE as f64}),
            );
        }
    }
    let mut mix = dsp::reverb(&mix, 0.4, 1.0, 0.15);
    let noise = dsp::noise(
        &mut Rng::new(2024, &[]),
        n,
        0.6,
        REF_RMS * dsp::db_to_gain(-32.0),
    );
    for (m, v) in mix.iter_mut().zip(&noise) {
        *m = (*m + v).clamp(-1.0, 1.0);
    }
    std::fs::create_dir_all(out.join("frames"))
        .with_context(|| format!("cannot create {}", out.join("frames").display()))?;
    // A regenerated demo replaces the old one's frames (the v1 demo had fewer).
    for e in std::fs::read_dir(out.join("frames"))
        .with_context(|| format!("cannot list {}", out.join("frames").display()))?
    {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "jpg") {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let wav = out.join("audio.wav");
    mbt_media::wav::write_mono_i16(&wav, RATE, &mix)?;

    // Video: a fixed view; objects appear and disappear; a broken glass is gone afterwards.
    let frames = (SECONDS * FPS as f64) as usize;
    let side = bg.width.min(bg.height) as f64;
    let scale = side / size as f64;
    for f in 0..frames {
        let t = f as f64 / FPS as f64;
        let mut buf = vec![0.0f32; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let p = sample(
                    bg,
                    (x as f64 + 0.5) * scale - 0.5,
                    (y as f64 + 0.5) * scale - 0.5,
                );
                buf[(y * size + x) * 3..][..3].copy_from_slice(&p[..3]);
            }
        }
        let mut visible: Vec<&Shown> = shown.iter().filter(|s| t >= s.from && t < s.to).collect();
        visible.sort_by(|a, b| b.distance.total_cmp(&a.distance));
        for s in visible {
            draw(
                &mut buf,
                size,
                &images[s.img],
                s.x * k,
                NEAR_PX * k / s.distance,
                (60.0 + 50.0 / s.distance) * k,
            );
        }
        let px: Vec<u8> = buf
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        let img = image::RgbImage::from_raw(size as u32, size as u32, px)
            .context("internal: frame buffer size")?;
        let path = out.join(format!("frames/{f:06}.jpg"));
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90)
            .encode_image(&img)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let sources: Vec<serde_json::Value> = src
        .infos
        .iter()
        .map(|i| json!({"id": i.id, "licence": i.licence, "sha256": i.content}))
        .collect();
    let timeline = json!({
        "clip": "AVE-Intersect demo v2",
        "duration": SECONDS,
        "audio": "audio.wav",
        "frames": "frames/",
        "fps": FPS,
        "sample_rate": RATE,
        "events": events,
        "notes": "start/end are the event's sound onset/offset in seconds. Not events: the door closing at 15 s is off-screen (no door in view), the dog barking at 28 s is off-screen (the dog has left), the cat from 35.5 s makes no sound",
        "sources": sources,
        "regenerate": "mbt data fetch && mbt data demo --out models/demo",
    });
    let tl = out.join("timeline.json");
    std::fs::write(&tl, serde_json::to_string_pretty(&timeline)? + "\n")
        .with_context(|| format!("cannot write {}", tl.display()))?;
    Ok(())
}

/// Draws `img` `h` px tall, centred on `cx`, standing on `y_bottom`, into a `size`-px frame.
fn draw(buf: &mut [f32], size: usize, img: &Image, cx: f64, h: f64, y_bottom: f64) {
    let w = h * img.width as f64 / img.height as f64;
    let (x0, y0) = (cx - w / 2.0, y_bottom - h);
    for y in (y0.max(0.0) as usize)..(y_bottom.min(size as f64) as usize) {
        for x in (x0.max(0.0) as usize)..((x0 + w).min(size as f64) as usize) {
            let u = (x as f64 + 0.5 - x0) / w;
            let v = (y as f64 + 0.5 - y0) / h;
            let s = sample(img, u * img.width as f64 - 0.5, v * img.height as f64 - 0.5);
            let a = s[3] / 255.0;
            let i = (y * size + x) * 3;
            for k in 0..3 {
                buf[i + k] = s[k] + buf[i + k] * (1.0 - a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permissive_licences_pass() {
        for l in [
            "CC0-1.0",
            "CC-BY-3.0",
            "CC-BY-SA-4.0",
            "BSD-3-Clause",
            "MIT",
            "Apache-2.0",
        ] {
            assert!(permissive(l), "{l}");
        }
        for l in ["GPL-2", "GPL-3+", "CC-BY-NC-SA-4.0", "LGPL-2.1", "unknown"] {
            assert!(!permissive(l), "{l}");
        }
    }
}
