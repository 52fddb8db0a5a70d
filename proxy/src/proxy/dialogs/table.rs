//! The dialogs of one shard: a map by [`DialogId`], an index by Call-ID, and the count of
//! dialogs in each of Kamailio's states 1–4. It keeps the counts right through every change of
//! state and ends each dialog exactly once, giving its profile places back; what to send
//! because of it is the shard's business.

use super::{Dialog, DialogState, EndCause, EndTarget};
use crate::dialog::Profiles;
use crate::proxy::DialogTimers;
use crate::proxy::ids::DialogId;
use hashbrown::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct DialogTable {
    /// The shard: `h_entry` of every dialog here.
    shard: u32,
    next_h_id: u64,
    /// Boxed: growing the map moves a pointer per dialog, not the whole record.
    map: HashMap<DialogId, Box<Dialog>>,
    by_call_id: HashMap<Box<[u8]>, DialogId>,
    /// Dialogs in each state 1–4 (index = state − 1).
    by_state: [usize; 4],
    /// With the restart journal: the answered dialogs changed (or ended) since the worker
    /// last took them.
    journal: bool,
    dirty: Vec<DialogId>,
}

/// What the sweep found to do with a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// Answered and past `default_timeout` (or `noack_timeout` without ACK): BYE both sides.
    Expire,
    /// Unanswered past `early_timeout`: cancel its INVITE.
    CancelEarly,
    /// Its record is past its time: remove it (ending it first if nothing did).
    Remove,
}

/// Saved dialog ids are taken back below this (2^40: 35 years of 1,000 calls a second).
const RESTORED_H_ID_MAX: u64 = 1 << 40;

impl DialogTable {
    pub fn new(shard: u32) -> DialogTable {
        DialogTable {
            shard,
            next_h_id: 1,
            map: HashMap::new(),
            by_call_id: HashMap::new(),
            by_state: [0; 4],
            journal: false,
            dirty: Vec::new(),
        }
    }

    /// Keeps the list of changed answered dialogs for the restart journal.
    pub fn enable_journal(&mut self) {
        self.journal = true;
    }

    /// An answered dialog changed (a target refresh, a CSeq): the journal writes it again.
    pub fn touch(&mut self, id: DialogId) {
        if self.journal && self.map.get(&id).is_some_and(|d| d.state.is_confirmed()) {
            self.dirty.push(id);
        }
    }

    /// The dialogs changed or ended since the last call (each once).
    pub fn take_dirty(&mut self, out: &mut Vec<DialogId>) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        out.append(&mut self.dirty);
    }

    /// Puts back an answered dialog restored after a restart, under its old id when that is
    /// this shard's and free (the Record-Route of its peers names it), else a new one.
    /// The dialog back when a dialog of its Call-ID is here already.
    pub fn insert_restored(
        &mut self,
        h_entry: u32,
        h_id: u64,
        d: Dialog,
    ) -> Result<DialogId, Box<Dialog>> {
        if self.by_call_id.contains_key(&d.call_id) {
            return Err(Box::new(d));
        }
        let id = match DialogId::new(h_entry, h_id) {
            // A saved id far beyond any count of calls (a damaged journal) is not taken: the
            // next new dialog's would be past the last one, and none could be made.
            Some(id)
                if h_entry == self.shard
                    && h_id < RESTORED_H_ID_MAX
                    && !self.map.contains_key(&id) =>
            {
                self.next_h_id = self.next_h_id.max(h_id + 1);
                id
            }
            _ => match DialogId::new(self.shard, self.next_h_id) {
                Some(id) => {
                    self.next_h_id += 1;
                    id
                }
                None => return Err(Box::new(d)),
            },
        };
        debug_assert!(d.state.is_confirmed());
        self.by_state[d.state as usize - 1] += 1;
        self.by_call_id.insert(d.call_id.clone(), id);
        self.map.insert(id, Box::new(d));
        Ok(id)
    }

    /// Records held, ended ones still lingering included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Dialogs not ended yet (Kamailio's `active_dialogs`).
    pub fn active(&self) -> usize {
        self.by_state.iter().sum()
    }

    /// Dialogs not answered yet (Kamailio's `early_dialogs`).
    pub fn early(&self) -> usize {
        self.by_state[0] + self.by_state[1]
    }

    /// Dialogs in each of the states 1–4 (Kamailio's starting, connecting, answering, ongoing).
    pub fn by_state(&self) -> [usize; 4] {
        self.by_state
    }

    pub fn get(&self, id: DialogId) -> Option<&Dialog> {
        self.map.get(&id).map(|d| &**d)
    }

    pub fn get_mut(&mut self, id: DialogId) -> Option<&mut Dialog> {
        self.map.get_mut(&id).map(|d| &mut **d)
    }

    pub fn by_call_id(&self, call_id: &[u8]) -> Option<DialogId> {
        self.by_call_id.get(call_id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (DialogId, &Dialog)> {
        self.map.iter().map(|(id, d)| (*id, &**d))
    }

    /// Adds a new dialog (state 1); its id. None when the shard ran out of ids.
    pub fn insert(&mut self, mut d: Dialog) -> Option<DialogId> {
        let Some(id) = DialogId::new(self.shard, self.next_h_id) else {
            // No id left: the record goes, and the places it took with it.
            if let Some(load) = d.load.take() {
                load.give_back();
            }
            return None;
        };
        self.next_h_id += 1;
        debug_assert_eq!(d.state, DialogState::Unconfirmed);
        self.by_state[0] += 1;
        self.by_call_id.insert(d.call_id.clone(), id);
        self.map.insert(id, Box::new(d));
        Some(id)
    }

    /// A failed dialog starts again (a new INVITE after a failure, e.g. answering a challenge):
    /// back to state 1, with the profile places and variables it was admitted with now.
    pub fn restart(&mut self, id: DialogId, d: impl FnOnce(&mut Dialog)) -> bool {
        let Some(dialog) = self.map.get_mut(&id) else {
            return false;
        };
        if dialog.state != DialogState::Ended {
            return false;
        }
        d(dialog);
        dialog.state = DialogState::Unconfirmed;
        dialog.end_cause = None;
        dialog.early_cancelled = false;
        dialog.cancelled_by = None;
        self.by_state[0] += 1;
        true
    }

    /// Removes a record for good.
    pub fn remove(&mut self, id: DialogId) -> Option<Dialog> {
        let d = *self.map.remove(&id)?;
        if self.by_call_id.get(&d.call_id) == Some(&id) {
            self.by_call_id.remove(&d.call_id);
        }
        if d.state != DialogState::Ended {
            self.by_state[d.state as usize - 1] -= 1;
        }
        Some(d)
    }

    /// Moves a dialog from `from` to `to` (nothing if it is elsewhere), keeping the counts.
    pub fn set_state(&mut self, id: DialogId, from: DialogState, to: DialogState) -> bool {
        let Some(d) = self.map.get_mut(&id) else {
            return false;
        };
        if d.state != from {
            return false;
        }
        debug_assert!(from != DialogState::Ended && to != DialogState::Ended);
        d.state = to;
        self.by_state[from as usize - 1] -= 1;
        self.by_state[to as usize - 1] += 1;
        if self.journal && to.is_confirmed() {
            self.dirty.push(id);
        }
        true
    }

    /// Ends a dialog: its places in the profiles are given back (exactly once: only here) and
    /// its record lingers until `linger_until` at most. The dialog, when it ended now.
    pub fn end(
        &mut self,
        id: DialogId,
        cause: EndCause,
        unix_ms: u64,
        linger_until: Instant,
        profiles: &Profiles,
    ) -> Option<&mut Dialog> {
        let d = self.map.get_mut(&id)?;
        if d.state == DialogState::Ended {
            return None;
        }
        self.by_state[d.state as usize - 1] -= 1;
        if self.journal && d.state.is_confirmed() {
            self.dirty.push(id);
        }
        d.state = DialogState::Ended;
        d.times.end = unix_ms;
        d.end_cause = Some(cause);
        profiles.leave(&mut d.profiles);
        if let Some(load) = d.load.take() {
            load.give_back();
        }
        d.expires = d.expires.min(linger_until);
        // Billed seconds: the answered time rounded to the nearest second (not the difference
        // of the two times in whole seconds, which can be a second off).
        let bill = match d.answered {
            Some(_) => (unix_ms.saturating_sub(d.times.answer) + 500) / 1000,
            None => 0,
        };
        d.set_var("EndTime", (unix_ms / 1000).to_string());
        d.set_var("BillSec", bill.to_string());
        Some(d)
    }

    /// The dialog an operator's `dlg.end_dlg` / `dlg.terminate_dlg` names, if here.
    pub fn find(&self, target: &EndTarget) -> Option<DialogId> {
        match target {
            EndTarget::Id { h_entry, h_id } => {
                DialogId::new(*h_entry, *h_id).filter(|id| self.map.contains_key(id))
            }
            EndTarget::Tags {
                call_id,
                from_tag,
                to_tag,
            } => self.by_call_id(call_id).filter(|id| {
                let d = &self.map[id];
                let (a, b) = (d.caller_tag(), d.shown_callee_tag());
                (**from_tag == *a && **to_tag == *b) || (**from_tag == *b && **to_tag == *a)
            }),
        }
    }

    /// The dialogs the timeouts have something to do with at `now`, into `out`.
    pub fn due(&self, now: Instant, t: &DialogTimers, out: &mut Vec<(DialogId, Due)>) {
        let late = |from: Option<Instant>, after: Duration| from.is_some_and(|f| f + after <= now);
        for (id, d) in &self.map {
            let due = match d.state {
                _ if d.expires <= now && d.state.is_confirmed() => Some(Due::Expire),
                _ if d.expires <= now => Some(Due::Remove),
                DialogState::Ended => None,
                s if s.is_early() => (!d.early_cancelled && late(Some(d.created), t.early_timeout))
                    .then_some(Due::CancelEarly),
                DialogState::ConfirmedNoAck => (late(d.answered, t.noack_timeout)
                    || late(d.answered, t.default_timeout))
                .then_some(Due::Expire),
                _ => late(d.answered, t.default_timeout).then_some(Due::Expire),
            };
            if let Some(due) = due {
                out.push((*id, due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::dialog;
    use super::*;
    use crate::proxy::dialogs::Side;

    fn profiles() -> Profiles {
        Profiles::new(&[], &[], 16)
    }

    #[test]
    fn states_are_counted_through_every_change() {
        let mut t = DialogTable::new(2);
        let id = t.insert(dialog()).unwrap();
        assert_eq!(id.h_entry(), 2);
        assert_eq!((t.active(), t.early()), (1, 1));
        assert!(t.set_state(id, DialogState::Unconfirmed, DialogState::Early));
        assert!(!t.set_state(id, DialogState::Unconfirmed, DialogState::Early));
        assert!(t.set_state(id, DialogState::Early, DialogState::ConfirmedNoAck));
        assert_eq!(t.by_state(), [0, 0, 1, 0]);
        assert_eq!(t.early(), 0);
    }

    /// A damaged restart journal's id at the top of the range is not taken back: new
    /// dialogs could not be made after it.
    #[test]
    fn a_restored_id_far_past_any_count_gets_a_new_one() {
        let mut t = DialogTable::new(1);
        let mut d = dialog();
        d.state = DialogState::Confirmed;
        let id = t.insert_restored(1, (1 << 48) - 1, d).unwrap();
        assert!(id.h_id() < RESTORED_H_ID_MAX);
        let mut d = dialog();
        d.call_id = (*b"another").into();
        assert!(t.insert(d).is_some(), "new dialogs are still made");
        // One saved with a plausible id keeps it.
        let mut d = dialog();
        d.call_id = (*b"kept").into();
        d.state = DialogState::Confirmed;
        assert_eq!(t.insert_restored(1, 5_000, d).unwrap().h_id(), 5_000);
    }

    #[test]
    fn a_dialog_ends_exactly_once() {
        let mut t = DialogTable::new(0);
        let id = t.insert(dialog()).unwrap();
        let now = Instant::now();
        let p = profiles();
        assert!(
            t.end(id, EndCause::Bye(Side::Caller), 1000, now, &p)
                .is_some()
        );
        assert!(t.end(id, EndCause::Expired, 2000, now, &p).is_none());
        assert_eq!(
            t.get(id).unwrap().end_cause,
            Some(EndCause::Bye(Side::Caller))
        );
        assert_eq!(t.active(), 0);
        assert_eq!(t.len(), 1, "the record lingers");
    }

    #[test]
    fn a_failed_dialog_can_restart() {
        let mut t = DialogTable::new(0);
        let id = t.insert(dialog()).unwrap();
        assert!(!t.restart(id, |_| {}), "not ended");
        t.end(id, EndCause::Failed, 0, Instant::now(), &profiles());
        assert!(t.restart(id, |d| d.times.invite_received = 5));
        assert_eq!(t.get(id).unwrap().state, DialogState::Unconfirmed);
        assert_eq!(t.active(), 1);
    }

    #[test]
    fn found_by_id_and_by_tags_in_either_order() {
        let mut t = DialogTable::new(1);
        let mut d = dialog();
        d.callee_leg.tag = (*b"b").into();
        let id = t.insert(d).unwrap();
        let by_id = EndTarget::Id {
            h_entry: 1,
            h_id: id.h_id(),
        };
        assert_eq!(t.find(&by_id), Some(id));
        let tags = |f: &[u8], to: &[u8]| EndTarget::Tags {
            call_id: (*b"c1").into(),
            from_tag: f.into(),
            to_tag: to.into(),
        };
        assert_eq!(t.find(&tags(b"a", b"b")), Some(id));
        assert_eq!(t.find(&tags(b"b", b"a")), Some(id));
        assert_eq!(t.find(&tags(b"a", b"x")), None);
        assert_eq!(
            t.find(&EndTarget::Id {
                h_entry: 1 << 20,
                h_id: 1
            }),
            None
        );
    }

    #[test]
    fn the_sweep_finds_early_and_answered_dialogs_past_their_time() {
        let mut t = DialogTable::new(0);
        let timers = DialogTimers {
            default_timeout: Duration::from_secs(10),
            early_timeout: Duration::from_secs(5),
            noack_timeout: Duration::from_secs(3),
        };
        let t0 = Instant::now();
        let mut early = dialog();
        early.created = t0;
        early.expires = t0 + Duration::from_secs(100);
        let early = t.insert(early).unwrap();
        let mut answered = dialog();
        answered.call_id = (*b"c2").into();
        answered.created = t0;
        answered.answered = Some(t0);
        answered.expires = t0 + Duration::from_secs(100);
        let answered = t.insert(answered).unwrap();
        t.set_state(
            answered,
            DialogState::Unconfirmed,
            DialogState::ConfirmedNoAck,
        );
        let mut out = Vec::new();
        t.due(t0 + Duration::from_secs(2), &timers, &mut out);
        assert!(out.is_empty());
        t.due(t0 + Duration::from_secs(5), &timers, &mut out);
        out.sort();
        assert_eq!(out, [(early, Due::CancelEarly), (answered, Due::Expire)]);
    }
}
