//! The restart journal (`dialog.journal_dir`): answered dialogs survive a restart of siplb.
//!
//! Each worker hands the journal entries of its shard (a dialog answered or changed: the whole
//! dialog; a dialog ended: its Call-ID) to a bounded queue of its own; one writer thread
//! appends them to `<dir>/dialogs.jsonl`, one JSON line each, and syncs the file every
//! `SYNC` (group commit). The writer keeps the live set, and rewrites the file with only it
//! when the file has grown well past it (compaction: a new file, synced, renamed over the
//! old). At start the file is read back (a torn last line is skipped), and each dialog goes
//! to the worker that owns its Call-ID under this run's hash key.

use crate::proxy::dialogs::saved::SavedDialog;
use crate::proxy::shard::JournalEntry;
use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A failing journal is said in the log at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a stop waits for a failing journal to work again.
const GIVE_UP: Duration = Duration::from_secs(2);

/// How often the writer appends and syncs what the workers handed over.
const SYNC: Duration = Duration::from_millis(10);
/// Entries queued per worker; beyond, an entry is dropped and counted.
const QUEUE: usize = 65536;
/// The file is compacted once it is this big and four times its live set.
const COMPACT_AT: u64 = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Up(Box<SavedDialog>),
    Down(String),
}

/// What the workers and the writer share.
pub struct JournalPlane {
    pub queues: Vec<ArrayQueue<JournalEntry>>,
    pub stop: AtomicBool,
    /// `dialog:journal_dropped`: entries a worker's full [`Backlog`] dropped.
    pub dropped: Arc<crate::metrics::Counter>,
    /// `dialog:journal_written`: entries written and synced.
    pub written: Arc<crate::metrics::Counter>,
    /// Dialogs read back at start, by the worker that owns them; each worker takes its own.
    pub restored: Vec<std::sync::Mutex<Vec<SavedDialog>>>,
}

impl JournalPlane {
    pub fn new(workers: usize) -> JournalPlane {
        JournalPlane {
            queues: (0..workers).map(|_| ArrayQueue::new(QUEUE)).collect(),
            stop: AtomicBool::new(false),
            dropped: Arc::default(),
            written: Arc::default(),
            restored: (0..workers).map(|_| Default::default()).collect(),
        }
    }

    /// From worker `w`; the entry back when its queue is full (the worker keeps it for its
    /// next round).
    pub fn try_push(&self, w: usize, e: JournalEntry) -> Result<(), JournalEntry> {
        self.queues[w].push(e)
    }
}

/// Changes of dialogs up a worker keeps while its journal queue is full.
const BACKLOG: usize = 65_536;
/// Ends of dialogs it keeps meanwhile.
const BACKLOG_ENDS: usize = 1 << 20;

/// A worker's journal entries waiting for room in its queue, oldest first: a full queue (the
/// journal thread behind, its disk slow) delays them instead of dropping them. The wait is
/// bounded: past [`BACKLOG`] entries a dialog's change is dropped (counted in
/// `dialog:journal_dropped`: that dialog may not come back after a restart), but its end
/// only past [`BACKLOG_ENDS`]: a dialog the journal still holds up would come back after a
/// restart as a ghost, holding its place in its account's limit.
#[derive(Debug, Default)]
pub struct Backlog {
    waiting: VecDeque<JournalEntry>,
}

impl Backlog {
    /// Adds `entries` behind those waiting and hands as many as its queue takes to the
    /// journal as worker `w`; whether nothing is left waiting.
    pub fn hand_over(
        &mut self,
        plane: &JournalPlane,
        w: usize,
        entries: impl IntoIterator<Item = JournalEntry>,
    ) -> bool {
        while let Some(e) = self.waiting.pop_front() {
            if let Err(e) = plane.try_push(w, e) {
                self.waiting.push_front(e);
                break;
            }
        }
        for e in entries {
            let e = if self.waiting.is_empty() {
                match plane.try_push(w, e) {
                    Ok(()) => continue,
                    Err(e) => e,
                }
            } else {
                e
            };
            let room = match e {
                JournalEntry::Up(_) => BACKLOG,
                JournalEntry::Down(_) => BACKLOG_ENDS,
            };
            if self.waiting.len() < room {
                self.waiting.push_back(e);
            } else {
                plane.dropped.inc_shared();
            }
        }
        self.waiting.is_empty()
    }

    /// Entries waiting.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

fn file_of(dir: &Path) -> PathBuf {
    dir.join("dialogs.jsonl")
}

/// The dialogs up when the journal in `dir` was last written (none when there is none yet),
/// and how many lines were unreadable (a torn last line after a crash).
pub fn load(dir: &Path) -> io::Result<(Vec<SavedDialog>, usize)> {
    let f = match File::open(file_of(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut live: HashMap<String, SavedDialog> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut bad = 0;
    for line in io::BufReader::new(f).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Up(d)) => {
                if !live.contains_key(&d.call_id) {
                    order.push(d.call_id.clone());
                }
                live.insert(d.call_id.clone(), *d);
            }
            Ok(Line::Down(call_id)) => {
                live.remove(&call_id);
            }
            Err(_) => {
                // Kept aside, as accounting keeps a torn line: the rewrite at start drops it.
                bad += 1;
                let mut torn = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("dialogs.jsonl.torn"))?;
                torn.write_all(&line)?;
                torn.write_all(b"\n")?;
            }
        }
    }
    let dialogs = order.into_iter().filter_map(|c| live.remove(&c)).collect();
    Ok((dialogs, bad))
}

/// The owner of `call_id` among `workers` under hash key `key` (as steering computes it).
pub fn owner(key: u32, call_id: &[u8], workers: usize) -> usize {
    let mut msg = b"X\r\nCall-ID: ".to_vec();
    msg.extend_from_slice(call_id);
    msg.extend_from_slice(b"\r\n\r\n");
    crate::worker::owner::call_id_hash(key, &msg).unwrap_or(0) as usize % workers.max(1)
}

/// Starts the writer over `dir`, whose live set is `restored` (written out at once as the
/// new file).
pub fn spawn(
    dir: PathBuf,
    plane: Arc<JournalPlane>,
    restored: &[SavedDialog],
) -> io::Result<std::thread::JoinHandle<()>> {
    std::fs::create_dir_all(&dir)?;
    let mut w = Writer {
        path: file_of(&dir),
        dir,
        file: None,
        len: 0,
        live: HashMap::new(),
        live_bytes: 0,
        plane,
        broken: false,
        failing: None,
        held: 0,
    };
    for d in restored {
        let line = encode(&Line::Up(Box::new(d.clone())));
        w.live_bytes += line.len() as u64;
        w.live.insert(d.call_id.clone(), line);
    }
    w.compact()?;
    std::thread::Builder::new()
        .name("siplb-journal".into())
        .spawn(move || w.run())
}

fn encode(l: &Line) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).expect("plain data encodes");
    v.push(b'\n');
    v
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    len: u64,
    /// Call-ID → its last `up` line.
    live: HashMap<String, Vec<u8>>,
    live_bytes: u64,
    plane: Arc<JournalPlane>,
    /// A write failed (a full disk, a file made read-only): the file may not say what the
    /// live set says any more, and is rewritten whole from it once writing works again.
    broken: bool,
    /// Since when writing fails, and when that was last logged.
    failing: Option<(Instant, Instant)>,
    /// Entries taken while writing failed: written (counted) with the rewrite.
    held: u64,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let stopping = self.plane.stop.load(Ordering::Acquire);
            batch.clear();
            let mut n = 0;
            for q in &self.plane.queues {
                // What the queue held, at most: a worker that keeps pushing cannot hold the
                // round (and its batch's memory) open.
                for e in std::iter::from_fn(|| q.pop()).take(QUEUE) {
                    n += 1;
                    match e {
                        JournalEntry::Up(d) => {
                            let call_id = d.call_id.clone();
                            let line = encode(&Line::Up(d));
                            batch.extend_from_slice(&line);
                            self.live_bytes += line.len() as u64;
                            if let Some(old) = self.live.insert(call_id, line) {
                                self.live_bytes -= old.len() as u64;
                            }
                        }
                        JournalEntry::Down(call_id) => {
                            batch.extend_from_slice(&encode(&Line::Down(call_id.to_string())));
                            if let Some(old) = self.live.remove(&*call_id) {
                                self.live_bytes -= old.len() as u64;
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() || self.broken {
                // After a failed write the file is rewritten from the live set, which has
                // every change since: nothing handed over is lost while the disk recovers.
                let written = if self.broken {
                    self.compact()
                } else {
                    self.append(&batch)
                };
                match written {
                    Ok(()) => {
                        self.plane.written.add(n + std::mem::take(&mut self.held));
                        if let Some((since, _)) = self.failing.take() {
                            tracing::info!(
                                "dialog journal {}: written whole again after {:.1} s",
                                self.path.display(),
                                since.elapsed().as_secs_f64()
                            );
                        }
                        self.broken = false;
                    }
                    Err(e) => {
                        self.held += n;
                        self.failed(&e);
                    }
                }
                if !self.broken
                    && self.len >= COMPACT_AT
                    && self.len >= self.live_bytes * 4
                    && let Err(e) = self.compact()
                {
                    self.failed(&e);
                }
            }
            if stopping && batch.is_empty() {
                if !self.broken {
                    break;
                }
                if self
                    .failing
                    .is_some_and(|(since, _)| since.elapsed() >= GIVE_UP)
                {
                    tracing::error!(
                        "dialog journal {}: stopping without it: the dialogs up now will not \
                         come back at the next start",
                        self.path.display()
                    );
                    break;
                }
            }
            std::thread::sleep(SYNC);
        }
    }

    /// A write failed: the file is rewritten once writing works again; said in the log at
    /// once, then at most every [`LOG_EVERY`].
    fn failed(&mut self, e: &io::Error) {
        self.broken = true;
        let now = Instant::now();
        let first = self.failing.is_none();
        let (since, logged) = self.failing.get_or_insert((now, now));
        if first || now.duration_since(*logged) >= LOG_EVERY {
            *logged = now;
            tracing::error!(
                "dialog journal {}: {e} (failing for {:.0} s; the dialogs' changes are kept \
                 and the file rewritten once it can be)",
                self.path.display(),
                now.duration_since(*since).as_secs_f64()
            );
        }
    }

    fn append(&mut self, batch: &[u8]) -> io::Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("not open"))?;
        f.write_all(batch)?;
        f.sync_data()?;
        self.len += batch.len() as u64;
        Ok(())
    }

    /// Rewrites the file with the live set only: a new file, synced, renamed over the old.
    /// An error names the file and the step that failed.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.dir.join("dialogs.jsonl.new");
        let done = self.rewrite(&tmp);
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done
    }

    fn rewrite(&mut self, tmp: &Path) -> io::Result<()> {
        let step =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        let mut f = File::create(tmp).map_err(step(format!("creating {}", tmp.display())))?;
        let mut len = 0;
        for line in self.live.values() {
            f.write_all(line)
                .map_err(step(format!("writing {}", tmp.display())))?;
            len += line.len() as u64;
        }
        f.sync_all()
            .map_err(step(format!("syncing {}", tmp.display())))?;
        std::fs::rename(tmp, &self.path).map_err(step(format!(
            "renaming {} to {}",
            tmp.display(),
            self.path.display()
        )))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(call_id: &str) -> SavedDialog {
        let leg = crate::proxy::dialogs::saved::SavedLeg {
            tag: "t".into(),
            contact: "<sip:a@h>".into(),
            cseq: 1,
            route_set: String::new(),
        };
        SavedDialog {
            h_entry: 0,
            h_id: 1,
            call_id: call_id.into(),
            caller: "127.0.0.1:5070".parse().unwrap(),
            gateway: "127.0.0.1:5081".parse().unwrap(),
            caller_leg: leg.clone(),
            callee_leg: leg,
            from: "<sip:a@h>;tag=t".into(),
            to: "<sip:b@h>;tag=u".into(),
            request_uri: "sip:b@h".into(),
            account: "a".into(),
            state: 4,
            invite_received: 1,
            invite_forwarded: 1,
            first_reply: 1,
            ringing: 0,
            answer: 2,
            code: Some(200),
            reason: "OK".into(),
            q850_cause: None,
            vars: vec![],
            places: vec![("account".into(), Some("a".into()), 0)],
            customer: None,
            tried: vec![],
            set: 0,
            turn: 0,
            cseq_shift: 0,
            inbound: false,
            raw: Vec::new(),
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("siplb-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn what_is_up_at_the_stop_is_read_back_and_a_torn_line_is_skipped() {
        let d = dir("rw");
        let plane = Arc::new(JournalPlane::new(2));
        let t = spawn(d.clone(), plane.clone(), &[saved("old")]).unwrap();
        plane
            .try_push(0, JournalEntry::Up(Box::new(saved("a"))))
            .ok()
            .unwrap();
        plane
            .try_push(1, JournalEntry::Up(Box::new(saved("b"))))
            .ok()
            .unwrap();
        plane
            .try_push(0, JournalEntry::Down("old".into()))
            .ok()
            .unwrap();
        let mut b2 = saved("b");
        b2.caller_leg.cseq = 7;
        plane
            .try_push(1, JournalEntry::Up(Box::new(b2)))
            .ok()
            .unwrap();
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        assert_eq!(plane.written.get(), 4);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(file_of(&d)).unwrap();
        f.write_all(b"{\"up\":{\"h_entry\":0,\"call_").unwrap();
        let (back, bad) = load(&d).unwrap();
        assert_eq!(bad, 1);
        assert_eq!(
            std::fs::read_to_string(d.join("dialogs.jsonl.torn")).unwrap(),
            "{\"up\":{\"h_entry\":0,\"call_\n",
            "the torn line kept aside"
        );
        let ids: Vec<&str> = back.iter().map(|s| s.call_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(back[1].caller_leg.cseq, 7, "the last state of b");
        // The next start compacts: only the live set is left.
        let plane = Arc::new(JournalPlane::new(1));
        let t = spawn(d.clone(), plane.clone(), &back).unwrap();
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        let text = std::fs::read_to_string(file_of(&d)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn no_journal_yet_is_nothing_to_restore() {
        assert_eq!(load(&dir("none")).unwrap().0.len(), 0);
    }

    #[test]
    fn the_owner_is_the_steering_owner() {
        let msg = b"BYE sip:x SIP/2.0\r\nCall-ID: abc@h\r\n\r\n";
        let h = crate::worker::owner::call_id_hash(9, msg).unwrap() as usize;
        assert_eq!(owner(9, b"abc@h", 3), h % 3);
        // A Call-ID that is not UTF-8: its own bytes, not their text with U+FFFD.
        let msg = b"BYE sip:x SIP/2.0\r\nCall-ID: ab\xffc@h\r\n\r\n";
        let h = crate::worker::owner::call_id_hash(9, msg).unwrap() as usize;
        assert_eq!(owner(9, b"ab\xffc@h", 1000), h % 1000);
    }

    /// A full queue delays a worker's entries, in order, instead of dropping them; past its
    /// bound a backlog drops changes of dialogs up before it drops an end.
    #[test]
    fn a_full_queue_delays_entries_in_order_and_never_drops_an_end_first() {
        let plane = JournalPlane::new(1);
        let mut b = Backlog::default();
        let up = |i: usize| JournalEntry::Up(Box::new(saved(&format!("c{i}"))));
        assert!(!b.hand_over(&plane, 0, (0..QUEUE + 3).map(up)));
        assert_eq!((plane.queues[0].len(), b.waiting()), (QUEUE, 3));
        // The journal takes two: two of the three waiting follow, in order.
        for i in 0..2 {
            assert!(
                matches!(plane.queues[0].pop(), Some(JournalEntry::Up(d)) if d.call_id == format!("c{i}"))
            );
        }
        assert!(!b.hand_over(&plane, 0, [JournalEntry::Down("c0".into())]));
        assert_eq!(b.waiting(), 2, "one Up and the Down still wait");
        while plane.queues[0].pop().is_some() {}
        assert!(b.hand_over(&plane, 0, []));
        let rest: Vec<String> = std::iter::from_fn(|| plane.queues[0].pop())
            .map(|e| match e {
                JournalEntry::Up(d) => format!("up {}", d.call_id),
                JournalEntry::Down(c) => format!("down {c}"),
            })
            .collect();
        assert_eq!(rest, [format!("up c{}", QUEUE + 2), "down c0".to_string()]);
        assert_eq!(plane.dropped.get(), 0);
        // Past the bound, changes are dropped and counted; ends still wait.
        let mut b = Backlog::default();
        let full = JournalPlane::new(1);
        b.hand_over(&full, 0, (0..QUEUE + BACKLOG + 5).map(up));
        assert_eq!((b.waiting(), full.dropped.get()), (BACKLOG, 5));
        b.hand_over(&full, 0, [JournalEntry::Down("c1".into())]);
        assert_eq!((b.waiting(), full.dropped.get()), (BACKLOG + 1, 5));
    }

    /// A write that fails (the file made immutable for a while) loses nothing: once it can be
    /// written again the file is rewritten whole from the live set.
    #[test]
    fn a_failed_write_is_made_good_once_the_file_can_be_written_again() {
        let d = dir("fail");
        let plane = Arc::new(JournalPlane::new(1));
        let t = spawn(d.clone(), plane.clone(), &[]).unwrap();
        let wait_written = |n: u64| {
            let t0 = Instant::now();
            while plane.written.get() < n && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            plane.written.get()
        };
        let up = |c: &str| JournalEntry::Up(Box::new(saved(c)));
        plane.try_push(0, up("a")).ok().unwrap();
        assert_eq!(wait_written(1), 1);
        let file = file_of(&d);
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&file)
                .status()
                .is_ok_and(|s| s.success())
        };
        // As root on ext4 (the project's CI); elsewhere this fails loudly.
        assert!(
            chattr("+i"),
            "chattr +i {} (needs root and ext4)",
            file.display()
        );
        plane.try_push(0, up("b")).ok().unwrap();
        plane
            .try_push(0, JournalEntry::Down("a".into()))
            .ok()
            .unwrap();
        plane.try_push(0, up("c")).ok().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let while_failing = plane.written.get();
        assert!(chattr("-i"));
        assert_eq!(
            while_failing, 1,
            "nothing written while the file is immutable"
        );
        assert_eq!(wait_written(4), 4);
        plane.stop.store(true, Ordering::Release);
        t.join().unwrap();
        let (back, bad) = load(&d).unwrap();
        let mut ids: Vec<&str> = back.iter().map(|d| d.call_id.as_str()).collect();
        ids.sort();
        assert_eq!((ids, bad), (vec!["b", "c"], 0));
        let _ = std::fs::remove_dir_all(&d);
    }
}
