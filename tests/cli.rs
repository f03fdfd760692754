//! `mbtd` as a user (or systemd) runs it: help, effective config, config errors, exit codes.

use std::process::{Command, Output};

fn mbtd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(args)
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("mbtd-test-cli-state"),
        )
        .output()
        .expect("mbtd runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version() {
    let o = mbtd(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--config") && help.contains("--print-config") && help.contains("--set"),
        "{help}"
    );
    assert!(mbtd(&["--version"]).status.success());
}

#[test]
fn print_config_shows_effective_values_and_parses_back() {
    let o = mbtd(&[
        "--print-config",
        "--set",
        "model.backend=cpu",
        "--set",
        "window.hop_s=0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let cfg: mbtd::Config = toml::from_str(&text).expect("printed config is valid TOML");
    assert_eq!(cfg.model.backend, "cpu");
    assert_eq!(cfg.window.hop_s, 0.5);
    assert_eq!(cfg.window.length_s, 2.0, "defaults are printed too");
}

#[test]
fn config_file_errors_name_file_and_field() {
    let dir = std::env::temp_dir().join(format!("mbtd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[model]\nbackend = \"tpu\"\n").unwrap();
    let o = mbtd(&["--config", p.to_str().unwrap(), "--print-config"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model.backend") && stderr(&o).contains("bad.toml"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&p, "[window]\nlenght_s = 2.0\n").unwrap();
    let o = mbtd(&["--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("lenght_s"), "{}", stderr(&o));

    let o = mbtd(&["--config", "/nonexistent/mbtd.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/mbtd.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_model_is_a_clear_error() {
    let o = mbtd(&["--set", "model.path=/nonexistent/model.onnx"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model.path") && stderr(&o).contains("/nonexistent/model.onnx"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_packaged_config_is_a_valid_mbtd_config() {
    let p = std::path::Path::new(crate::common::ROOT).join("packaging/mbtd.toml");
    let o = mbtd(&["--config", p.to_str().unwrap(), "--print-config"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(printed["web"]["listen"].as_str(), Some("127.0.0.1:8090"));
}
