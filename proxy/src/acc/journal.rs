//! The commit journal of the file sink (`acc.sync = "journal"`, the default): one preallocated
//! file, `<dir>/commit.journal`, that every group commit appends the round's writes to (which
//! file, at which offset, which bytes) and syncs with a single `fdatasync`. Because the journal
//! is written over in place and never changes size, that sync writes its data and flushes the
//! device once, where syncing each record file also writes its inode and block bitmaps (three
//! waits per file on ext4, measured in docs/BENCHMARKS.md, "Accounting"). The record files themselves are written as before and reach the
//! disk through the kernel's writeback; they are synced at a checkpoint: when the journal is
//! full, before a file is rotated, and as siplb stops.
//!
//! Each round is written at a 4 KiB boundary, padded with zeros to whole blocks, through a
//! second descriptor opened `O_DIRECT | O_DSYNC` where the filesystem allows it: the bytes go
//! from the writer's buffer to the device, durable when the write completes, with no page
//! cache in between and no separate `fdatasync`. The write is submitted through a small
//! io_uring and the writer goes on; [`Journal::settle`] says when it is durable, so the
//! writer thread never sleeps on the disk (measured in docs/BENCHMARKS.md, "Accounting").
//! Elsewhere it falls back to a buffered write and `fdatasync`, done at once.
//!
//! After a crash, [`Journal::open`] writes every entry of the last checkpoint's generation
//! back at its offset (rewriting bytes a file already has, or restoring a tail the crash lost),
//! syncs those files, and starts a new generation. An entry is a header (magic, generation,
//! lengths, offset, CRC-32 of the rest) followed by the file name and the bytes; the scan
//! stops at the first entry that is not whole or belongs to an older generation.

use super::direct::{Aligned, BLOCK, Reaped, Ring, write_durably};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The journal's name in the records' folder.
pub const NAME: &str = "commit.journal";

const MAGIC: u32 = 0x5349_4a31;
/// magic u32, generation u64, name length u16, data length u32, offset u64, crc u32.
const HEADER: usize = 4 + 8 + 2 + 4 + 8 + 4;

pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Its path, and which file it is: see [`Journal::moved`].
    path: PathBuf,
    id: Option<FileId>,
    /// The same file, `O_DIRECT | O_DSYNC`, for the commits (none where it cannot be had).
    direct: Option<File>,
    size: u64,
    generation: u64,
    /// Where the next commit goes.
    cursor: u64,
    /// The entries of the round being built.
    pending: Aligned,
    /// The round committed and not yet known durable.
    in_flight: Option<InFlight>,
    /// The buffer of the round before, kept for the next.
    spare: Aligned,
    /// Submits the rounds (off: each is written and synced at once).
    ring: Ring,
    /// Restarts so far: a mark taken before one is void.
    restarts: u64,
}

/// What [`Journal::open`] found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Entries written back into their files.
    pub entries: u64,
    /// Entries whose file is gone or shorter than the entry's offset (moved away by hand):
    /// skipped, with a warning.
    pub skipped: u64,
}

impl Journal {
    /// Opens (or makes, `size` bytes of zeros, written once so that later overwrites change
    /// no metadata) the journal in `dir` and replays what the last process committed since
    /// its last checkpoint. A round that does not fit in what is left of the journal is made
    /// durable by a checkpoint instead.
    pub fn open(dir: &Path, size: u64) -> io::Result<(Journal, Replayed)> {
        let path = dir.join(NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // One writer per folder: a second siplb on the same `acc.dir` would interleave its
        // commits (and lines) with this one's.
        lock(&file, &path)?;
        let len = file.metadata()?.len();
        let fresh = len == 0;
        // Room for the marker's block and one round's at least.
        let size = size.max(len).max(2 * BLOCK as u64);
        if len < size {
            // Written, not just allocated: a later overwrite then changes no metadata.
            if let Err(e) = write_zeros(&file, len, size).and_then(|()| file.sync_all()) {
                if fresh {
                    // Not left behind half made, taking the room a smaller one would need.
                    let _ = std::fs::remove_file(&path);
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{}: making the commit journal of {} KiB (acc.journal_kib): {e}",
                        path.display(),
                        size / 1024
                    ),
                ));
            }
        }
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&path)
            .map_err(|e| {
                tracing::debug!("{}: no O_DIRECT ({e}): buffered commits", path.display());
            })
            .ok();
        let ring = if direct.is_some() {
            Ring::new()
        } else {
            Ring::off()
        };
        let id = FileId::of(&file);
        let mut j = Journal {
            dir: dir.into(),
            file,
            path: path.clone(),
            id,
            direct,
            size,
            generation: 0,
            cursor: 0,
            pending: Aligned::default(),
            in_flight: None,
            spare: Aligned::default(),
            ring,
            restarts: 0,
        };
        let replayed = j.replay(fresh)?;
        Ok((j, replayed))
    }

    /// Whether the journal's path no longer leads to the file open here (the folder or the
    /// file removed or replaced while siplb runs): commits would go nowhere.
    pub fn moved(&self) -> bool {
        FileId::moved_from(self.id, &self.path)
    }

    /// Notes that `data` was written to `name` (a file of the folder) at `offset`; it is
    /// committed by the next [`Journal::commit`].
    pub fn add(&mut self, name: &str, offset: u64, data: &[u8]) {
        let name = name.as_bytes();
        let start = self.pending.len();
        self.pending.extend_from_slice(&MAGIC.to_le_bytes());
        self.pending
            .extend_from_slice(&self.generation.to_le_bytes());
        self.pending
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.pending
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(&offset.to_le_bytes());
        self.pending.extend_from_slice(&[0; 4]);
        self.pending.extend_from_slice(name);
        self.pending.extend_from_slice(data);
        let crc = entry_crc(&self.pending.as_slice()[start..]);
        let at = start + HEADER - 4;
        self.pending.as_mut_slice()[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Whether a round is waiting to be committed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the pending round no longer fits after the cursor: the caller checkpoints
    /// instead of committing (syncs every file it wrote and calls [`Journal::restart`]).
    pub fn needs_checkpoint(&self) -> bool {
        self.cursor + self.pending.len().next_multiple_of(BLOCK) as u64 > self.size
    }

    /// Where the pending round stands, for [`Journal::rollback`].
    pub fn mark(&self) -> Mark {
        Mark {
            restarts: self.restarts,
            len: self.pending.len(),
        }
    }

    /// Forgets what was added since `mark` (writes that were cut off again). After a restart
    /// since then, everything pending came after the mark.
    pub fn rollback(&mut self, mark: Mark) {
        let keep = if mark.restarts == self.restarts {
            mark.len
        } else {
            0
        };
        self.pending.truncate(keep);
    }

    /// Writes the pending round after the last: the group commit. It is durable once
    /// [`Journal::settle`] says so (at once where there is no io_uring); the round before
    /// is settled first.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.settle(true)?;
        debug_assert!(!self.needs_checkpoint());
        let at = self.cursor;
        if let Some(direct) = &self.direct {
            let mut round = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
            let data = round.padded();
            let len = data.len() as u64;
            // SAFETY: the buffer stays in `in_flight`, untouched, until its completion is
            // reaped (`settle`, also on drop).
            if unsafe { self.ring.submit_write(direct.as_raw_fd(), data, at) } {
                self.in_flight = Some(InFlight {
                    round,
                    at,
                    submitted: true,
                });
                self.cursor += len;
                return Ok(());
            }
            // Not submitted: written at once below.
            self.spare = std::mem::replace(&mut self.pending, round);
        }
        let round = self.pending.padded();
        write_durably(&self.file, &mut self.direct, round, at)?;
        self.cursor += round.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Whether every committed round is durable; with `wait`, waits until it is. A round
    /// whose write failed is written again at once (an error if that fails too: it stays to
    /// be settled again).
    pub fn settle(&mut self, wait: bool) -> io::Result<bool> {
        let Some(f) = &mut self.in_flight else {
            return Ok(true);
        };
        let mut result = None;
        if f.submitted {
            match self.ring.reap(wait)? {
                Reaped::Done(r) => result = Some(r),
                Reaped::Pending => return Ok(false),
                Reaped::Elsewhere => {
                    // Written again below from a copy; the device may still read the original.
                    let copy = f.round.clone();
                    self.ring.forget(std::mem::replace(&mut f.round, copy));
                }
            }
            f.submitted = false;
        }
        let data = f.round.padded();
        if result.and_then(|r| usize::try_from(r).ok()) != Some(data.len()) {
            if let Some(r) = result {
                tracing::warn!(
                    "acc: the journal's write failed ({}): written again",
                    if r < 0 {
                        io::Error::from_raw_os_error(-r).to_string()
                    } else {
                        format!("{r} of {} bytes", data.len())
                    }
                );
            }
            // Kept in flight, not submitted, when this fails: the next settle writes it.
            write_durably(&self.file, &mut self.direct, data, f.at)?;
        }
        let mut f = self.in_flight.take().expect("in flight");
        f.round.clear();
        self.spare = f.round;
        Ok(true)
    }

    /// After the caller synced every file written so far (the pending round with them): a
    /// new generation from the start, marked at once so that a crash before the next commit
    /// replays nothing older (a file since rotated must not get its predecessor's bytes).
    pub fn restart(&mut self) -> io::Result<()> {
        self.settle(true)?;
        self.pending.clear();
        self.restarts += 1;
        self.generation += 1;
        // The marker: an empty entry of the new generation.
        self.add("", 0, &[]);
        let marker = self.pending.padded();
        write_durably(&self.file, &mut self.direct, marker, 0)?;
        self.cursor = marker.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes back what the journal holds of the last generation, then starts a new one.
    fn replay(&mut self, fresh: bool) -> io::Result<Replayed> {
        let mut done = Replayed::default();
        let mut at = 0u64;
        let mut generation = None;
        // One handle per file, however many entries name it.
        let mut touched: std::collections::HashMap<String, Option<File>> = Default::default();
        loop {
            // A round's last block is padded with zeros: the next round starts at the next
            // block.
            let found = match self.entry_at(at)? {
                Some(x) => Some((at, x)),
                None => {
                    let next = at.next_multiple_of(BLOCK as u64);
                    if next == at {
                        None
                    } else {
                        self.entry_at(next)?.map(|x| (next, x))
                    }
                }
            };
            let Some((here, (generation_here, entry))) = found else {
                break;
            };
            if generation.is_some_and(|g| g != generation_here) {
                break;
            }
            let Some((e, len)) = parse(&entry) else {
                break;
            };
            generation = Some(generation_here);
            at = here + len as u64;
            if e.name.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(e.name).into_owned();
            if !touched.contains_key(&name) {
                let f = self.open_for_replay(&name, e.offset, e.data.len())?;
                touched.insert(name.clone(), f);
            }
            match &touched[&name] {
                Some(f) if f.metadata()?.len() >= e.offset => {
                    f.write_all_at(e.data, e.offset)?;
                    done.entries += 1;
                }
                _ => done.skipped += 1,
            }
        }
        for f in touched.values().flatten() {
            f.sync_data()?;
        }
        if generation.is_none() && !fresh {
            // Nothing valid at the start: a journal never used, or one whose start was
            // damaged. Older entries further on must never pass for the next generation's.
            self.zero()?;
        }
        self.generation = generation.unwrap_or(0);
        self.restart()?;
        Ok(done)
    }

    /// The whole entry at `at` and its generation, if there is one whose CRC holds.
    fn entry_at(&self, at: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
        if at + HEADER as u64 > self.size {
            return Ok(None);
        }
        let mut header = [0u8; HEADER];
        self.file.read_exact_at(&mut header, at)?;
        let Some((generation, name_len, data_len, _)) = parse_header(&header) else {
            return Ok(None);
        };
        let len = HEADER as u64 + name_len as u64 + data_len as u64;
        if at + len > self.size {
            return Ok(None);
        }
        let mut entry = vec![0u8; len as usize];
        self.file.read_exact_at(&mut entry, at)?;
        Ok(parse(&entry).is_some().then_some((generation, entry)))
    }

    /// The file `name` of the folder, open to write entries back, or none (with a warning)
    /// when it is gone or shorter than the first entry's `offset` (moved away by hand: the
    /// bytes before it are not there to extend).
    fn open_for_replay(&self, name: &str, offset: u64, len: usize) -> io::Result<Option<File>> {
        // Only plain names of the folder: a damaged entry cannot point elsewhere.
        if name.contains('/') || name.starts_with('.') {
            return Ok(None);
        }
        let path = self.dir.join(name);
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(
                    "{}: gone; its last records ({len} bytes and more) are not put back",
                    path.display()
                );
                return Ok(None);
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        if file.metadata()?.len() < offset {
            tracing::warn!(
                "{}: shorter than it was; its last records are not put back",
                path.display()
            );
            return Ok(None);
        }
        Ok(Some(file))
    }

    /// Writes the whole journal with zeros.
    fn zero(&self) -> io::Result<()> {
        write_zeros(&self.file, 0, self.size)?;
        self.file.sync_data()
    }
}

/// Locks `file` (at `path`) for this process, or says which other siplb holds it.
pub fn lock(file: &File, path: &Path) -> io::Result<()> {
    // SAFETY: a valid descriptor; the lock goes with it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "{}: locked by another process (another siplb with this acc.dir?): {e}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Which file an open file is (device and inode), to tell whether its path still leads to
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u64, u64);

impl FileId {
    pub fn of(file: &File) -> Option<FileId> {
        file.metadata().ok().as_ref().and_then(FileId::of_metadata)
    }

    pub fn of_metadata(m: &std::fs::Metadata) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        Some(FileId(m.dev(), m.ino()))
    }

    /// Whether `path` no longer leads to this file (gone, or another file or folder there):
    /// one `stat`.
    pub fn moved_from(id: Option<FileId>, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (id, std::fs::metadata(path)) {
            (Some(id), Ok(there)) => id != FileId(there.dev(), there.ino()),
            _ => true,
        }
    }
}

/// Writes zeros into `file` from byte `from` to byte `to`, a MiB at a time.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; (1 << 20).min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// A round on its way to the device.
struct InFlight {
    round: Aligned,
    /// Where in the journal.
    at: u64,
    /// Its completion is yet to be reaped.
    submitted: bool,
}

impl Drop for Journal {
    /// The device may still be reading a round's buffer: it is kept until it is done.
    fn drop(&mut self) {
        if let Err(e) = self.settle(true) {
            tracing::error!("acc: the journal's last round: {e}");
            // The device may still read it: never freed.
            if let Some(f) = self.in_flight.take().filter(|f| f.submitted) {
                self.ring.forget(f.round);
            }
        }
    }
}

/// A point in the pending round ([`Journal::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    restarts: u64,
    len: usize,
}

struct Entry<'a> {
    offset: u64,
    name: &'a [u8],
    data: &'a [u8],
}

/// (generation, name length, data length, offset) of a header with the magic.
fn parse_header(h: &[u8]) -> Option<(u64, usize, usize, u64)> {
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    if h.len() < HEADER || u32_at(0) != MAGIC {
        return None;
    }
    let name_len = u16::from_le_bytes([h[12], h[13]]) as usize;
    Some((u64_at(4), name_len, u32_at(14) as usize, u64_at(18)))
}

/// The whole entry at the start of `b` and its length, if its CRC holds.
fn parse(b: &[u8]) -> Option<(Entry<'_>, usize)> {
    let (_, name_len, data_len, offset) = parse_header(b)?;
    let len = HEADER + name_len + data_len;
    if b.len() < len {
        return None;
    }
    let crc = u32::from_le_bytes(b[HEADER - 4..HEADER].try_into().expect("4 bytes"));
    if entry_crc(&b[..len]) != crc {
        return None;
    }
    Some((
        Entry {
            offset,
            name: &b[HEADER..HEADER + name_len],
            data: &b[HEADER + name_len..len],
        },
        len,
    ))
}

/// The CRC-32 of an entry with its CRC field left out.
fn entry_crc(entry: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&entry[..HEADER - 4]);
    h.update(&entry[HEADER..]);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("siplb-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn committed_writes_lost_by_a_crash_are_put_back_once() {
        let d = dir("lost");
        let (mut j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r, Replayed::default());
        std::fs::write(d.join("acc.csv"), b"head\r\n").unwrap();
        j.add("acc.csv", 6, b"one\r\n");
        j.commit().unwrap();
        j.add("acc.csv", 11, b"two\r\n");
        j.commit().unwrap();
        // The crash lost the second write and tore the first.
        std::fs::write(d.join("acc.csv"), b"head\r\non").unwrap();
        drop(j);
        let (j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 2);
        assert_eq!(
            std::fs::read(d.join("acc.csv")).unwrap(),
            b"head\r\none\r\ntwo\r\n"
        );
        // Replayed once: a second start has nothing left to do.
        drop(j);
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r, Replayed::default());
        assert_eq!(
            std::fs::read(d.join("acc.csv")).unwrap(),
            b"head\r\none\r\ntwo\r\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rounds_settle_and_start_at_block_boundaries() {
        let d = dir("blocks");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        assert!(j.settle(false).unwrap(), "nothing in flight");
        j.add("a.csv", 0, b"one\n");
        j.commit().unwrap();
        assert!(j.settle(true).unwrap());
        j.add("a.csv", 4, &[b'x'; 5000]);
        j.commit().unwrap();
        j.add("a.csv", 5004, b"three\n");
        // Commits the round before first.
        j.commit().unwrap();
        assert!(j.settle(true).unwrap());
        assert_eq!(
            j.cursor,
            5 * BLOCK as u64,
            "marker, one, x (two blocks), three"
        );
        let mut magic = [0u8; 4];
        for at in [0, 1, 2, 4] {
            j.file.read_exact_at(&mut magic, at * BLOCK as u64).unwrap();
            assert_eq!(u32::from_le_bytes(magic), MAGIC, "block {at}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_round_submitted_on_one_thread_is_settled_and_replayed_from_another() {
        let d = dir("threads");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        std::fs::write(d.join("a.csv"), b"").unwrap();
        j.add("a.csv", 0, b"one\n");
        j.commit().unwrap();
        assert!(j.in_flight.as_ref().is_some_and(|f| f.submitted));
        // The ring takes submissions and reaps completions on its own thread only.
        let j = std::thread::spawn(move || {
            let mut j = j;
            assert!(j.settle(true).unwrap(), "written again at once");
            j.add("a.csv", 4, b"two\n");
            j.commit().unwrap();
            assert!(j.settle(true).unwrap());
            j
        })
        .join()
        .unwrap();
        drop(j);
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 2);
        assert_eq!(std::fs::read(d.join("a.csv")).unwrap(), b"one\ntwo\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn without_direct_io_rounds_are_written_and_synced_at_once() {
        let d = dir("buffered");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        // What a filesystem that refuses O_DIRECT leaves.
        j.direct = None;
        j.ring = Ring::off();
        std::fs::write(d.join("a.csv"), b"").unwrap();
        j.add("a.csv", 0, b"one\n");
        j.commit().unwrap();
        assert!(j.in_flight.is_none() && j.settle(false).unwrap());
        j.add("a.csv", 4, b"two\n");
        j.commit().unwrap();
        drop(j);
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 2);
        assert_eq!(std::fs::read(d.join("a.csv")).unwrap(), b"one\ntwo\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_commit_and_what_came_before_a_checkpoint_are_not_replayed() {
        let d = dir("torn");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        std::fs::write(d.join("a.csv"), b"").unwrap();
        j.add("a.csv", 0, b"old\n");
        j.commit().unwrap();
        // A checkpoint (the caller synced a.csv), then a rotation made a.csv new.
        j.restart().unwrap();
        std::fs::write(d.join("a.csv"), b"").unwrap();
        j.add("a.csv", 0, b"new\n");
        j.commit().unwrap();
        // A commit torn by the crash: its CRC does not hold.
        let cursor = j.cursor;
        j.add("a.csv", 4, b"torn\n");
        let mut torn = j.pending.as_slice().to_vec();
        torn.truncate(torn.len() - 2);
        j.file.write_all_at(&torn, cursor).unwrap();
        drop(j);
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 1);
        assert_eq!(std::fs::read(d.join("a.csv")).unwrap(), b"new\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_journal_asks_for_a_checkpoint_and_then_starts_over() {
        let d = dir("full");
        let (mut j, _) = Journal::open(&d, 256).unwrap();
        let mut f = File::create(d.join("t.jsonl")).unwrap();
        let mut offset = 0;
        let mut checkpoints = 0;
        let mut write = |j: &mut Journal, i: u64| {
            let line = format!("{{\"n\":{i}}}\n");
            f.write_all(line.as_bytes()).unwrap();
            j.add("t.jsonl", offset, line.as_bytes());
            offset += line.len() as u64;
            if j.needs_checkpoint() {
                f.sync_data().unwrap();
                j.restart().unwrap();
                checkpoints += 1;
            } else {
                j.commit().unwrap();
            }
        };
        for i in 0..20 {
            write(&mut j, i);
        }
        // One more line, committed right after a checkpoint; the crash loses it.
        j.restart().unwrap();
        write(&mut j, 20);
        assert!(checkpoints >= 2, "{checkpoints}");
        let whole = std::fs::read(d.join("t.jsonl")).unwrap();
        std::fs::write(d.join("t.jsonl"), &whole[..whole.len() - 5]).unwrap();
        drop(j);
        let (_j, r) = Journal::open(&d, 256).unwrap();
        assert_eq!(r.entries, 1);
        assert_eq!(std::fs::read(d.join("t.jsonl")).unwrap(), whole);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_start_replays_nothing_and_old_entries_never_come_back() {
        let d = dir("damaged");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        std::fs::write(d.join("c.csv"), b"").unwrap();
        j.add("c.csv", 0, b"old\n");
        j.commit().unwrap();
        j.add("c.csv", 4, b"older\n");
        j.commit().unwrap();
        j.file.write_all_at(&[0xff; 8], 0).unwrap();
        drop(j);
        std::fs::write(d.join("c.csv"), b"").unwrap();
        let (mut j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r, Replayed::default());
        j.add("c.csv", 0, b"new\n");
        j.commit().unwrap();
        drop(j);
        std::fs::write(d.join("c.csv"), b"").unwrap();
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 1);
        assert_eq!(std::fs::read(d.join("c.csv")).unwrap(), b"new\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_mark_from_before_a_restart_rolls_back_everything_after_it() {
        let d = dir("mark");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        j.add("a.csv", 0, b"kept until the checkpoint\n");
        let mark = j.mark();
        j.restart().unwrap();
        j.add("a.csv", 26, b"cut off again\n");
        j.rollback(mark);
        assert!(!j.has_pending());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_writer_on_the_same_folder_is_refused() {
        let d = dir("locked");
        let (first, _) = Journal::open(&d, 1 << 16).unwrap();
        let e = Journal::open(&d, 1 << 16).err().expect("refused");
        assert!(e.to_string().contains("locked by another process"), "{e}");
        drop(first);
        assert!(
            Journal::open(&d, 1 << 16).is_ok(),
            "free again once the first is gone"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_naming_a_gone_or_shortened_file_are_skipped() {
        let d = dir("gone");
        let (mut j, _) = Journal::open(&d, 1 << 16).unwrap();
        std::fs::write(d.join("b.csv"), b"0123456789").unwrap();
        j.add("gone.csv", 0, b"x\n");
        j.add("b.csv", 20, b"y\n");
        j.add("../escape", 0, b"z\n");
        j.commit().unwrap();
        drop(j);
        let (_j, r) = Journal::open(&d, 1 << 16).unwrap();
        assert_eq!(r.entries, 0);
        assert_eq!(r.skipped, 3);
        assert!(!d.join("gone.csv").exists());
        assert_eq!(std::fs::read(d.join("b.csv")).unwrap(), b"0123456789");
        let _ = std::fs::remove_dir_all(&d);
    }
}
