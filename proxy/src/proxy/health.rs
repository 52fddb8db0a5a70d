//! A gateway's health as the workers share it (Kamailio's dispatcher destination flags):
//! active or inactive, disabled by the operator, probed or not, and what the last probe
//! found. Atomics only: the call path reads [`Health::usable`] without a lock; the prober
//! (one worker) and the control thread write.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Bits of [`Health::flags`].
const INACTIVE: u8 = 1;
const DISABLED: u8 = 2;
const PROBING: u8 = 4;

/// `last_reply` before any probe was answered or timed out.
const NO_REPLY: u32 = 0;
/// `last_reply` of a probe that timed out.
const TIMED_OUT: u32 = 1;

/// The state an operator forces (`dispatcher.set_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `a`: takes calls.
    Active,
    /// `i`: takes no calls; with probing, answered probes make it active again.
    Inactive,
    /// `d`: takes no calls and is not probed.
    Disabled,
}

impl Admin {
    /// Kamailio's state argument: `a`, `i` or `d`, with `p` for probing (`ap`, `ip`).
    pub fn parse(s: &str) -> Option<(Admin, bool)> {
        let s = s.to_ascii_lowercase();
        let probing = s.len() == 2 && s.ends_with('p');
        let admin = match s.trim_end_matches('p') {
            "a" => Admin::Active,
            "i" => Admin::Inactive,
            "d" => Admin::Disabled,
            _ => return None,
        };
        (s.len() == 1 || probing).then_some((admin, probing))
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final reply, after `rtt`; `failed` when its code is one of the set's failure codes.
    Reply {
        code: u16,
        rtt: Duration,
        failed: bool,
    },
    /// No final reply within the probe timeout.
    Timeout,
}

/// A change of state a probe caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Down,
    Up,
}

/// How many probes in a row change the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failures in a row that make an active gateway inactive.
    pub down_after: u32,
    /// Successes in a row that make an inactive gateway active.
    pub up_after: u32,
}

#[derive(Debug, Default)]
pub struct Health {
    /// `INACTIVE | DISABLED | PROBING`; 0: active, not probed.
    flags: AtomicU8,
    /// Probes failed in a row, and answered in a row.
    fails: AtomicU32,
    oks: AtomicU32,
    /// The last probe's status code (`NO_REPLY`, `TIMED_OUT`).
    last_reply: AtomicU32,
    /// The last answered probe's round trip, in µs.
    rtt_us: AtomicU64,
    /// Probes sent, and probes failed (timeout or a failure code), since start.
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Health {
    fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Whether it may take new calls: active and not disabled.
    pub fn usable(&self) -> bool {
        self.flags() & (INACTIVE | DISABLED) == 0
    }

    /// Whether the prober should probe it (and it is not disabled).
    pub fn probing(&self) -> bool {
        self.flags() & (PROBING | DISABLED) == PROBING
    }

    /// Probing on or off (from the set's configuration), the state unchanged.
    pub fn set_probing(&self, on: bool) {
        if on {
            self.flags.fetch_or(PROBING, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!PROBING, Ordering::Relaxed);
        }
    }

    /// Forces a state (`dispatcher.set_state`); the counts in a row start again.
    pub fn force(&self, admin: Admin, probing: bool) {
        let state = match admin {
            Admin::Active => 0,
            Admin::Inactive => INACTIVE,
            Admin::Disabled => DISABLED,
        };
        self.flags
            .store(state | if probing { PROBING } else { 0 }, Ordering::Relaxed);
        self.fails.store(0, Ordering::Relaxed);
        self.oks.store(0, Ordering::Relaxed);
    }

    /// A probe went out.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes what a probe found; the change of state it made, if any. A disabled gateway
    /// (disabled while its probe was out) keeps its state.
    pub fn record(&self, outcome: Outcome, t: Thresholds) -> Option<Change> {
        let failed = match outcome {
            Outcome::Reply { code, rtt, failed } => {
                self.last_reply.store(u32::from(code), Ordering::Relaxed);
                // 0 is kept for "never answered".
                self.rtt_us
                    .store((rtt.as_micros() as u64).max(1), Ordering::Relaxed);
                failed
            }
            Outcome::Timeout => {
                self.last_reply.store(TIMED_OUT, Ordering::Relaxed);
                true
            }
        };
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.oks.store(0, Ordering::Relaxed);
            let n = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            let f = self.flags();
            (f & (INACTIVE | DISABLED) == 0 && n >= t.down_after.max(1)).then(|| {
                self.flags.fetch_or(INACTIVE, Ordering::Relaxed);
                Change::Down
            })
        } else {
            self.fails.store(0, Ordering::Relaxed);
            let n = self.oks.fetch_add(1, Ordering::Relaxed) + 1;
            let f = self.flags();
            (f & DISABLED == 0 && f & INACTIVE != 0 && n >= t.up_after.max(1)).then(|| {
                self.flags.fetch_and(!INACTIVE, Ordering::Relaxed);
                Change::Up
            })
        }
    }

    /// Kamailio's FLAGS: `A` active, `T` trying (active, failing probes, not yet down), `I`
    /// inactive, `D` disabled; then `P` probed or `X` not.
    pub fn flag_text(&self) -> &'static str {
        let f = self.flags();
        let trying = self.fails.load(Ordering::Relaxed) > 0;
        match (f & DISABLED != 0, f & INACTIVE != 0, f & PROBING != 0) {
            (true, _, true) => "DP",
            (true, _, false) => "DX",
            (false, true, true) => "IP",
            (false, true, false) => "IX",
            (false, false, true) if trying => "TP",
            (false, false, true) => "AP",
            (false, false, false) => "AX",
        }
    }

    /// The last probe's status code; `None` before any, `Some(None)` for a timeout.
    pub fn last_reply(&self) -> Option<Option<u16>> {
        match self.last_reply.load(Ordering::Relaxed) {
            NO_REPLY => None,
            TIMED_OUT => Some(None),
            c => Some(Some(c as u16)),
        }
    }

    /// The last answered probe's round trip (none while no probe was ever answered).
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Probes sent and failed since start.
    pub fn probes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        down_after: 2,
        up_after: 1,
    };

    fn ok(code: u16) -> Outcome {
        Outcome::Reply {
            code,
            rtt: Duration::from_millis(3),
            failed: false,
        }
    }

    #[test]
    fn two_failures_in_a_row_take_it_down_and_one_answer_brings_it_back() {
        let h = Health::default();
        h.set_probing(true);
        assert_eq!(h.flag_text(), "AP");
        assert_eq!(h.record(Outcome::Timeout, T), None);
        assert_eq!(h.rtt(), None, "never answered: no round trip");
        assert_eq!(h.flag_text(), "TP");
        assert!(h.usable(), "trying still takes calls");
        // An answer in between starts the count again.
        assert_eq!(h.record(ok(200), T), None);
        assert_eq!(h.record(Outcome::Timeout, T), None);
        assert_eq!(h.record(Outcome::Timeout, T), Some(Change::Down));
        assert!(!h.usable());
        assert_eq!(h.flag_text(), "IP");
        assert_eq!(h.record(Outcome::Timeout, T), None, "down once");
        assert_eq!(h.last_reply(), Some(None));
        assert_eq!(h.record(ok(200), T), Some(Change::Up));
        assert!(h.usable());
        assert_eq!(h.last_reply(), Some(Some(200)));
        assert_eq!(h.rtt(), Some(Duration::from_millis(3)));
        assert_eq!(h.probes().1, 4);
    }

    #[test]
    fn a_failure_code_counts_as_a_failure() {
        let h = Health::default();
        let t = Thresholds {
            down_after: 1,
            up_after: 3,
        };
        let busy = Outcome::Reply {
            code: 503,
            rtt: Duration::from_millis(1),
            failed: true,
        };
        assert_eq!(h.record(busy, t), Some(Change::Down));
        assert_eq!(h.record(ok(404), t), None);
        assert_eq!(h.record(ok(200), t), None);
        assert_eq!(h.record(ok(200), t), Some(Change::Up));
    }

    #[test]
    fn forced_states_as_kamailio_writes_them() {
        assert_eq!(Admin::parse("ip"), Some((Admin::Inactive, true)));
        assert_eq!(Admin::parse("a"), Some((Admin::Active, false)));
        assert_eq!(Admin::parse("D"), Some((Admin::Disabled, false)));
        assert_eq!(Admin::parse("x"), None);
        assert_eq!(Admin::parse("pp"), None);
        let h = Health::default();
        h.force(Admin::Inactive, true);
        assert_eq!(
            (h.usable(), h.probing(), h.flag_text()),
            (false, true, "IP")
        );
        // Probing brings an inactive gateway back.
        assert_eq!(h.record(ok(200), T), Some(Change::Up));
        h.force(Admin::Disabled, true);
        assert_eq!(
            (h.usable(), h.probing(), h.flag_text()),
            (false, false, "DP")
        );
        // A late probe answer does not enable a disabled gateway.
        assert_eq!(h.record(ok(200), T), None);
        assert!(!h.usable());
        h.force(Admin::Inactive, false);
        assert_eq!(h.flag_text(), "IX");
        h.force(Admin::Active, false);
        assert_eq!((h.usable(), h.flag_text()), (true, "AX"));
    }
}
