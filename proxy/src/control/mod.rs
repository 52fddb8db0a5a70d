//! The control socket: a local Unix socket answering Kamailio-style RPC verbs, and the client
//! side used by `siplb ctl`.
//!
//! One request per connection: the client writes one line (`[--json] verb arg …`; `--json`
//! may also come after the verb), the server answers `ok\n` followed by the output (kamcmd's
//! format, or JSON), or `error <message>\n`, and closes. Verbs about dialogs ask the workers,
//! through a small queue each and a `MSG_RING` wake-up posted into their io_uring.
//!
//! The socket is created with the mode `[control] mode` (0660 by default) whatever the umask,
//! and handed to the group `[control] group` when one is set.

pub mod dispatcher;
pub mod format;
pub mod table;
pub mod verbs;

use crate::dialog::Profiles;
use crate::metrics::Counter;
use crate::worker::{TOKEN_CONTROL, WorkerHandle};
use io_uring::{IoUring, opcode, types};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What `core.info` says about the configuration siplb runs with.
#[derive(Debug, Clone, Default)]
pub struct CoreInfo {
    /// The configuration file.
    pub config: String,
    /// `udp:ip:port` each.
    pub listen: Vec<String>,
    /// `steering.mode` as configured: `auto`, `bpf`, `off`.
    pub steering: &'static str,
    pub control_socket: String,
}

/// The control socket's mode and group (`[control] mode`, `[control] group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPerms {
    pub mode: u32,
    /// A group id; `None`: the group siplb runs as.
    pub gid: Option<u32>,
}

impl Default for SocketPerms {
    fn default() -> Self {
        SocketPerms {
            mode: crate::config::DEFAULT_CONTROL_MODE,
            gid: None,
        }
    }
}

/// What the control thread can see.
pub struct ControlState {
    pub workers: Vec<Arc<WorkerHandle>>,
    pub profiles: Arc<Profiles>,
    /// Statistics that are not per worker.
    pub globals: Vec<(&'static str, Arc<Counter>)>,
    pub shutdown: Arc<AtomicBool>,
    /// `core.drain`.
    pub drain: Arc<crate::drain::Drain>,
    /// The XDP guard, once attached (for `blocklist` and `pike.top`).
    pub guard: Arc<std::sync::OnceLock<Arc<crate::steering::XdpGuard>>>,
    /// Set once siplb is fully up (workers running, steering attached): requests wait until
    /// then, so a client that gets an answer knows siplb is serving.
    pub ready: Arc<AtomicBool>,
    /// When the control state was made (at start): wall clock for `core.uptime`'s
    /// `up_since`, monotonic for its `uptime`.
    pub started: (SystemTime, Instant),
    pub info: CoreInfo,
    pub perms: SocketPerms,
    /// What `cfg.reload` runs (none until siplb is up).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// A ring of the control thread's own, to post wake-ups into the workers' rings (none:
    /// the workers find their jobs at their next wake-up, within 200 ms).
    ring: Option<std::cell::RefCell<IoUring>>,
}

impl ControlState {
    pub fn new(
        workers: Vec<Arc<WorkerHandle>>,
        profiles: Arc<Profiles>,
        globals: Vec<(&'static str, Arc<Counter>)>,
        shutdown: Arc<AtomicBool>,
        ready: Arc<AtomicBool>,
        guard: Arc<std::sync::OnceLock<Arc<crate::steering::XdpGuard>>>,
    ) -> ControlState {
        ControlState {
            workers,
            profiles,
            globals,
            shutdown,
            drain: Arc::default(),
            ready,
            guard,
            started: (SystemTime::now(), Instant::now()),
            info: CoreInfo::default(),
            perms: SocketPerms::default(),
            reloader: None,
            ring: None,
        }
    }

    /// Takes what `core.info` reports and the socket's permissions from `cfg`.
    /// With `core.drain` starting `drain`.
    pub fn with_drain(mut self, drain: Arc<crate::drain::Drain>) -> ControlState {
        self.drain = drain;
        self
    }

    /// With `cfg.reload` running `r`.
    pub fn with_reloader(mut self, r: Arc<crate::reload::Reloader>) -> ControlState {
        self.reloader = Some(r);
        self
    }

    pub fn with_config(mut self, cfg: &crate::config::Config) -> ControlState {
        self.info = CoreInfo {
            config: cfg.path.display().to_string(),
            listen: vec![format!("udp:{}", cfg.listen)],
            steering: match cfg.steering {
                crate::config::SteeringMode::Auto => "auto",
                crate::config::SteeringMode::Bpf => "bpf",
                crate::config::SteeringMode::Off => "off",
            },
            control_socket: cfg.control_socket.display().to_string(),
        };
        self.perms = SocketPerms {
            mode: cfg.control_mode,
            gid: cfg.control_group,
        };
        self
    }

    /// Wakes worker `i` to look at its control queue.
    fn wake(&self, i: usize) {
        let Some(ring) = &self.ring else { return };
        let fd = self.workers[i].ring_fd.load(Ordering::Acquire);
        if fd < 0 {
            return;
        }
        let mut ring = ring.borrow_mut();
        let e = opcode::MsgRingData::new(types::Fd(fd), 0, TOKEN_CONTROL, None)
            .build()
            .user_data(1);
        // SAFETY: the entry holds no pointers.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            let _ = ring.submit_and_wait(1);
        }
        ring.completion().for_each(drop);
    }
}

/// Binds the control socket (replacing a stale one) and serves it on a thread of its own,
/// until `state.shutdown`; the caller removes the socket once the thread has stopped.
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
    let listener = bind(path, state.perms)?;
    listener.set_nonblocking(true)?;
    let mut state = state;
    std::thread::Builder::new()
        .name("siplb-control".into())
        .spawn(move || {
            state.ring = IoUring::new(8).ok().map(std::cell::RefCell::new);
            while !state.shutdown.load(Ordering::Relaxed) {
                if !state.ready.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
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
        })
}

/// Binds `path` with mode `perms.mode` and group `perms.gid`. The socket's inode gets the
/// mode before `bind` (Linux creates the file with it, less the umask), so the file is never
/// more open than asked; `chmod` then sets it exactly, whatever the umask took away.
fn bind(path: &Path, perms: SocketPerms) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let s = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    // SAFETY: a plain syscall on a descriptor we own.
    if unsafe { libc::fchmod(s.as_raw_fd(), perms.mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    s.bind(&SockAddr::unix(path)?)?;
    let set = || -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode))?;
        if let Some(gid) = perms.gid {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        Ok(())
    };
    if let Err(e) = set() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    s.listen(128)?;
    Ok(s.into())
}

/// Takes `--json` out of `args`, wherever it is: whether JSON was asked for.
pub fn take_json<S: AsRef<str>>(args: &mut Vec<S>) -> bool {
    let before = args.len();
    args.retain(|a| a.as_ref() != "--json");
    args.len() != before
}

fn handle(stream: UnixStream, state: &ControlState) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(4096)
        .read_line(&mut line)?;
    let mut args: Vec<&str> = line.split_whitespace().collect();
    let json = take_json(&mut args);
    let mut out = stream;
    match verbs::run(state, &args) {
        Ok(reply) => {
            out.write_all(b"ok\n")?;
            out.write_all(reply.render(json).as_bytes())?;
        }
        Err(msg) => writeln!(out, "error {msg}")?,
    }
    Ok(())
}

/// Sends one request (`json`, or `--json` among `args`: ask for JSON); `Ok(output)` or
/// `Err(message)` as the server said, or why it could not.
pub fn call(path: &Path, json: bool, args: &[String]) -> Result<String, String> {
    let mut args = args.to_vec();
    let json = take_json(&mut args) || json;
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is siplb running with this config?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let flag = if json { "--json " } else { "" };
    writeln!(s, "{flag}{}", args.join(" ")).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    match reply.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some((first, _)) if first.starts_with("error ") => Err(first["error ".len()..].to_string()),
        _ => Err(format!("unexpected reply: {reply:?}")),
    }
}
