//! Rotation of a file sink's files by size and by age, a table's formats together.

use super::{CSV, FileSink, JSONL, moved::sync_dir};
use std::io;

impl FileSink {
    /// Rotates the tables with a file past its age although no record came to write (the
    /// writer's group commit with nothing new), so that a quiet period does not keep the
    /// last records from a collector of rotated files.
    pub fn rotate_aged(&mut self, now_ms: u64) -> io::Result<()> {
        let max_age_s = self.rotation.max_age_s;
        if max_age_s == 0 {
            return Ok(());
        }
        let mut tables: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| now_ms.saturating_sub(f.opened_ms) >= max_age_s * 1000)
            .map(|((t, _), _)| t.clone())
            .collect();
        tables.sort();
        tables.dedup();
        for table in tables {
            let exts: Vec<&'static str> = [CSV, JSONL]
                .into_iter()
                .filter(|ext| self.open.contains_key(&(table.clone(), *ext)))
                .collect();
            self.rotate_if_due(&table, &exts, now_ms)?;
        }
        Ok(())
    }

    /// Moves the files of `table` (one per format in `exts`) aside together when one of them
    /// is past its size or age, so that the rotated CSV and JSON lines files hold the same
    /// records: `<table>-<stamp>.<ext>`, or `<table>-<stamp>-<n>.<ext>` when a rotation in
    /// the same second took that name.
    pub(super) fn rotate_if_due(
        &mut self,
        table: &str,
        exts: &[&'static str],
        now_ms: u64,
    ) -> io::Result<()> {
        let r = self.rotation;
        let due = exts.iter().any(|&ext| {
            self.open.get(&(table.to_string(), ext)).is_some_and(|f| {
                let big = r.max_bytes > 0 && f.end() >= r.max_bytes;
                let old =
                    r.max_age_s > 0 && now_ms.saturating_sub(f.opened_ms) >= r.max_age_s * 1000;
                big || old
            })
        });
        if !due {
            return Ok(());
        }
        // Only siplb's own files are moved aside (never a folder put in a file's place).
        self.follow_moved(now_ms)?;
        if self.journal.is_some() {
            // The journal's entries name the file, not its inode: none may outlive it.
            self.checkpoint()?;
        }
        let stamp = rotation_stamp(now_ms);
        let name = |n: u32, ext: &str| match n {
            0 => format!("{table}-{stamp}.{ext}"),
            n => format!("{table}-{stamp}-{n}.{ext}"),
        };
        let mut n = 0;
        while exts.iter().any(|ext| self.dir.join(name(n, ext)).exists()) {
            n += 1;
        }
        for &ext in exts {
            let Some(f) = self.open.remove(&(table.to_string(), ext)) else {
                continue;
            };
            f.file.sync_data()?;
            std::fs::rename(&f.path, self.dir.join(name(n, ext)))?;
        }
        if self.journal.is_some() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSSZ` of Unix ms.
fn rotation_stamp(ms: u64) -> String {
    let t = crate::acc::time::rfc3339_ms(ms);
    // 2026-12-01T11:49:44.123Z → 20261201T114944Z
    let digits: String = t[..19]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{digits}Z")
}
