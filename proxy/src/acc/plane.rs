//! What the workers and the accounting writer share: one bounded lock-free queue of records
//! per worker (its single producer is the worker, its single consumer the writer), the
//! writer's word that the sinks are stalled or the spool full, and the statistics.

use super::record::Record;
use crate::metrics::Counter;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Records kept for reuse per worker at most: a few group commits' worth at a high call rate.
const SPARES: usize = 512;

pub struct AccPlane {
    pub queues: Vec<ArrayQueue<Record>>,
    /// Per worker, records the writer is done with, handed back so that the worker builds
    /// its next ones in their buffers (bounded: what does not fit is freed).
    spares: Vec<ArrayQueue<Record>>,
    /// Records a worker could not queue as it stopped (its queue full): the writer takes
    /// them after the queues. Touched only at exit.
    leftovers: Mutex<Vec<Record>>,
    /// Set by the writer while a sink cannot take records (a full disk, a full spool): the
    /// workers refuse new INVITEs meanwhile.
    pub stalled: AtomicBool,
    /// Set once the workers have stopped: the writer drains everything, syncs and ends.
    pub stop: AtomicBool,
    /// `acc:written`: records written to every sink and synced.
    pub written: Arc<Counter>,
    /// `acc:sink_errors`: failed writes and syncs (each retried).
    pub sink_errors: Arc<Counter>,
    /// `acc:torn_lines`: torn last lines set aside at start.
    pub torn_lines: Arc<Counter>,
    /// `acc:spool_records`: records waiting in the PostgreSQL spool.
    pub spool_records: Arc<Counter>,
    /// `acc:rejected_records`: records PostgreSQL refused, set aside.
    pub rejected_records: Arc<Counter>,
    /// `acc:queued`: records in the workers' queues (a gauge the writer refreshes).
    pub queued: Arc<Counter>,
    /// Records the writer gave up on as siplb stopped (a sink still failing): the exit
    /// status says so.
    pub lost: AtomicU64,
}

impl AccPlane {
    /// Queues of `capacity` records for `workers` workers.
    pub fn new(workers: usize, capacity: usize) -> AccPlane {
        AccPlane {
            queues: (0..workers).map(|_| ArrayQueue::new(capacity)).collect(),
            spares: (0..workers)
                .map(|_| ArrayQueue::new(capacity.clamp(1, SPARES)))
                .collect(),
            leftovers: Mutex::new(Vec::new()),
            stalled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            written: Arc::default(),
            sink_errors: Arc::default(),
            torn_lines: Arc::default(),
            spool_records: Arc::default(),
            rejected_records: Arc::default(),
            queued: Arc::default(),
            lost: AtomicU64::new(0),
        }
    }

    /// Hands a written record back to the worker that made it, for its buffers.
    pub fn recycle(&self, r: Record) {
        if r.reusable()
            && let Some(q) = self.spares.get(usize::from(r.origin()))
        {
            let _ = q.push(r);
        }
    }

    /// A record worker `worker` can build its next one in, if one was handed back.
    pub fn spare(&self, worker: usize) -> Option<Record> {
        self.spares.get(worker)?.pop()
    }

    /// Hands over the records a stopping worker could not queue.
    pub fn leave(&self, records: impl IntoIterator<Item = Record>) {
        self.leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(records);
    }

    /// Takes what stopping workers left.
    pub fn take_leftovers(&self) -> Vec<Record> {
        std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many records stopping workers left.
    pub fn leftovers_len(&self) -> usize {
        self.leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// The statistics, by name.
    pub fn statistics(&self) -> Vec<(&'static str, Arc<Counter>)> {
        use crate::metrics::names;
        vec![
            (names::ACC_WRITTEN, self.written.clone()),
            (names::ACC_SINK_ERRORS, self.sink_errors.clone()),
            (names::ACC_TORN_LINES, self.torn_lines.clone()),
            (names::ACC_SPOOL_RECORDS, self.spool_records.clone()),
            (names::ACC_REJECTED_RECORDS, self.rejected_records.clone()),
            (names::ACC_QUEUED, self.queued.clone()),
        ]
    }
}
