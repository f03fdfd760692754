//! Configuration text from users: mbt-publish's `[mqtt]`/`[postcard]`/`[gpio]`/`[spool]`/
//! `[metrics]`/`[evidence]` sections (`PublishConfig::from_toml` + `validate` and the values
//! derived from a valid config), and mbt-core's settings loader with `--set` overrides into the
//! tokenizer config (+ `validate` and its derived sizes).
//!
//! Input: TOML text; lines starting with `--set ` are taken out and applied as overrides.
//! Checked besides "no panic": a valid publishing config survives a TOML round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbt_core::settings;
use mbt_core::TokenizerConfig;
use mbt_publish::config::{parse_broker_url, PublishConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut toml_text = String::new();
    let mut overrides = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("--set ") {
            Some(o) => overrides.push(o.to_string()),
            None => {
                toml_text.push_str(line);
                toml_text.push('\n');
            }
        }
    }

    // mbt-publish. `validate` opens the files a config names (TLS, password): the seeds name
    // none, and the fuzzer has no reason to find /dev paths that block.
    if let Ok(cfg) = PublishConfig::from_toml(&toml_text) {
        if cfg.validate().is_ok() {
            let _ = cfg.mqtt.broker().expect("validated URL parses");
            let _ = cfg.mqtt.client_id();
            let _ = cfg.postcard.udp_addr().expect("validated address parses");
            let _ = cfg.spool.options_for("fuzz");
            let _ = cfg
                .metrics
                .addr()
                .expect("validated metrics address parses");
            let _ = cfg.spool.dir();
            let _ = cfg.evidence.dir();
            let back = toml::to_string(&cfg).expect("a config serialises");
            let again = PublishConfig::from_toml(&back).expect("a serialised config parses");
            assert_eq!(again, cfg, "TOML round trip of\n{back}");
        }
    }
    let _ = parse_broker_url(text);

    // mbt-core's settings loader and the tokenizer config.
    if let Ok(cfg) = settings::load::<TokenizerConfig>(&toml_text, "fuzz.toml", &overrides) {
        if cfg.validate().is_ok() {
            let a = &cfg.audio;
            let _ = (a.window_size(), a.window_shift(), a.fft_size());
            let _ = (a.token_count(), a.token_dim(), a.frames_for(16_000));
            let _ = (cfg.video.token_count(), cfg.video.token_dim());
        }
    }
});
