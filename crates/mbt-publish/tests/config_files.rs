//! The shipped example config and the binary's handling of bad configs.

use std::process::Command;

use mbt_publish::config::PublishConfig;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/mbtd.toml")
}

#[test]
fn the_packaged_example_parses_and_validates() {
    let text = std::fs::read_to_string(example()).unwrap();
    // The example is a whole mbtd.toml; take the tables this crate owns.
    let mut ours = toml::Table::new();
    let all: toml::Table = toml::from_str(&text).unwrap();
    for k in ["mqtt", "postcard", "gpio", "spool", "metrics", "evidence"] {
        let v = all
            .get(k)
            .unwrap_or_else(|| panic!("packaging/mbtd.toml lacks [{k}]"));
        ours.insert(k.into(), v.clone());
    }
    let cfg = PublishConfig::from_toml(&toml::to_string(&ours).unwrap()).unwrap();
    cfg.validate().unwrap();
}

fn run_with(conf: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, conf).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mbt-publish"))
        .args(["--config", p.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_sink_config_is_a_clear_error_at_start() {
    let cases = [
        ("[mqtt]\nenabled = true\nurl = \"http://broker\"\n", "mqtt.url"),
        (
            "[mqtt]\nenabled = true\nurl = \"mqtts://broker\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "mqtt.ca_file",
        ),
        (
            "[mqtt]\nenabled = true\nurl = \"mqtts://broker\"\nca_file = \"/etc/hostname\"\nclient_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"\n",
            "mqtt.client_cert",
        ),
        ("[mqtt]\nenabeld = true\n", "enabeld"),
        ("[postcard]\nudp = \"nowhere\"\n", "postcard.udp"),
    ];
    for (conf, field) in cases {
        let (code, err) = run_with(conf);
        assert_eq!(code, 1, "{conf}: {err}");
        assert!(
            err.contains(field),
            "{conf}: stderr does not name `{field}`: {err}"
        );
    }
}
