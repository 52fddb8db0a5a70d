//! The response context: a response from downstream is matched to its client transaction,
//! run through the state machine, and passed back — provisional responses and 2xx at once;
//! a final non-2xx (received, or siplb's own 408 and 487) goes through [`Shard::on_final`],
//! the one place that decides whether it is relayed upstream or the request is tried again
//! elsewhere (gateway failover and trunk authentication plug in there).

use super::{Final, Shard};
use crate::dialog::VarAt;
use crate::proxy::admission;
use crate::proxy::auth::Challenge;
use crate::proxy::dialogs::{Dialog, DialogState};
use crate::proxy::event::{q850_cause, reason_of, text};
use crate::proxy::forward::Forward;
use crate::proxy::forward::{self, first_contact, record_routes};
use crate::proxy::gateway::{Algorithm, CallKey};
use crate::proxy::ids::{DialogId, TxnId};
use crate::proxy::ingress;
use crate::proxy::originate::{self, local_tag};
use crate::proxy::reply::{self, Extra};
use crate::proxy::target::Target;
use crate::proxy::txn::left::Left;
use crate::proxy::txn::{self, Cancel, ClientAction, ClientState, Kind, ServerState, machine};
use crate::proxy::via::{has_via_below_top, top_via_is_ours};
use crate::sip::{HeaderName, Method, SipMsg};
use std::net::SocketAddr;
use std::time::Instant;

/// A final non-2xx answer to a forwarded INVITE.
enum FinalAnswer<'m, 'b> {
    /// Received from downstream.
    Received(&'m SipMsg<'b>),
    /// Made by siplb: 408 on Timer B, 487 when a CANCEL got no answer.
    Local(u16),
}

/// What to do with a final non-2xx answer.
enum Decision {
    /// Pass it upstream: the transaction is over.
    Relay,
    /// Send the INVITE to the next gateway of the set (failover); the caller sees nothing of
    /// it.
    Retry,
    /// Send it again to the same gateway with credentials (a 401/407 siplb can answer).
    Authenticate(Challenge),
    /// A challenge siplb would have answered, to an INVITE the caller (or siplb) has
    /// cancelled meanwhile: no new attempt (RFC 3261 §16.10), the caller gets 487.
    Terminated,
}

impl Shard {
    pub(super) fn on_response(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) {
        if !top_via_is_ours(msg, self.cfg.local) {
            self.stats.drop_replies.inc();
            return;
        }
        if let Some(p) = self.prober.as_mut()
            && p.on_response(now, src, msg, &self.cfg.routing.gateways, &mut self.out)
        {
            return;
        }
        let mut key = std::mem::take(&mut self.key);
        let branch = msg.branch().unwrap_or(b"");
        txn::client_key(branch, msg.cseq_method == Method::Cancel, &mut key);
        let found = self.txns.by_client_key(&key);
        self.key = key;
        let Some(id) = found else {
            if self.ack_left_attempt(now, src, msg) {
                self.stats.retrans_absorbed.inc();
                return;
            }
            if !self.on_orphan_2xx(now, src, msg) {
                self.stats.drop_replies.inc();
            }
            return;
        };
        let code = msg.status().unwrap_or(500);
        let timers = self.cfg.timers;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        // Only the peer the request went to answers it (or another address of that gateway):
        // a response from anywhere else could end or hijack somebody's call.
        let dst = t.downstream.addr;
        if src != dst && !self.cfg.routing.gateways.answers_from(dst, src) {
            self.stats.resp_wrong_source.inc();
            return;
        }
        // A 2xx makes the dialog, whose To siplb's own requests (BYE) carry: a To that is no
        // name-addr makes the answer unusable, as a parse error would.
        if t.kind == Kind::Invite
            && (200..300).contains(&code)
            && !t.local_request
            && msg.to_checked().is_none()
        {
            self.stats.bad_msg.inc();
            return;
        }
        // The caller already has its final answer: siplb gave it 487 when it or an operator
        // cancelled before the gateway said anything (or 408 on Timer B). Nothing the gateway
        // says now reaches the caller; the answer to a call's INVITE is acknowledged and ended
        // (BYE). That to a re-INVITE is relayed (RFC 3261 §16.7 step 5): its dialog is up.
        let answered_upstream = t.kind == Kind::Invite
            && !t.local_request
            && matches!(
                t.server,
                ServerState::Completed | ServerState::Confirmed | ServerState::Terminated
            );
        if answered_upstream
            && (200..300).contains(&code)
            && t.dialog
                .and_then(|d| self.dialogs.get(d))
                .is_none_or(|d| d.invite == Some(id))
        {
            machine::abandon_client(t);
            self.on_2xx_after_final(now, src, msg);
            self.reschedule(id);
            return;
        }
        // The first final answer to a request of siplb's own: a challenge is answered.
        let own_final = t.local_request
            && code >= 200
            && matches!(t.client, ClientState::Calling | ClientState::Proceeding);
        let action = machine::on_response(t, code, now, &timers);
        let (dialog, kind) = (t.dialog, t.kind);
        if t.kind == Kind::Invite && !t.local_request {
            self.note_invite_reply(now, id, code);
        }
        match action {
            ClientAction::Absorb if own_final && matches!(code, 401 | 407) => {
                if !self.authenticate_local(now, id, msg) {
                    self.challenge_given_up(now, id, msg);
                }
            }
            ClientAction::Absorb => {}
            // A 2xx to an INVITE attempt that already ended (siplb gave up on it, or
            // failed the call): nobody upstream will ACK it.
            ClientAction::AbsorbRetransmission
                if kind == Kind::Invite
                    && (200..300).contains(&code)
                    && self.on_orphan_2xx(now, src, msg) => {}
            ClientAction::AbsorbRetransmission => self.stats.retrans_absorbed.inc(),
            ClientAction::InviteProvisional { relay, send_cancel } => {
                if relay && !answered_upstream {
                    self.relay(id, msg, false);
                    if let Some(d) = dialog {
                        self.dialogs
                            .set_state(d, DialogState::Unconfirmed, DialogState::Early);
                        self.note_early_tag(id, d, msg);
                    }
                }
                if send_cancel {
                    self.send_cancel(now, id);
                }
            }
            ClientAction::InviteAccepted => {
                self.relay(id, msg, true);
                self.report_txn(now, id, || final_of(msg));
                self.answer(now, id, msg);
            }
            ClientAction::InviteFinal => {
                // ACK it ourselves, hop by hop, whatever happens to it next.
                let mut ack = self.out.buffer();
                let t = self.txns.get_mut(id).expect("looked up above");
                if let Ok(fwd) = SipMsg::parse(&t.forwarded) {
                    originate::hop_request(&fwd, Method::Ack, Some(msg), &mut ack);
                }
                t.ack.clear();
                t.ack.extend_from_slice(&ack);
                let dst = t.downstream;
                // (Empty when the request as forwarded does not parse: `Output::send` sends no
                // empty datagram.)
                self.out.send(dst, ack);
                if !answered_upstream {
                    self.on_final(now, id, FinalAnswer::Received(msg));
                }
            }
            ClientAction::Relay2xxRetransmission => {
                if !self.on_forked_2xx(now, src, msg, id, dialog) {
                    self.relay(id, msg, false);
                }
            }
            ClientAction::ResendAck => {
                self.stats.retrans_absorbed.inc();
                let t = self.txns.get(id).expect("looked up above");
                self.out.send_copy(t.downstream, &t.ack);
            }
            ClientAction::NonInviteProvisional { relay } => {
                if relay {
                    self.relay(id, msg, false);
                }
            }
            ClientAction::NonInviteFinal => {
                // A challenge siplb can answer: the request goes again with credentials.
                if let Some(ch) = self.answerable_challenge(id, msg)
                    && self.authenticate(now, id, &ch)
                {
                    self.reschedule(id);
                    return;
                }
                self.challenge_given_up(now, id, msg);
                self.relay(id, msg, true);
                self.report_txn(now, id, || final_of(msg));
                let t = self.txns.get(id).expect("looked up above");
                let (method, upstream) = (t.method, t.upstream);
                if method == Method::Bye
                    && let Some(d) = dialog
                    && self.dialog_state_is(dialog, DialogState::is_confirmed)
                {
                    let side = self.side_of(d, upstream);
                    let cause = crate::proxy::dialogs::EndCause::Bye(side);
                    self.end_dialog_now(now, d, cause);
                }
            }
        }
        self.reschedule(id);
    }

    /// Notes the To tag of a provisional to the dialog's own INVITE (not yet answered).
    fn note_early_tag(&mut self, id: TxnId, did: DialogId, msg: &SipMsg<'_>) {
        let Some(tag) = msg.to_tag().filter(|t| !t.is_empty()) else {
            return;
        };
        if let Some(d) = self.dialogs.get_mut(did)
            && d.invite == Some(id)
            && d.state.is_early()
            && *d.early_tag != *tag
        {
            d.early_tag = tag.into();
        }
    }

    /// Notes the times of the first reply and of ringing on the dialog of its initial INVITE.
    fn note_invite_reply(&mut self, now: Instant, id: TxnId, code: u16) {
        let Some(did) = self.txns.get(id).and_then(|t| t.dialog) else {
            return;
        };
        let unix = self.clock.unix_ms(now);
        let Some(d) = self.dialogs.get_mut(did).filter(|d| d.invite == Some(id)) else {
            return;
        };
        if d.times.first_reply == 0 {
            d.times.first_reply = unix;
        }
        // A ringing that comes after the answer (reordered on the way) is not the call's.
        if (code == 180 || code == 183) && d.times.ringing == 0 && d.state.is_early() {
            d.times.ringing = unix;
        }
    }

    /// A final non-2xx answer to the INVITE `id`: relayed, or tried again elsewhere.
    fn on_final(&mut self, now: Instant, id: TxnId, answer: FinalAnswer<'_, '_>) {
        match self.decide(id, &answer) {
            Decision::Relay => {}
            Decision::Retry => {
                if self.retry(now, id) {
                    return;
                }
            }
            Decision::Authenticate(ch) => {
                if self.authenticate(now, id, &ch) {
                    return;
                }
            }
            Decision::Terminated => return self.on_final(now, id, FinalAnswer::Local(487)),
        }
        let timers = self.cfg.timers;
        let fin = match answer {
            FinalAnswer::Received(msg) => {
                self.challenge_given_up(now, id, msg);
                let as_500 = msg.status() == Some(503);
                if as_500 {
                    // RFC 3261 §16.7 step 6: a gateway's 503 means that gateway, not siplb;
                    // the caller gets 500, without the gateway's Retry-After.
                    self.relay_503_as_500(id, msg);
                } else {
                    self.relay(id, msg, true);
                }
                // The call log needs the outcome of a failed call: the reply the caller got.
                (self.wants_outcomes() || self.cfg.emit.failures).then(|| {
                    let mut fin = final_of(msg);
                    if as_500 {
                        fin.code = Some(500);
                        fin.reason = "Server Internal Error".into();
                    }
                    fin
                })
            }
            FinalAnswer::Local(code) => match self.local_reply(id, code) {
                Some(fin) => Some(fin),
                None => return,
            },
        };
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        machine::complete_server_invite(t, now, &timers);
        let dialog = t.dialog;
        if let Some(fin) = fin {
            if let Some(d) = dialog.and_then(|d| self.dialogs.get_mut(d))
                && d.invite == Some(id)
            {
                d.outcome.code = fin.code;
                d.outcome.reason = fin.reason.clone();
                d.outcome.q850_cause = fin.q850_cause;
            }
            self.report_txn(now, id, || fin);
        }
        // Only the dialog's own INVITE fails it: the answer to an INVITE it replaced (a
        // caller that sent the INVITE again with a new branch) or to a re-INVITE does not.
        let current = dialog
            .and_then(|d| self.dialogs.get(d))
            .is_some_and(|d| d.invite == Some(id));
        if current {
            self.fail_dialog(now, dialog);
        }
    }

    /// Whether a final answer is relayed or the request tried again: the initial INVITE of a
    /// call moves on to the next gateway of its set on a timeout (siplb's 408), a 408, or one
    /// of the set's failover codes, unless the caller or an operator cancelled it or every
    /// gateway was tried (RFC 3261 §16.7: the caller sees one call and one final answer).
    fn decide(&self, id: TxnId, answer: &FinalAnswer<'_, '_>) -> Decision {
        if let FinalAnswer::Received(m) = answer
            && let Some(ch) = self.answerable_challenge(id, m)
        {
            return if self.invite_cancelled(id) {
                Decision::Terminated
            } else {
                Decision::Authenticate(ch)
            };
        }
        let code = match answer {
            FinalAnswer::Received(m) => m.status().unwrap_or(500),
            FinalAnswer::Local(408) => 408,
            FinalAnswer::Local(_) => return Decision::Relay,
        };
        let Some(t) = self.txns.get(id) else {
            return Decision::Relay;
        };
        if t.kind != Kind::Invite
            || t.local_request
            || t.cancel != Cancel::None
            || !matches!(t.server, ServerState::Proceeding | ServerState::Trying)
        {
            return Decision::Relay;
        }
        let Some(d) = t.dialog.and_then(|d| self.dialogs.get(d)) else {
            return Decision::Relay;
        };
        let Some(set) = self.cfg.routing.gateways.set(d.set.into()) else {
            return Decision::Relay;
        };
        if d.invite != Some(id)
            || !d.state.is_early()
            || d.cancelled_by.is_some()
            || d.early_cancelled
            || !set.fails_over_on(code)
        {
            return Decision::Relay;
        }
        match self.next_gateway(d) {
            Some(_) => Decision::Retry,
            None => Decision::Relay,
        }
    }

    /// Whether the INVITE `id` was cancelled: a CANCEL sent for it or held until its first
    /// provisional, or its call cancelled by the caller, an operator or a timer.
    fn invite_cancelled(&self, id: TxnId) -> bool {
        let Some(t) = self.txns.get(id) else {
            return false;
        };
        t.kind == Kind::Invite
            && (t.cancel != Cancel::None
                || t.dialog.and_then(|d| self.dialogs.get(d)).is_some_and(|d| {
                    d.invite == Some(id) && (d.cancelled_by.is_some() || d.early_cancelled)
                }))
    }

    /// The next gateway of dialog `d`'s set (its index): the set's choice among the gateways
    /// it has not tried that have room; with `take`, a place is taken on it. The From user is
    /// read only when the set's choice depends on it.
    fn choose_next(&self, d: &Dialog, take: bool) -> Option<usize> {
        let set = self.cfg.routing.gateways.set(d.set.into())?;
        let from_user = match set.algorithm {
            Algorithm::FromUserHash => d.from_user(),
            _ => Vec::new(),
        };
        let key = CallKey {
            call_id: &d.call_id,
            from_user: &from_user,
            turn: d.turn,
        };
        if take {
            set.choose_and_take(&key, &d.tried)
        } else {
            set.choose(&key, &d.tried, |i| set.gateways[i].usable())
        }
    }

    /// The gateway a call would go to next (nothing is taken).
    fn next_gateway(&self, d: &Dialog) -> Option<Target> {
        let i = self.choose_next(d, false)?;
        Some(self.cfg.routing.gateways.sets[usize::from(d.set)].gateways[i].target)
    }

    /// Moves dialog `did` to the next gateway of its set: its place on the one it leaves is
    /// given back, one on the next is taken. The next gateway, none when none is left.
    fn move_to_next_gateway(&mut self, did: DialogId) -> Option<Target> {
        let d = self.dialogs.get(did)?;
        let i = self.choose_next(d, true)?;
        let set = &self.cfg.routing.gateways.sets[usize::from(d.set)];
        let (target, load) = (set.gateways[i].target, set.gateways[i].state.clone());
        let d = self.dialogs.get_mut(did)?;
        if let Some(old) = d.load.replace(load) {
            old.give_back();
        }
        d.gateway = target;
        d.tried.push(target.addr);
        Some(target)
    }

    /// Sends the INVITE `id` to the next gateway of its call's set as a new attempt of the
    /// same transaction: a new branch, the caller's INVITE forwarded afresh, Timers A and B
    /// restarted. Whether it went (no gateway left: the answer is relayed).
    fn retry(&mut self, now: Instant, id: TxnId) -> bool {
        let Some(t) = self.txns.get_mut(id) else {
            return false;
        };
        let received = std::mem::take(&mut t.received);
        let (upstream, did) = (t.upstream, t.dialog);
        let Some(did) = did else {
            t.received = received;
            return false;
        };
        let Ok(msg) = SipMsg::parse(&received) else {
            if let Some(t) = self.txns.get_mut(id) {
                t.received = received;
            }
            return false;
        };
        let Some(gateway) = self.move_to_next_gateway(did) else {
            if let Some(t) = self.txns.get_mut(id) {
                t.received = received;
            }
            return false;
        };
        // A new gateway starts clean: the caller's CSeq, no credentials.
        let fwd = Forward {
            record_route: Some(did),
            strip_route: ingress::own_route(&msg, self.cfg.local),
            ..Forward::default()
        };
        if let Some(d) = self.dialogs.get_mut(did) {
            d.cseq_shift = 0;
        }
        let Some(out) = self.next_attempt(now, id, &msg, upstream.addr, fwd) else {
            return false;
        };
        let timer_b = self.attempt_timeout(did);
        let timers = self.cfg.timers;
        let t = self.txns.get_mut(id).expect("looked up above");
        t.received = received;
        t.downstream = gateway;
        t.forwarded.clear();
        t.forwarded.extend_from_slice(&out);
        t.ack.clear();
        t.cseq_shift = 0;
        t.auth_tries = 0;
        t.challenges = None;
        machine::restart_client_invite(t, now, &timers, timer_b);
        self.stats.failovers.inc();
        self.stats.fwd_requests.inc();
        self.out.send(gateway, out);
        self.reschedule(id);
        true
    }

    /// Request `msg` (as received) of transaction `id` forwarded afresh as its next attempt
    /// (failover, authentication): a new branch numbered by the attempt, the transaction's new
    /// client key; the copy to send.
    pub(super) fn next_attempt(
        &mut self,
        now: Instant,
        id: TxnId,
        msg: &SipMsg<'_>,
        upstream: SocketAddr,
        fwd: Forward<'_>,
    ) -> Option<Vec<u8>> {
        let t = self.txns.get_mut(id)?;
        // The attempt moved past is remembered: its final answer (retransmitted, or late)
        // gets an ACK.
        if t.kind == Kind::Invite && !t.forwarded.is_empty() && !t.client_key.is_empty() {
            let left = Left {
                dst: t.downstream,
                forwarded: std::mem::take(&mut t.forwarded),
            };
            let key = t.client_key.clone();
            self.left.leave(now, self.cfg.timers.timer_b, key, left);
        }
        let t = self.txns.get_mut(id)?;
        t.attempts += 1;
        let attempt = t.attempts;
        let mut branch = Vec::with_capacity(48);
        self.branches.forwarded(msg, attempt, &mut branch);
        let out = self.forwarded_copy(msg, upstream, &branch, fwd);
        let mut ck = Vec::new();
        txn::client_key(&branch, false, &mut ck);
        self.txns.set_client_key(id, ck.into());
        Some(out)
    }

    /// A final non-2xx answer to an INVITE attempt moved past (`self.key` is its client key):
    /// ACKed, hop by hop, as the attempt's own would have been. Whether it was one.
    fn ack_left_attempt(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) -> bool {
        if msg.status().unwrap_or(0) < 300 || msg.cseq_method != Method::Invite {
            return false;
        }
        let Some(left) = self.left.get(now, &self.key) else {
            return false;
        };
        let dst = left.dst;
        if src != dst.addr && !self.cfg.routing.gateways.answers_from(dst.addr, src) {
            return false;
        }
        let Ok(fwd) = SipMsg::parse(&left.forwarded) else {
            return false;
        };
        let mut ack = self.out.buffer();
        originate::hop_request(&fwd, Method::Ack, Some(msg), &mut ack);
        self.out.send(dst, ack);
        true
    }

    /// Timer B of the next attempt of dialog `did`'s INVITE: the set's failover timeout while
    /// another gateway is left to try, Timer B itself for the last one.
    pub(super) fn attempt_timeout(&self, did: DialogId) -> std::time::Duration {
        let timer_b = self.cfg.timers.timer_b;
        let Some(d) = self.dialogs.get(did) else {
            return timer_b;
        };
        let Some(set) = self.cfg.routing.gateways.set(d.set.into()) else {
            return timer_b;
        };
        match set.failover_timeout {
            Some(ft) if set.failover && self.next_gateway(d).is_some() => ft.min(timer_b),
            _ => timer_b,
        }
    }

    /// Passes a response upstream without our Via; `keep` stores it for retransmissions.
    fn relay(&mut self, id: TxnId, msg: &SipMsg<'_>, keep: bool) {
        let Ok(vias) = self.missing_vias(id, msg) else {
            self.stats.drop_replies.inc();
            return;
        };
        let mut out = self.out.buffer();
        let cseq = self.caller_cseq(id);
        forward::response(msg, cseq, vias.as_deref(), &mut self.rewrite, &mut out);
        let Some(t) = self.txns.get_mut(id) else {
            self.out.recycle(out);
            return;
        };
        if keep || msg.status().is_some_and(|c| c > 100 && c < 200) {
            t.last_response.clear();
            t.last_response.extend_from_slice(&out);
        }
        self.stats.fwd_replies.inc();
        self.out.send(t.upstream, out);
    }

    /// The Via lines the request of transaction `id` came with, when response `msg` has none
    /// below siplb's (RFC 3261 §16.7 step 3 would have it dropped; siplb, stateful, answers
    /// the caller as its server transaction would): those of the request as forwarded, but
    /// siplb's own first line. `Ok(None)`: the response has its own. `Err`: it has none and
    /// the request is no longer kept (a 2xx retransmission once the transaction is answered
    /// on both sides): it is dropped rather than sent without a Via.
    fn missing_vias(&self, id: TxnId, msg: &SipMsg<'_>) -> Result<Option<Vec<u8>>, ()> {
        if has_via_below_top(msg) {
            return Ok(None);
        }
        let t = self.txns.get(id).ok_or(())?;
        let fwd = SipMsg::parse(&t.forwarded).map_err(|_| ())?;
        let mut vias = Vec::new();
        for (_, h) in fwd.headers_named(HeaderName::Via).skip(1) {
            vias.extend_from_slice(h.line().of(fwd.buf));
        }
        if vias.is_empty() {
            return Err(());
        }
        self.stats.replies_vias_restored.inc();
        Ok(Some(vias))
    }

    /// The CSeq number a response to transaction `id` goes back to the caller with, when its
    /// request went out shifted (after an authenticated resend): the caller's own, whatever
    /// number the gateway's response carries (the response is the transaction's by branch).
    fn caller_cseq(&self, id: TxnId) -> Option<u32> {
        let t = self.txns.get(id)?;
        (t.cseq_shift > 0).then_some(t.caller_cseq)
    }

    /// Passes a gateway's final 503 upstream as `500 Server Internal Error` without its
    /// `Retry-After`, so that a caller that honours it does not stop sending to siplb.
    fn relay_503_as_500(&mut self, id: TxnId, msg: &SipMsg<'_>) {
        let Ok(vias) = self.missing_vias(id, msg) else {
            self.stats.drop_replies.inc();
            return;
        };
        let mut out = self.out.buffer();
        let cseq = self.caller_cseq(id);
        forward::response_as(
            msg,
            500,
            "Server Internal Error",
            b"Retry-After",
            cseq,
            vias.as_deref(),
            &mut self.rewrite,
            &mut out,
        );
        let Some(t) = self.txns.get_mut(id) else {
            self.out.recycle(out);
            return;
        };
        t.last_response.clear();
        t.last_response.extend_from_slice(&out);
        self.stats.fwd_replies.inc();
        self.out.send(t.upstream, out);
    }

    /// siplb's own final reply to the INVITE `id` (408, 487), sent upstream; none when the
    /// server side already answered.
    fn local_reply(&mut self, id: TxnId, code: u16) -> Option<Final> {
        let t = self.txns.get_mut(id)?;
        if t.server != ServerState::Proceeding && t.server != ServerState::Trying {
            return None;
        }
        debug_assert_eq!(t.kind, Kind::Invite, "only INVITEs get a local final reply");
        let upstream = t.upstream;
        let mut out = Vec::new();
        let req = SipMsg::parse(&t.received).ok()?;
        let tag = local_tag(&req);
        let ex = Extra::default();
        reply::build(
            &req,
            upstream.addr,
            code,
            tag.as_bytes(),
            ex,
            &mut self.rewrite,
            &mut out,
        );
        t.last_response.clear();
        t.last_response.extend_from_slice(&out);
        self.stats.local_replies.inc();
        self.out.send(upstream, out);
        Some(Final {
            code: Some(code),
            reason: crate::sip::reason_phrase(code).into(),
            q850_cause: None,
            to_tag: tag.into(),
            local: true,
        })
    }

    /// The final reply to an INVITE that siplb makes itself.
    /// Nothing when the caller already has a final answer (siplb's 487 at a CANCEL that came
    /// before the gateway said anything, then Timer B of that attempt).
    pub(super) fn local_final(&mut self, now: Instant, id: TxnId, code: u16) {
        let answered = self.txns.get(id).is_some_and(|t| {
            t.kind == Kind::Invite
                && matches!(
                    t.server,
                    ServerState::Completed | ServerState::Confirmed | ServerState::Terminated
                )
        });
        if answered {
            return;
        }
        self.on_final(now, id, FinalAnswer::Local(code));
    }

    /// The 2xx of the initial INVITE confirms the dialog and names the callee; that of a
    /// re-INVITE (either way) changes neither but refreshes the answering side's target.
    fn answer(&mut self, now: Instant, id: TxnId, msg: &SipMsg<'_>) {
        let Some(did) = self.txns.get(id).and_then(|t| t.dialog) else {
            return;
        };
        let unix = self.clock.unix_ms(now);
        let linger = self.cfg.dialog_linger;
        let lifetime = self.cfg.dialog.default_timeout;
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if d.state.is_confirmed() {
            // The 2xx of a re-INVITE updates its sender's remote target (RFC 3261 §12.2.1.2):
            // the side whose tag is in the To header answered.
            let contact = first_contact(msg);
            if !contact.is_empty() {
                let leg = if msg.to_tag() == Some(d.caller_tag()) {
                    &mut d.caller_leg
                } else {
                    &mut d.callee_leg
                };
                leg.contact = contact.into();
            }
            return;
        }
        if !d.state.is_early() {
            return;
        }
        let state = d.state;
        d.answered = Some(now);
        d.times.answer = unix;
        if self.cfg.emit.dialogs {
            d.outcome.code = msg.status();
            d.outcome.reason = reason_of(msg);
            d.outcome.q850_cause = q850_cause(msg);
        }
        d.callee_leg.tag = msg.to_tag().unwrap_or(b"").into();
        d.early_tag = Box::default();
        d.callee_leg.contact = first_contact(msg).into();
        d.callee_leg.route_set = record_routes(msg, Some(did)).into();
        if let Some((_, h)) = msg.headers_named(HeaderName::To).next() {
            d.to = h.value().of(msg.buf).into();
        }
        // The dialog lives `default_timeout` from its answer (and a while longer as a record).
        d.expires = now + lifetime + linger;
        d.set_var("AnswerTime", (unix / 1000).to_string());
        for (name, value) in admission::vars_at(&self.cfg, VarAt::Start) {
            d.set_var(name, value.to_string());
        }
        self.dialogs
            .set_state(did, state, DialogState::ConfirmedNoAck);
    }
}

/// The record of a final response received.
fn final_of(msg: &SipMsg<'_>) -> Final {
    Final {
        code: msg.status(),
        reason: reason_of(msg),
        q850_cause: q850_cause(msg),
        to_tag: text(msg.to_tag().unwrap_or(b"")),
        local: false,
    }
}
