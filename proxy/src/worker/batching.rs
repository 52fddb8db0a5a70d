//! Adaptive batching: how long a worker lets io_uring wait for more completions before it
//! works. Waiting (`min_wait`, up to `workers.batch_wait_us`) turns many wake-ups into one
//! under load, but at low load it only adds its whole length to every datagram's latency. So
//! the worker waits only while the recent arrival rate says the wait will fill a batch: at
//! least [`ENTER`] completions expected within the wait; it stops below [`LEAVE`] (between the
//! two it keeps what it does, so that a rate near the threshold does not flip every window).

use std::time::{Duration, Instant};

/// Completions expected within one wait at which waiting starts.
pub const ENTER: f64 = 4.0;
/// And below which it stops.
pub const LEAVE: f64 = 2.0;
/// How long a rate is measured over.
const WINDOW: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Batching {
    /// `workers.batch_wait_us` (0: never wait).
    wait_us: u32,
    /// `workers.batch`: completions a wait may end early at.
    batch: usize,
    window_start: Instant,
    in_window: u64,
    waiting: bool,
}

impl Batching {
    pub fn new(wait_us: u32, batch: usize, now: Instant) -> Batching {
        Batching {
            wait_us,
            batch: batch.max(1),
            window_start: now,
            in_window: 0,
            waiting: false,
        }
    }

    /// Counts `completions` handled at `now`; at the end of each window, decides whether the
    /// next waits are worth it.
    pub fn observe(&mut self, now: Instant, completions: usize) {
        self.in_window += completions as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let per_us = self.in_window as f64 / elapsed.as_micros().max(1) as f64;
        let expected = per_us * f64::from(self.wait_us);
        if expected >= ENTER {
            self.waiting = true;
        } else if expected < LEAVE {
            self.waiting = false;
        }
        self.window_start = now;
        self.in_window = 0;
    }

    /// Never waits again (the kernel cannot).
    pub fn disable(&mut self) {
        self.wait_us = 0;
        self.waiting = false;
    }

    /// (completions to wait for, `min_wait` in µs) for the next wake-up: the configured batch
    /// and wait while the load fills them, else the first completion at once.
    pub fn next(&self) -> (usize, u32) {
        if self.waiting && self.wait_us > 0 {
            (self.batch, self.wait_us)
        } else {
            (1, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `per_ms` completions each millisecond for `ms` milliseconds.
    fn feed(b: &mut Batching, t: &mut Instant, per_ms: usize, ms: u64) {
        for _ in 0..ms {
            *t += Duration::from_millis(1);
            b.observe(*t, per_ms);
        }
    }

    #[test]
    fn low_load_never_waits_and_high_load_waits_with_the_configured_batch() {
        let mut t = Instant::now();
        let mut b = Batching::new(1000, 32, t);
        assert_eq!(b.next(), (1, 0), "no waiting until a rate says so");
        // 100 calls/s is about 0.35 datagrams per ms per worker: never worth a wait.
        feed(&mut b, &mut t, 0, 200);
        assert_eq!(b.next(), (1, 0));
        // 7 per ms (2,000 calls/s on two workers): 7 expected within 1 ms.
        feed(&mut b, &mut t, 7, 100);
        assert_eq!(b.next(), (32, 1000));
        // Back to a trickle: waits stop within a window or two.
        feed(&mut b, &mut t, 1, 50);
        feed(&mut b, &mut t, 0, 100);
        assert_eq!(b.next(), (1, 0));
    }

    #[test]
    fn a_rate_between_the_thresholds_keeps_the_current_choice() {
        let mut t = Instant::now();
        let mut b = Batching::new(1000, 32, t);
        // 3 per ms: between LEAVE and ENTER.
        feed(&mut b, &mut t, 3, 200);
        assert_eq!(b.next(), (1, 0), "not entered from below");
        feed(&mut b, &mut t, 8, 100);
        feed(&mut b, &mut t, 3, 200);
        assert_eq!(b.next(), (32, 1000), "not left from above");
    }

    #[test]
    fn no_configured_wait_means_no_waiting_at_any_load() {
        let mut t = Instant::now();
        let mut b = Batching::new(0, 32, t);
        feed(&mut b, &mut t, 50, 200);
        assert_eq!(b.next(), (1, 0));
    }
}
