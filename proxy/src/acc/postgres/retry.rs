//! Shipping set-aside records again: the operator renames `rejected.jsonl` to
//! [`RETRY`]; once the spool is caught up the shipper takes the file for itself (renames it
//! [`SHIPPING`], which a restart finishes), ships it a batch per turn (the spool's own
//! batches go first), sets aside again what is still refused, and deletes it. A file whose
//! batches keep failing is added to [`RETRY_FAILED`] for the operator after
//! [`MAX_FAILURES`] tries.

use super::rejected::{self, RETRY, RETRY_FAILED, RetryLine, SHIPPING, lines};
use super::{BATCH, Failed, REMIND, Run};
use crate::acc::spool::Spooled;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How often the shipper looks for a [`RETRY`] file, and waits after a failed batch of one.
const LOOK: Duration = Duration::from_secs(1);
/// Failed batches in a row after which a retry is given up to [`RETRY_FAILED`].
const MAX_FAILURES: u32 = 5;

/// A retry under way.
#[derive(Debug)]
pub struct Retrying {
    records: Vec<RetryLine>,
    /// Records shipped (or set aside again).
    done: usize,
    refused: usize,
    /// Failed batches in a row.
    failures: u32,
    /// Not before then (after a failure).
    not_before: Option<Instant>,
}

impl Run {
    /// Whether a retry has something to do now: one under way, or a file to take.
    pub(super) fn retry_due(&mut self) -> bool {
        let now = Instant::now();
        if let Some(r) = &self.retrying {
            return r.not_before.is_none_or(|t| now >= t);
        }
        if self.retry_looked.is_some_and(|t| now < t) {
            return false;
        }
        self.retry_looked = Some(now + LOOK);
        let dir = self.spool.dir();
        // A file (a folder or a dangling link of that name is not one).
        dir.join(SHIPPING).is_file() || dir.join(RETRY).is_file()
    }

    /// One turn of the retry: the file taken, or a batch of it shipped, or it finished.
    pub(super) async fn retry_step(&mut self, c: &mut Client) -> Result<(), Failed> {
        let dir = self.spool.dir().to_path_buf();
        let shipping = dir.join(SHIPPING);
        let Some(mut r) = self.retrying.take() else {
            // An unfinished one first (siplb stopped in the middle); only then the
            // operator's file, which is never written over.
            if !shipping.is_file()
                && let Err(e) = std::fs::rename(dir.join(RETRY), &shipping)
            {
                tracing::error!("acc: taking {}: {e}", dir.join(RETRY).display());
                self.retry_looked = Some(Instant::now() + REMIND);
                return Ok(());
            }
            match rejected::read_retry(&shipping, &self.tables) {
                Ok(records) => {
                    self.retrying = Some(Retrying {
                        records,
                        done: 0,
                        refused: 0,
                        failures: 0,
                        not_before: None,
                    });
                }
                Err(e) => {
                    tracing::error!("acc: {e}");
                    self.retry_looked = Some(Instant::now() + REMIND);
                }
            }
            return Ok(());
        };
        let end = (r.done + BATCH).min(r.records.len());
        let chunk: Vec<Spooled> = r.records[r.done..end]
            .iter()
            .map(|(s, _)| s.clone())
            .collect();
        let outcome = if chunk.is_empty() {
            Ok(Vec::new())
        } else {
            self.ship_batch(c, &chunk).await
        };
        match outcome {
            Ok(refused) => {
                if !refused.is_empty()
                    && let Err(e) = self.set_aside(&chunk, &refused)
                {
                    tracing::error!(
                        "acc: setting refused records aside failed: {e}; {} is tried again",
                        shipping.display()
                    );
                    r.not_before = Some(Instant::now() + LOOK);
                    self.retrying = Some(r);
                    return Ok(());
                }
                r.refused += refused.len();
                r.done = end;
                r.failures = 0;
                if r.done < r.records.len() {
                    self.retrying = Some(r);
                    return Ok(());
                }
                if let Err(e) = std::fs::remove_file(&shipping) {
                    tracing::error!("acc: {}: {e}", shipping.display());
                    self.retry_looked = Some(Instant::now() + REMIND);
                }
                tracing::info!(
                    "acc: {} records of {RETRY} shipped again: {} landed (or had landed), {} \
                     refused again",
                    r.records.len(),
                    r.records.len() - r.refused,
                    r.refused
                );
                Ok(())
            }
            Err(f) => {
                r.failures += 1;
                if r.failures < MAX_FAILURES {
                    // What is left, should siplb stop before it is shipped.
                    if let Err(e) = rejected::replace(&shipping, &lines(&r.records[r.done..])) {
                        tracing::error!("acc: {}: {e}", shipping.display());
                    }
                    r.not_before = Some(Instant::now() + LOOK);
                    self.retrying = Some(r);
                } else {
                    self.give_up(&r, f.message());
                }
                match f {
                    // The connection stands (the batch's transaction was rolled back).
                    Failed::Refused(_) => Ok(()),
                    f => Err(f),
                }
            }
        }
    }

    /// A retry whose batches keep failing: what is left added to [`RETRY_FAILED`].
    fn give_up(&mut self, r: &Retrying, why: &str) {
        let dir = self.spool.dir();
        let (shipping, failed) = (dir.join(SHIPPING), dir.join(RETRY_FAILED));
        let left = r.records.len() - r.done;
        let kept = rejected::append_to(&failed, &lines(&r.records[r.done..]))
            .and_then(|()| std::fs::remove_file(&shipping));
        match kept {
            Ok(()) => tracing::error!(
                "acc: shipping {RETRY} again failed {MAX_FAILURES} times ({why}); its {left} \
                 records not shipped are added to {}: rename it {RETRY} to try again",
                failed.display()
            ),
            Err(e) => {
                tracing::error!(
                    "acc: shipping {RETRY} again failed {MAX_FAILURES} times ({why}), and \
                     keeping its {left} records in {} failed: {e}; they stay in {}",
                    failed.display(),
                    shipping.display()
                );
                self.retry_looked = Some(Instant::now() + REMIND);
            }
        }
    }

    /// At the stop: a retry under way keeps only what is left (the batch in flight, if
    /// any, among it), for the next start.
    pub(super) fn save_retry(&mut self) {
        if let Some(r) = self.retrying.take() {
            let shipping = self.spool.dir().join(SHIPPING);
            match rejected::replace(&shipping, &lines(&r.records[r.done..])) {
                Ok(()) => tracing::info!(
                    "acc: {} records of {RETRY} not shipped yet are left in {}, shipped at the \
                     next start",
                    r.records.len() - r.done,
                    shipping.display()
                ),
                Err(e) => tracing::error!("acc: {}: {e}", shipping.display()),
            }
        }
    }
}
