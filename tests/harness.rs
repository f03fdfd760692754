//! The harness the tests that start `mbtd` share: a daemon in the background, its web address
//! read from its log, its stdout (events, windows) and log collected, signals, a clean stop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbt_core::event::Event;

use crate::common::{random_model, ROOT};

/// A daemon in the background with its stdout (events, windows) and log collected.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    out: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<Vec<String>>>,
}

fn collect(r: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

impl Daemon {
    /// Starts `mbtd` with the web page on a free loopback port, the random test model (`args`
    /// may name another: the last `--set` wins), then `args`; its state under `state`. Returns
    /// once the page is up.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], state: &Path) -> Daemon {
        let model = format!("model.path={}", random_model().display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_mbtd"))
            .args(["--set", "web.listen=127.0.0.1:0"])
            .args(["--set", &model])
            .args(args)
            .current_dir(ROOT)
            .env_remove("MBTD_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .env("XDG_STATE_HOME", state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mbtd starts");
        let (out, log) = (Arc::default(), Arc::default());
        collect(child.stdout.take().expect("stdout"), Arc::clone(&out));
        collect(child.stderr.take().expect("stderr"), Arc::clone(&log));
        let mut r = Daemon {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            out,
            log,
        };
        let line = r.wait_log("web: http://", Duration::from_secs(60));
        let a = line
            .split("web: http://")
            .nth(1)
            .and_then(|x| x.split('/').next())
            .unwrap_or_default();
        r.addr = a.parse().unwrap_or_else(|e| panic!("{a}: {e}"));
        r
    }

    /// The daemon's process id (for `/proc/<pid>` samples).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `what`; returns it.
    pub fn wait_log(&self, what: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            if t0.elapsed() > timeout {
                panic!("no `{what}` in the log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads the log later (after [`Daemon::stop`] consumed the daemon).
    pub fn log_handle(&self) -> impl Fn() -> String {
        let log = Arc::clone(&self.log);
        move || log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Events printed so far.
    pub fn events(&self) -> Vec<Event> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with("{\"window\""))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Windows printed so far (`sink.stdout_scores`).
    pub fn windows(&self) -> Vec<serde_json::Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("{\"window\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["window"].clone())
            .collect()
    }

    /// Waits until `ok` holds for the events printed.
    pub fn wait_events(&self, what: &str, ok: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let t0 = Instant::now();
        loop {
            let ev = self.events();
            if ok(&ev) {
                return ev;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!(
                    "{what}: not seen in {} events; log:\n{}",
                    ev.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }

    /// SIGINT, then the exit report (`done: {...}`).
    pub fn stop(mut self) -> serde_json::Value {
        self.signal("INT");
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(30), "mbtd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        crate::common::report(&self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
