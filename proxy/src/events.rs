//! `Call_End` events (the dialog article's `dialog:end` route posts them): a worker encodes
//! each answered dialog's [`DialogRecord`] as JSON ([`call_end_json`]); the events leave the
//! workers through one bounded lock-free queue to
//! a writer thread, which appends each to the event stream file (one JSON object per line) and
//! hands it to a poster thread that POSTs it to the HTTP endpoint. A worker never waits for
//! either: when the queue is full the event is dropped and counted in `events:dropped`. A slow
//! or dead endpoint never holds up the file: when the poster's own queue is full, the event is
//! not POSTed (counted in `events:http_failed`) but is still in the file.

use crate::metrics::Counter;
use crate::proxy::DialogRecord;
use crate::proxy::dialogs::info::uri_of;
use crossbeam_queue::ArrayQueue;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the workers and the writer share.
pub struct EventSink {
    pub queue: ArrayQueue<String>,
    /// Events waiting for the poster.
    http_queue: ArrayQueue<String>,
    /// Events written (to the file and/or POSTed).
    pub written: Arc<Counter>,
    /// Events dropped because the queue was full.
    pub dropped: Arc<Counter>,
    /// POSTs that failed (no connection, timeout, status ≥ 400).
    pub http_failed: Arc<Counter>,
    /// Set after the workers stopped: the writer drains the queue and ends.
    pub shutdown: AtomicBool,
    /// Set by the writer when it ended: the poster drains its queue and ends.
    http_done: AtomicBool,
}

impl EventSink {
    pub fn new(queue: usize) -> EventSink {
        EventSink {
            queue: ArrayQueue::new(queue),
            http_queue: ArrayQueue::new(queue),
            written: Arc::default(),
            dropped: Arc::default(),
            http_failed: Arc::default(),
            shutdown: AtomicBool::new(false),
            http_done: AtomicBool::new(false),
        }
    }

    /// Queues one event (from a worker); drops and counts it when the queue is full.
    pub fn push(&self, event: String) {
        if self.queue.push(event).is_err() {
            self.dropped.inc_shared();
        }
    }
}

/// Starts the writer. The file is opened (created, appended to) before it starts, so that a
/// path that cannot be written is an error at start, not a silent loss.
pub fn spawn(
    sink: Arc<EventSink>,
    file: Option<PathBuf>,
    http: Option<String>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let mut out = match &file {
        Some(p) => Some(BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        )),
        None => None,
    };
    let poster = match http {
        Some(url) => Some(spawn_poster(sink.clone(), url)?),
        None => None,
    };
    std::thread::Builder::new()
        .name("siplb-events".into())
        .spawn(move || {
            loop {
                let stopping = sink.shutdown.load(Ordering::Acquire);
                let mut n = 0;
                while let Some(event) = sink.queue.pop() {
                    if let Some(f) = out.as_mut()
                        && let Err(e) = writeln!(f, "{event}")
                    {
                        tracing::warn!("event file: {e}");
                    }
                    if poster.is_some() && sink.http_queue.push(event).is_err() {
                        sink.http_failed.inc_shared();
                    }
                    sink.written.inc_shared();
                    n += 1;
                }
                if n > 0
                    && let Some(f) = out.as_mut()
                    && let Err(e) = f.flush()
                {
                    tracing::warn!("event file: {e}");
                }
                if stopping {
                    break;
                }
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if let Some(p) = poster {
                sink.http_done.store(true, Ordering::Release);
                let _ = p.join();
            }
        })
}

/// POSTs each event (2 s timeout); a failure is counted and the event is not retried.
fn spawn_poster(sink: Arc<EventSink>, url: String) -> io::Result<std::thread::JoinHandle<()>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    std::thread::Builder::new()
        .name("siplb-post".into())
        .spawn(move || {
            loop {
                let done = sink.http_done.load(Ordering::Acquire);
                let mut n = 0;
                while let Some(event) = sink.http_queue.pop() {
                    let r = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(event.as_bytes());
                    if let Err(e) = r {
                        sink.http_failed.inc_shared();
                        tracing::debug!("POST {url}: {e}");
                    }
                    n += 1;
                }
                if done {
                    break;
                }
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
}

/// The `Call_End` event of an answered dialog, as the dialog article's `dialog:end` route
/// writes it: CallID, From and To URIs, the built-in times as numbers, and the configured
/// variables as strings.
pub fn call_end_json(r: &DialogRecord) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("Event".into(), "Call_End".into());
    obj.insert("CallID".into(), r.parties.call_id().to_string().into());
    obj.insert("From".into(), uri_of(r.from.as_bytes()).into());
    obj.insert("To".into(), uri_of(r.to.as_bytes()).into());
    for name in crate::dialog::BUILTIN_VARS {
        let v = r
            .vars
            .iter()
            .find(|(n, _)| &**n == name)
            .map_or("0", |(_, v)| v);
        obj.insert(
            name.into(),
            v.parse::<u64>().map_or_else(|_| v.into(), Into::into),
        );
    }
    for (n, v) in &r.vars {
        if !crate::dialog::BUILTIN_VARS.contains(&&**n) {
            obj.insert(n.to_string(), v.to_string().into());
        }
    }
    serde_json::Value::Object(obj).to_string()
}
