//! The configuration file as written. `docs/CONFIG.md` documents every key; a test checks it.

use super::*;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The node's name (records, ids, fleet membership); default the host name.
    pub node: Option<Spanned<String>>,
    pub listen: Listen,
    #[serde(default)]
    pub workers: Workers,
    #[serde(default)]
    pub steering: Steering,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub timers: TimersFile,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub dialog: DialogFile,
    #[serde(default)]
    pub customer: Vec<CustomerFile>,
    #[serde(default)]
    pub gateway_set: Vec<GatewaySet>,
    #[serde(default)]
    pub route: Vec<RouteFile>,
    #[serde(default)]
    pub events: Events,
    #[serde(default)]
    pub shutdown: ShutdownFile,
    #[serde(default)]
    pub log: Log,
    pub acc: Option<super::acc::AccFile>,
    pub cluster: Option<super::cluster::ClusterFile>,
    #[serde(default)]
    pub debug: Debug,
}

/// `[shutdown]`: what happens to the dialogs that are up when siplb stops (SIGTERM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownFile {
    /// `"leave"` (the peers keep talking) or `"bye"` (BYE to both sides first).
    pub dialogs: Spanned<String>,
    /// With `"bye"`: how long siplb stays up after sending them, for their answers.
    pub bye_wait_ms: Spanned<u64>,
}

impl Default for ShutdownFile {
    fn default() -> Self {
        ShutdownFile {
            dialogs: Spanned::new(0..0, "leave".into()),
            bye_wait_ms: Spanned::new(0..0, 1000),
        }
    }
}

/// `[log]`: the log's level and format, and the rate of call lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Level or filter directives; `SIPLB_LOG` or `RUST_LOG` override it when set.
    pub level: Spanned<String>,
    /// `text` or `json`.
    pub format: Spanned<String>,
    /// Lines about refused, failed or siplb-ended calls per second, over all workers; 0 = none.
    pub calls_per_second: u32,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: Spanned::new(0..0, crate::logging::DEFAULT_LEVEL.into()),
            format: Spanned::new(0..0, "text".into()),
            calls_per_second: crate::logging::DEFAULT_CALLS_PER_SECOND,
        }
    }
}

/// `[events]`: where the `Call_End` events of dialogs go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// Event stream file: one JSON object per line, appended (relative to the config's folder).
    pub file: Option<String>,
    /// URL each event is POSTed to (`http://host:port/path`).
    pub http_post: Option<Spanned<String>>,
    /// Events waiting for the writer; more are dropped and counted.
    pub queue: Spanned<usize>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            file: None,
            http_post: None,
            queue: Spanned::new(0..0, DEFAULT_EVENTS_QUEUE),
        }
    }
}

/// `[[dialog.var]]`: a dialog variable (Kamailio `$dlg_var`), a string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarFile {
    pub name: Spanned<String>,
    /// Read as any TOML value so that a number can be refused with a clear message.
    pub value: Option<Spanned<toml::Value>>,
    pub value_from: Option<Spanned<String>>,
    /// `invite` (default), `start` (answer, Kamailio `dialog:start`) or `end` (`dialog:end`).
    pub at: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// UDP listen addresses (`ip:port`).
    pub sip: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// Worker threads; 0 = one per core.
    pub count: Spanned<usize>,
    /// Pin worker k to core k.
    pub pin: bool,
    /// Provided receive buffers per worker (power of two).
    pub recv_buffers: Spanned<u16>,
    /// Size of one receive buffer; longer datagrams are dropped and counted.
    pub recv_buffer_size: Spanned<u32>,
    /// SO_RCVBUF of each worker socket.
    pub socket_rcvbuf: usize,
    /// Completions waited for at most per wake-up while `batch_wait_us` lasts.
    pub batch: Spanned<usize>,
    /// Microseconds a worker holding one completion waits for more (0 = none).
    pub batch_wait_us: u32,
    /// The data path: `io_uring`, `af_xdp` or `auto`.
    pub io: Spanned<String>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            count: Spanned::new(0..0, 0),
            pin: true,
            recv_buffers: Spanned::new(0..0, DEFAULT_RECV_BUFFERS),
            recv_buffer_size: Spanned::new(0..0, DEFAULT_RECV_BUFFER_SIZE),
            socket_rcvbuf: DEFAULT_SOCKET_RCVBUF,
            batch: Spanned::new(0..0, DEFAULT_BATCH),
            batch_wait_us: DEFAULT_BATCH_WAIT_US,
            io: Spanned::new(0..0, "io_uring".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Steering {
    /// `auto`, `bpf` or `off`.
    pub mode: Spanned<String>,
    /// Fixed owner-hash key (tests); random per start when absent.
    pub hash_key: Option<u32>,
    /// Interfaces for XDP when listening on a wildcard address.
    pub xdp_interfaces: Spanned<Vec<String>>,
    /// `auto` (native, else generic), `native`, `generic` or `off`.
    pub xdp_mode: Spanned<String>,
    /// The XDP guard's flood limit: datagrams per second per source (0 = none).
    pub flood_rate: Spanned<u32>,
    /// Its burst (0 = one second's worth).
    pub flood_burst: Spanned<u32>,
    /// The XDP guard sends each datagram on to its owner worker's CPU (cpumap redirect).
    pub xdp_cpumap: bool,
}

impl Default for Steering {
    fn default() -> Self {
        Steering {
            mode: Spanned::new(0..0, "auto".into()),
            hash_key: None,
            xdp_interfaces: Spanned::new(0..0, Vec::new()),
            xdp_mode: Spanned::new(0..0, "auto".into()),
            flood_rate: Spanned::new(0..0, 0),
            flood_burst: Spanned::new(0..0, 0),
            xdp_cpumap: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Control socket path (relative to the config file's folder).
    pub socket: Spanned<String>,
    /// The socket's mode, an octal string (`"0660"`).
    pub mode: Option<Spanned<String>>,
    /// The group the socket is handed to (a name).
    pub group: Option<Spanned<String>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: Spanned::new(0..0, DEFAULT_CONTROL_SOCKET.into()),
            mode: None,
            group: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Prometheus listen address (`127.0.0.1:9260`); none = off.
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersFile {
    pub t1_ms: Spanned<u64>,
    pub t2_ms: Spanned<u64>,
    pub t4_ms: Spanned<u64>,
    pub timer_b_ms: Spanned<u64>,
    pub timer_c_ms: Spanned<u64>,
    pub timer_d_ms: Spanned<u64>,
    pub call_linger_ms: Spanned<u64>,
}

impl Default for TimersFile {
    fn default() -> Self {
        TimersFile {
            t1_ms: Spanned::new(0..0, DEFAULT_T1_MS),
            t2_ms: Spanned::new(0..0, DEFAULT_T2_MS),
            t4_ms: Spanned::new(0..0, DEFAULT_T4_MS),
            timer_b_ms: Spanned::new(0..0, DEFAULT_TIMER_B_MS),
            timer_c_ms: Spanned::new(0..0, DEFAULT_TIMER_C_MS),
            timer_d_ms: Spanned::new(0..0, DEFAULT_TIMER_D_MS),
            call_linger_ms: Spanned::new(0..0, DEFAULT_CALL_LINGER_MS),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Hand-off queue of each worker (datagrams from other workers).
    pub queue_per_worker: Spanned<usize>,
    pub transactions_per_worker: usize,
    /// Memory the open transactions of a worker may hold (the messages they keep), MiB.
    pub transaction_mb_per_worker: Spanned<u64>,
    pub calls_per_worker: usize,
    /// Retry-After of the overload 503.
    pub retry_after_s: u32,
    /// Values of profile `account` held at once.
    pub account_table: Spanned<usize>,
    /// Values of each other with-value profile held at once.
    pub value_table: Spanned<usize>,
    /// The reply to an INVITE over a profile limit.
    pub reply_code: Spanned<u16>,
    pub reply_reason: Spanned<String>,
    /// Q.850 cause of the `Reason` header of that reply; 0 = no `Reason` header.
    pub reply_q850_cause: u16,
    /// Limits on profile sizes.
    pub profile: Vec<LimitFile>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_per_worker: Spanned::new(0..0, DEFAULT_QUEUE_PER_WORKER),
            transactions_per_worker: DEFAULT_TRANSACTIONS_PER_WORKER,
            transaction_mb_per_worker: Spanned::new(0..0, DEFAULT_TRANSACTION_MB_PER_WORKER),
            calls_per_worker: DEFAULT_CALLS_PER_WORKER,
            retry_after_s: DEFAULT_RETRY_AFTER_S,
            account_table: Spanned::new(0..0, DEFAULT_ACCOUNT_TABLE),
            value_table: Spanned::new(0..0, DEFAULT_VALUE_TABLE),
            reply_code: Spanned::new(0..0, DEFAULT_LIMIT_REPLY_CODE),
            reply_reason: Spanned::new(0..0, DEFAULT_LIMIT_REPLY_REASON.into()),
            reply_q850_cause: DEFAULT_LIMIT_Q850_CAUSE,
            profile: Vec::new(),
        }
    }
}

/// `[[limits.profile]]`: the most dialogs a profile (no value), each value of it (with value,
/// no `value` given) or one value of it may have at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitFile {
    pub profile: Spanned<String>,
    pub value: Option<Spanned<String>>,
    pub max: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialogFile {
    /// Lifetime of a dialog (Kamailio `default_timeout`).
    pub default_timeout_s: Spanned<u64>,
    /// A dialog still without a final answer after this is ended (Kamailio `early_timeout`).
    pub early_timeout_s: Spanned<u64>,
    /// A dialog answered but never acknowledged is ended after this (Kamailio `noack_timeout`).
    pub noack_timeout_s: Spanned<u64>,
    pub profiles_no_value: Vec<Spanned<String>>,
    pub profiles_with_value: Vec<Spanned<String>>,
    /// Classification rules, in order.
    pub rule: Vec<RuleFile>,
    /// Dialog variables set from the configuration.
    pub var: Vec<VarFile>,
    /// The restart journal's folder: answered dialogs survive a restart (none: they do not).
    pub journal_dir: Option<String>,
}

impl Default for DialogFile {
    fn default() -> Self {
        DialogFile {
            default_timeout_s: Spanned::new(0..0, DEFAULT_DIALOG_TIMEOUT_S),
            early_timeout_s: Spanned::new(0..0, DEFAULT_EARLY_TIMEOUT_S),
            noack_timeout_s: Spanned::new(0..0, DEFAULT_NOACK_TIMEOUT_S),
            profiles_no_value: Vec::new(),
            profiles_with_value: Vec::new(),
            rule: Vec::new(),
            var: Vec::new(),
            journal_dir: None,
        }
    }
}

/// One string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[[dialog.rule]]`: when every condition given holds, the dialog joins `profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub profile: Spanned<String>,
    /// A literal value (with-value profiles).
    pub value: Option<Spanned<String>>,
    /// Where the value comes from (with-value profiles).
    pub value_from: Option<Spanned<String>>,
    pub dialed_prefix: Option<Spanned<OneOrMany>>,
    pub dialed_regex: Option<Spanned<String>>,
    pub from_user: Option<Spanned<String>>,
    #[serde(default)]
    pub source: Vec<Spanned<String>>,
    #[serde(default)]
    pub customer: Vec<String>,
    pub account: Option<Spanned<String>>,
    #[serde(default)]
    pub stop: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub domains: Vec<String>,
    /// `customer`, `from_user` or `from_domain`.
    #[serde(default = "default_account_key")]
    pub account_key: Spanned<String>,
    /// Numbers it owns (prefixes, or `from-to` ranges): calls from gateways to them come to it.
    #[serde(default)]
    pub numbers: Vec<Spanned<String>>,
    /// Where those calls go (`ip:port`).
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
}

fn default_account_key() -> Spanned<String> {
    Spanned::new(0..0, "customer".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySet {
    pub name: Spanned<String>,
    #[serde(default = "default_algorithm")]
    pub algorithm: Spanned<String>,
    /// Gateways as `ip:port`, with the defaults (weight 1, priority 0, no limit, no
    /// credentials).
    #[serde(default)]
    pub gateways: Vec<Spanned<String>>,
    /// Gateways as tables, with their own settings.
    #[serde(default)]
    pub gateway: Vec<GatewayFile>,
    /// Other addresses a gateway answers from: gateway `ip:port` → its other `ip:port`s.
    #[serde(default)]
    pub answers_from: Option<Spanned<std::collections::BTreeMap<String, Vec<String>>>>,
    /// Whether a call moves on to the next gateway on a timeout, 408 or a failover code.
    #[serde(default = "yes")]
    pub failover: bool,
    /// Final replies that move a call on (5xx).
    #[serde(default)]
    pub failover_codes: Option<Spanned<Vec<u16>>>,
    /// How long an attempt may go without any reply while another gateway is left; 0: Timer B.
    #[serde(default)]
    pub failover_timeout_ms: Option<Spanned<u64>>,
    /// OPTIONS to every gateway this often; 0: no probing.
    #[serde(default = "zero")]
    pub probe_interval_ms: Spanned<u64>,
    /// A probe without a final reply after this has failed.
    pub probe_timeout_ms: Option<Spanned<u64>>,
    /// Failures in a row that take a gateway down.
    pub probe_down_after: Option<Spanned<u32>>,
    /// Answers in a row that bring it back up.
    pub probe_up_after: Option<Spanned<u32>>,
    /// Final replies to a probe that count as a failure (every 5xx when left out).
    pub probe_fail_codes: Option<Spanned<Vec<u16>>>,
    /// The From URI of the probes.
    pub probe_from: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

fn zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

/// `[[gateway_set.gateway]]`: one gateway with its own settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub address: Spanned<String>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub priority: i32,
    pub max_calls: Option<Spanned<u32>>,
    /// Credentials for its challenges: `user` with `password` or `ha1`.
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub ha1: Option<Spanned<String>>,
    /// Its requests are recognised by IP alone, from any port.
    #[serde(default)]
    pub match_ip_only: bool,
}

fn one() -> u32 {
    1
}

/// `[[route]]`: which calls go to which gateway set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub gateway_set: Spanned<String>,
    pub customer: Option<Spanned<String>>,
    pub account: Option<String>,
    pub prefix: Option<String>,
}

fn default_algorithm() -> Spanned<String> {
    Spanned::new(0..0, "callid_hash".into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Debug {
    /// Ownership trace for tests: each worker appends `<processed_by> <received_by> <call-id>`
    /// per message to `<path>.<worker>`.
    pub trace_ownership: Option<String>,
    /// Tests only: a worker that gets a datagram with this Call-ID panics.
    pub panic_on_call_id: Option<String>,
}
