//! Adaptive batching: how long a worker lets io_uring wait for more completions before it
//! works. Waiting (`min_wait`, up to `workers.batch_wait_us`) turns many wake-ups into one
//! under load, but at low load it only adds its whole length to every datagram's latency. So
//! the worker waits only while the recent arrival rate says the wait will fill a batch: at
//! least [`ENTER`] datagrams expected within the wait; it stops below [`LEAVE`] (between the
//! two it keeps what it does, so that a rate near the threshold does not flip every window).
//!
//! A wait ends as soon as the completions the recent rate expects within it are there, not
//! only when a whole `workers.batch` is: when datagrams come in bursts (a sender that works
//! in ticks), a burst is served at once instead of after the whole wait.

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
    /// Datagrams handled in the window (a socket completion each, or AF_XDP frames).
    in_window: u64,
    /// Completions in the window (an AF_XDP poll completion stands for many frames).
    completions: u64,
    waiting: bool,
    /// Completions a wait asks for: those the last window's rate expects within it.
    want: usize,
}

impl Batching {
    pub fn new(wait_us: u32, batch: usize, now: Instant) -> Batching {
        Batching {
            wait_us,
            batch: batch.max(1),
            window_start: now,
            in_window: 0,
            completions: 0,
            waiting: false,
            want: 1,
        }
    }

    /// Counts `completions` handled at `now` (a datagram each, as far as it knows); at the
    /// end of each window, decides whether the next waits are worth it and what they ask for.
    pub fn observe(&mut self, now: Instant, completions: usize) {
        self.in_window += completions as u64;
        self.completions += completions as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let us = elapsed.as_micros().max(1) as f64;
        let expected = self.in_window as f64 / us * f64::from(self.wait_us);
        if expected >= ENTER {
            self.waiting = true;
        } else if expected < LEAVE {
            self.waiting = false;
        }
        let completions = self.completions as f64 / us * f64::from(self.wait_us);
        self.want = (completions.round() as usize).clamp(1, self.batch);
        self.window_start = now;
        self.in_window = 0;
        self.completions = 0;
    }

    /// Counts datagrams that came without a completion each (`frames` AF_XDP frames behind
    /// one poll completion, which [`observe`](Self::observe) counts).
    pub fn observe_frames(&mut self, frames: usize) {
        self.in_window += frames as u64;
    }

    /// Never waits again (the kernel cannot).
    pub fn disable(&mut self) {
        self.wait_us = 0;
        self.waiting = false;
    }

    /// (completions to wait for, `min_wait` in µs) for the next wake-up: while the load fills
    /// waits, the completions the rate expects within one (at most `workers.batch`) and the
    /// configured wait; else the first completion at once.
    pub fn next(&self) -> (usize, u32) {
        if self.waiting && self.wait_us > 0 {
            (self.want, self.wait_us)
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
        // 7 per ms (2,000 calls/s on two workers): 7 expected within 1 ms, and the wait
        // ends when they are there.
        feed(&mut b, &mut t, 7, 100);
        assert_eq!(b.next(), (7, 1000));
        // More than a batch within the wait: the batch.
        feed(&mut b, &mut t, 50, 100);
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
        assert_eq!(b.next(), (3, 1000), "not left from above");
    }

    #[test]
    fn frames_behind_one_completion_decide_the_waiting_but_not_what_a_wait_asks_for() {
        let mut t = Instant::now();
        let mut b = Batching::new(1000, 32, t);
        // An AF_XDP socket: a poll completion every other millisecond, 10 frames behind it.
        for ms in 0..200 {
            t += Duration::from_millis(1);
            let polls = usize::from(ms % 2 == 0);
            b.observe_frames(10 * polls);
            b.observe(t, polls);
        }
        assert_eq!(
            b.next(),
            (1, 1000),
            "waits, and a wait ends at the next poll"
        );
    }

    #[test]
    fn no_configured_wait_means_no_waiting_at_any_load() {
        let mut t = Instant::now();
        let mut b = Batching::new(0, 32, t);
        feed(&mut b, &mut t, 50, 200);
        assert_eq!(b.next(), (1, 0));
    }
}
