//! How dialogs end: by BYE (on the request path), by failure of their INVITE, by the
//! timeouts the sweep finds (BYE to both sides, or CANCEL of an INVITE unanswered too long),
//! and by an operator. Every end goes through [`Shard::end_dialog_now`], which gives the
//! profile places back once and reports the dialog.

use super::Shard;
use crate::dialog::VarAt;
use crate::proxy::admission;
use crate::proxy::clock::Wake;
use crate::proxy::dialogs::table::Due;
use crate::proxy::dialogs::{DialogState, EndCause, EndTarget, Side};
use crate::proxy::event::{DialogRecord, EndedBy, Event};
use crate::proxy::ids::{DialogId, TxnId};
use crate::proxy::originate;
use crate::proxy::txn::{Cancel, ClientState};
use crate::sip::Method;
use std::time::Instant;

/// The Reason of the BYEs of a dialog that timed out, and of one siplb ends as it stops.
const TIMEOUT_REASON: &str = "Reason: SIP;cause=408;text=\"dialog timeout\"\r\n";
const SHUTDOWN_REASON: &str = "Reason: SIP;cause=503;text=\"proxy shutting down\"\r\n";

impl Shard {
    /// Ends the dialog `target` names, if this shard has it: BYE to both sides when answered,
    /// CANCEL when not yet. Whether it was found.
    pub fn end_dialog(&mut self, now: Instant, target: &EndTarget) -> bool {
        self.end_dialog_with(now, target, b"")
    }

    /// [`end_dialog`](Self::end_dialog), the BYEs carrying the header lines `extra` (each
    /// with its CRLF; Kamailio's `extra_hdrs`).
    pub fn end_dialog_with(&mut self, now: Instant, target: &EndTarget, extra: &[u8]) -> bool {
        let Some(id) = self.dialogs.find(target) else {
            return false;
        };
        let d = self.dialogs.get(id).expect("found above");
        match d.state {
            DialogState::Ended => false,
            s if s.is_early() => {
                let invite = d.invite;
                if let Some(d) = self.dialogs.get_mut(id) {
                    d.cancelled_by.get_or_insert(EndedBy::Operator);
                }
                self.cancel_invite(now, id, invite);
                true
            }
            _ => self.terminate_with(now, id, EndCause::Operator, extra),
        }
    }

    /// Ends the dialogs siplb cannot leave behind as it stops: CANCEL for each call not
    /// answered yet (its answer would come back to no one), and with `answered` (`[shutdown]
    /// dialogs = "bye"`) BYE to both sides of each answered one. How many it ended. The stop
    /// began `at`: dialogs still up when the worker stops ended then
    /// ([`abandon_all`](Self::abandon_all)). New INVITEs get 503 from now on, as in a drain.
    pub fn end_all(&mut self, now: Instant, at: Instant, answered: bool) -> usize {
        self.stopping_at.get_or_insert(at.min(now));
        self.draining = true;
        let up: Vec<(DialogId, DialogState, Option<TxnId>)> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.state != DialogState::Ended)
            .filter(|(_, d)| answered || d.state.is_early())
            .map(|(id, d)| (id, d.state, d.invite))
            .collect();
        for &(id, state, invite) in &up {
            if state.is_early() {
                if let Some(d) = self.dialogs.get_mut(id) {
                    d.cancelled_by.get_or_insert(EndedBy::Shutdown);
                }
                self.cancel_invite(now, id, invite);
            } else {
                self.terminate(now, id, EndCause::Shutdown);
            }
        }
        up.len()
    }

    /// Ends every dialog still up, without a word to the peers (but the 487 to the caller of a
    /// call the stop CANCELled), as the worker stops: each is reported (`ended_by = shutdown` when answered), so that its CDR is written before exit.
    /// With `keep_answered` (the restart journal has them), answered dialogs are left as they
    /// are: the next run goes on with them. How many were ended.
    ///
    /// They end when the stop began ([`end_all`](Self::end_all)), not after the wait for the
    /// answers to its CANCELs and BYEs (`shutdown.bye_wait_ms`): a call is not billed for
    /// that wait. One answered during the wait ends at its answer.
    pub fn abandon_all(&mut self, now: Instant, keep_answered: bool) -> usize {
        let stop = self.stopping_at;
        let up: Vec<(DialogId, Instant)> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.state != DialogState::Ended)
            .filter(|(_, d)| !(keep_answered && d.state.is_confirmed()))
            .map(|(id, d)| {
                let began = d.answered.unwrap_or(d.created);
                (id, stop.map_or(now, |t| t.max(began)))
            })
            .collect();
        for &(id, at) in &up {
            // A call not answered yet that the stop CANCELled ([`end_all`](Self::end_all))
            // and whose 487 did not come in time: its caller gets the 487 from siplb, and the
            // INVITE's outcome is recorded as any failed INVITE's is (the missed-call flag),
            // which also ends the dialog.
            let invite = self
                .dialogs
                .get(id)
                .filter(|d| d.state.is_early() && d.cancelled_by == Some(EndedBy::Shutdown))
                .and_then(|d| d.invite);
            if let Some(invite) = invite {
                self.local_final(at.max(now), invite, 487);
            }
            if self
                .dialogs
                .get(id)
                .is_some_and(|d| d.state != DialogState::Ended)
            {
                self.end_dialog_now(at, id, EndCause::Shutdown);
            }
        }
        up.len()
    }

    /// Ends an answered dialog from siplb's side: BYE to the callee (as the caller would send
    /// it) and to the caller (as the callee would), each in a transaction of its own.
    pub fn terminate(&mut self, now: Instant, id: DialogId, cause: EndCause) -> bool {
        self.terminate_with(now, id, cause, b"")
    }

    /// [`terminate`](Self::terminate), the BYEs carrying the header lines `extra`.
    fn terminate_with(
        &mut self,
        now: Instant,
        id: DialogId,
        cause: EndCause,
        extra: &[u8],
    ) -> bool {
        let local = self.local;
        let reason = match cause {
            EndCause::Expired => TIMEOUT_REASON,
            EndCause::Shutdown => SHUTDOWN_REASON,
            _ => "",
        };
        let mut headers = Vec::with_capacity(reason.len() + extra.len());
        headers.extend_from_slice(reason.as_bytes());
        headers.extend_from_slice(extra);
        let mut byes = Vec::with_capacity(2);
        for toward_callee in [true, false] {
            let Some(d) = self.dialogs.get_mut(id).filter(|d| d.state.is_confirmed()) else {
                return false;
            };
            // The BYE speaks for the other side: its CSeq is that side's next. A BYE to the
            // trunk (to the callee of an outgoing call, the caller of an inbound one) adds the
            // shift of authenticated resends, as that side's own requests do.
            let shift = d.cseq_shift_of_side(toward_callee);
            let leg = if toward_callee {
                &mut d.caller_leg
            } else {
                &mut d.callee_leg
            };
            let cseq = leg.next_cseq().wrapping_add(shift);
            let mut branch = Vec::with_capacity(40);
            self.branches.next(&mut branch);
            let mut out = self.out.buffer();
            let d = self.dialogs.get(id).expect("checked above");
            originate::bye(d, toward_callee, local, &branch, cseq, &headers, &mut out);
            let dst = if toward_callee { d.gateway } else { d.caller };
            byes.push((dst, branch, out));
        }
        self.end_dialog_now(now, id, cause);
        for (dst, branch, out) in byes {
            self.send_local_request(now, Method::Bye, dst, &branch, Some(id), out);
        }
        true
    }

    /// The INVITE of a dialog not answered yet failed: the dialog ends.
    pub(super) fn fail_dialog(&mut self, now: Instant, id: Option<DialogId>) {
        if let Some(id) = id
            && self.dialog_state_is(Some(id), DialogState::is_early)
        {
            self.stats.failed_dialogs.inc();
            self.end_dialog_now(now, id, EndCause::Failed);
        }
    }

    /// Ends a dialog: its places in the profiles are given back (exactly once: the table's
    /// `end` does it), its record stays `dialog_linger` to absorb stragglers, and it is reported.
    pub(super) fn end_dialog_now(&mut self, now: Instant, id: DialogId, cause: EndCause) {
        let linger = now + self.cfg.dialog_linger;
        let unix = self.clock.unix_ms(now);
        let Some(d) = self
            .dialogs
            .end(id, cause, unix, linger, &self.cfg.profiles)
        else {
            return;
        };
        for (name, value) in admission::vars_at(&self.cfg, VarAt::End) {
            d.set_var(name, value.to_string());
        }
        let expires = d.expires;
        let failure =
            d.answered.is_none() || matches!(cause, EndCause::Operator | EndCause::Expired);
        if self.cfg.emit.dialogs || (self.cfg.emit.failures && failure) {
            let record = DialogRecord::of(id, d);
            self.out.emit(Event::Dialog(Box::new(record)));
        }
        self.schedule.add(expires, Wake::Dialog(id));
    }

    /// A non-INVITE got no final response (Timer F): a BYE of an answered dialog ends it
    /// anyway, as the other side may have vanished.
    pub(super) fn non_invite_timeout(&mut self, now: Instant, id: TxnId) {
        let Some(t) = self.txns.get(id) else { return };
        let (method, dialog, local, upstream) = (t.method, t.dialog, t.local_request, t.upstream);
        let fin = super::Final {
            code: None,
            reason: "".into(),
            q850_cause: None,
            to_tag: "".into(),
            local: false,
        };
        self.report_txn(now, id, || fin);
        if method == Method::Bye
            && !local
            && let Some(did) = dialog
            && self.dialog_state_is(dialog, DialogState::is_confirmed)
        {
            let side = self.side_of(did, upstream);
            self.end_dialog_now(now, did, EndCause::Bye(side));
        }
    }

    /// Which side of dialog `id` sends from `addr`.
    pub(super) fn side_of(&self, id: DialogId, addr: crate::proxy::target::Target) -> Side {
        let gateways = &self.cfg.routing.gateways;
        match self.dialogs.get(id) {
            // A trunk that calls may send from other ports or addresses than its own.
            Some(d)
                if d.caller == addr
                    || (d.inbound && gateways.same_gateway(d.caller.addr, addr.addr)) =>
            {
                Side::Caller
            }
            _ => Side::Callee,
        }
    }

    /// The dialog timeouts, checked in one pass over the shard's dialogs: records past their
    /// time are removed, dialogs unanswered after `early_timeout` are cancelled, answered ones
    /// past `noack_timeout` without ACK or past `default_timeout` get BYE on both sides.
    pub(super) fn sweep(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.swept);
        self.dialogs.due(now, &self.cfg.dialog, &mut due);
        for (id, what) in due.drain(..) {
            let Some(d) = self.dialogs.get_mut(id) else {
                continue;
            };
            match what {
                Due::Expire => {
                    self.stats.expired_dialogs.inc();
                    self.terminate(now, id, EndCause::Expired);
                }
                Due::CancelEarly => {
                    d.early_cancelled = true;
                    d.cancelled_by.get_or_insert(EndedBy::Timeout);
                    let invite = d.invite;
                    self.cancel_invite(now, id, invite);
                }
                Due::Remove => {
                    // A record past its time: an ended call's linger is over, or (a backstop)
                    // a dialog nothing ended gives its places back now.
                    if d.state != DialogState::Ended {
                        self.end_dialog_now(now, id, EndCause::Expired);
                    }
                    self.dialogs.remove(id);
                }
            }
        }
        self.swept = due;
    }

    /// Cancels INVITE `tid` before the gateway said anything, as Kamailio's `tm` does with
    /// its default `cancel_b_method`: the INVITE is no longer retransmitted, the caller gets
    /// 487 at once, and the CANCEL waits for a provisional (RFC 3261 §9.1) until Timer B.
    /// Whatever the gateway answers later is not relayed; a 2xx gets ACK and BYE from siplb.
    pub(super) fn cancel_before_reply(&mut self, now: Instant, tid: TxnId) {
        if let Some(t) = self.txns.get_mut(tid) {
            t.cancel = Cancel::Pending;
            t.clear(crate::proxy::txn::Timer::A);
        }
        self.local_final(now, tid, 487);
    }

    /// Cancels the INVITE of a dialog not answered in time, as Timer C would.
    pub(super) fn cancel_invite(&mut self, now: Instant, id: DialogId, invite: Option<TxnId>) {
        let alive = invite.and_then(|tid| {
            let t = self.txns.get(tid)?;
            (t.dialog == Some(id)).then_some((tid, t.client, t.cancel))
        });
        match alive {
            Some((tid, ClientState::Proceeding, Cancel::None)) => self.send_cancel(now, tid),
            Some((tid, ClientState::Calling, Cancel::None)) => self.cancel_before_reply(now, tid),
            Some(_) => {}
            // Its transaction is gone: nothing can answer it any more.
            None => self.fail_dialog(now, Some(id)),
        }
    }
}
