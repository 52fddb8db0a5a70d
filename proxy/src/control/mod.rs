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
use std::io::{self, Read, Write};
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
            let mut waiting: Vec<Incoming> = Vec::new();
            while !state.shutdown.load(Ordering::Relaxed) {
                if !state.ready.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                serve_round(&listener, &mut waiting, &state);
            }
        })
}

/// How long a client has to send its request line, from its connection on: one that is slow
/// or silent is answered with an error then, and never holds up the others.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections read at once at most; more wait in the listener's backlog.
const MAX_WAITING: usize = 64;
/// The longest request line.
const MAX_REQUEST: usize = 4096;

/// A connection whose request line is still coming.
struct Incoming {
    stream: UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// One round of the control thread: waits (at most 100 ms) for new connections and for the
/// request lines of those already open, and answers each request as soon as its line is
/// whole. The verbs themselves run one at a time on this thread.
fn serve_round(listener: &UnixListener, waiting: &mut Vec<Incoming>, state: &ControlState) {
    use std::os::fd::AsRawFd;
    let now = Instant::now();
    let mut timeout = Duration::from_millis(100);
    for w in waiting.iter() {
        timeout = timeout.min(w.deadline.saturating_duration_since(now));
    }
    let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
        .chain(waiting.iter().map(|w| w.stream.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of pollfd of that length.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if n < 0 {
        std::thread::sleep(Duration::from_millis(10));
        return;
    }
    let whole: Vec<bool> = fds[1..]
        .iter()
        .zip(waiting.iter_mut())
        .map(|(fd, w)| fd.revents != 0 && read_some(w))
        .collect();
    let now = Instant::now();
    // From the back, so that what `swap_remove` moves into place was already looked at.
    for i in (0..waiting.len()).rev() {
        if whole[i] || waiting[i].deadline <= now {
            let outcome = if whole[i] {
                Outcome::Whole
            } else {
                Outcome::Late
            };
            answer(waiting.swap_remove(i), outcome, state);
        }
    }
    if fds[0].revents != 0 {
        for _ in 0..MAX_WAITING {
            match listener.accept() {
                Ok((stream, _)) => {
                    // Full: the connection that has waited longest gives way (it has sent
                    // nothing whole in all that time), so that idle ones never lock out
                    // `siplb ctl`.
                    if waiting.len() >= MAX_WAITING
                        && let Some(oldest) =
                            (0..waiting.len()).min_by_key(|&i| waiting[i].deadline)
                    {
                        answer(waiting.swap_remove(oldest), Outcome::Evicted, state);
                    }
                    let _ = stream.set_nonblocking(true);
                    waiting.push(Incoming {
                        stream,
                        line: Vec::new(),
                        deadline: Instant::now() + REQUEST_DEADLINE,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

/// Reads what a connection has sent; whether its request is whole (a line end, the longest
/// line, or the end of its input).
fn read_some(w: &mut Incoming) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match (&w.stream).read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                let room = MAX_REQUEST - w.line.len();
                w.line.extend_from_slice(&buf[..n.min(room)]);
                if w.line.contains(&b'\n') || w.line.len() >= MAX_REQUEST {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Why a connection is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its request line is whole (or as long as a request may be).
    Whole,
    /// Its time to send the line is up.
    Late,
    /// It gave way to a new connection (every place taken, it had waited longest).
    Evicted,
}

/// Answers a connection: its verb's reply, or an error when its line did not come in time.
fn answer(w: Incoming, outcome: Outcome, state: &ControlState) {
    let stream = w.stream;
    let _ = stream.set_nonblocking(false);
    // A client that does not read its reply holds the thread this long at most.
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    let whole = outcome == Outcome::Whole;
    let result = if outcome == Outcome::Evicted {
        let mut out = stream;
        writeln!(
            out,
            "error {MAX_WAITING} connections were waiting and this one had sent no request \
             line longest"
        )
    } else if whole && w.line.len() >= MAX_REQUEST && !w.line.contains(&b'\n') {
        let mut out = stream;
        let said = writeln!(out, "error request longer than {MAX_REQUEST} bytes");
        // Read what the client still sends (briefly): closing with it unread would reset
        // the connection, and the client would see that instead of the answer.
        let _ = out.shutdown(std::net::Shutdown::Write);
        let _ = out.set_read_timeout(Some(Duration::from_millis(100)));
        let mut sink = [0u8; 4096];
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until && matches!((&out).read(&mut sink), Ok(n) if n > 0) {}
        said
    } else if whole {
        handle(stream, &w.line, state)
    } else {
        let mut out = stream;
        writeln!(
            out,
            "error no request line within {} s",
            REQUEST_DEADLINE.as_secs()
        )
    };
    if let Err(e) = result {
        tracing::debug!("control connection: {e}");
    }
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
    // Its folder is made when it does not exist yet, as `--check` tries it.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
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

fn handle(stream: UnixStream, line: &[u8], state: &ControlState) -> io::Result<()> {
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
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

/// How long `siplb ctl` waits for siplb's answer.
const CLIENT_WAIT: Duration = Duration::from_secs(10);

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
    s.set_read_timeout(Some(CLIENT_WAIT)).ok();
    let flag = if json { "--json " } else { "" };
    let request = format!("{flag}{}", args.join(" "));
    if request.len() >= MAX_REQUEST {
        return Err(format!(
            "the request is {} bytes long; siplb takes at most {}",
            request.len(),
            MAX_REQUEST - 1
        ));
    }
    writeln!(s, "{request}").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "no answer from {} within {} s (siplb busy or stuck?)",
            path.display(),
            CLIENT_WAIT.as_secs()
        ),
        _ => e.to_string(),
    })?;
    match reply.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some((first, _)) if first.starts_with("error ") => Err(first["error ".len()..].to_string()),
        _ => Err(format!("unexpected reply: {reply:?}")),
    }
}
