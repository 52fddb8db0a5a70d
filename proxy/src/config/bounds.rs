//! Upper bounds of the numeric keys that size memory or are added to a clock. A typo of a few
//! extra zeros must be an error naming the key and its line, not a start that allocates the
//! machine's memory away or a worker that panics when a timer overflows the clock. Lower
//! bounds and the relations between keys are checked with each section.

use super::file::FileConfig;
use super::{ConfigError, Invalid};
use std::fmt::Display;
use toml::Spanned;

/// Entries of a queue, allocated whole at start (per worker): 1 Mi.
pub const MAX_QUEUE: u64 = 1 << 20;
/// Values of a profile's table (two slots of about 90 bytes each, zeroed at start): 4 Mi.
pub const MAX_TABLE: u64 = 1 << 22;
/// A transaction timer, the linger time, a probe's interval and timeout, the fleet's
/// times: a day, in ms.
pub const MAX_DAY_MS: u64 = 86_400_000;
/// A retransmission interval (T2, T4): a minute, in ms.
pub const MAX_RETRANSMIT_MS: u64 = 60_000;
/// A dialog's timeouts and the files' rotation interval: a year, in seconds.
pub const MAX_YEAR_S: u64 = 31_536_000;
/// `workers.batch`: the completions one ring can hold.
pub const MAX_BATCH: u64 = 1024;
/// `limits.transaction_mb_per_worker`: 1 TiB.
pub const MAX_TRANSACTION_MB: u64 = 1 << 20;
/// The XDP guard's flood limit and burst, per source: ten million datagrams (a second).
pub const MAX_FLOOD: u64 = 10_000_000;

/// Checks every bounded key that `f` sets.
pub(super) fn check(f: &FileConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    let t = &f.timers;
    at_most(&t.t2_ms, "timers.t2_ms", MAX_RETRANSMIT_MS, "ms", invalid)?;
    at_most(&t.t4_ms, "timers.t4_ms", MAX_RETRANSMIT_MS, "ms", invalid)?;
    at_most(
        &t.timer_b_ms,
        "timers.timer_b_ms",
        MAX_DAY_MS,
        "ms",
        invalid,
    )?;
    at_most(
        &t.timer_c_ms,
        "timers.timer_c_ms",
        MAX_DAY_MS,
        "ms",
        invalid,
    )?;
    at_most(
        &t.timer_d_ms,
        "timers.timer_d_ms",
        MAX_DAY_MS,
        "ms",
        invalid,
    )?;
    at_most(
        &t.call_linger_ms,
        "timers.call_linger_ms",
        MAX_DAY_MS,
        "ms",
        invalid,
    )?;
    let d = &f.dialog;
    let s = "s";
    at_most(
        &d.default_timeout_s,
        "dialog.default_timeout_s",
        MAX_YEAR_S,
        s,
        invalid,
    )?;
    at_most(
        &d.early_timeout_s,
        "dialog.early_timeout_s",
        MAX_YEAR_S,
        s,
        invalid,
    )?;
    at_most(
        &d.noack_timeout_s,
        "dialog.noack_timeout_s",
        MAX_YEAR_S,
        s,
        invalid,
    )?;
    let l = &f.limits;
    let n = "";
    at_most(
        &l.queue_per_worker,
        "limits.queue_per_worker",
        MAX_QUEUE,
        n,
        invalid,
    )?;
    at_most(
        &l.account_table,
        "limits.account_table",
        MAX_TABLE,
        n,
        invalid,
    )?;
    at_most(&l.value_table, "limits.value_table", MAX_TABLE, n, invalid)?;
    let mb = &l.transaction_mb_per_worker;
    if *mb.get_ref() == 0 {
        return Err(invalid(
            mb.span(),
            "limits.transaction_mb_per_worker",
            "must be at least 1".into(),
        ));
    }
    at_most(
        mb,
        "limits.transaction_mb_per_worker",
        MAX_TRANSACTION_MB,
        n,
        invalid,
    )?;
    at_most(&f.events.queue, "events.queue", MAX_QUEUE, n, invalid)?;
    let st = &f.steering;
    at_most(
        &st.flood_rate,
        "steering.flood_rate",
        MAX_FLOOD,
        "",
        invalid,
    )?;
    at_most(
        &st.flood_burst,
        "steering.flood_burst",
        MAX_FLOOD,
        "",
        invalid,
    )?;
    let batch = &f.workers.batch;
    if *batch.get_ref() == 0 {
        return Err(invalid(
            batch.span(),
            "workers.batch",
            "must be at least 1".into(),
        ));
    }
    at_most(batch, "workers.batch", MAX_BATCH, n, invalid)?;
    let bye_wait = &f.shutdown.bye_wait_ms;
    at_most(bye_wait, "shutdown.bye_wait_ms", MAX_DAY_MS, "ms", invalid)?;
    for set in &f.gateway_set {
        let ms = "ms";
        at_most(
            &set.probe_interval_ms,
            "gateway_set.probe_interval_ms",
            MAX_DAY_MS,
            ms,
            invalid,
        )?;
        if let Some(v) = &set.probe_timeout_ms {
            at_most(v, "gateway_set.probe_timeout_ms", MAX_DAY_MS, ms, invalid)?;
        }
        if let Some(v) = &set.failover_timeout_ms {
            at_most(
                v,
                "gateway_set.failover_timeout_ms",
                MAX_DAY_MS,
                ms,
                invalid,
            )?;
        }
    }
    if let Some(c) = &f.cluster {
        at_most(&c.lease_ms, "cluster.lease_ms", MAX_DAY_MS, "ms", invalid)?;
        at_most(&c.quiet_ms, "cluster.quiet_ms", MAX_DAY_MS, "ms", invalid)?;
        at_most(&c.wait_ms, "cluster.wait_ms", MAX_DAY_MS, "ms", invalid)?;
    }
    if let Some(a) = &f.acc {
        at_most(&a.queue, "acc.queue", MAX_QUEUE, n, invalid)?;
        at_most(
            &a.rotate_interval_s,
            "acc.rotate_interval_s",
            MAX_YEAR_S,
            s,
            invalid,
        )?;
    }
    Ok(())
}

/// The error naming `key` when `v` is above `max` (`unit` after the numbers).
fn at_most<T>(
    v: &Spanned<T>,
    key: &str,
    max: u64,
    unit: &str,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError>
where
    T: Copy + Display + Wide,
{
    let value = *v.get_ref();
    if value.wide() <= max {
        return Ok(());
    }
    Err(invalid(
        v.span(),
        key,
        format!("{value}{unit} is too large: at most {max}{unit}"),
    ))
}

/// A key's number as u64, for the comparison.
trait Wide {
    fn wide(self) -> u64;
}

impl Wide for u64 {
    fn wide(self) -> u64 {
        self
    }
}

impl Wide for u32 {
    fn wide(self) -> u64 {
        self.into()
    }
}

impl Wide for usize {
    fn wide(self) -> u64 {
        self as u64
    }
}
