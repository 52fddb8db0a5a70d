//! A shard's side of the restart journal (`dialog.journal_dir`): the answered dialogs that
//! changed or ended, as the journal records them, and the dialogs a restart brings back.
//! Writing and reading the journal is `crate::restart`'s.

use super::Shard;
use crate::proxy::dialogs::saved::SavedDialog;
use std::time::Instant;

/// What the journal records of an answered dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEntry {
    /// Up (answered, or changed since): the whole dialog.
    Up(Box<SavedDialog>),
    /// Ended: its Call-ID.
    Down(Box<str>),
}

impl Shard {
    /// Keeps track of the answered dialogs for the restart journal.
    pub fn enable_journal(&mut self) {
        self.dialogs.enable_journal();
    }

    /// The journal entries of the dialogs answered, changed or ended since the last call.
    pub fn journal_entries(&mut self, out: &mut Vec<JournalEntry>) {
        let mut ids = Vec::new();
        self.dialogs.take_dirty(&mut ids);
        for id in ids {
            match self.dialogs.get(id) {
                Some(d) if d.state.is_confirmed() => {
                    out.push(JournalEntry::Up(Box::new(SavedDialog::of(
                        id.h_entry(),
                        id.h_id(),
                        d,
                        &self.cfg.profiles,
                        &self.cfg.routing.customers,
                    ))))
                }
                Some(d) => out.push(JournalEntry::Down(
                    String::from_utf8_lossy(&d.call_id).into(),
                )),
                None => {}
            }
        }
    }

    /// Brings back an answered dialog saved before a restart: in the table (under its old
    /// id when it was this shard's), in its profiles, with its timers. False when a dialog of
    /// that Call-ID is here already.
    pub fn restore(&mut self, now: Instant, saved: &SavedDialog) -> bool {
        self.start_clock(now);
        let unix = self.clock.unix_ms(now);
        let keep = self.cfg.dialog.default_timeout + self.cfg.dialog_linger;
        let d = saved.dialog(
            now,
            unix,
            keep,
            &self.cfg.profiles,
            &self.cfg.routing.customers,
        );
        match self.dialogs.insert_restored(saved.h_entry, saved.h_id, d) {
            Ok(_) => {
                self.ensure_sweep(now);
                true
            }
            Err(mut d) => {
                self.cfg.profiles.leave(&mut d.profiles);
                false
            }
        }
    }
}
