//! The writer's wake-up at a group commit, given by a worker that is awake anyway.
//!
//! Between two group commits the writer thread sleeps. Woken by a timer of its own, a
//! wake-up costs it 40–60 µs of CPU on a virtual machine (arming the timer and leaving an
//! idle core are traps to the hypervisor), more than the rest of a round's fixed work. Under
//! traffic the workers run their loops thousands of times a second anyway, so the writer
//! publishes when its next commit is due and sleeps on a futex; the first worker to pass
//! that time wakes it. A timer [`FALLBACK`] later stays for when no worker runs (no
//! traffic). Measured in docs/BENCHMARKS.md, "Accounting".

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much later than due the writer wakes by itself when no worker has woken it.
pub const FALLBACK: Duration = Duration::from_millis(2);

pub struct CommitWake {
    base: Instant,
    /// When the writer wants to be woken, in ns after `base` plus one; 0 while it is not
    /// waiting for a worker.
    due: AtomicU64,
    /// The futex word, bumped by the worker that wakes the writer.
    word: AtomicU32,
}

impl Default for CommitWake {
    fn default() -> Self {
        CommitWake {
            base: Instant::now(),
            due: AtomicU64::new(0),
            word: AtomicU32::new(0),
        }
    }
}

impl CommitWake {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64 + 1
    }

    /// The writer: sleeps until a worker finds `due` passed and wakes it, or until
    /// [`FALLBACK`] after `due`.
    pub fn wait_until(&self, due: Instant) {
        let seen = self.word.load(Ordering::Acquire);
        // A worker that passes `due` from here on bumps the word, and the wait then ends at
        // once.
        self.due.store(self.ns(due), Ordering::SeqCst);
        let timeout = due.saturating_duration_since(Instant::now()) + FALLBACK;
        futex_wait(&self.word, seen, timeout);
        self.due.store(0, Ordering::Relaxed);
    }

    /// A worker, once per loop: wakes the writer when its commit is due. A load of a word
    /// that changes twice a round; a system call once a round, by one worker.
    #[inline]
    pub fn poke(&self, now: Instant) {
        let due = self.due.load(Ordering::Relaxed);
        if due == 0 || self.ns(now) < due {
            return;
        }
        if self
            .due
            .compare_exchange(due, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.word.fetch_add(1, Ordering::Release);
            futex_wake(&self.word);
        }
    }
}

fn futex_wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid word and timespec; the call only sleeps (EAGAIN when the word moved,
    // ETIMEDOUT, EINTR: each is a wake-up like another).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &ts as *const libc::timespec,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: a valid word; wakes at most one waiter.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_worker_past_due_wakes_the_writer_before_its_fallback() {
        let w = Arc::new(CommitWake::default());
        let w2 = w.clone();
        let worker = std::thread::spawn(move || {
            // Once the writer waits, a worker whose clock is past the due time wakes it.
            while w2.due.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            w2.poke(Instant::now() + Duration::from_secs(3600));
        });
        let t = Instant::now();
        w.wait_until(t + Duration::from_secs(60));
        worker.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "woken long before its fallback"
        );
        assert_eq!(w.word.load(Ordering::Relaxed), 1);
        assert_eq!(w.due.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_worker_before_due_leaves_the_writer_asleep() {
        let w = CommitWake::default();
        w.due.store(
            w.ns(Instant::now() + Duration::from_secs(60)),
            Ordering::SeqCst,
        );
        w.poke(Instant::now());
        assert_eq!(w.word.load(Ordering::Relaxed), 0);
        assert_ne!(w.due.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn without_a_worker_the_writer_wakes_by_itself() {
        let w = CommitWake::default();
        let t = Instant::now();
        w.wait_until(t + Duration::from_millis(1));
        assert!(t.elapsed() >= Duration::from_millis(1));
        // Nobody waits any more: a late poke wakes nothing and leaves the word.
        w.poke(Instant::now() + Duration::from_secs(1));
        assert_eq!(w.word.load(Ordering::Relaxed), 0);
    }
}
