//! A file sink's files and folder found moved, removed or cut short while siplb writes to
//! them (logrotate, an operator's `rm`): made again at their paths, their waiting bytes kept;
//! and the folder's lock.

use super::{CSV, FileSink};
use crate::acc::encode::csv_header;
use crate::acc::journal::{self, FileId, Journal};
use std::fs::File;
use std::io;
use std::path::Path;

impl FileSink {
    /// Before the files are written to: each whose path no longer leads to it (removed with
    /// its folder, moved away as logrotate does without `copytruncate`, replaced) is made
    /// again at its path, and the bytes waiting for it go there; likewise the journal. The
    /// records written before are wherever the old file went. With the journal, everything
    /// is then written and synced and the journal started over, so that no entry names a
    /// file at an offset of the one it replaced. A file that cannot be made again (a folder
    /// in its place) is an error naming it: its bytes keep waiting, and new calls are
    /// refused until it can be.
    pub(super) fn follow_moved(&mut self, now_ms: u64) -> io::Result<()> {
        let mut moved: Vec<(String, &'static str)> = Vec::new();
        let mut truncated = false;
        for (k, f) in self.open.iter_mut() {
            match std::fs::metadata(&f.path) {
                Ok(m) if FileId::of_metadata(&m) == f.id => {
                    if m.len() < f.bytes {
                        // Cut short in place (logrotate's `copytruncate`): its size is what it
                        // has now, and an emptied CSV file gets its header back.
                        tracing::warn!(
                            "{}: cut to {} bytes while siplb wrote to it",
                            f.path.display(),
                            m.len()
                        );
                        f.bytes = m.len();
                        f.rewrite_partial_line();
                        if m.len() == 0 && k.1 == CSV {
                            let mut header = String::new();
                            csv_header(f.columns, &mut header);
                            f.unwritten.insert_str(0, &header);
                        }
                        truncated = true;
                    }
                }
                _ => moved.push(k.clone()),
            }
        }
        let journal_moved = self.journal.as_ref().is_some_and(Journal::moved);
        if moved.is_empty() && !journal_moved && !truncated {
            return Ok(());
        }
        if !moved.is_empty() || journal_moved {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
            if FileId::moved_from(self.dir_id, &self.dir) {
                // The folder made again: locked again, as at start.
                let f = lock_dir(&self.dir)?;
                self.dir_id = FileId::of(&f);
                self.dir_file = Some(f);
            }
        }
        if journal_moved {
            let (journal, _) = Journal::open(&self.dir, self.journal_bytes)?;
            tracing::warn!(
                "{}: removed or replaced while siplb ran; made again",
                self.dir.join(journal::NAME).display()
            );
            // The old one's last commit settles as it is dropped.
            self.journal = Some(journal);
        }
        for key in moved {
            let columns = self.open[&key].columns;
            let mut new = self.open_file(&key.0, key.1, columns, now_ms)?;
            let old = self.open.remove(&key).expect("listed above");
            tracing::warn!(
                "{}: removed, moved away or replaced while siplb wrote to it; made again (the \
                 records before it are where the old file went)",
                old.path.display()
            );
            // The line the old file has in part is cut off there and written whole here.
            let _ = old.file.set_len(old.bytes - old.skip as u64);
            new.unwritten = old.unwritten;
            new.since = old.since;
            self.open.insert(key, new);
        }
        if self.journal.is_some() {
            self.write_waiting_here(true)?;
            self.sync_files()?;
            if let Some(j) = &mut self.journal {
                j.restart()?;
            }
        }
        Ok(())
    }
}

/// The folder, open and locked for this process: one writer per folder, as the journal's
/// lock makes it with `sync = "journal"` (a second siplb would interleave its lines and
/// rotations with this one's).
pub(super) fn lock_dir(dir: &Path) -> io::Result<File> {
    let f =
        File::open(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    journal::lock(&f, dir)?;
    Ok(f)
}

/// `fsync` of a folder: the names created and renamed in it are durable.
pub(in crate::acc) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
