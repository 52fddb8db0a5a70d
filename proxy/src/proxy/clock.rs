//! A shard's sense of time, given to it, never read: the wall-clock origin that turns an
//! `Instant` into Unix ms (dialog and accounting times), and the schedule of what is due when
//! (transactions' timers, the end of a dialog record's linger, the dialog sweep) on a timer
//! wheel.

use super::ids::{DialogId, TxnId};
use super::wheel::TimerWheel;
use std::time::{Duration, Instant};

/// What a schedule entry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Run the timers of this transaction.
    Txn(TxnId),
    /// A dialog record whose linger (after its end) is over.
    Dialog(DialogId),
    /// The sweep that checks dialogs against their timeouts.
    Sweep,
}

/// Unix time, from an origin the worker gives.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock {
    /// An instant and its Unix time in ms.
    epoch: Option<(Instant, u64)>,
}

impl WallClock {
    /// `now` is `unix_ms` after the Unix epoch.
    pub fn set(&mut self, now: Instant, unix_ms: u64) {
        self.epoch = Some((now, unix_ms));
    }

    /// Without an origin, times count from the first `now` the shard hears of.
    pub fn start(&mut self, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some((now, 0));
        }
    }

    /// Unix time in ms of `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        match self.epoch {
            Some((at, ms)) if now >= at => ms + now.duration_since(at).as_millis() as u64,
            Some((at, ms)) => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
            None => 0,
        }
    }
}

/// The deadlines of one shard.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Created with the first `now` the shard is given as its origin: every deadline comes
    /// after it.
    wheel: Option<TimerWheel<Wake>>,
    /// When the next sweep runs, if one is scheduled.
    sweep_at: Option<Instant>,
}

impl Schedule {
    pub fn start(&mut self, now: Instant) {
        if self.wheel.is_none() {
            self.wheel = Some(TimerWheel::new(now));
        }
    }

    pub fn add(&mut self, at: Instant, w: Wake) {
        self.wheel
            .get_or_insert_with(|| TimerWheel::new(at))
            .insert(at, w);
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.as_ref().and_then(TimerWheel::next_deadline)
    }

    /// Entries queued (stale ones included).
    pub fn len(&self) -> usize {
        self.wheel.as_ref().map_or(0, |w| w.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything due at `now` into `out`, in deadline order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(Instant, Wake)>) {
        if let Some(w) = self.wheel.as_mut() {
            w.expire(now, |at, r| out.push((at, r)));
        }
        // Deadline order, as the RFC timers of one transaction expect.
        out.sort_unstable();
    }

    /// Makes sure a sweep is scheduled, `every` from `now`.
    pub fn ensure_sweep(&mut self, now: Instant, every: Duration) {
        if self.sweep_at.is_none() {
            let at = now + every;
            self.sweep_at = Some(at);
            self.add(at, Wake::Sweep);
        }
    }

    /// The sweep ran.
    pub fn swept(&mut self) {
        self.sweep_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_follows_the_origin_both_ways() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = WallClock::default();
        assert_eq!(c.unix_ms(t0), 0);
        c.set(t0, 1_000_000);
        assert_eq!(c.unix_ms(t0 + Duration::from_millis(1500)), 1_001_500);
        assert_eq!(c.unix_ms(t0 - Duration::from_secs(1)), 999_000);
        c.start(t0 + Duration::from_secs(1));
        assert_eq!(
            c.unix_ms(t0),
            1_000_000,
            "start keeps an origin already set"
        );
    }

    #[test]
    fn due_entries_come_out_in_deadline_order_and_one_sweep_is_queued() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.start(t0);
        let id = |n| DialogId::new(0, n).unwrap();
        s.add(t0 + Duration::from_millis(30), Wake::Dialog(id(2)));
        s.add(t0 + Duration::from_millis(10), Wake::Dialog(id(1)));
        s.ensure_sweep(t0, Duration::from_millis(20));
        s.ensure_sweep(t0, Duration::from_millis(5));
        assert_eq!(s.len(), 3);
        let mut out = Vec::new();
        s.expire(t0 + Duration::from_millis(40), &mut out);
        let wakes: Vec<Wake> = out.iter().map(|(_, w)| *w).collect();
        assert_eq!(
            wakes,
            [Wake::Dialog(id(1)), Wake::Sweep, Wake::Dialog(id(2))]
        );
        assert!(s.is_empty());
    }
}
