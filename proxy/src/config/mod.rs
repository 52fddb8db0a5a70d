//! The configuration file: TOML as written ([`file::FileConfig`]) turned into a checked
//! [`Config`]. Every error names the file, the line and the key; unknown keys are errors;
//! relative paths resolve from the file's folder. Defaults are the `DEFAULT_*` constants.

mod acc;
mod bounds;
mod cluster;
mod datapath;
mod dialog;
pub mod file;
pub mod paths;
mod sections;

use crate::proxy::{ProxyConfig, Routing};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_CONTROL_SOCKET: &str = "siplb.ctl";
/// The control socket's mode: owner and group read and write.
pub const DEFAULT_CONTROL_MODE: u32 = 0o660;
pub const DEFAULT_QUEUE_PER_WORKER: usize = 65_536;
pub const DEFAULT_TRANSACTIONS_PER_WORKER: usize = 200_000;
pub const DEFAULT_TRANSACTION_MB_PER_WORKER: u64 = 1024;
pub const DEFAULT_CALLS_PER_WORKER: usize = 200_000;
pub const DEFAULT_RETRY_AFTER_S: u32 = 5;
pub const DEFAULT_RECV_BUFFERS: u16 = 512;
pub const DEFAULT_RECV_BUFFER_SIZE: u32 = 16_384;
pub const DEFAULT_SOCKET_RCVBUF: usize = 4 << 20;
pub const DEFAULT_BATCH: usize = 32;
pub const DEFAULT_BATCH_WAIT_US: u32 = 1000;
pub const DEFAULT_T1_MS: u64 = 500;
pub const DEFAULT_T2_MS: u64 = 4_000;
pub const DEFAULT_T4_MS: u64 = 5_000;
pub const DEFAULT_TIMER_B_MS: u64 = 32_000;
pub const DEFAULT_TIMER_C_MS: u64 = 180_000;
pub const DEFAULT_TIMER_D_MS: u64 = 32_000;
pub const DEFAULT_CALL_LINGER_MS: u64 = 32_000;
pub const DEFAULT_DIALOG_TIMEOUT_S: u64 = 43_200;
pub const DEFAULT_EARLY_TIMEOUT_S: u64 = 300;
pub const DEFAULT_NOACK_TIMEOUT_S: u64 = 60;
pub const DEFAULT_ACCOUNT_TABLE: usize = 100_000;
pub const DEFAULT_VALUE_TABLE: usize = 100_000;
pub const DEFAULT_LIMIT_REPLY_CODE: u16 = 503;
pub const DEFAULT_LIMIT_REPLY_REASON: &str = "Account call limit";
pub const DEFAULT_LIMIT_Q850_CAUSE: u16 = 34;
pub const DEFAULT_EVENTS_QUEUE: usize = 65_536;

/// How a section reader reports a bad value: its span in the file, the key, the message.
type Invalid<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The OS error is said here, and is not also the error's `source`: printed with its
    /// chain (`{:#}`) it would appear twice.
    #[error("{file}: cannot read: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// TOML syntax, unknown keys, wrong types: toml's message names the key.
    #[error("{file}:{line}: {message}")]
    Toml {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// How datagrams reach their owner worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteeringMode {
    /// BPF when it can attach, software hand-off otherwise.
    Auto,
    /// BPF or fail.
    Bpf,
    /// Software hand-off only.
    Off,
}

/// Which data path the workers use (`workers.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// The kernel's UDP sockets, through io_uring.
    IoUring,
    /// AF_XDP sockets for what the XDP guard redirects, io_uring for the rest; an error at
    /// start when AF_XDP cannot be set up.
    AfXdp,
    /// AF_XDP where it can be set up, io_uring only otherwise.
    Auto,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub listen: SocketAddr,
    /// Worker threads; resolved (0 in the file = one per core).
    pub workers: usize,
    pub pin_workers: bool,
    pub recv_buffers: u16,
    pub recv_buffer_size: u32,
    pub socket_rcvbuf: usize,
    /// Completions a worker waits for at most per wake-up while `batch_wait_us` lasts.
    pub batch: usize,
    /// How long a worker that has one completion waits for more (0 = no batching).
    pub batch_wait_us: u32,
    /// The data path (`workers.io`).
    pub io: IoPath,
    pub steering: SteeringMode,
    /// Key of the owner hash; random per start unless fixed (for tests).
    pub hash_key: Option<u32>,
    pub control_socket: PathBuf,
    /// The control socket's mode and group (`None`: siplb's own).
    pub control_mode: u32,
    pub control_group: Option<u32>,
    pub queue_per_worker: usize,
    pub proxy: ProxyConfig,
    /// Ownership trace (tests): each worker writes `<path>.<worker>`.
    pub trace_ownership: Option<PathBuf>,
    /// `debug.panic_on_call_id` (tests): a worker panics on a datagram with this Call-ID.
    pub panic_on_call_id: Option<Box<[u8]>>,
    /// `Call_End` events: the stream file, the URL they are POSTed to, the writer's queue.
    pub events_file: Option<PathBuf>,
    pub events_http: Option<String>,
    pub events_queue: usize,
    /// Prometheus endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// XDP guard: mode (`None` = off), flood limit per source and burst.
    pub xdp_mode: Option<crate::steering::GuardMode>,
    pub flood_rate: u32,
    pub flood_burst: u32,
    /// XDP guard: redirect to the owner worker's CPU.
    pub xdp_cpumap: bool,
    /// What happens to the dialogs up when siplb stops, and how long it waits after BYEs.
    pub shutdown_dialogs: ShutdownDialogs,
    pub shutdown_bye_wait: Duration,
    /// `[log]`.
    pub log: crate::logging::LogConfig,
    /// The top-level `node`.
    pub node: String,
    /// `[acc]` (none: no accounting).
    pub acc: Option<Arc<crate::acc::config::AccConfig>>,
    /// `[cluster]` (none: the node's limits are its own).
    pub cluster: Option<crate::cluster::task::ClusterConfig>,
    /// `dialog.journal_dir`: the restart journal (none: dialogs do not survive a restart).
    pub journal_dir: Option<PathBuf>,
}

/// `[shutdown] dialogs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownDialogs {
    /// The peers keep talking; their in-dialog requests find no siplb.
    Leave,
    /// BYE to both sides of every answered dialog (CANCEL for the others) first.
    Bye,
}

/// The 1-based line of byte offset `at` in `src`.
pub fn line_of(src: &str, at: usize) -> usize {
    src.as_bytes()[..at.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A toml error as `file:line: message`, with the key (or table header) of that line named
/// by its full dotted path (`timers.t1_ms`) when toml's message does not name it that way,
/// and serde's type words (`u64`, `a sequence`) said as a config's reader says them.
fn toml_error(path: &Path, src: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(0, |s| line_of(src, s.start));
    let mut message = plain_types(e.message().trim());
    let text = src.lines().nth(line.saturating_sub(1)).map(str::trim);
    let key = match text {
        // A table header (a table defined twice): the header itself.
        Some(t) if t.starts_with('[') => t.split('#').next().map(|h| h.trim().to_string()),
        Some(t) => t.split_once('=').map(|(k, _)| {
            let k = k.trim().trim_matches('"');
            match table_before(src, line) {
                Some(table) => format!("{table}.{k}"),
                None => k.to_string(),
            }
        }),
        None => None,
    };
    if let Some(key) = &key
        && is_secret(key)
    {
        // The value may be the secret itself (`password = 98765432`): say what was expected.
        message = match message.split_once(", expected ") {
            Some((_, expected)) => format!("invalid value (not shown), expected {expected}"),
            None => "invalid value (not shown)".into(),
        };
    }
    if let Some(key) = key
        && !key.is_empty()
        && !message.contains(&format!("`{key}`"))
    {
        message = format!("`{key}`: {message}");
    }
    ConfigError::Toml {
        file: path.into(),
        line,
        message,
    }
}

/// Keys whose values are or may hold secrets (a trunk's password, a connection string or URL
/// with one): an error about them never shows the value.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(last, "password" | "ha1" | "postgres" | "redis")
}

/// The table whose keys line `line` (1-based) sets: the name in the nearest header above it
/// (`[timers]` → `timers`, `[[gateway_set]]` → `gateway_set`), or none at the top level.
fn table_before(src: &str, line: usize) -> Option<String> {
    src.lines()
        .take(line.saturating_sub(1))
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|h| {
            let h = h.split('#').next().unwrap_or(h).trim();
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_string()
        })
        .filter(|t| !t.is_empty())
}

/// serde's names of the types a key takes, in the words of a configuration's reader.
fn plain_types(message: &str) -> String {
    const WORDS: [(&str, &str); 10] = [
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected u8", "expected a whole number (0 to 255)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list ([...])"),
        ("expected a boolean", "expected true or false"),
        ("expected a map", "expected a table"),
    ];
    let mut m = message.to_string();
    for (serde, plain) in WORDS {
        if let Some(at) = m.find(serde)
            && !m[at + serde.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            m.replace_range(at..at + serde.len(), plain);
        }
    }
    m
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.into(),
            error,
        })?;
        Config::parse(path, &src)
    }

    /// The control socket the file at `path` names (`control.socket`, else the default),
    /// read leniently: the rest of the file may be invalid (`siplb ctl` with a file being
    /// edited), as long as it is TOML.
    pub fn control_socket_of(path: &Path) -> Result<PathBuf, String> {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // A file that is not TOML at all (an edit under way) is read line by line.
        let socket = match src.parse::<toml::Table>() {
            Ok(table) => table
                .get("control")
                .and_then(|c| c.get("socket"))
                .and_then(|s| s.as_str())
                .map(String::from),
            Err(_) => control_socket_by_lines(&src),
        };
        let socket = socket.unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into());
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(dir.join(socket))
    }

    /// The configuration in `src`, read from `path` (relative paths resolve from its folder).
    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let f: file::FileConfig = toml::from_str(src).map_err(|e| toml_error(path, src, &e))?;
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
                file: path.into(),
                line: line_of(src, span.start),
                key: key.into(),
                message,
            };
        bounds::check(&f, &invalid)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.into()
            } else {
                dir.join(p)
            }
        };

        let listen = sections::listen(&f.listen, &invalid)?;
        let workers = sections::workers(&f.workers, &invalid)?;
        let (steering, xdp_mode) = datapath::steering(&f.steering, &invalid)?;
        let io = datapath::io(&f.workers, steering, xdp_mode, &invalid)?;
        let customers = sections::customers(&f.customer, &invalid)?;
        let gateways = sections::gateways(&f.gateway_set, &f.route, &customers, &invalid)?;
        let routing = Routing {
            customers,
            gateways,
        };
        let mut proxy = ProxyConfig::new(listen, routing);
        proxy.timers = sections::timers(&f.timers, &invalid)?;
        proxy.dialog_linger = Duration::from_millis(*f.timers.call_linger_ms.get_ref());
        proxy.dialog = sections::dialog_timers(&f.dialog, &invalid)?;
        let (mut profiles, rules) = dialog::profiles(&f, &invalid)?;
        proxy.rules = Arc::new(rules);
        profiles.scope_accounts(f.customer.len().min(u16::MAX as usize) as u16);
        proxy.profiles = Arc::new(profiles);
        proxy.vars = dialog::vars(&f, &invalid)?;
        let events_http = sections::events(&f.events, &invalid)?;
        proxy.emit.dialogs = f.events.file.is_some() || events_http.is_some();
        proxy.limit_reply = sections::limits(&f.limits, &invalid)?;
        proxy.max_transactions = f.limits.transactions_per_worker;
        proxy.max_transaction_bytes =
            (*f.limits.transaction_mb_per_worker.get_ref() as usize) << 20;
        proxy.max_dialogs = f.limits.calls_per_worker;
        proxy.retry_after = f.limits.retry_after_s;
        let metrics_listen = sections::metrics(&f.metrics, &invalid)?;
        let (control_mode, control_group) = sections::control(&f.control, &invalid)?;
        let control_socket = resolve(f.control.socket.get_ref());
        // A Unix socket's address holds at most 107 bytes (`sun_path`, less its end).
        if control_socket.as_os_str().len() > 107 {
            return Err(invalid(
                f.control.socket.span(),
                "control.socket",
                format!(
                    "`{}` is {} bytes long; a Unix socket's path is at most 107 (a shorter \
                     path, or one relative to the configuration's folder)",
                    control_socket.display(),
                    control_socket.as_os_str().len()
                ),
            ));
        }
        let shutdown_dialogs = match f.shutdown.dialogs.get_ref().as_str() {
            "leave" => ShutdownDialogs::Leave,
            "bye" => ShutdownDialogs::Bye,
            other => {
                return Err(invalid(
                    f.shutdown.dialogs.span(),
                    "shutdown.dialogs",
                    format!("`{other}` is not one of leave, bye"),
                ));
            }
        };
        let log = sections::log(&f.log, &invalid)?;
        // The call log reads refusals and failures off the shard's events.
        proxy.emit.failures = log.calls_per_second > 0;
        let (node, acc) = acc::acc(f.acc.as_ref(), f.node.as_ref(), &resolve, &invalid)?;
        // Without a `node` of its own, a fleet member is its host and address: two siplb on
        // one host must not share a lease.
        let member = match &f.node {
            Some(_) => node.clone(),
            None => format!("{node}@{listen}"),
        };
        let cluster = cluster::cluster(f.cluster.as_ref(), &member, &invalid)?;
        if let Some(c) = &cluster {
            proxy.lease_wait = c.wait;
        }
        if let Some(a) = &acc {
            // Only the methods accounting records cost events.
            proxy.emit.transactions = a.wants_transactions();
            proxy.emit.transaction_methods = a.transaction_methods();
            proxy.emit.requests = a.wants_requests();
            proxy.emit.request_methods = a.request_methods();
            proxy.emit.dialogs |= a.cdrs;
        }

        Ok(Config {
            path: path.into(),
            listen,
            workers,
            pin_workers: f.workers.pin,
            recv_buffers: *f.workers.recv_buffers.get_ref(),
            recv_buffer_size: *f.workers.recv_buffer_size.get_ref(),
            socket_rcvbuf: f.workers.socket_rcvbuf,
            batch: *f.workers.batch.get_ref(),
            batch_wait_us: f.workers.batch_wait_us,
            io,
            steering,
            hash_key: f.steering.hash_key,
            control_socket,
            control_mode,
            control_group,
            queue_per_worker: *f.limits.queue_per_worker.get_ref(),
            proxy,
            trace_ownership: f.debug.trace_ownership.as_deref().map(resolve),
            panic_on_call_id: f
                .debug
                .panic_on_call_id
                .as_deref()
                .map(|s| s.as_bytes().into()),
            events_file: f.events.file.as_deref().map(resolve),
            events_http,
            events_queue: *f.events.queue.get_ref(),
            metrics_listen,
            xdp_mode,
            flood_rate: *f.steering.flood_rate.get_ref(),
            xdp_cpumap: f.steering.xdp_cpumap,
            log,
            flood_burst: match *f.steering.flood_burst.get_ref() {
                0 => *f.steering.flood_rate.get_ref(),
                burst => burst,
            },
            shutdown_dialogs,
            shutdown_bye_wait: Duration::from_millis(*f.shutdown.bye_wait_ms.get_ref()),
            node,
            acc: acc.map(Arc::new),
            cluster,
            journal_dir: f.dialog.journal_dir.as_deref().map(resolve),
        })
    }
}

/// `control.socket` of a file that does not parse, read line by line: a `socket = "…"` line
/// in the `[control]` table, or a top-level `control.socket = "…"`; none when neither is
/// there (or its value is not a plain quoted string).
fn control_socket_by_lines(src: &str) -> Option<String> {
    let mut table = String::new();
    for line in src.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']', ' ']).into();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let ours = (table == "control" && key == "socket")
            || (table.is_empty() && key == "control.socket");
        if !ours {
            continue;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let inner = &value[1..];
        return inner.find(quote).map(|end| inner[..end].to_string());
    }
    None
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bounds;
#[cfg(test)]
mod tests_gateways;
