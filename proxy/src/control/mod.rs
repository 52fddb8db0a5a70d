//! The control socket: a local Unix socket answering Kamailio-style RPC verbs, and the client
//! side used by `siplb ctl`.
//!
//! One request per connection: the client writes one line (`verb arg …`), the server answers
//! `ok\n` followed by the output, or `error <message>\n`, and closes.

pub mod verbs;

use crate::metrics::ShardStats;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the control thread can see.
pub struct ControlState {
    pub stats: Vec<Arc<ShardStats>>,
    /// Gauges and flags that are not per worker: `(name, value)`.
    pub globals: Vec<(&'static str, u64)>,
    pub shutdown: Arc<AtomicBool>,
}

/// Binds the control socket (replacing a stale one) and serves it on a thread of its own.
pub fn serve(path: &Path, state: ControlState) -> io::Result<std::thread::JoinHandle<()>> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running siplb", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    let path: PathBuf = path.into();
    std::thread::Builder::new()
        .name("siplb-control".into())
        .spawn(move || {
            while !state.shutdown.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        if let Err(e) = handle(stream, &state) {
                            tracing::debug!("control connection: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn handle(stream: UnixStream, state: &ControlState) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(4096)
        .read_line(&mut line)?;
    let args: Vec<&str> = line.split_whitespace().collect();
    let mut out = stream;
    match verbs::run(state, &args) {
        Ok(text) => {
            out.write_all(b"ok\n")?;
            out.write_all(text.as_bytes())?;
        }
        Err(msg) => writeln!(out, "error {msg}")?,
    }
    Ok(())
}

/// Sends one request; `Ok(output)` or `Err(message)` as the server said, or why it could not.
pub fn call(path: &Path, args: &[String]) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is siplb running with this config?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    writeln!(s, "{}", args.join(" ")).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    match reply.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some((first, _)) if first.starts_with("error ") => Err(first["error ".len()..].to_string()),
        _ => Err(format!("unexpected reply: {reply:?}")),
    }
}
