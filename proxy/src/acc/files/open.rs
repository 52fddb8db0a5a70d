//! One open record file and how its waiting bytes reach it: appended through the page cache,
//! or, with the journal's deferred writes, in whole blocks straight to the device.
//!
//! The deferred writes are large (up to `acc.write_interval_ms` of a table's records) and
//! nobody reads them soon, so with `O_DIRECT` they cost one device request each instead of a
//! page-cache page per 4 KiB written (on a virtual machine whose freed memory is handed back
//! to the host, each new page is a fault in the host: 3–25 µs a page measured, against about
//! 35 µs for a 256 KiB direct write). A file's last partial block waits in memory for more
//! bytes (it is committed in the journal) unless everything is to be written now: a
//! checkpoint, a rotation, a round with nothing new, the stop. A block boundary is seldom a
//! line's end: the start of a line written in part stays in memory too, so that a file
//! moved or cut short meanwhile gets the whole line, and the moved one none of it.

use crate::acc::direct::{Aligned, BLOCK};
use crate::acc::journal::FileId;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Waiting bytes from which a file's whole blocks are written directly.
const DIRECT_BYTES: usize = 32 << 10;

pub(super) struct Open {
    /// Opened to append (and read, for the part of a block written before).
    pub(super) file: File,
    /// The same file, `O_DIRECT` (with the journal's deferred writes, where the filesystem
    /// takes such writes), and the buffer its blocks are written from.
    direct: Option<File>,
    aligned: Aligned,
    pub(super) path: PathBuf,
    /// Its table's columns (a CSV file made again gets the header).
    pub(super) columns: &'static [&'static str],
    /// Which file it is: whether its path still leads to it.
    pub(super) id: Option<FileId>,
    pub(super) bytes: u64,
    pub(super) opened_ms: u64,
    /// Written since its last `fdatasync` (with the journal: since the last checkpoint).
    pub(super) dirty: bool,
    /// With the journal: bytes committed there and not yet written to the file (they go
    /// after `bytes`), after the `skip` bytes of a line the file has in part; and since
    /// when the oldest waits.
    pub(super) unwritten: String,
    pub(super) skip: usize,
    pub(super) since: Option<Instant>,
    /// Bytes of `unwritten` written in this round of `FileSink::write_waiting`, not yet
    /// counted in `bytes`.
    pub(super) appended: usize,
}

impl Open {
    /// `file` at `path`, `bytes` long; with `direct`, a second descriptor for whole blocks.
    pub(super) fn new(
        file: File,
        path: PathBuf,
        columns: &'static [&'static str],
        bytes: u64,
        opened_ms: u64,
        direct: bool,
    ) -> Open {
        Open {
            id: FileId::of(&file),
            direct: if direct {
                open_direct(&path, &file)
            } else {
                None
            },
            aligned: Aligned::default(),
            file,
            path,
            columns,
            bytes,
            opened_ms,
            dirty: true,
            unwritten: String::new(),
            skip: 0,
            since: None,
            appended: 0,
        }
    }

    /// How many bytes wait to be written.
    pub(super) fn waiting(&self) -> usize {
        self.unwritten.len() - self.skip
    }

    /// Whether bytes wait and are to be written now: `all` of them, or once there are
    /// [`super::WRITE_BYTES`] or the oldest has waited `after`.
    pub(super) fn due(&self, all: bool, after: std::time::Duration) -> bool {
        self.waiting() > 0
            && (all
                || self.waiting() >= super::WRITE_BYTES
                || self.since.is_some_and(|t| t.elapsed() >= after))
    }

    /// Where the file ends once the waiting bytes are written.
    pub(super) fn end(&self) -> u64 {
        self.bytes + self.waiting() as u64
    }

    /// Where in `unwritten` the byte that goes at `offset` of the file is.
    pub(super) fn index_of(&self, offset: u64) -> usize {
        (offset + self.skip as u64 - self.bytes) as usize
    }

    /// Appends the bytes waiting for the file in one write. A write cut short is cut off
    /// again (they all stay waiting), so that its retry writes nothing twice.
    pub(super) fn write_waiting(&mut self) -> io::Result<()> {
        self.append_buffered(0)?;
        self.wrote(self.waiting());
        Ok(())
    }

    /// Writes the waiting bytes without counting them (`bytes` and `unwritten` stay as they
    /// were, to be cut back when a write to another file fails): all of them when `all`,
    /// else, through the `O_DIRECT` descriptor, only whole blocks (from [`DIRECT_BYTES`]
    /// waiting: fewer go through the page cache, as a direct write costs more than a few
    /// pages). How many were written.
    pub(super) fn append_waiting(&mut self, all: bool) -> io::Result<usize> {
        if self.direct.is_none() || self.waiting() < DIRECT_BYTES {
            self.append_buffered(0)?;
            return Ok(self.waiting());
        }
        let done = self.append_direct()?;
        if all && done < self.waiting() {
            self.append_buffered(done)?;
            return Ok(self.waiting());
        }
        Ok(done)
    }

    /// Counts `n` waiting bytes as written: the lines now whole in the file leave memory.
    pub(super) fn wrote(&mut self, n: usize) {
        self.bytes += n as u64;
        let written = self.skip + n;
        let whole =
            memchr::memrchr(b'\n', &self.unwritten.as_bytes()[..written]).map_or(0, |i| i + 1);
        self.unwritten.drain(..whole);
        self.skip = written - whole;
        if self.unwritten.capacity() > 2 * super::WRITE_BYTES {
            self.unwritten.shrink_to(super::WRITE_BYTES);
        }
        // What is left (less than a block) waits for more, or for a round with nothing new.
        self.since = (self.waiting() > 0).then(Instant::now);
    }

    /// The file's line written in part is no longer in it (cut short in place, or made
    /// again): it is written whole with the waiting bytes.
    pub(super) fn rewrite_partial_line(&mut self) {
        self.skip = 0;
    }

    /// `waiting[from..]` appended through the page cache, after the `from` bytes written
    /// before it.
    fn append_buffered(&mut self, from: usize) -> io::Result<()> {
        let bytes = &self.unwritten.as_bytes()[self.skip + from..];
        if let Err(e) = self.file.write_all(bytes) {
            let _ = self.file.set_len(self.bytes);
            return Err(self.named(e));
        }
        Ok(())
    }

    /// Writes whole blocks, from the start of the file's last partial block, through the
    /// `O_DIRECT` descriptor (given up for good, and the bytes appended through the page
    /// cache, if the filesystem refuses such a write). How many waiting bytes were written.
    fn append_direct(&mut self) -> io::Result<usize> {
        let head = (self.bytes % BLOCK as u64) as usize;
        let end = (head + self.waiting()) / BLOCK * BLOCK;
        if end <= head {
            return Ok(0);
        }
        let take = end - head;
        let at = self.bytes - head as u64;
        self.aligned.clear();
        if head <= self.skip {
            // The block's start is the line written in part, still in memory.
            let from = self.skip - head;
            self.aligned
                .extend_from_slice(&self.unwritten.as_bytes()[from..self.skip + take]);
        } else {
            self.aligned.extend_from_slice(&[0; BLOCK][..head]);
            let read = self
                .file
                .read_exact_at(&mut self.aligned.as_mut_slice()[..head], at);
            read.map_err(|e| self.named(e))?;
            self.aligned
                .extend_from_slice(&self.unwritten.as_bytes()[self.skip..self.skip + take]);
        }
        let direct = self.direct.as_ref().expect("checked by the caller");
        match direct.write_all_at(self.aligned.as_slice(), at) {
            Ok(()) => Ok(take),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(
                    "{}: no O_DIRECT writes ({e}): buffered",
                    self.path.display()
                );
                self.direct = None;
                let _ = self.file.set_len(self.bytes);
                self.append_buffered(0)?;
                Ok(self.waiting())
            }
            Err(e) => {
                let _ = self.file.set_len(self.bytes);
                Err(self.named(e))
            }
        }
    }

    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }

    /// Whether enough waits for a direct write.
    #[cfg(test)]
    pub(super) fn direct_ready(&self) -> bool {
        self.direct.is_some() && self.waiting() >= DIRECT_BYTES
    }

    /// Puts `direct` in place of its `O_DIRECT` descriptor; the one it had.
    #[cfg(test)]
    pub(super) fn swap_direct(&mut self, direct: File) -> File {
        self.direct.replace(direct).expect("a direct descriptor")
    }

    /// Whether its blocks go to the device directly.
    #[cfg(test)]
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
}

/// The file at `path` opened `O_DIRECT` for writing, if the filesystem allows it and it is
/// still `file`.
fn open_direct(path: &Path, file: &File) -> Option<File> {
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match direct {
        Ok(d) if FileId::of(&d) == FileId::of(file) => Some(d),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("{}: no O_DIRECT ({e}): buffered writes", path.display());
            None
        }
    }
}

/// Opens `path` to append (and read back its last partial block), made if missing.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
