//! The configuration file: TOML as written ([`file::FileConfig`]) turned into a checked
//! [`Config`]. Every error names the file, the line and the key; unknown keys are errors;
//! relative paths resolve from the file's folder. Defaults are the `DEFAULT_*` constants.

mod dialog;
pub mod file;

use crate::proxy::{
    AccountKey, Cidr, Customer, DialogTimers, LimitReply, ProxyConfig, Routing, Timers,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_CONTROL_SOCKET: &str = "siplb.ctl";
pub const DEFAULT_QUEUE_PER_WORKER: usize = 65_536;
pub const DEFAULT_TRANSACTIONS_PER_WORKER: usize = 200_000;
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

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
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
    pub steering: SteeringMode,
    /// Key of the owner hash; random per start unless fixed (for tests).
    pub hash_key: Option<u32>,
    pub control_socket: PathBuf,
    pub queue_per_worker: usize,
    pub proxy: ProxyConfig,
    /// Ownership trace (tests): each worker writes `<path>.<worker>`.
    pub trace_ownership: Option<PathBuf>,
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
}

/// The 1-based line of byte offset `at` in `src`.
pub fn line_of(src: &str, at: usize) -> usize {
    src.as_bytes()[..at.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A toml error as `file:line: message`, with the key of that line named when toml's
/// message does not name it (wrong types do not).
fn toml_error(path: &Path, src: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(0, |s| line_of(src, s.start));
    let mut message = e.message().trim().to_string();
    let key = src
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim());
    if let Some(key) = key
        && !key.is_empty()
        && !message.contains(key)
    {
        message = format!("`{key}`: {message}");
    }
    ConfigError::Toml {
        file: path.into(),
        line,
        message,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.into(),
            source,
        })?;
        Config::parse(path, &src)
    }

    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let f: file::FileConfig = toml::from_str(src).map_err(|e| toml_error(path, src, &e))?;
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
                file: path.into(),
                line: line_of(src, span.start),
                key: key.into(),
                message,
            };
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

        let listen = f.listen.sip.get_ref();
        if listen.len() != 1 {
            return Err(invalid(
                f.listen.sip.span(),
                "listen.sip",
                "exactly one UDP listen address is supported in this version".into(),
            ));
        }
        let listen: SocketAddr = listen[0].get_ref().parse().map_err(|_| {
            invalid(
                listen[0].span(),
                "listen.sip",
                format!("`{}` is not an ip:port", listen[0].get_ref()),
            )
        })?;
        if listen.ip().is_unspecified() {
            return Err(invalid(
                f.listen.sip.span(),
                "listen.sip",
                "a wildcard address cannot be put in Via/Record-Route; listen on a concrete address".into(),
            ));
        }

        let workers = match f.workers.count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let steering = match f.steering.mode.get_ref().as_str() {
            "auto" => SteeringMode::Auto,
            "bpf" => SteeringMode::Bpf,
            "off" => SteeringMode::Off,
            other => {
                return Err(invalid(
                    f.steering.mode.span(),
                    "steering.mode",
                    format!("`{other}` is not one of auto, bpf, off"),
                ));
            }
        };

        let mut customers = Vec::new();
        for c in &f.customer {
            let mut sources = Vec::new();
            for s in &c.sources {
                sources.push(
                    s.get_ref()
                        .parse::<Cidr>()
                        .map_err(|m| invalid(s.span(), "customer.sources", m))?,
                );
            }
            if sources.is_empty() && c.domains.is_empty() {
                return Err(invalid(
                    c.name.span(),
                    "customer",
                    format!(
                        "customer `{}` needs `sources` or `domains`",
                        c.name.get_ref()
                    ),
                ));
            }
            let account_key = match c.account_key.get_ref().as_str() {
                "customer" => AccountKey::Customer,
                "from_user" => AccountKey::FromUser,
                "from_domain" => AccountKey::FromDomain,
                other => {
                    return Err(invalid(
                        c.account_key.span(),
                        "customer.account_key",
                        format!("`{other}` is not one of customer, from_user, from_domain"),
                    ));
                }
            };
            customers.push(Customer {
                name: c.name.get_ref().clone(),
                sources,
                domains: c.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                account_key,
            });
        }
        let mut gateways = Vec::new();
        if f.gateway_set.len() > 1 {
            return Err(invalid(
                f.gateway_set[1].name.span(),
                "gateway_set",
                "one gateway set is supported in this version".into(),
            ));
        }
        for set in &f.gateway_set {
            if set.algorithm.get_ref() != "callid_hash" {
                return Err(invalid(
                    set.algorithm.span(),
                    "gateway_set.algorithm",
                    format!(
                        "`{}` is not supported (callid_hash)",
                        set.algorithm.get_ref()
                    ),
                ));
            }
            for g in &set.gateways {
                let a: SocketAddr = g.get_ref().parse().map_err(|_| {
                    invalid(
                        g.span(),
                        "gateway_set.gateways",
                        format!("`{}` is not an ip:port", g.get_ref()),
                    )
                })?;
                gateways.push(a);
            }
        }

        let t = &f.timers;
        let ms = Duration::from_millis;
        let timers = Timers {
            t1: ms(t.t1_ms),
            t2: ms(t.t2_ms),
            t4: ms(t.t4_ms),
            timer_b: ms(t.timer_b_ms),
            timer_c: ms(t.timer_c_ms),
            timer_d: ms(t.timer_d_ms),
        };
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms {
            return Err(invalid(
                0..0,
                "timers",
                "t1_ms must be > 0 and t2_ms >= t1_ms".into(),
            ));
        }
        let mut proxy = ProxyConfig::new(
            listen,
            Routing {
                customers,
                gateways,
            },
        );
        proxy.timers = timers;
        proxy.max_transactions = f.limits.transactions_per_worker;
        proxy.max_calls = f.limits.calls_per_worker;
        proxy.retry_after = f.limits.retry_after_s;
        proxy.call_linger = ms(t.call_linger_ms);
        let d = &f.dialog;
        proxy.dialog = DialogTimers {
            default_timeout: Duration::from_secs(d.default_timeout_s),
            early_timeout: Duration::from_secs(d.early_timeout_s),
            noack_timeout: Duration::from_secs(d.noack_timeout_s),
        };
        if d.default_timeout_s == 0 || d.early_timeout_s == 0 || d.noack_timeout_s == 0 {
            return Err(invalid(
                0..0,
                "dialog",
                "default_timeout_s, early_timeout_s and noack_timeout_s must be > 0".into(),
            ));
        }
        let mut profiles = dialog::profiles(&f, &invalid)?;
        profiles.scope_accounts(f.customer.len().min(u16::MAX as usize) as u16);
        proxy.profiles = Arc::new(profiles);
        proxy.vars = dialog::vars(&f, &invalid)?;
        if let Some(u) = &f.events.http_post
            && !u.get_ref().starts_with("http://")
        {
            return Err(invalid(
                u.span(),
                "events.http_post",
                format!("`{}` is not an http:// URL", u.get_ref()),
            ));
        }
        if f.limits.account_table == 0 || f.limits.value_table == 0 {
            return Err(invalid(
                0..0,
                "limits.account_table",
                "limits.account_table and limits.value_table must be at least 1".into(),
            ));
        }
        if f.events.queue == 0 {
            return Err(invalid(0..0, "events.queue", "must be at least 1".into()));
        }
        proxy.call_end_events = f.events.file.is_some() || f.events.http_post.is_some();
        let xdp_mode = match f.steering.xdp_mode.get_ref().as_str() {
            "auto" => Some(crate::steering::GuardMode::Auto),
            "native" => Some(crate::steering::GuardMode::Native),
            "generic" => Some(crate::steering::GuardMode::Generic),
            "off" => None,
            other => {
                return Err(invalid(
                    f.steering.xdp_mode.span(),
                    "steering.xdp_mode",
                    format!("`{other}` is not one of auto, native, generic, off"),
                ));
            }
        };
        let metrics_listen = match &f.metrics.listen {
            None => None,
            Some(a) => Some(a.get_ref().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    a.span(),
                    "metrics.listen",
                    format!("`{}` is not an ip:port", a.get_ref()),
                )
            })?),
        };
        let code = *f.limits.reply_code.get_ref();
        if !(400..=699).contains(&code) {
            return Err(invalid(
                f.limits.reply_code.span(),
                "limits.reply_code",
                format!("{code} is not a final error code (400 to 699)"),
            ));
        }
        if f.limits.reply_reason.contains(['\r', '\n']) {
            return Err(invalid(
                0..0,
                "limits.reply_reason",
                "must be one line".into(),
            ));
        }
        proxy.limit_reply = LimitReply {
            code,
            reason: f.limits.reply_reason.clone(),
            q850_cause: Some(f.limits.reply_q850_cause).filter(|c| *c != 0),
        };
        if f.limits.queue_per_worker == 0 {
            return Err(invalid(
                0..0,
                "limits.queue_per_worker",
                "must be at least 1".into(),
            ));
        }
        if !f.workers.recv_buffers.is_power_of_two() {
            return Err(invalid(
                0..0,
                "workers.recv_buffers",
                "must be a power of two".into(),
            ));
        }

        Ok(Config {
            path: path.into(),
            listen,
            workers,
            pin_workers: f.workers.pin,
            recv_buffers: f.workers.recv_buffers,
            recv_buffer_size: f.workers.recv_buffer_size,
            socket_rcvbuf: f.workers.socket_rcvbuf,
            batch: f.workers.batch,
            batch_wait_us: f.workers.batch_wait_us,
            steering,
            hash_key: f.steering.hash_key,
            control_socket: resolve(&f.control.socket),
            queue_per_worker: f.limits.queue_per_worker,
            proxy,
            trace_ownership: f.debug.trace_ownership.as_deref().map(resolve),
            events_file: f.events.file.as_deref().map(resolve),
            events_http: f.events.http_post.as_ref().map(|u| u.get_ref().clone()),
            events_queue: f.events.queue,
            metrics_listen,
            xdp_mode,
            flood_rate: f.steering.flood_rate,
            xdp_cpumap: f.steering.xdp_cpumap,
            flood_burst: if f.steering.flood_burst == 0 {
                f.steering.flood_rate
            } else {
                f.steering.flood_burst
            },
        })
    }
}

#[cfg(test)]
mod tests;
