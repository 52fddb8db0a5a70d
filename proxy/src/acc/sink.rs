//! Where the writer puts records: the sinks. A record goes to every sink on, as Kamailio
//! writes to every back end whose flag is set. A sink takes a batch whole or not at all, so
//! that the writer can retry a failed batch without writing a record twice.

use super::files::FileSink;
use super::record::Record;
use std::io;

pub trait Sink: Send {
    /// For logs and statistics.
    fn name(&self) -> &'static str;
    /// Writes `batch` (at `now_ms`, Unix ms), all of it or, on error, none of it.
    fn write(&mut self, batch: &[Record], now_ms: u64) -> io::Result<()>;
    /// Makes what was written durable (the group commit), or starts to: see `settled`.
    fn sync(&mut self) -> io::Result<()>;
    /// Whether what the last `sync` started is durable (waiting for it when `wait`). A sink
    /// whose sync is done when it returns: always.
    fn settled(&mut self, _wait: bool) -> io::Result<bool> {
        Ok(true)
    }
    /// Whether the sink cannot take more for now (a full spool): new calls are refused.
    fn full(&self) -> bool {
        false
    }
    /// At a group commit with nothing new to sync: work the sink put off (files lagging
    /// behind the commit journal).
    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The last chance to deliver before exit, within `deadline`.
    fn finish(&mut self, _deadline: std::time::Instant) {}
    /// Whether records written to the sink and not yet synced survive the process's exit
    /// (written into the page cache), rather than being lost with it (still in memory).
    fn unsynced_survive_exit(&self) -> bool {
        true
    }
    /// What becomes of the records the sink has taken but could not deliver, when siplb
    /// stops while it fails.
    fn at_exit(&self) -> Option<String> {
        None
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "files"
    }

    fn write(&mut self, batch: &[Record], now_ms: u64) -> io::Result<()> {
        self.write_batch(batch, now_ms)
    }

    fn sync(&mut self) -> io::Result<()> {
        FileSink::sync(self)
    }

    fn full(&self) -> bool {
        FileSink::full(self)
    }

    fn settled(&mut self, wait: bool) -> io::Result<bool> {
        FileSink::settled(self, wait)
    }

    /// Nothing came in since the last commit: every committed byte goes to its file now,
    /// as there is no batch left to write it with, and files past their age are rotated.
    fn idle(&mut self) -> io::Result<()> {
        self.write_waiting(true)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.rotate_aged(now_ms)
    }

    fn unsynced_survive_exit(&self) -> bool {
        !self.journal_mode()
    }

    fn at_exit(&self) -> Option<String> {
        self.journal_mode().then(|| {
            format!(
                "the records committed to {} and not yet in their files are written there \
                 at the next start",
                super::journal::NAME
            )
        })
    }

    /// A clean stop leaves the journal with nothing to replay.
    fn finish(&mut self, _deadline: std::time::Instant) {
        if let Err(e) = self.checkpoint() {
            tracing::error!("acc: the last checkpoint of the files failed: {e}");
            if let Some(then) = self.at_exit() {
                tracing::warn!("acc: sink files: {then}");
            }
        }
    }
}

/// A log line per record through `tracing` (target `siplb::acc`), Kamailio's `acc` to
/// syslog: `ACC: <table>: column=value;column=value…` with the fixed columns, empty ones left
/// out.
pub struct LogSink;

impl Sink for LogSink {
    fn name(&self) -> &'static str {
        "log"
    }

    fn write(&mut self, batch: &[Record], _now_ms: u64) -> io::Result<()> {
        for r in batch {
            tracing::info!(target: "siplb::acc", "ACC: {}: {}", r.table(), log_line(r));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `column=value;…` of the fields that have a value: control characters escaped (`\n`,
/// `\u{1b}`), and a `;` or `\` in a value written `\;` or `\\`, so that a Call-ID cannot
/// pass for more columns.
pub fn log_line(r: &Record) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(256);
    for (name, f) in r.columns().iter().zip(r.fields()) {
        let v = f.as_text();
        if v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(name);
        out.push('=');
        let escaped;
        let v = if v.contains([';', '\\']) {
            escaped = v.replace('\\', "\\\\").replace(';', "\\;");
            &escaped
        } else {
            &*v
        };
        let _ = write!(out, "{}", crate::logging::Clean::whole(v));
    }
    out
}
