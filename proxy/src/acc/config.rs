//! What `[acc]` asks for, resolved: which transactions are recorded (Kamailio's flags, per
//! method), the rules that record a request on receipt, whether CDRs are written, and where
//! records go (sinks, folder, formats, sync interval, rotation, queues, PostgreSQL).

use super::files::{Formats, Rotation, SyncMode};
use crate::sip::Method;
use std::path::PathBuf;
use std::time::Duration;

/// Methods, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Methods(u32);

impl Methods {
    pub fn insert(&mut self, m: Method) {
        self.0 |= 1 << m as u32;
    }

    pub fn contains(self, m: Method) -> bool {
        self.0 & (1 << m as u32) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// `[[acc.rule]]` (Kamailio's `acc_log_request(comment)` / `acc_db_request(comment, table)`):
/// a request of `method` (optionally of `account`, or dialing a number that starts with
/// `prefix`) is recorded into `table` as it is received, with the comment's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccRule {
    pub method: Method,
    pub comment: String,
    pub table: String,
    pub account: Option<String>,
    pub prefix: Option<String>,
}

impl AccRule {
    /// Whether a request of `method` from `account` to Request-URI user `dialed` matches.
    pub fn matches(&self, method: Method, account: &str, dialed: &str) -> bool {
        self.method == method
            && self.account.as_deref().is_none_or(|a| a == account)
            && self.prefix.as_deref().is_none_or(|p| dialed.starts_with(p))
    }
}

/// Where records go; a record goes to every sink on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sinks {
    /// A log line per record (`tracing`, target `siplb::acc`): Kamailio's `acc` to syslog.
    pub log: bool,
    /// `<dir>/<table>.csv` and `.jsonl`.
    pub files: bool,
    /// The libpq connection string of the PostgreSQL sink.
    pub postgres: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AccConfig {
    /// The node's name, first column of every record and first part of its id.
    pub node: String,
    /// `FLT_ACC`: transactions of these methods that complete with 2xx go to `acc`.
    pub flags: Methods,
    /// `FLT_ACCFAILED`: of the methods in `flags`, also those that complete with ≥ 300 or get
    /// no final answer.
    pub failed_flags: Methods,
    /// `FLT_ACCMISSED`: INVITEs that end without 2xx go to `missed_calls`.
    pub missed_flags: Methods,
    pub rules: Vec<AccRule>,
    /// One CDR per dialog into `cdrs`.
    pub cdrs: bool,
    pub sinks: Sinks,
    pub dir: PathBuf,
    pub formats: Formats,
    /// The group commit: how often the writer syncs what it wrote, and how.
    pub sync_interval: Duration,
    pub sync_mode: SyncMode,
    /// The commit journal's size (`sync_mode` journal).
    pub journal_bytes: u64,
    /// How long the record files may lag behind the journal (`sync_mode` journal).
    pub write_interval: Duration,
    pub rotation: Rotation,
    /// Records a worker's queue holds.
    pub queue: usize,
    /// The PostgreSQL spool's limit; past it new INVITEs are refused.
    pub spool_max_bytes: u64,
}

#[cfg(test)]
impl AccConfig {
    /// For tests: nothing recorded, no sink, CSV and JSON lines into `dir`, a 10 ms group
    /// commit with a 1 MiB journal, the files written every 100 ms, no rotation, a queue of
    /// `queue`; the test sets what it is about.
    pub fn for_tests(dir: impl Into<PathBuf>, queue: usize) -> AccConfig {
        AccConfig {
            node: "n".into(),
            flags: Methods::default(),
            failed_flags: Methods::default(),
            missed_flags: Methods::default(),
            rules: Vec::new(),
            cdrs: false,
            sinks: Sinks::default(),
            dir: dir.into(),
            formats: Formats {
                csv: true,
                jsonl: true,
            },
            sync_interval: Duration::from_millis(10),
            sync_mode: SyncMode::default(),
            journal_bytes: 1 << 20,
            write_interval: Duration::from_millis(DEFAULT_WRITE_INTERVAL_MS),
            rotation: Rotation {
                max_bytes: 0,
                max_age_s: 0,
            },
            queue,
            spool_max_bytes: 1 << 20,
        }
    }
}

pub const DEFAULT_QUEUE: usize = 65_536;
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 10;
/// 16 MiB: at 2,000 calls/s with CSV and JSON lines, a checkpoint every few seconds.
pub const DEFAULT_JOURNAL_KIB: u64 = 16 << 10;
pub const DEFAULT_SPOOL_MAX_MB: u64 = 1024;
pub const DEFAULT_WRITE_INTERVAL_MS: u64 = 100;

impl AccConfig {
    /// Whether any transaction is recorded by flag.
    pub fn wants_transactions(&self) -> bool {
        !self.flags.is_empty() || !self.missed_flags.is_empty()
    }

    /// Whether requests are looked at on receipt (rules).
    pub fn wants_requests(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The methods whose transactions are recorded (bits `1 << Method as u32`).
    pub fn transaction_methods(&self) -> u32 {
        self.flags.0 | self.missed_flags.0
    }

    /// The methods rules record on receipt.
    pub fn request_methods(&self) -> u32 {
        self.rules.iter().fold(0, |m, r| m | 1 << r.method as u32)
    }
}

/// The host name (the default node name).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "siplb".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "siplb".into()
    } else {
        name
    }
}
