//! The file sink of accounting records: `<dir>/<table>.csv` and `<dir>/<table>.jsonl`, written
//! a batch at a time (one `write` per file per batch), synced on demand (the writer's group
//! commit calls [`FileSink::sync`] at its interval), rotated by size and by age to
//! `<table>-<UTC, YYYYMMDDTHHMMSSZ>.{csv,jsonl}`. On opening, a torn last line (a crash in the
//! middle of a write) is moved to `<file>.torn`, so every line left in a file is a whole record
//! and none is written twice. It runs on the writer thread, never on a worker.

use super::encode::{csv_and_json_lines, csv_header, csv_line, json_line};
use super::journal::{FileId, Journal};
use super::record::Record;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Which encodings the sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub csv: bool,
    pub jsonl: bool,
}

/// How the group commit makes records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// The round's writes appended to `commit.journal` and one `fdatasync` of it; the files
    /// themselves are synced at checkpoints ([`super::journal`]).
    #[default]
    Journal,
    /// `fdatasync` of each file written since the last commit (POSIX; a device flush each).
    File,
    /// One `syncfs` of the folder's filesystem: a single journal commit and device flush per
    /// round, but it also writes out whatever else is pending on that filesystem (for a
    /// folder on a filesystem of its own).
    Filesystem,
}

/// When a file is rotated: past this many bytes, or this many seconds after it was opened
/// (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age_s: u64,
}

/// A file while a batch is encoded into it: where its bytes stood before.
struct Taken {
    key: (String, &'static str),
    open: Open,
    before: u64,
}

pub struct FileSink {
    dir: PathBuf,
    formats: Formats,
    rotation: Rotation,
    open: HashMap<(String, &'static str), Open>,
    /// Torn lines found and set aside since the sink was made.
    pub torn_lines: u64,
    sync_mode: SyncMode,
    /// The folder, open and locked ([`lock_dir`]), also for `syncfs`; which folder it is.
    dir_file: Option<File>,
    dir_id: Option<FileId>,
    journal: Option<Journal>,
    /// With the journal: how long the files may lag behind it (zero: written with every
    /// batch). Bigger, rarer writes cost the page cache much less per byte.
    write_after: Duration,
    /// The last deferred write failed: new calls are refused until one succeeds.
    write_failed: bool,
    /// The journal's size, to make it again.
    journal_bytes: u64,
    /// When a commit last looked whether the journal's path still leads to it.
    journal_looked: Option<Instant>,
}

/// How often the group commit looks whether the journal was removed or replaced (a path
/// walk through every folder of `acc.dir`: at every 10 ms commit it was 7 % of the writer's
/// time under `perf`). A crash within this long of an operator removing the folder can lose what
/// was committed meanwhile; the removal itself loses every record written before it.
const JOURNAL_LOOK: Duration = Duration::from_millis(100);

/// With the journal, a file's waiting bytes are written once there are this many, however
/// young.
pub(super) const WRITE_BYTES: usize = 256 << 10;

const CSV: &str = "csv";
const JSONL: &str = "jsonl";
/// Records whose memory a batch asks the cache for before encoding them (a 10 ms batch at
/// 2,000 calls/s is about 60, well inside the cache).
const PREFETCH: usize = 512;

impl FileSink {
    pub fn new(dir: &Path, formats: Formats, rotation: Rotation) -> io::Result<FileSink> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        Ok(FileSink {
            dir: dir.into(),
            formats,
            rotation,
            open: HashMap::new(),
            torn_lines: 0,
            sync_mode: SyncMode::File,
            dir_file: None,
            dir_id: None,
            journal: None,
            write_after: Duration::ZERO,
            write_failed: false,
            journal_bytes: 0,
            journal_looked: None,
        })
    }

    /// With the journal, lets each file lag behind it by up to `after` (see
    /// [`FileSink::sync`]).
    pub fn with_write_interval(mut self, after: Duration) -> FileSink {
        self.write_after = after;
        self
    }

    /// Whether records are committed through the journal.
    pub fn journal_mode(&self) -> bool {
        self.journal.is_some()
    }

    /// Whether the files' bytes wait for [`FileSink::sync`] rather than being written with
    /// their batch.
    fn deferred(&self) -> bool {
        self.journal.is_some() && !self.write_after.is_zero()
    }

    /// Commits with `mode` from now on.
    /// With the journal, what the last process committed and a crash lost is put back
    /// into its files first.
    pub fn with_sync(mut self, mode: SyncMode, journal_bytes: u64) -> io::Result<FileSink> {
        let dir = lock_dir(&self.dir)?;
        self.dir_id = FileId::of(&dir);
        self.dir_file = Some(dir);
        match mode {
            SyncMode::Journal => {
                self.journal_bytes = journal_bytes;
                let (journal, replayed) = Journal::open(&self.dir, journal_bytes)?;
                if replayed.entries > 0 {
                    tracing::warn!(
                        "{}: {} writes of the last run written again from {} (those the \
                         files already had are unchanged)",
                        self.dir.display(),
                        replayed.entries,
                        super::journal::NAME
                    );
                }
                self.journal = Some(journal);
            }
            SyncMode::File | SyncMode::Filesystem => {}
        }
        self.sync_mode = mode;
        Ok(self)
    }

    /// Sets aside the torn last line of every current file in the folder (a crash in the
    /// middle of a write), before anything is written; how many there were.
    pub fn recover(&mut self) -> io::Result<u64> {
        let mut found = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let current = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".csv").or_else(|| n.strip_suffix(".jsonl")))
                // Rotated files are `<table>-<stamp>`: only current ones are written to.
                .is_some_and(|stem| !stem.contains('-') && !stem.contains('.'));
            if current && set_aside_torn_line(&path)? {
                found += 1;
                tracing::warn!(
                    "{}: a torn last line (a crash in the middle of a write) was moved to its \
                     .torn file",
                    path.display()
                );
            }
        }
        self.torn_lines += found;
        Ok(found)
    }

    /// Writes `records` at `now_ms` (Unix ms): one write per file. All or nothing: when a
    /// write fails, what this batch wrote to any file is cut off again, so a retry writes no
    /// record twice.
    pub fn write_batch(&mut self, records: &[Record], now_ms: u64) -> io::Result<()> {
        let exts: &[&'static str] = match (self.formats.csv, self.formats.jsonl) {
            (true, true) => &[CSV, JSONL],
            (true, false) => &[CSV],
            (false, true) => &[JSONL],
            (false, false) => return Ok(()),
        };
        // The records were made on other cores: their lines are asked for all at once
        // rather than missed one at a time as they are encoded.
        for r in records.iter().take(PREFETCH) {
            r.prefetch();
        }
        // Every file the batch writes is rotated when due and opened before anything is
        // written; a table's files are consecutive, in the order of `exts`.
        let mut tables: Vec<&Record> = Vec::new();
        for r in records {
            if !tables.iter().any(|t| t.table() == r.table()) {
                tables.push(r);
            }
        }
        if !self.deferred() {
            // Written with this batch: into the files at their paths.
            self.follow_moved(now_ms)?;
        }
        for r in &tables {
            // Opened before the rotation too: a file kept from before a restart may be
            // past its age already.
            for ext in exts {
                self.file(r.table(), ext, r.columns(), now_ms)?;
            }
            self.rotate_if_due(r.table(), exts, now_ms)?;
            for ext in exts {
                self.file(r.table(), ext, r.columns(), now_ms)?;
            }
        }
        // Taken out of the map for the batch: each record finds its files at a glance and
        // is encoded straight after the bytes they already wait with.
        let mut taken: Vec<Taken> = Vec::with_capacity(tables.len() * exts.len());
        for r in &tables {
            for ext in exts {
                let key = (r.table().to_string(), *ext);
                let open = self.open.remove(&key).expect("opened above");
                let before = open.end();
                taken.push(Taken { key, open, before });
            }
        }
        for r in records {
            let first = taken
                .iter()
                .position(|t| t.key.0 == r.table())
                .expect("opened above");
            if let [CSV, JSONL] = exts {
                // Both formats: the table's CSV file, then its JSON lines file.
                let (csv, json) = taken[first..].split_at_mut(1);
                csv_and_json_lines(r, &mut csv[0].open.unwritten, &mut json[0].open.unwritten);
                continue;
            }
            for (t, ext) in taken[first..].iter_mut().zip(exts) {
                if *ext == CSV {
                    csv_line(r, &mut t.open.unwritten);
                } else {
                    json_line(r, &mut t.open.unwritten);
                }
            }
        }
        let mark = self.journal.as_ref().map(Journal::mark);
        let deferred = self.deferred();
        let mut result = Ok(());
        for t in &mut taken {
            let f = &mut t.open;
            let new = &f.unwritten[f.index_of(t.before)..];
            f.dirty = true;
            if let Some(j) = &mut self.journal {
                let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                j.add(name, t.before, new.as_bytes());
            }
            if deferred {
                // Committed by the journal; written to the file by a later sync.
                f.since.get_or_insert_with(Instant::now);
                continue;
            }
            if let Err(e) = f.write_waiting() {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            if let (Some(j), Some(mark)) = (self.journal.as_mut(), mark) {
                j.rollback(mark);
            }
            for t in &mut taken {
                let f = &mut t.open;
                if t.before >= f.bytes {
                    let keep = f.index_of(t.before);
                    f.unwritten.truncate(keep);
                } else {
                    let _ = f.file.set_len(t.before);
                    f.bytes = t.before;
                    f.unwritten.clear();
                    f.skip = 0;
                }
            }
        }
        for t in taken {
            self.open.insert(t.key, t.open);
        }
        result
    }

    /// Makes every write so far durable: the journal's commit (or a checkpoint when it is
    /// full), one `syncfs`, or `fdatasync` of every file written since the last sync.
    ///
    /// With the journal, the files' bytes committed at least `acc.write_interval_ms` ago (or
    /// past [`WRITE_BYTES`]) are then written to the files: a crash before that loses
    /// nothing, as the next start writes them back from the journal.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.journal_look_due() && self.journal.as_ref().is_some_and(Journal::moved) {
            // Committed into a journal nobody would find after a crash: made again first.
            if let Err(e) = self.follow_moved(unix_ms()) {
                self.write_failed = true;
                return Err(e);
            }
        }
        if let Some(j) = &mut self.journal {
            if j.has_pending() {
                if j.needs_checkpoint() {
                    return self.checkpoint();
                }
                j.commit()?;
            }
            // Committed: durable whatever comes of the files' write.
            return self.write_waiting(false).map_err(files_behind);
        }
        self.sync_files()
    }

    /// Whether it is time to look whether the journal moved ([`JOURNAL_LOOK`]).
    fn journal_look_due(&mut self) -> bool {
        let due = self
            .journal_looked
            .is_none_or(|t| t.elapsed() >= JOURNAL_LOOK);
        if due {
            self.journal_looked = Some(Instant::now());
        }
        due
    }

    /// Whether the last commit is durable (see [`Journal::settle`]).
    pub fn settled(&mut self, wait: bool) -> io::Result<bool> {
        match &mut self.journal {
            Some(j) => j.settle(wait),
            None => Ok(true),
        }
    }

    /// Writes the bytes waiting for their files (all of them, or those due). A write cut
    /// short is cut off again, so that its retry writes nothing twice.
    pub fn write_waiting(&mut self, all: bool) -> io::Result<()> {
        let after = self.write_after;
        if self.open.values().any(|f| f.due(all, after)) {
            let result = self.follow_moved(unix_ms());
            if result.is_err() {
                self.write_failed = true;
                return result;
            }
        }
        self.write_waiting_here(all)
    }

    /// [`FileSink::write_waiting`] into the files open now, wherever their paths lead. All
    /// or nothing: when a file's write fails, those written before it are cut back, so that
    /// a record not yet committed (a checkpoint writes the journal's pending round too) is
    /// in every file or in none, and the writer's count of what is lost holds.
    ///
    /// The direct writes are made one after the other, each waited for: submitted together
    /// through an io_uring they would save device notifications, but a write that makes a
    /// file longer cannot be made without blocking on ext4, so io_uring hands each to a
    /// worker thread of its own, which cost siplb more than it saved (docs/BENCHMARKS.md,
    /// "Accounting").
    fn write_waiting_here(&mut self, all: bool) -> io::Result<()> {
        let after = self.write_after;
        let mut result = Ok(());
        let mut wrote = false;
        for f in self.open.values_mut() {
            if !f.due(all, after) {
                continue;
            }
            match f.append_waiting(all) {
                Ok(n) => f.appended = n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            wrote |= f.appended > 0;
        }
        for f in self.open.values_mut().filter(|f| f.appended > 0) {
            let n = std::mem::take(&mut f.appended);
            if result.is_err() {
                let _ = f.file.set_len(f.bytes);
                continue;
            }
            f.wrote(n);
        }
        // A round with nothing due says nothing of whether writes work again.
        if result.is_err() || wrote {
            self.write_failed = result.is_err();
        }
        result
    }

    /// Whether a file write failed and has not succeeded since (its bytes are safe in the
    /// journal, but more would only pile up in memory).
    pub fn full(&self) -> bool {
        self.write_failed
    }

    /// With the journal: every file written and synced, then the journal started over.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.write_waiting(true)?;
        self.sync_files()?;
        if let Some(j) = &mut self.journal {
            j.restart()?;
        }
        Ok(())
    }

    fn sync_files(&mut self) -> io::Result<()> {
        if let (SyncMode::Filesystem, Some(dir)) = (self.sync_mode, &self.dir_file) {
            if !self.open.values().any(|f| f.dirty) {
                return Ok(());
            }
            // SAFETY: a valid descriptor of the folder.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            for f in self.open.values_mut() {
                f.dirty = false;
            }
            return Ok(());
        }
        // Start the writeback of every file first, so that the devices get their data in one
        // go; each `fdatasync` then mostly waits for it and commits the metadata (measured on
        // ext4 over virtio: about a third less CPU than four `fdatasync`s alone).
        for f in self.open.values().filter(|f| f.dirty) {
            // SAFETY: a valid descriptor; the call only starts writeback.
            unsafe {
                libc::sync_file_range(f.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        for f in self.open.values_mut().filter(|f| f.dirty) {
            f.file.sync_data()?;
            f.dirty = false;
        }
        Ok(())
    }

    fn path(&self, table: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{table}.{ext}"))
    }

    /// The open file of `table` in `ext`, opened (torn line set aside, CSV header written to
    /// a new file) when it is not yet.
    fn file(
        &mut self,
        table: &str,
        ext: &'static str,
        columns: &'static [&'static str],
        now_ms: u64,
    ) -> io::Result<&mut Open> {
        let key = (table.to_string(), ext);
        if !self.open.contains_key(&key) {
            let open = self.open_file(table, ext, columns, now_ms)?;
            self.open.insert(key.clone(), open);
        }
        Ok(self.open.get_mut(&key).expect("inserted above"))
    }

    /// Opens the file of `table` in `ext` (torn line set aside, CSV header written to a new
    /// file).
    fn open_file(
        &mut self,
        table: &str,
        ext: &'static str,
        columns: &'static [&'static str],
        now_ms: u64,
    ) -> io::Result<Open> {
        {
            let path = self.path(table, ext);
            // The folder made again if it was removed while siplb ran.
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
            if set_aside_torn_line(&path)? {
                self.torn_lines += 1;
                tracing::warn!(
                    "{}: a torn last line was moved to its .torn file",
                    path.display()
                );
            }
            let mut file = open::open_append(&path)?;
            let meta = file.metadata()?;
            let mut bytes = meta.len();
            // A file kept from before a restart is as old as it is, for rotation by age.
            let opened_ms = meta
                .created()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .filter(|&t| bytes > 0 && t <= now_ms)
                .unwrap_or(now_ms);
            if bytes == 0 {
                if ext == CSV {
                    let mut header = String::new();
                    csv_header(columns, &mut header);
                    file.write_all(header.as_bytes())?;
                    bytes = header.len() as u64;
                }
                if self.journal.is_some() {
                    // A new file and its name are durable before any journal entry names
                    // it: replay never writes into a file that a crash took away, or into
                    // the one that had the name before.
                    file.sync_all()?;
                    sync_dir(&self.dir)?;
                }
            }
            let direct = self.deferred();
            Ok(Open::new(file, path, columns, bytes, opened_ms, direct))
        }
    }
}

/// A failed write of committed bytes to their files: the records are durable in the
/// journal (the writer counts them so), but the files are behind.
#[derive(Debug)]
pub struct FilesBehind(pub io::Error);

impl std::fmt::Display for FilesBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for FilesBehind {}

fn files_behind(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), FilesBehind(e))
}

/// Whether `e` is [`FilesBehind`].
pub fn is_files_behind(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<FilesBehind>())
}

mod moved;
mod open;
mod rotate;
mod torn;

use moved::lock_dir;
pub(super) use moved::sync_dir;
use open::Open;
pub use torn::set_aside_torn_line;

#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod tests;
