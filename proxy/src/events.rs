//! `Call_End` events (the dialog article's `dialog:end` route posts them): a worker encodes
//! each answered dialog's [`DialogRecord`] as JSON ([`call_end_json`]); the events leave the
//! workers through one bounded lock-free queue to
//! a writer thread, which appends each to the event stream file (one JSON object per line) and
//! hands it to a poster thread that POSTs it to the HTTP endpoint. A worker never waits for
//! either: when the queue is full the event is dropped and counted in `events:dropped`. A slow
//! or dead endpoint never holds up the file: when the poster's own queue is full, the event is
//! not POSTed (counted in `events:http_failed`) but is still in the file. Nor does it hold up
//! shutdown: the poster gets [`POST_DRAIN`] to empty its queue once the writer has ended, and
//! what is left is counted as failed.

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
    /// POSTs that failed (no connection, timeout, any status but 2xx) or were not tried.
    pub http_failed: Arc<Counter>,
    /// Events waiting for the poster, a gauge.
    pub http_queued: Arc<Counter>,
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
            http_queued: Arc::default(),
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
                    if poster.is_some() {
                        if sink.http_queue.push(event).is_err() {
                            sink.http_failed.inc_shared();
                        }
                        sink.http_queued.set(sink.http_queue.len() as u64);
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

/// How long a POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the poster goes on POSTing once the writer has ended (shutdown); the events
/// still queued then are counted as failed (they are in the file, if there is one).
pub const POST_DRAIN: Duration = Duration::from_secs(2);

/// POSTs each event; a failure is counted and the event is not retried. Redirects are not
/// followed (a client that follows one turns the POST into a GET and the event is lost): a
/// 3xx is a failure like a 4xx or 5xx.
fn spawn_poster(sink: Arc<EventSink>, url: String) -> io::Result<std::thread::JoinHandle<()>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(POST_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    std::thread::Builder::new()
        .name("siplb-post".into())
        .spawn(move || {
            // Once the writer has ended (shutdown): POSTs after it are not tried.
            let mut deadline: Option<std::time::Instant> = None;
            let mut skipped = 0u64;
            loop {
                let done = sink.http_done.load(Ordering::Acquire);
                let mut n = 0;
                while let Some(event) = sink.http_queue.pop() {
                    sink.http_queued.set(sink.http_queue.len() as u64);
                    n += 1;
                    let now = std::time::Instant::now();
                    if deadline.is_none() && sink.http_done.load(Ordering::Acquire) {
                        deadline = Some(now + POST_DRAIN);
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        sink.http_failed.inc_shared();
                        skipped += 1;
                        continue;
                    }
                    if let Err(why) = post(&agent, &url, &event) {
                        sink.http_failed.inc_shared();
                        tracing::debug!("POST {url}: {why}");
                    }
                }
                if done {
                    break;
                }
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if skipped > 0 {
                tracing::warn!(
                    "events: {skipped} not POSTed to {url} at shutdown: the endpoint was too \
                     slow to take them within {} s (counted in events:http_failed)",
                    POST_DRAIN.as_secs()
                );
            }
        })
}

/// One POST: an error unless the answer is 2xx.
fn post(agent: &ureq::Agent, url: &str, event: &str) -> Result<(), String> {
    let r = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(event.as_bytes())
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(r.status().to_string())
    }
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
