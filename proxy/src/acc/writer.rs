//! The accounting writer: one thread drains every worker's queue in batches and hands each
//! batch to every sink (one write per file per batch), syncs at the group-commit interval,
//! and on stop drains and syncs everything before it ends. A batch a sink cannot take (a
//! full disk) is kept and retried, in order; meanwhile nothing new is drained and the
//! workers are told to refuse new calls, so that no accepted call's record is dropped.

use super::config::AccConfig;
use super::files::FileSink;
use super::plane::AccPlane;
use super::record::Record;
use super::sink::{LogSink, Sink};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records taken from the queues per batch at most.
const MAX_BATCH: usize = 8192;
/// How long the writer waits before retrying a sink that failed.
const RETRY: Duration = Duration::from_millis(100);
/// How long the sinks get to deliver (PostgreSQL) as siplb stops, and how long a failing
/// sink gets from the stop to take its records before they are given up.
const FINISH: Duration = Duration::from_secs(2);

/// A sink and the batches it failed to take, oldest first.
struct Slot {
    sink: Box<dyn Sink>,
    held: Vec<Record>,
    /// Records written since its last sync.
    unsynced: bool,
    /// Since when it fails (none while it works), and when that was last logged.
    failing_since: Option<Instant>,
    logged: Option<Instant>,
}

/// The sinks `[acc]` asks for, opened (files: the folder made, torn lines set aside) so that
/// a folder that cannot be written is an error at start. The PostgreSQL sink
/// ([`super::postgres::sink`]) is added by the caller.
pub fn file_and_log_sinks(cfg: &AccConfig, plane: &AccPlane) -> io::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.sinks.log {
        sinks.push(Box::new(LogSink));
    }
    if cfg.sinks.files {
        let mut files = FileSink::new(&cfg.dir, cfg.formats, cfg.rotation)?
            .with_sync(cfg.sync_mode, cfg.journal_bytes)?
            .with_write_interval(cfg.write_interval);
        let torn = files.recover()?;
        plane.torn_lines.add(torn);
        sinks.push(Box::new(files));
    }
    Ok(sinks)
}

/// Starts the writer over `sinks`.
pub fn spawn(
    cfg: Arc<AccConfig>,
    plane: Arc<AccPlane>,
    sinks: Vec<Box<dyn Sink>>,
) -> io::Result<JoinHandle<()>> {
    let slots = sinks
        .into_iter()
        .map(|sink| Slot {
            sink,
            held: Vec::new(),
            unsynced: false,
            failing_since: None,
            logged: None,
        })
        .collect();
    let mut w = Writer {
        cfg,
        plane,
        slots,
        batch: Vec::with_capacity(MAX_BATCH),
        unsynced: 0,
        syncing: 0,
        last_sync: Instant::now(),
        next_queue: 0,
        stopped_at: None,
    };
    std::thread::Builder::new()
        .name("siplb-acc".into())
        .spawn(move || w.run())
}

struct Writer {
    cfg: Arc<AccConfig>,
    plane: Arc<AccPlane>,
    slots: Vec<Slot>,
    batch: Vec<Record>,
    /// Records written to every sink and not yet synced.
    unsynced: u64,
    /// Records whose sync has started and is not yet known durable.
    syncing: u64,
    last_sync: Instant,
    /// Where the next drain starts, so that no worker's queue is always last.
    next_queue: usize,
    /// When the writer first saw the stop.
    stopped_at: Option<Instant>,
}

/// Marks the calling thread as batch work for the scheduler: when its disk waits end, it
/// does not preempt a worker on that core but runs when the worker next waits. The group
/// commit is not latency-bound below its interval, and every preemption costs a worker a
/// context switch (measured in docs/BENCHMARKS.md, "Accounting").
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!(
            "acc: writer stays at normal scheduling: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Writer {
    fn run(&mut self) {
        batch_scheduling();
        loop {
            // Read before draining: once set, the workers have stopped adding.
            let stopping = self.plane.stop.load(Ordering::Acquire);
            let retrying = self.retry_held();
            let mut took = 0;
            if !retrying {
                took = self.drain(stopping);
                if took > 0 {
                    self.write_batch();
                }
            }
            let stalled = self
                .slots
                .iter()
                .any(|s| !s.held.is_empty() || s.sink.full());
            self.plane.stalled.store(stalled, Ordering::Relaxed);
            let due = self.last_sync.elapsed() >= self.cfg.sync_interval;
            if self.unsynced > 0 && (due || stopping) {
                self.sync();
            } else if self.unsynced == 0 && due {
                self.idle();
                self.last_sync = Instant::now();
            }
            self.settle(false);
            let queued: usize = self.plane.queues.iter().map(|q| q.len()).sum();
            self.plane.queued.set(queued as u64);
            if stopping && took == 0 && queued == 0 && !retrying {
                self.sync();
                self.settle(true);
                if self.unsynced == 0 && self.syncing == 0 {
                    break;
                }
            }
            if stopping && self.stopping_too_long() {
                break;
            }
            if took < MAX_BATCH {
                // One round per group commit: what came in meanwhile is drained, written (one
                // write per file) and synced together; sooner when a queue fills up.
                let pressure = self
                    .plane
                    .queues
                    .iter()
                    .any(|q| q.len() * 4 >= q.capacity());
                let idle = if retrying {
                    RETRY
                } else if pressure || stopping {
                    Duration::from_millis(1)
                } else {
                    // At the next group commit, and at least every 10 ms (records do not pile
                    // up in the queues under a long sync interval).
                    let next = self.last_sync + self.cfg.sync_interval;
                    next.saturating_duration_since(Instant::now())
                        .clamp(Duration::from_micros(500), Duration::from_millis(10))
                };
                std::thread::sleep(idle);
            }
        }
        let deadline = Instant::now() + FINISH;
        for s in &mut self.slots {
            s.sink.finish(deadline);
        }
    }

    /// A sink that still fails [`FINISH`] after the stop: give up on it rather than hang the
    /// exit, saying how many records are lost to it (those it could not take, those still
    /// queued, and those it took but did not sync where that dies with the process) or where
    /// they wait (the journal, the spool), and noting the loss for the exit status.
    fn stopping_too_long(&mut self) -> bool {
        let since = *self.stopped_at.get_or_insert_with(Instant::now);
        if since.elapsed() < FINISH || self.slots.iter().all(|s| s.failing_since.is_none()) {
            return false;
        }
        let queued: usize =
            self.plane.queues.iter().map(|q| q.len()).sum::<usize>() + self.plane.leftovers_len();
        let mut lost = 0;
        for s in self.slots.iter().filter(|s| s.failing_since.is_some()) {
            let unsynced = if s.unsynced && !s.sink.unsynced_survive_exit() {
                self.unsynced as usize
            } else {
                0
            };
            let n = s.held.len() + queued + unsynced;
            if n > 0 {
                tracing::error!(
                    "acc: stopping while sink {} fails: {n} records are lost to it ({} it \
                     could not take, {queued} never taken from the queues, {unsynced} taken \
                     and not synced)",
                    s.sink.name(),
                    s.held.len()
                );
            }
            if let Some(then) = s.sink.at_exit() {
                tracing::warn!("acc: stopping while sink {} fails: {then}", s.sink.name());
            }
            lost = lost.max(n);
        }
        self.plane.lost.store(lost as u64, Ordering::Relaxed);
        true
    }

    /// Takes up to a batch from the queues (and, once stopping, what workers left).
    fn drain(&mut self, stopping: bool) -> usize {
        self.batch.clear();
        let n = self.plane.queues.len();
        let mut empty = 0;
        let mut k = self.next_queue;
        while self.batch.len() < MAX_BATCH && empty < n {
            match self.plane.queues[k % n].pop() {
                Some(r) => {
                    self.batch.push(r);
                    empty = 0;
                }
                None => empty += 1,
            }
            k += 1;
        }
        self.next_queue = k % n.max(1);
        if stopping
            && self.batch.len() < MAX_BATCH
            && self.plane.queues.iter().all(|q| q.is_empty())
        {
            self.batch.extend(self.plane.take_leftovers());
        }
        self.batch.len()
    }

    /// Hands the batch to every sink; a sink that fails keeps it to retry.
    fn write_batch(&mut self) {
        let now = unix_ms();
        for s in &mut self.slots {
            match s.sink.write(&self.batch, now) {
                Ok(()) => {
                    s.unsynced = true;
                    works_again(s);
                }
                Err(e) => {
                    failed(&self.plane, s, &e, "write");
                    s.held.extend(self.batch.iter().cloned());
                }
            }
        }
        self.unsynced += self.batch.len() as u64;
        for r in self.batch.drain(..) {
            self.plane.recycle(r);
        }
    }

    /// Retries the sinks that hold records; whether any still does.
    fn retry_held(&mut self) -> bool {
        let now = unix_ms();
        let mut holding = false;
        for s in &mut self.slots {
            if s.held.is_empty() {
                continue;
            }
            match s.sink.write(&s.held, now) {
                Ok(()) => {
                    tracing::info!(
                        "acc: sink {} takes records again ({} held records written)",
                        s.sink.name(),
                        s.held.len()
                    );
                    s.held.clear();
                    s.unsynced = true;
                    s.failing_since = None;
                }
                Err(e) => {
                    failed(&self.plane, s, &e, "write");
                    holding = true;
                }
            }
        }
        holding
    }

    /// A group commit with nothing to sync: the sinks' deferred work.
    fn idle(&mut self) {
        for s in &mut self.slots {
            if !s.held.is_empty() {
                continue;
            }
            match s.sink.idle() {
                Ok(()) => works_again(s),
                Err(e) => failed(&self.plane, s, &e, "write"),
            }
        }
    }

    /// The group commit: every sink written since the last sync is synced (or starts to
    /// be); the records are counted as written once that is durable ([`Writer::settle`]).
    fn sync(&mut self) {
        // The round before is counted first: a sink settles it before it starts the next
        // (which would otherwise hide it from every later `settle` under steady traffic).
        self.settle(true);
        let mut ok = true;
        for s in &mut self.slots {
            if !s.unsynced {
                continue;
            }
            match s.sink.sync() {
                Ok(()) => {
                    s.unsynced = false;
                    works_again(s);
                }
                Err(e) if super::files::is_files_behind(&e) => {
                    // Committed (durable in the journal); the files' write failed.
                    failed(&self.plane, s, &e, "write");
                    s.unsynced = false;
                }
                Err(e) => {
                    // (With the journal a sync also writes the files their committed bytes.)
                    failed(&self.plane, s, &e, "write or sync");
                    ok = false;
                }
            }
        }
        self.last_sync = Instant::now();
        if ok && self.slots.iter().all(|s| s.held.is_empty()) {
            self.syncing += self.unsynced;
            self.unsynced = 0;
            self.settle(false);
        }
    }

    /// Counts the records being synced as written once every sink says they are durable
    /// (waiting for that when `wait`).
    fn settle(&mut self, wait: bool) {
        if self.syncing == 0 {
            return;
        }
        let mut all = true;
        for s in &mut self.slots {
            match s.sink.settled(wait) {
                Ok(true) => {}
                Ok(false) => all = false,
                Err(e) => {
                    failed(&self.plane, s, &e, "sync");
                    all = false;
                }
            }
        }
        if all {
            // With no sink (`sinks = []`) nothing was written.
            if !self.slots.is_empty() {
                self.plane.written.add(self.syncing);
            }
            self.syncing = 0;
        }
    }
}

/// A sink that was failing works again: said once, with how long it failed (not while it
/// still cannot take more: with the journal, a batch is taken while the files' writes fail).
fn works_again(s: &mut Slot) {
    if s.sink.full() {
        return;
    }
    if let Some(since) = s.failing_since.take() {
        tracing::info!(
            "acc: sink {} works again after {:.1} s",
            s.sink.name(),
            since.elapsed().as_secs_f64()
        );
        s.logged = None;
    }
}

/// Counts a failure, and logs it at most once a second per sink.
fn failed(plane: &AccPlane, s: &mut Slot, e: &io::Error, what: &str) {
    plane.sink_errors.inc_shared();
    s.failing_since.get_or_insert_with(Instant::now);
    let quiet = s
        .logged
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
    if !quiet {
        tracing::error!(
            "acc: sink {}: {what} failed: {e}; its records are kept and retried, new calls are \
             refused meanwhile",
            s.sink.name()
        );
        s.logged = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acc::config::Sinks;
    use crate::acc::record::{ACC_COLUMNS, Field};

    fn cfg(dir: &std::path::Path) -> AccConfig {
        AccConfig {
            cdrs: true,
            sinks: Sinks {
                files: true,
                ..Sinks::default()
            },
            ..AccConfig::for_tests(dir, 64)
        }
    }

    fn record(n: u64) -> Record {
        let id = format!("n-1-{n}");
        let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
        fields[1] = Field::Text(&id);
        Record::new("acc", &fields)
    }

    #[test]
    fn with_no_sink_records_are_taken_and_none_counts_as_written() {
        let d = std::env::temp_dir().join(format!("siplb-writer-none-{}", std::process::id()));
        let cfg = Arc::new(AccConfig::for_tests(&d, 64));
        let plane = Arc::new(AccPlane::new(1, cfg.queue));
        let t = spawn(cfg, plane.clone(), Vec::new()).unwrap();
        for n in 0..10 {
            plane.queues[0].push(record(n)).unwrap();
        }
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        assert!(plane.queues[0].is_empty());
        assert_eq!(plane.written.get(), 0);
        assert!(!d.exists(), "no folder made");
    }

    #[test]
    fn under_steady_traffic_records_count_as_written_before_the_stop() {
        let d = std::env::temp_dir().join(format!("siplb-writer-steady-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let cfg = Arc::new(cfg(&d));
        let plane = Arc::new(AccPlane::new(1, cfg.queue));
        let sinks = file_and_log_sinks(&cfg, &plane).unwrap();
        let t = spawn(cfg, plane.clone(), sinks).unwrap();
        // A record every 2 ms for 300 ms: a commit every 10 ms, each while the next records
        // come in.
        for n in 0..150 {
            plane.queues[0].push(record(n)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let written = plane.written.get();
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        assert!(written >= 100, "written while running: {written} of 150");
        assert_eq!(plane.written.get(), 150);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_record_queued_and_left_is_written_once_and_synced_before_the_writer_ends() {
        let d = std::env::temp_dir().join(format!("siplb-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let cfg = Arc::new(cfg(&d));
        let plane = Arc::new(AccPlane::new(2, cfg.queue));
        let sinks = file_and_log_sinks(&cfg, &plane).unwrap();
        let t = spawn(cfg, plane.clone(), sinks).unwrap();
        let mut n = 0;
        for _ in 0..20 {
            for q in &plane.queues {
                while q.len() < 32 {
                    q.push(record(n)).unwrap();
                    n += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        plane.leave((n..n + 5).map(record));
        n += 5;
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        assert_eq!(plane.written.get(), n);
        let csv = std::fs::read_to_string(d.join("acc.csv")).unwrap();
        let mut ids: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap())
            .collect();
        assert_eq!(ids.len() as u64, n);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len() as u64, n, "no record twice");
        let jsonl = std::fs::read_to_string(d.join("acc.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count() as u64, n);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
