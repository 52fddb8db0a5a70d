//! The graceful drain (`siplb ctl core.drain <seconds>`): siplb stops admitting new calls
//! (new INVITEs get `503` with `Retry-After`, and OPTIONS to siplb get `503` too, so that the
//! customers' and upstream proxies' probes move traffic away), keeps serving the dialogs it
//! has, and exits by itself when no dialog has been up for [`GRACE`] (time for the last
//! BYEs' answers) or at the deadline, whichever comes first. At the deadline the dialogs still up are handled as at SIGTERM (`[shutdown]
//! dialogs`). The state is the gauge `core:draining`.
//!
//! The workers read [`Drain::is_draining`] once per loop; the watcher thread
//! ([`watch`]) ends the process by raising SIGTERM on it, so that a drain ends through the
//! one shutdown path there is.

use crate::metrics::Counter;
use crate::worker::WorkerHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest drain `core.drain` takes, in seconds (a day).
pub const MAX_SECONDS: u64 = 86_400;

/// How often the watcher looks at the dialog count.
const WATCH: Duration = Duration::from_millis(100);
/// How long no dialog must be up before siplb exits: a dialog ends when its BYE is
/// forwarded, and the BYE's answer (or a lost one's retransmission) still has to pass.
pub const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Drain {
    /// Unix ms by which siplb exits; 0 while not draining (one word, so that no reader sees
    /// a drain without its deadline).
    deadline_ms: AtomicU64,
    /// `core:draining`: 1 while draining.
    pub gauge: Arc<Counter>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Drain {
    /// Starts draining, to end at the latest `seconds` from now; a drain already under way
    /// keeps the earlier of the two deadlines. The deadline, Unix ms.
    pub fn start(&self, seconds: u64) -> u64 {
        let asked = (unix_ms() + seconds.min(MAX_SECONDS) * 1000).max(1);
        let before = self
            .deadline_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(if cur == 0 { asked } else { cur.min(asked) })
            })
            .unwrap_or(0);
        self.gauge.set(1);
        if before == 0 {
            asked
        } else {
            before.min(asked)
        }
    }

    pub fn is_draining(&self) -> bool {
        self.deadline_ms.load(Ordering::Relaxed) != 0
    }

    /// Unix ms of the deadline, while draining.
    pub fn deadline_ms(&self) -> Option<u64> {
        Some(self.deadline_ms.load(Ordering::Acquire)).filter(|&d| d != 0)
    }
}

/// Dialogs up (early or confirmed: `dialog:active_dialogs`) across the workers, as their
/// gauges last said.
pub fn dialogs_up(workers: &[Arc<WorkerHandle>]) -> u64 {
    workers.iter().map(|w| w.stats.active_dialogs.get()).sum()
}

/// Starts the watcher: once a drain is under way, it raises SIGTERM on siplb when no dialog
/// is up any more or the deadline has passed. It ends with `stop`.
pub fn watch(
    drain: Arc<Drain>,
    workers: Vec<Arc<WorkerHandle>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("siplb-drain".into())
        .spawn(move || {
            // Since when no dialog has been up.
            let mut idle_since: Option<std::time::Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WATCH);
                let Some(deadline) = drain.deadline_ms() else {
                    continue;
                };
                let up = dialogs_up(&workers);
                let idle = match (up, idle_since) {
                    (0, Some(t)) => t.elapsed(),
                    (0, None) => {
                        idle_since = Some(std::time::Instant::now());
                        Duration::ZERO
                    }
                    _ => {
                        idle_since = None;
                        Duration::ZERO
                    }
                };
                let why = if up == 0 && idle >= GRACE {
                    "drained: no dialog is up any more".to_string()
                } else if unix_ms() >= deadline {
                    format!("drain deadline reached with {up} dialogs up")
                } else {
                    continue;
                };
                tracing::info!("{why}; exiting");
                // SAFETY: raising a signal on this process; its handler is siplb's own.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                return;
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_drain_keeps_the_earlier_deadline() {
        let d = Drain::default();
        assert!(!d.is_draining());
        assert_eq!(d.deadline_ms(), None);
        let first = d.start(60);
        assert!(d.is_draining());
        assert_eq!(d.gauge.get(), 1);
        assert_eq!(d.start(600), first);
        let sooner = d.start(1);
        assert!(sooner < first);
        assert_eq!(d.deadline_ms(), Some(sooner));
    }
}
