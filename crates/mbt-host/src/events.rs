//! `mbt events listen`: receives postcard event frames (see `mbt_publish::frame`) on a Unix
//! stream socket or a UDP address and prints each event as one JSON line on stdout.
//!
//! The publishing side (`[postcard]` in mbtd's config, or `mbt-publish`) *connects* to the
//! Unix socket and writes frames back to back, reconnecting when the listener goes away; so
//! here `--unix` is the server: it binds and accepts any number of publishers, each with its own
//! stream decoder. Over UDP every datagram holds one frame (several zero-delimited frames are
//! accepted too).
//!
//! A corrupt frame (bad COBS, bad postcard, an event schema this build does not know) is
//! reported on stderr and skipped; decoding resumes at the next delimiter. Events are printed
//! in the order they are decoded; with several Unix publishers at once their events
//! interleave.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mbt_core::event::Event;
use mbt_publish::frame::{self, FrameError, StreamDecoder};

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Listen for postcard event frames (from mbtd's `[postcard]` sink or `mbt-publish`) and
    /// print each event as a JSON line; corrupt frames are reported on stderr and skipped
    Listen(ListenArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("on").required(true).args(["unix", "udp"])))]
pub struct ListenArgs {
    /// Unix stream socket to create and accept publishers on (a stale socket file there is
    /// replaced; any other file is refused)
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// UDP address to bind, e.g. 127.0.0.1:5555 (port 0: any free port, printed on stderr)
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<String>,
    /// Exit after printing N events (default: run until interrupted)
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

pub fn run(cmd: EventsCmd) -> anyhow::Result<()> {
    match cmd {
        EventsCmd::Listen(a) => listen(a),
    }
}

/// What the receiving threads hand to the printer.
enum Got {
    Event(Event),
    Bad {
        from: String,
        error: FrameError,
    },
    /// A Unix publisher disconnected in the middle of a frame.
    Cut {
        from: String,
        bytes: usize,
    },
}

fn listen(args: ListenArgs) -> anyhow::Result<()> {
    if args.count == Some(0) {
        bail!("--count must be at least 1");
    }
    let (tx, rx) = mpsc::channel::<Got>();
    let _socket_file = match (&args.unix, &args.udp) {
        (Some(path), None) => {
            let listener = bind_unix(path)?;
            eprintln!("mbt: listening on unix {}", path.display());
            std::thread::spawn(move || accept_loop(listener, tx));
            Some(RemoveOnDrop(path.clone()))
        }
        (None, Some(addr)) => {
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("--udp `{addr}` is not an address like 127.0.0.1:5555"))?;
            let sock =
                UdpSocket::bind(addr).with_context(|| format!("binding UDP address {addr}"))?;
            let local = sock
                .local_addr()
                .with_context(|| format!("the bound address of UDP {addr}"))?;
            eprintln!("mbt: listening on udp {local}");
            std::thread::spawn(move || udp_loop(sock, tx));
            None
        }
        _ => bail!("give exactly one of --unix PATH or --udp ADDR"),
    };

    let mut printed = 0u64;
    let stdout = std::io::stdout();
    for msg in rx {
        match msg {
            Got::Event(e) => {
                let line = serde_json::to_string(&e).context("serialising an event as JSON")?;
                let mut out = stdout.lock();
                match writeln!(out, "{line}").and_then(|_| out.flush()) {
                    Ok(()) => {}
                    // The reader went away (`| head`): nothing left to do.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing to stdout"),
                }
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Got::Bad { from, error } => {
                eprintln!("mbt: events: skipped a corrupt frame from {from}: {error}")
            }
            Got::Cut { from, bytes } => {
                eprintln!("mbt: events: {from} disconnected in the middle of a frame ({bytes} bytes dropped)")
            }
        }
    }
    bail!("the listening socket failed (see above)")
}

/// The socket file is removed when the listener exits normally (after `--count` events or an
/// error); one left behind by a killed listener is replaced at the next start.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "{}: another listener is already accepting on this socket",
                    path.display()
                );
            }
            // Stale: left by a listener that was killed.
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it (expected a path for a new Unix socket)",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    UnixListener::bind(path).with_context(|| format!("binding Unix socket {}", path.display()))
}

fn accept_loop(listener: UnixListener, tx: mpsc::Sender<Got>) {
    let mut n = 0u64;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                n += 1;
                let tx = tx.clone();
                let from = format!("publisher #{n}");
                std::thread::spawn(move || read_stream(stream, &from, &tx));
            }
            Err(e) => {
                // Accept errors are mostly transient (a publisher that hung up at once, file
                // descriptors running out): report and go on.
                eprintln!("mbt: events: accepting a connection: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

fn read_stream(mut stream: UnixStream, from: &str, tx: &mpsc::Sender<Got>) {
    let mut dec = StreamDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("mbt: events: reading from {from}: {e}");
                break;
            }
        };
        for r in dec.feed(&buf[..n]) {
            if tx.send(got(r, from)).is_err() {
                return;
            }
        }
    }
    if dec.pending() > 0 {
        let _ = tx.send(Got::Cut {
            from: from.to_string(),
            bytes: dec.pending(),
        });
    }
}

fn udp_loop(sock: UdpSocket, tx: mpsc::Sender<Got>) {
    // The largest UDP payload: a datagram is never cut short by the buffer.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("mbt: events: receiving: {e}");
                return;
            }
        };
        let from = peer.to_string();
        let data = &buf[..n];
        // One frame per datagram (its trailing delimiter optional), or several delimited ones.
        let data = data.strip_suffix(&[0]).unwrap_or(data);
        if data.is_empty() {
            if tx.send(got(Err(FrameError::Empty), &from)).is_err() {
                return;
            }
            continue;
        }
        for f in data.split(|&b| b == 0) {
            if tx.send(got(frame::decode(f), &from)).is_err() {
                return;
            }
        }
    }
}

fn got(r: Result<Event, FrameError>, from: &str) -> Got {
    match r {
        Ok(e) => Got::Event(e),
        Err(error) => Got::Bad {
            from: from.to_string(),
            error,
        },
    }
}
