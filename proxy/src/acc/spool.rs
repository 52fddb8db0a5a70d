//! The PostgreSQL sink's durable spool: every record bound for PostgreSQL is first written
//! here by the writer thread (one write per batch, synced with the group commit), and the
//! shipper ([`super::postgres`]) reads it back in order and ships it. What has landed is
//! remembered in a small `committed` file (segment and byte offset, replaced atomically), so
//! nothing is lost while the database is away or siplb restarts, and nothing lands twice
//! (a batch shipped again after a crash is dropped by the primary key).
//!
//! `<acc.dir>/spool/` holds segments `<seq>.jsonl` (one JSON object per record, its table
//! and its fields as text or `null`), a new one past [`SEGMENT_BYTES`], and `committed`.
//! Fully shipped segments are deleted. A torn last line (a crash in the middle of a write)
//! is moved to `<segment>.torn` on opening.

use super::files::{set_aside_torn_line, sync_dir};
use super::record::{Field, Record};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const COMMITTED: &str = "committed";
const EXT: &str = ".jsonl";

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// A record as spooled: its table and its fields as text (`None`: no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spooled {
    pub table: String,
    pub fields: Vec<Option<String>>,
}

impl Spooled {
    pub fn of(r: &Record) -> Spooled {
        Spooled {
            table: r.table().to_string(),
            fields: r
                .fields()
                .map(|f| match f {
                    Field::Empty => None,
                    f => Some(f.as_text()),
                })
                .collect(),
        }
    }
}

/// What the writer (appending) and the shipper (reading, committing) share.
#[derive(Debug, Default)]
struct Shared {
    /// The end of what is written and synced: the shipper reads up to here.
    synced: Pos,
    /// The end of what has landed in PostgreSQL.
    committed: Pos,
    /// Records and bytes written and not yet shipped.
    records: u64,
    bytes: u64,
}

/// The spool's folder and shared state; cloned into the sink and the shipper.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    /// Told when more is synced.
    pub more: Arc<tokio::sync::Notify>,
    /// `acc:spool_records`.
    gauge: Arc<crate::metrics::Counter>,
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:012}{EXT}"))
}

fn ctx(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The segments in `dir`, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| ctx(dir, e))? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name.strip_suffix(EXT).and_then(|s| s.parse::<u64>().ok()) {
            segs.push(seq);
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

impl Spool {
    /// Opens (or makes) the spool in `dir`: a torn last line is set aside (counted in the
    /// return), and the records not yet shipped are counted.
    pub fn open(dir: &Path, gauge: Arc<crate::metrics::Counter>) -> io::Result<(Spool, u64)> {
        fs::create_dir_all(dir).map_err(|e| ctx(dir, e))?;
        let segs = segments(dir)?;
        let mut torn = 0;
        if let Some(&last) = segs.last() {
            let path = segment_path(dir, last);
            if set_aside_torn_line(&path)? {
                torn += 1;
                tracing::warn!(
                    "{}: a torn last line (a crash in the middle of a write) was moved to its \
                     .torn file",
                    path.display()
                );
            }
        }
        let mut committed = match fs::read_to_string(dir.join(COMMITTED)) {
            Ok(s) => parse_pos(&s).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not `<segment> <offset>`",
                        dir.join(COMMITTED).display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Pos {
                seg: segs.first().copied().unwrap_or(1),
                off: 0,
            },
            Err(e) => return Err(ctx(&dir.join(COMMITTED), e)),
        };
        // Count what is left to ship.
        let mut records = 0;
        let mut bytes = 0;
        let mut end = committed;
        for &seg in segs.iter().filter(|&&s| s >= committed.seg) {
            let path = segment_path(dir, seg);
            let mut f = File::open(&path).map_err(|e| ctx(&path, e))?;
            let len = f.metadata()?.len();
            if seg == committed.seg && committed.off > len {
                // A damaged `committed` file: what is appended from the end on must ship.
                tracing::warn!(
                    "{}: the offset shipped ({}) is past the end of {} ({len} bytes): taken as \
                     its end",
                    dir.join(COMMITTED).display(),
                    committed.off,
                    path.display()
                );
                committed.off = len;
            }
            let from = if seg == committed.seg {
                committed.off
            } else {
                0
            };
            f.seek(SeekFrom::Start(from.min(len)))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            records += memchr::memchr_iter(b'\n', &buf).count() as u64;
            bytes += buf.len() as u64;
            end = Pos { seg, off: len };
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            shared: Arc::new(Mutex::new(Shared {
                synced: end.max(committed),
                committed,
                records,
                bytes,
            })),
            more: Arc::default(),
            gauge,
        };
        spool.gauge.set(records);
        Ok((spool, torn))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records written and not yet shipped.
    pub fn records(&self) -> u64 {
        self.lock().records
    }

    /// Bytes written and not yet shipped.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Whether everything synced has been shipped.
    pub fn caught_up(&self) -> bool {
        let s = self.lock();
        s.committed >= s.synced
    }

    /// Reads, in order, up to `max` synced records not yet shipped: them, where they end, and
    /// the lines read. A line that is not a record (damaged by hand) is logged and skipped.
    pub fn read(&self, max: usize) -> io::Result<(Vec<Spooled>, Pos, u64)> {
        let (mut at, synced) = {
            let s = self.lock();
            (s.committed, s.synced)
        };
        let mut out = Vec::new();
        let mut lines = 0u64;
        while (lines as usize) < max && at < synced {
            let path = segment_path(&self.dir, at.seg);
            let end = if at.seg == synced.seg {
                synced.off
            } else {
                match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(ctx(&path, e)),
                }
            };
            if at.off >= end {
                // This segment is done: on to the next.
                at = Pos {
                    seg: at.seg + 1,
                    off: 0,
                };
                continue;
            }
            let f = File::open(&path).map_err(|e| ctx(&path, e))?;
            let mut r = BufReader::new(f);
            r.seek(SeekFrom::Start(at.off))?;
            let mut line = Vec::new();
            while (lines as usize) < max && at.off < end {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') || at.off + n as u64 > end {
                    break;
                }
                at.off += n as u64;
                lines += 1;
                match serde_json::from_slice::<Spooled>(&line) {
                    Ok(rec) => out.push(rec),
                    Err(e) => tracing::error!(
                        "{}: a line that is not a spooled record is skipped: {e}",
                        path.display()
                    ),
                }
            }
            if at.off < end && (lines as usize) < max {
                // A partial line within the synced part cannot happen; do not spin on it.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: a partial line at {}", path.display(), at.off),
                ));
            }
        }
        Ok((out, at, lines))
    }

    /// Remembers that everything up to `to` (`records` records) has landed, and deletes the
    /// segments wholly before it.
    pub fn commit(&self, to: Pos, records: u64) -> io::Result<()> {
        let from = self.lock().committed;
        let path = self.dir.join(COMMITTED);
        let tmp = self.dir.join("committed.tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| ctx(&tmp, e))?;
            writeln!(f, "{} {}", to.seg, to.off)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, &path).map_err(|e| ctx(&path, e))?;
        sync_dir(&self.dir)?;
        let bytes = self.shipped_bytes(from, to);
        {
            let mut s = self.lock();
            s.committed = to;
            s.records = s.records.saturating_sub(records);
            s.bytes = s.bytes.saturating_sub(bytes);
            self.gauge.set(s.records);
        }
        for seg in from.seg..to.seg {
            let p = segment_path(&self.dir, seg);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ctx(&p, e)),
            }
        }
        Ok(())
    }

    /// The bytes between two places (segments in between counted whole).
    fn shipped_bytes(&self, from: Pos, to: Pos) -> u64 {
        if from.seg == to.seg {
            return to.off.saturating_sub(from.off);
        }
        let len = |seg| fs::metadata(segment_path(&self.dir, seg)).map_or(0, |m| m.len());
        let mut n = len(from.seg).saturating_sub(from.off);
        for seg in from.seg + 1..to.seg {
            n += len(seg);
        }
        n + to.off
    }
}

fn parse_pos(s: &str) -> Option<Pos> {
    let mut it = s.split_whitespace();
    let seg = it.next()?.parse().ok()?;
    let off = it.next()?.parse().ok()?;
    Some(Pos { seg, off })
}

/// The writer's end of the spool: the PostgreSQL sink as the writer sees it.
pub struct SpoolSink {
    spool: Spool,
    file: File,
    /// Where the current segment ends (what was written).
    at: Pos,
    /// Records written since the last sync.
    unsynced: u64,
    max_bytes: u64,
    /// The shipper, told to finish at exit.
    pub shipper: Option<super::postgres::Shipper>,
}

impl SpoolSink {
    /// The writer's end of `spool`, appending to its last segment; full past `max_bytes`.
    pub fn new(spool: Spool, max_bytes: u64) -> io::Result<SpoolSink> {
        let seg = segments(&spool.dir)?
            .last()
            .copied()
            .unwrap_or(spool.lock().committed.seg);
        let (file, off) = open_segment(&spool.dir, seg)?;
        let at = Pos { seg, off };
        {
            let mut s = spool.lock();
            s.synced = s.synced.max(at);
        }
        Ok(SpoolSink {
            spool,
            file,
            at,
            unsynced: 0,
            max_bytes,
            shipper: None,
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Writes `batch` at the end of the current segment (a new one when it is past its
    /// size); all or nothing.
    pub fn append(&mut self, batch: &[Record]) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(batch.len() * 512);
        for r in batch {
            serde_json::to_writer(&mut buf, &Spooled::of(r)).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        if self.at.off >= SEGMENT_BYTES {
            self.roll()?;
        }
        if let Err(e) = self.file.write_all(&buf) {
            // Cut off whatever part of the batch went in, so that a retry writes it once.
            let _ = self.file.set_len(self.at.off);
            return Err(e);
        }
        self.at.off += buf.len() as u64;
        self.unsynced += batch.len() as u64;
        let mut s = self.spool.lock();
        s.records += batch.len() as u64;
        s.bytes += buf.len() as u64;
        self.spool.gauge.set(s.records);
        Ok(())
    }

    /// Closes the current segment (synced, so the shipper may read it whole) and starts the
    /// next.
    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.publish();
        let seg = self.at.seg + 1;
        let (file, off) = open_segment(&self.spool.dir, seg)?;
        sync_dir(&self.spool.dir)?;
        self.file = file;
        self.at = Pos { seg, off };
        Ok(())
    }

    /// Makes what was written durable and hands it to the shipper.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        {
            let mut s = self.spool.lock();
            s.synced = s.synced.max(self.at);
        }
        self.unsynced = 0;
        self.spool.more.notify_one();
    }

    /// Whether the spool is past its limit.
    pub fn is_full(&self) -> bool {
        self.spool.bytes() > self.max_bytes
    }
}

fn open_segment(dir: &Path, seg: u64) -> io::Result<(File, u64)> {
    let path = segment_path(dir, seg);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ctx(&path, e))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

impl super::sink::Sink for SpoolSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn write(&mut self, batch: &[Record], _now_ms: u64) -> io::Result<()> {
        self.append(batch)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn full(&self) -> bool {
        self.is_full()
    }

    fn finish(&mut self, deadline: std::time::Instant) {
        if self.unsynced > 0 {
            let _ = self.flush();
        }
        if let Some(s) = self.shipper.take() {
            s.finish(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{ACC_COLUMNS, Field, Record};
    use super::*;
    use crate::metrics::Counter;

    fn rec(i: u64) -> Record {
        let id = format!("n1-1-{i}");
        let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
        fields[0] = Field::Text("n1");
        fields[1] = Field::Text(&id);
        fields[6] = Field::Int(200);
        fields[8] = Field::Time(1_000 + i);
        Record::new("acc", &fields)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("siplb-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn ids(v: &[Spooled]) -> Vec<String> {
        v.iter().map(|r| r.fields[1].clone().unwrap()).collect()
    }

    #[test]
    fn records_are_read_back_in_order_once_synced_and_committed_ones_are_not_again() {
        let dir = tmp("order");
        let gauge = Arc::new(Counter::default());
        let (spool, torn) = Spool::open(&dir, gauge.clone()).unwrap();
        assert_eq!(torn, 0);
        let mut sink = SpoolSink::new(spool.clone(), u64::MAX).unwrap();
        sink.append(&[rec(1), rec(2), rec(3)]).unwrap();
        // Not synced yet: nothing to read.
        assert_eq!(spool.read(10).unwrap().2, 0);
        assert_eq!(gauge.get(), 3);
        sink.flush().unwrap();
        let (got, end, _) = spool.read(2).unwrap();
        assert_eq!(ids(&got), ["n1-1-1", "n1-1-2"]);
        assert_eq!(got[0].fields[6].as_deref(), Some("200"));
        assert_eq!(got[0].fields[2], None);
        spool.commit(end, 2).unwrap();
        assert_eq!(gauge.get(), 1);
        let (got, end, _) = spool.read(10).unwrap();
        assert_eq!(ids(&got), ["n1-1-3"]);
        spool.commit(end, 1).unwrap();
        assert!(spool.caught_up());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(gauge.get(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spool_survives_a_crash_its_torn_line_set_aside() {
        let dir = tmp("crash");
        {
            let (spool, _) = Spool::open(&dir, Arc::default()).unwrap();
            let mut sink = SpoolSink::new(spool.clone(), u64::MAX).unwrap();
            sink.append(&[rec(1), rec(2)]).unwrap();
            sink.flush().unwrap();
            let (_, end, _) = spool.read(1).unwrap();
            spool.commit(end, 1).unwrap();
            sink.append(&[rec(3)]).unwrap();
            sink.flush().unwrap();
            // kill -9 in the middle of the next write.
            sink.file.write_all(b"{\"table\":\"acc\",\"fie").unwrap();
        }
        let gauge = Arc::new(Counter::default());
        let (spool, torn) = Spool::open(&dir, gauge.clone()).unwrap();
        assert_eq!(torn, 1);
        assert_eq!(gauge.get(), 2, "records 2 and 3 are still to ship");
        let mut sink = SpoolSink::new(spool.clone(), u64::MAX).unwrap();
        sink.append(&[rec(4)]).unwrap();
        sink.flush().unwrap();
        let (got, end, _) = spool.read(100).unwrap();
        assert_eq!(ids(&got), ["n1-1-2", "n1-1-3", "n1-1-4"]);
        spool.commit(end, 3).unwrap();
        assert_eq!(gauge.get(), 0);
        let torn_files = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".torn")
            })
            .count();
        assert_eq!(torn_files, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A `committed` file that says more was shipped than the segment holds (damaged) is
    /// taken as its end: what is appended after still ships.
    #[test]
    fn a_committed_offset_past_the_end_is_taken_as_the_end() {
        let dir = tmp("past-end");
        {
            let (spool, _) = Spool::open(&dir, Arc::default()).unwrap();
            let mut sink = SpoolSink::new(spool.clone(), u64::MAX).unwrap();
            sink.append(&[rec(1)]).unwrap();
            sink.flush().unwrap();
            let (_, end, _) = spool.read(10).unwrap();
            spool.commit(end, 1).unwrap();
        }
        let committed = fs::read_to_string(dir.join(COMMITTED)).unwrap();
        let seg = committed.split_whitespace().next().unwrap().to_string();
        fs::write(dir.join(COMMITTED), format!("{seg} 999999\n")).unwrap();
        let (spool, _) = Spool::open(&dir, Arc::default()).unwrap();
        let mut sink = SpoolSink::new(spool.clone(), u64::MAX).unwrap();
        sink.append(&[rec(2)]).unwrap();
        sink.flush().unwrap();
        let (got, _, _) = spool.read(10).unwrap();
        assert_eq!(ids(&got), ["n1-1-2"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_roll_and_shipped_ones_are_deleted_and_full_is_past_the_limit() {
        let dir = tmp("roll");
        let (spool, _) = Spool::open(&dir, Arc::default()).unwrap();
        let mut sink = SpoolSink::new(spool.clone(), 1000).unwrap();
        sink.append(&[rec(1)]).unwrap();
        // Pretend the segment is full.
        sink.at.off = SEGMENT_BYTES;
        sink.append(&[rec(2)]).unwrap();
        assert!(!sink.is_full());
        sink.append(&(3..20).map(rec).collect::<Vec<_>>()).unwrap();
        assert!(sink.is_full());
        sink.flush().unwrap();
        assert_eq!(segments(&dir).unwrap().len(), 2);
        let (got, end, _) = spool.read(100).unwrap();
        assert_eq!(got.len(), 19);
        assert_eq!(ids(&got)[..2], ["n1-1-1", "n1-1-2"]);
        spool.commit(end, 19).unwrap();
        assert_eq!(segments(&dir).unwrap().len(), 1);
        assert!(!sink.is_full());
        fs::remove_dir_all(&dir).unwrap();
    }
}
