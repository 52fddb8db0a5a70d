//! The log: `tracing` to stderr, as text (ANSI colour only on a terminal) or one JSON object
//! per line (`[log] format`); the level from `SIPLB_LOG` or `RUST_LOG` when set, else
//! `[log] level`, and changeable at run time (`siplb ctl log.level`, [`set_level`]).
//!
//! It also turns the shard's events into the one line each refused, failed or
//! operator-ended call gets ([`CallLog`]): rate limited per worker by a token bucket, lines
//! over it counted in `log:dropped_lines`, a stateless refusal logged once however often its
//! INVITE is resent.

use crate::metrics::Counter;
use crate::proxy::{DialogRecord, EndedBy, Event};
use std::hash::BuildHasher;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

pub const DEFAULT_LEVEL: &str = "info";
pub const DEFAULT_CALLS_PER_SECOND: u32 = 100;
/// The target of the call lines, for filters (`info,siplb::call=off`).
pub const CALL_TARGET: &str = "siplb::call";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `tracing`'s human format; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, its fields at the top level.
    Json,
}

/// `[log]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Level or filter directives (`info`, `warn,siplb::call=info`).
    pub level: String,
    pub format: LogFormat,
    /// Call lines per second, over all workers; 0 = no call lines.
    pub calls_per_second: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LEVEL.into(),
            format: LogFormat::Text,
            calls_per_second: DEFAULT_CALLS_PER_SECOND,
        }
    }
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks a level or a list of filter directives (`level` or `target=level`, comma separated):
/// `EnvFilter` alone would take a misspelt level for a target and silence everything else.
pub fn check_level(s: &str) -> Result<(), String> {
    let known = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    if s.trim().is_empty() {
        return Err("is empty; one of off, error, warn, info, debug, trace".into());
    }
    for d in s.split(',') {
        let ok = match d.split_once('=') {
            Some((target, level)) => !target.trim().is_empty() && known(level),
            None => known(d),
        };
        if !ok {
            return Err(format!(
                "`{}` is not a level (off, error, warn, info, debug, trace) or `target=level`",
                d.trim()
            ));
        }
    }
    Ok(())
}

/// Kamailio's debug levels (`corex.debug`, `-1` error … `3` debug) as a level name.
fn kamailio_level(s: &str) -> Option<&'static str> {
    Some(match s.trim().parse::<i32>().ok()? {
        i32::MIN..=-1 => "error",
        0 => "warn",
        1 | 2 => "info",
        3 => "debug",
        _ => "trace",
    })
}

/// Whether to write ANSI colour: only to a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>).
pub fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Where the level came from and the filter to start with: `SIPLB_LOG`, else `RUST_LOG`,
/// else the configured level.
fn initial_level(cfg: &LogConfig) -> Result<String, String> {
    for var in ["SIPLB_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            check_level(&v).map_err(|e| format!("{var}: {e}"))?;
            return Ok(v);
        }
    }
    Ok(cfg.level.clone())
}

struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

static LEVEL: OnceLock<Reloadable> = OnceLock::new();

/// The registry under the reloadable filter, which the output layer sits on.
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// Threads siplb cannot work without (by name prefix): a worker (its shard's calls, and a
/// share of every datagram, would be lost while the process looks up), the accounting writer
/// and its PostgreSQL shipper (records would pile up until calls are refused), the restart
/// journal, the fleet's lease task.
const ESSENTIAL: [&str; 4] = ["siplb-w", "siplb-acc", "siplb-journal", "siplb-cluster"];

/// Whether a panic of thread `name` must stop siplb.
pub fn is_essential(name: &str) -> bool {
    ESSENTIAL.iter().any(|p| name.starts_with(p))
}

/// Logs every panic through the log (its format, its destination) as well as on stderr,
/// and calls `stop` when the thread that panicked is one siplb cannot work without: an
/// orderly stop (every queued record written) and a failed exit for the service manager to
/// restart, rather than a process that looks up with a piece of it gone.
pub fn install_panic_hook(stop: fn()) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(thread = name, "panic: {info}");
        default(info);
        if is_essential(name) {
            tracing::error!("thread {name} cannot go on: siplb stops");
            stop();
        }
    }));
}

/// Sets up the log (once per process).
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let level = initial_level(cfg)?;
    let filter = EnvFilter::try_new(&level).map_err(|e| format!("`{level}`: {e}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    // A JSON line escapes every value itself; a text line's field is quoted by [`Clean`].
    QUOTE_FIELDS.store(cfg.format == LogFormat::Text, Ordering::Relaxed);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match cfg.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| e.to_string())?;
    let _ = LEVEL.set(Reloadable {
        handle,
        current: Mutex::new(level),
    });
    Ok(())
}

/// The level (filter directives) in force.
pub fn level() -> Result<String, String> {
    let r = LEVEL.get().ok_or("the log is not set up")?;
    Ok(r.current.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Changes the level at run time: a level name, filter directives, or a Kamailio debug level
/// (`-1` … `3`). The level now in force.
pub fn set_level(s: &str) -> Result<String, String> {
    let r = LEVEL.get().ok_or("the log is not set up")?;
    let level = kamailio_level(s).map_or_else(|| s.trim().to_string(), String::from);
    check_level(&level)?;
    let filter = EnvFilter::try_new(&level).map_err(|e| format!("`{level}`: {e}"))?;
    r.handle.reload(filter).map_err(|e| e.to_string())?;
    *r.current.lock().unwrap_or_else(|e| e.into_inner()) = level.clone();
    tracing::info!("log level set to `{level}`");
    Ok(level)
}

/// Characters of one value a call line shows at most (a Call-ID of 10 KB is cut there).
pub const MAX_LOGGED_CHARS: usize = 256;

/// Whether [`Clean::field`] quotes a value that needs it: in the text format, where a field
/// is `name=value` and a value with a space, `"`, `=` or `\\` could pass for more fields.
static QUOTE_FIELDS: AtomicBool = AtomicBool::new(true);

/// Text from the network as a log line shows it: control characters written as escapes
/// (`\u{1b}`, `\n`), so that a Call-ID cannot drive the reader's terminal or forge a line of
/// its own, and at most `limit` characters, the rest counted. As a field of a text line
/// ([`Clean::field`]), a value that is not one plain word is quoted, with `"` and `\\`
/// escaped: `call_id="a b=c"`.
pub struct Clean<'a> {
    text: &'a str,
    limit: usize,
    quote: bool,
}

impl<'a> Clean<'a> {
    /// At most [`MAX_LOGGED_CHARS`] characters.
    pub fn short(text: &'a str) -> Clean<'a> {
        Clean {
            text,
            limit: MAX_LOGGED_CHARS,
            quote: false,
        }
    }

    /// Every character.
    pub fn whole(text: &'a str) -> Clean<'a> {
        Clean {
            text,
            limit: usize::MAX,
            quote: false,
        }
    }

    /// At most [`MAX_LOGGED_CHARS`] characters, as the value of a field: quoted in the text
    /// format when it is not one plain word.
    pub fn field(text: &'a str) -> Clean<'a> {
        Clean {
            text,
            limit: MAX_LOGGED_CHARS,
            quote: QUOTE_FIELDS.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let s = self.text;
        let quoted = self.quote
            && (s.is_empty() || s.bytes().any(|b| matches!(b, b' ' | b'"' | b'=' | b'\\')));
        let plain = !s.bytes().any(|b| b < 0x20 || b == 0x7f || b >= 0x80);
        if plain && !quoted && s.len() <= self.limit {
            return f.write_str(s);
        }
        if quoted {
            f.write_char('"')?;
        }
        for (i, c) in s.chars().enumerate() {
            if i == self.limit {
                write!(f, "…({} bytes)", s.len())?;
                break;
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else if quoted && (c == '"' || c == '\\') {
                write!(f, "\\{c}")?;
            } else {
                f.write_char(c)?;
            }
        }
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` held.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes a token at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a stateless refusal of a Call-ID is remembered: an INVITE is resent for 64·T1.
const REFUSAL_MEMORY: Duration = Duration::from_secs(32);
/// Refusals remembered per worker (a direct-mapped table: a collision forgets the older).
const REFUSAL_SLOTS: usize = 4096;

/// One worker's call lines.
pub struct CallLog {
    bucket: TokenBucket,
    /// Lines over the rate since the last one written: said before the next one.
    left_out: u64,
    /// (hash of Call-ID and code, when) of recent refusals, to log each once.
    recent: Box<[(u64, Option<Instant>)]>,
    hasher: std::hash::RandomState,
}

/// What one event says about a call, if it deserves a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLine<'e> {
    /// `refused`, `failed`, or `ended` (by an operator or a timeout).
    pub what: &'static str,
    pub call_id: &'e str,
    pub source: std::net::SocketAddr,
    pub account: &'e str,
    pub code: u16,
    pub reason: &'e str,
    pub gateway: Option<std::net::SocketAddr>,
    pub ended_by: Option<EndedBy>,
}

impl<'e> CallLine<'e> {
    /// The line of an event: refusals (stateless, or over a limit), calls that failed (but
    /// for a 401/407 challenge, which the caller answers with a new INVITE), and answered calls
    /// siplb ended (operator, timeout).
    pub fn of(e: &'e Event) -> Option<CallLine<'e>> {
        match e {
            Event::Refused(r) => Some(CallLine {
                what: "refused",
                call_id: r.parties.call_id(),
                source: r.source.addr,
                account: &r.account,
                code: r.code,
                reason: &r.reason,
                gateway: None,
                ended_by: None,
            }),
            Event::Dialog(d) => Self::of_dialog(d),
            Event::Transaction(_) | Event::Request(_) | Event::Gateway(_) => None,
        }
    }

    fn of_dialog(d: &'e DialogRecord) -> Option<CallLine<'e>> {
        // Refused: answered by siplb itself, never forwarded (a limit, no route, no gateway,
        // overload); but a CANCEL that came first ends the call as a failure, with its 487.
        let what = if d.limit_refused || (d.attempts == 0 && d.outcome.code != Some(487)) {
            "refused"
        } else if !d.answered {
            if matches!(d.outcome.code, Some(401 | 407)) {
                return None;
            }
            "failed"
        } else if matches!(d.ended_by, Some(EndedBy::Operator | EndedBy::Timeout)) {
            "ended"
        } else {
            return None;
        };
        let ended_by = d
            .ended_by
            .or(d.cancelled_by.filter(|c| *c == EndedBy::Operator));
        // An answered call siplb ended: the answer's code, and why it ended.
        let (code, reason) = match (what, d.ended_by) {
            ("ended", Some(EndedBy::Operator)) => (200, "ended by operator"),
            ("ended", _) => (200, "dialog timeout"),
            _ => (d.outcome.code.unwrap_or(0), &*d.outcome.reason),
        };
        Some(CallLine {
            what,
            call_id: d.parties.call_id(),
            source: d.caller.addr,
            account: &d.account,
            code,
            reason,
            gateway: d.gateway.map(|g| g.addr),
            ended_by,
        })
    }
}

impl CallLog {
    /// `calls_per_second` shared by `workers` workers (a second's worth of burst each).
    pub fn new(calls_per_second: u32, workers: usize) -> CallLog {
        let rate = (f64::from(calls_per_second) / workers.max(1) as f64).max(1.0);
        CallLog {
            bucket: TokenBucket::new(rate, rate),
            left_out: 0,
            recent: vec![(0, None); REFUSAL_SLOTS].into_boxed_slice(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whether `line` is new (not a refusal already logged for its resent INVITE).
    fn first_time(&mut self, now: Instant, line: &CallLine<'_>) -> bool {
        if line.what != "refused" {
            return true;
        }
        let h = self.hasher.hash_one((line.call_id, line.code));
        let slot = &mut self.recent[(h as usize) % REFUSAL_SLOTS];
        let seen = slot.0 == h
            && slot
                .1
                .is_some_and(|t| now.saturating_duration_since(t) < REFUSAL_MEMORY);
        *slot = (h, Some(now));
        !seen
    }

    /// Whether a line may be written now; a line over the rate is counted in `dropped`.
    pub fn admit(&mut self, now: Instant, line: &CallLine<'_>, dropped: &Counter) -> bool {
        if !tracing::enabled!(target: CALL_TARGET, tracing::Level::INFO) {
            return false;
        }
        if !self.first_time(now, line) {
            return false;
        }
        if self.bucket.take(now) {
            if self.left_out > 0 {
                tracing::info!(
                    target: CALL_TARGET,
                    "{} call lines left out over [log] calls_per_second (log:dropped_lines)",
                    self.left_out
                );
                self.left_out = 0;
            }
            true
        } else {
            dropped.inc();
            self.left_out += 1;
            false
        }
    }

    /// Logs the line of `e`, if it has one and the rate allows.
    pub fn event(&mut self, now: Instant, e: &Event, dropped: &Counter) {
        if let Some(line) = CallLine::of(e)
            && self.admit(now, &line, dropped)
        {
            write(&line);
        }
    }
}

/// Writes one call line (target [`CALL_TARGET`], level info): the values as they are, but
/// the reason quoted (it has spaces).
pub fn write(l: &CallLine<'_>) {
    let account = if l.account.is_empty() { "-" } else { l.account };
    let gateway = l.gateway.map_or_else(|| "-".to_string(), |g| g.to_string());
    let ended_by = l.ended_by.map_or("-", EndedBy::as_str);
    tracing::info!(
        target: CALL_TARGET,
        call_id = %Clean::field(l.call_id),
        source = %l.source,
        account = %Clean::field(account),
        code = l.code,
        reason = l.reason,
        gateway = %gateway,
        ended_by = %ended_by,
        "call {}",
        l.what
    );
}

/// The line of a gateway that probing took down or brought back up (Kamailio's dispatcher
/// logs the same): a warning when it goes down, information when it comes back.
pub fn gateway_change(g: &crate::proxy::event::GatewayChange) {
    use crate::proxy::health::Outcome;
    let probe = match g.outcome {
        Outcome::Timeout => "no answer to OPTIONS".to_string(),
        Outcome::Reply { code, rtt, .. } => {
            format!("OPTIONS answered {code} in {} ms", rtt.as_millis())
        }
    };
    if g.up {
        tracing::info!(target: "siplb::dispatcher", gateway = %g.gateway, "gateway up: {probe}");
    } else {
        tracing::warn!(
            target: "siplb::dispatcher",
            gateway = %g.gateway,
            "gateway down: {probe}; no new calls go to it until it answers again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_is_logged_without_control_characters_and_cut_short() {
        assert_eq!(Clean::short("abc@host").to_string(), "abc@host");
        assert_eq!(Clean::short("é-ü").to_string(), "é-ü");
        assert_eq!(
            Clean::short("unk\x1b[5mBLINK\u{7}\0@x\r\nforged").to_string(),
            "unk\\u{1b}[5mBLINK\\u{7}\\u{0}@x\\r\\nforged"
        );
        let long = "a".repeat(10_000);
        let shown = Clean::short(&long).to_string();
        assert_eq!(
            shown,
            format!("{}…(10000 bytes)", "a".repeat(MAX_LOGGED_CHARS))
        );
        assert_eq!(Clean::whole(&long).to_string(), long);
    }

    #[test]
    fn a_field_that_is_not_one_plain_word_is_quoted() {
        assert_eq!(Clean::field("abc@host").to_string(), "abc@host");
        assert_eq!(
            Clean::field("x source=1.2.3.4").to_string(),
            "\"x source=1.2.3.4\""
        );
        assert_eq!(Clean::field("a\"b\\c").to_string(), "\"a\\\"b\\\\c\"");
        assert_eq!(Clean::field("a=b\n").to_string(), "\"a=b\\n\"");
        // Outside a field (a message's text) nothing is quoted.
        assert_eq!(Clean::short("a b").to_string(), "a b");
    }

    #[test]
    fn levels_and_directives_are_checked() {
        for ok in ["info", "WARN", "off", "info,siplb::call=off", "siplb=debug"] {
            assert_eq!(check_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", "inof", "info,siplb::call", "=info", "info,x=loud"] {
            assert!(check_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kamailio_debug_levels_map_to_level_names() {
        assert_eq!(kamailio_level("-1"), Some("error"));
        assert_eq!(kamailio_level("0"), Some("warn"));
        assert_eq!(kamailio_level("2"), Some("info"));
        assert_eq!(kamailio_level("3"), Some("debug"));
        assert_eq!(kamailio_level("debug"), None);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(use_colour(true, Some(OsStr::new(""))));
    }

    #[test]
    fn bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 10.0);
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| b.take(t1)).count(), 5);
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(
            (0..20).filter(|_| b.take(t2)).count(),
            10,
            "capped at burst"
        );
    }

    #[test]
    fn a_refusal_is_logged_once_per_call_id_while_its_invite_may_be_resent() {
        let mut log = CallLog::new(1000, 1);
        let line = |call_id| CallLine {
            what: "refused",
            call_id,
            source: "127.0.0.1:5070".parse().unwrap(),
            account: "",
            code: 403,
            reason: "Forbidden",
            gateway: None,
            ended_by: None,
        };
        let t0 = Instant::now();
        assert!(log.first_time(t0, &line("a")));
        assert!(!log.first_time(t0 + Duration::from_secs(4), &line("a")));
        assert!(log.first_time(t0, &line("b")));
        assert!(log.first_time(t0 + Duration::from_secs(60), &line("a")));
    }

    #[test]
    fn a_panic_stops_siplb_only_in_a_thread_it_cannot_work_without() {
        for name in [
            "siplb-w0",
            "siplb-w15",
            "siplb-acc",
            "siplb-acc-pg",
            "siplb-journal",
        ] {
            assert!(is_essential(name), "{name}");
        }
        for name in [
            "siplb-control",
            "siplb-metrics",
            "siplb-post",
            "siplb-drain",
            "main",
        ] {
            assert!(!is_essential(name), "{name}");
        }
    }
}
