//! `mbt data demo`: the bundled demo recording (`models/demo/`), rendered from permissively
//! licensed pool files only, with its ground-truth timeline.
//!
//! 24 s, one camera view (a BSD-licensed opencv-doc photo): a glass on a shelf breaks, a door
//! near the camera is slammed, a door further away is closed softly, a door closes somewhere
//! off-screen while no door is in view (not an event), and a second glass breaks. Output:
//! `audio.wav` (16 kHz mono), `frames/NNNNNN.jpg` (8 fps, 112 x 112; small enough to commit,
//! read by `mbt tokenize video` and the daemon's file source) and `timeline.json`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::dsp;
use super::fetch::media_dir;
use super::render::{sample, FPS, RATE, REF_RMS, SIZE};
use super::rng::Rng;
use super::sources::{load_image, Image};
use super::spec::{attenuation_db, NEAR_PX};

const SECONDS: f64 = 24.0;

const MT: &str = "usr/share/games/minetest/games/minetest_game/mods";
/// (package, path inside it, licence) of every file the demo uses.
pub const DEMO_SOURCES: [(&str, &str, &str); 5] = [
    (
        "minetest-data",
        "default/sounds/default_break_glass.1.ogg",
        "CC BY 3.0, cmusounddesign (freesound 71947)",
    ),
    (
        "minetest-data",
        "doors/sounds/doors_glass_door_close.ogg",
        "CC0 1.0, SkeetMasterFunk69 (freesound 235546)",
    ),
    (
        "minetest-data",
        "default/textures/default_glass.png",
        "CC0 1.0, Krock",
    ),
    (
        "minetest-data",
        "doors/textures/doors_door_wood.png",
        "CC BY-SA 3.0, Fernando Zapata / PilzAdam",
    ),
    (
        "opencv-doc",
        "usr/share/doc/opencv-doc/examples/data/home.jpg",
        "BSD-3-Clause, OpenCV samples",
    ),
];

fn src_path(cache: &Path, i: usize) -> std::path::PathBuf {
    let (pkg, rel, _) = DEMO_SOURCES[i];
    let rel = if pkg == "minetest-data" {
        format!("{MT}/{rel}")
    } else {
        rel.to_string()
    };
    media_dir(cache, pkg).join(rel)
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
}

pub fn demo(cache: &Path, out: &Path) -> Result<()> {
    let glass_snd = mbt_media::audio::read_mono(&src_path(cache, 0), RATE)?;
    let door_snd = mbt_media::audio::read_mono(&src_path(cache, 1), RATE)?;
    let id = |i: usize| format!("{}:{}", DEMO_SOURCES[i].0, DEMO_SOURCES[i].1);
    let images = [
        load_image(&src_path(cache, 2), &id(2), None)?,
        load_image(&src_path(cache, 3), &id(3), Some([0, 0, 16, 32]))?,
    ];
    let bg = load_image(&src_path(cache, 4), &id(4), None)?;
    let sounds = [glass_snd, door_snd];

    // The script. Door source levels as in AVE-Intersect: slam 0 dB, soft -9 dB.
    let (near, far) = (1.25, 4.0);
    let shown = [
        Shown {
            img: 0,
            x: 24.0,
            distance: 3.0,
            from: 0.0,
            to: 3.6,
        },
        Shown {
            img: 1,
            x: 84.0,
            distance: near,
            from: 5.0,
            to: 9.0,
        },
        Shown {
            img: 1,
            x: 40.0,
            distance: far,
            from: 9.5,
            to: 13.5,
        },
        Shown {
            img: 0,
            x: 60.0,
            distance: 2.5,
            from: 16.0,
            to: 20.1,
        },
    ];
    let heard = [
        Heard {
            snd: 0,
            at: 3.0,
            level_db: -3.0,
        },
        Heard {
            snd: 1,
            at: 7.0,
            level_db: -1.0 - attenuation_db(near),
        },
        Heard {
            snd: 1,
            at: 11.0,
            level_db: -8.5 - attenuation_db(far),
        },
        Heard {
            snd: 1,
            at: 15.0,
            level_db: -10.0,
        },
        Heard {
            snd: 0,
            at: 19.5,
            level_db: -4.0,
        },
    ];
    let labels = [
        "glass_breaking",
        "door_slammed",
        "door_closed_softly",
        "none",
        "glass_breaking",
    ];

    // Audio: the events, a small room, quiet background noise.
    let n = (SECONDS * RATE as f64) as usize;
    let mut mix = vec![0.0f32; n];
    let mut events = Vec::new();
    for (h, label) in heard.iter().zip(labels) {
        let x = &sounds[h.snd];
        let g = (REF_RMS * dsp::db_to_gain(h.level_db) / dsp::active_rms(x).max(1e-9)) as f32;
        let start = (h.at * RATE as f64) as usize;
        for (m, v) in mix[start..].iter_mut().zip(x) {
            *m += v * g;
        }
        if label != "none" {
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
    let wav = out.join("audio.wav");
    mbt_media::wav::write_mono_i16(&wav, RATE, &mix)?;

    // Video: a fixed view; objects appear and disappear; a broken glass is gone afterwards.
    let frames = (SECONDS * FPS as f64) as usize;
    let side = bg.width.min(bg.height) as f64;
    let scale = side / SIZE as f64;
    for f in 0..frames {
        let t = f as f64 / FPS as f64;
        let mut buf = vec![0.0f32; SIZE * SIZE * 3];
        for y in 0..SIZE {
            for x in 0..SIZE {
                let p = sample(
                    &bg,
                    (x as f64 + 0.5) * scale - 0.5,
                    (y as f64 + 0.5) * scale - 0.5,
                );
                buf[(y * SIZE + x) * 3..][..3].copy_from_slice(&p[..3]);
            }
        }
        let mut visible: Vec<&Shown> = shown.iter().filter(|s| t >= s.from && t < s.to).collect();
        visible.sort_by(|a, b| b.distance.total_cmp(&a.distance));
        for s in visible {
            draw(
                &mut buf,
                &images[s.img],
                s.x,
                NEAR_PX / s.distance,
                60.0 + 50.0 / s.distance,
            );
        }
        let px: Vec<u8> = buf
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        let img = image::RgbImage::from_raw(SIZE as u32, SIZE as u32, px)
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
    let timeline = json!({
        "clip": "AVE-Intersect demo",
        "duration": SECONDS,
        "audio": "audio.wav",
        "frames": "frames/",
        "fps": FPS,
        "sample_rate": RATE,
        "events": events,
        "notes": "start/end are the event's sound onset/offset in seconds; the door closing at 15 s is off-screen (no door is in view), so it is not an event",
        "sources": DEMO_SOURCES.iter().map(|(p, f, l)| json!({"package": p, "path": f, "licence": l})).collect::<Vec<_>>(),
        "regenerate": "mbt data fetch && mbt data demo --out models/demo",
    });
    let tl = out.join("timeline.json");
    std::fs::write(&tl, serde_json::to_string_pretty(&timeline)? + "\n")
        .with_context(|| format!("cannot write {}", tl.display()))?;
    Ok(())
}

fn draw(buf: &mut [f32], img: &Image, cx: f64, h: f64, y_bottom: f64) {
    let w = h * img.width as f64 / img.height as f64;
    let (x0, y0) = (cx - w / 2.0, y_bottom - h);
    for y in (y0.max(0.0) as usize)..(y_bottom.min(SIZE as f64) as usize) {
        for x in (x0.max(0.0) as usize)..((x0 + w).min(SIZE as f64) as usize) {
            let u = (x as f64 + 0.5 - x0) / w;
            let v = (y as f64 + 0.5 - y0) / h;
            let s = sample(img, u * img.width as f64 - 0.5, v * img.height as f64 - 0.5);
            let a = s[3] / 255.0;
            let i = (y * SIZE + x) * 3;
            for k in 0..3 {
                buf[i + k] = s[k] + buf[i + k] * (1.0 - a);
            }
        }
    }
}
