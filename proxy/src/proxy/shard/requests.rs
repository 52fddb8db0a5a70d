//! The request paths of the shard, one per [`Ingress`]: retransmissions of open transactions,
//! CANCEL, in-dialog requests, new INVITEs (admission, the dialog, the forwarded INVITE; where
//! the call goes is `routing.rs`) and the stateless replies.

use super::{ALLOW, Shard};
use crate::proxy::admission::{self, Admitted};
use crate::proxy::dialogs::{Dialog, DialogState, DialogTimes, EndCause, Leg, Outcome, Side};
use crate::proxy::event::{EndedBy, Parties, q850_cause, text};
use crate::proxy::forward::{self, Forward, did_param, first_contact, record_routes};
use crate::proxy::ids::{DialogId, TxnId};
use crate::proxy::ingress::{self, Ingress, Stateless};
use crate::proxy::originate::{self, local_tag};
use crate::proxy::reply::{self, Extra};
use crate::proxy::route::Peer;
use crate::proxy::target::Target;
use crate::proxy::txn::{
    self, Cancel, ClientState, Kind, ServerAction, ServerState, Timer, Txn, machine,
};
use crate::sip::value::NameAddr;
use crate::sip::{HeaderName, Method, SipMsg, Span};
use std::net::SocketAddr;
use std::time::Instant;

impl Shard {
    pub(super) fn on_request(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) {
        let mut key = std::mem::take(&mut self.key);
        txn::server_key(msg, &mut key);
        let existing = self.txns.by_server_key(&key);
        if existing.is_none() && self.branches.is_loop(msg, self.cfg.local) {
            self.key = key;
            self.stats.loops_482.inc();
            return self.reply_stateless(msg, src, 482, Extra::default());
        }
        let path = ingress::classify(msg, src, existing, &self.cfg.routing, self.cfg.local);
        match path {
            Ingress::Existing(id) => {
                self.key = key;
                self.on_retransmission(now, src, id, msg)
            }
            Ingress::Cancel => {
                self.key = key;
                self.on_cancel(now, src, msg)
            }
            Ingress::InDialog {
                own_route,
                stranger,
            } => self.on_in_dialog(now, src, msg, key, own_route, stranger),
            Ingress::NewInvite {
                customer,
                own_route,
            } => self.on_new_invite(now, src, msg, key, customer, own_route, None),
            Ingress::Inbound { own_route } => self.on_inbound_invite(now, src, msg, key, own_route),
            Ingress::Absorb => {
                self.key = key;
                self.stats.drop_requests.inc();
            }
            Ingress::Stateless(s) => {
                self.key = key;
                self.reply_ingress(msg, src, s)
            }
        }
    }

    fn reply_ingress(&mut self, msg: &SipMsg<'_>, src: SocketAddr, s: Stateless) {
        match s {
            Stateless::Forbidden(reason) => self.forbid(msg, src, reason),
            Stateless::TooManyHops => self.reply_stateless(msg, src, 483, Extra::default()),
            Stateless::BadExtension(idx) => {
                let value = msg.headers()[idx].value().of(msg.buf);
                let mut line = Vec::with_capacity(value.len() + 16);
                line.extend_from_slice(b"Unsupported: ");
                line.extend_from_slice(value);
                line.extend_from_slice(b"\r\n");
                let extra = Extra {
                    headers: &line,
                    ..Extra::default()
                };
                self.reply_stateless(msg, src, 420, extra)
            }
            Stateless::OptionsOk if self.draining => {
                let retry = self.cfg.retry_after;
                self.reply_stateless(msg, src, 503, Extra::draining(retry))
            }
            Stateless::OptionsOk => self.reply_stateless(msg, src, 200, Extra::default()),
            Stateless::MethodNotAllowed => {
                let extra = Extra {
                    headers: ALLOW,
                    ..Extra::default()
                };
                self.reply_stateless(msg, src, 405, extra)
            }
            Stateless::NoDialog => self.reply_stateless(msg, src, 481, Extra::default()),
            Stateless::SipsUnsupported => self.reply_stateless(msg, src, 416, Extra::default()),
        }
    }

    fn on_retransmission(&mut self, now: Instant, src: SocketAddr, id: TxnId, msg: &SipMsg<'_>) {
        let method = msg.method().unwrap_or(Method::Other);
        let timers = self.cfg.timers;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        match machine::on_request(t, method, now, &timers) {
            ServerAction::Absorb => {
                self.stats.retrans_absorbed.inc();
                self.reschedule(id);
            }
            ServerAction::ResendResponse => {
                self.stats.retrans_absorbed.inc();
                self.out.send_copy(t.upstream, &t.last_response);
            }
            ServerAction::AckOf2xx => {
                // A peer that reuses the INVITE branch for the ACK of a 2xx: end to end.
                let own_route = ingress::own_route(msg, self.cfg.local);
                let stranger = ingress::peer(msg, src, &self.cfg.routing) == Peer::Unknown;
                let key = std::mem::take(&mut self.key);
                self.on_in_dialog(now, src, msg, key, own_route, stranger);
            }
        }
    }

    /// A new INVITE: from a customer to a gateway, or (`inbound`: the customer's target) from
    /// a gateway to a customer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_new_invite(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        customer: usize,
        own_route: Option<(usize, Span)>,
        inbound: Option<Target>,
    ) {
        if self.full() {
            self.key = key;
            return self.reply_overload(msg, src);
        }
        if self.acc_full {
            self.key = key;
            self.stats.acc_queue_full_503.inc();
            let retry = self.cfg.retry_after;
            return self.reply_stateless(msg, src, 503, Extra::overload(retry));
        }
        if self.draining {
            self.key = key;
            let retry = self.cfg.retry_after;
            return self.reply_stateless(msg, src, 503, Extra::draining(retry));
        }
        let call_id = msg.call_id();
        let caller_tag = msg.from_tag().unwrap_or(b"");
        let unix = self.clock.unix_ms(now);
        // An INVITE for a known call from the same caller: one resent while the first is still
        // pending keeps the dialog; one after a failure (e.g. answering a challenge) revives it,
        // taking its places in the profiles again.
        let known = self.dialogs.by_call_id(call_id).filter(|id| {
            self.dialogs.get(*id).is_some_and(|d| {
                d.caller_tag() == caller_tag
                    && (d.state.is_early() || d.end_cause == Some(EndCause::Failed))
            })
        });
        let fresh = known.is_none();
        let id = match known {
            Some(id) => {
                if self
                    .dialogs
                    .get(id)
                    .is_some_and(|d| d.state == DialogState::Ended)
                {
                    let inbound = self.dialogs.get(id).is_some_and(|d| d.inbound);
                    let admitted =
                        match admission::admit(&self.cfg, msg, src, customer, inbound, unix) {
                            Ok(a) => a,
                            Err(why) => return self.reply_limit(now, msg, src, key, customer, why),
                        };
                    let expires = self.early_expiry(now);
                    // Its place on its gateway comes back with it (whatever `max_calls`
                    // says: the call is under way there).
                    let load = self.dialogs.get(id).and_then(|d| {
                        let set = self.cfg.routing.gateways.set(d.set.into())?;
                        let g = set.gateways.iter().find(|g| g.target == d.gateway)?;
                        g.state.take(None);
                        Some(g.state.clone())
                    });
                    self.dialogs.restart(id, |d| {
                        d.load = load;
                        d.profiles = admitted.profiles;
                        d.vars = admitted.vars;
                        d.account = admitted.account;
                        d.created = now;
                        d.times = DialogTimes {
                            invite_received: unix,
                            ..DialogTimes::default()
                        };
                        d.outcome = Outcome::default();
                        d.expires = expires;
                        d.tried = vec![d.gateway.addr];
                        d.cseq_shift = 0;
                    });
                    self.stats.processed_dialogs.inc();
                    self.ensure_sweep(now);
                }
                let caller = self.sender(src, inbound.is_some());
                let d = self
                    .dialogs
                    .get_mut(id)
                    .expect("known dialog is in the table");
                d.caller = caller;
                d.caller_leg.saw_cseq(msg.cseq);
                id
            }
            None => {
                let (set, turn, gateway, load) = match inbound {
                    Some(target) => (usize::from(u16::MAX), 0, target, None),
                    None => {
                        let (set, turn, gw) = match self.choose_gateway(msg, customer) {
                            Ok(chosen) => chosen,
                            Err(u) => return self.refuse_unrouted(now, msg, src, key, customer, u),
                        };
                        let g = &self.cfg.routing.gateways.sets[set].gateways[gw];
                        (set, turn, g.target, Some(g.state.clone()))
                    }
                };
                let give_back =
                    |load: &Option<std::sync::Arc<crate::proxy::gateway::GatewayState>>| {
                        if let Some(l) = load {
                            l.give_back();
                        }
                    };
                if self.dialogs.by_call_id(call_id).is_some() {
                    give_back(&load);
                    self.key = key;
                    return self.reply_stateless(msg, src, 482, Extra::default());
                }
                let admitted = match admission::admit(
                    &self.cfg,
                    msg,
                    src,
                    customer,
                    inbound.is_some(),
                    unix,
                ) {
                    Ok(a) => a,
                    Err(why) => {
                        give_back(&load);
                        return self.reply_limit(now, msg, src, key, customer, why);
                    }
                };
                let caller = self.sender(src, inbound.is_some());
                let mut dialog = self.new_dialog(now, caller, gateway, msg, admitted);
                dialog.set = set as u16;
                dialog.turn = turn;
                dialog.load = load;
                dialog.inbound = inbound.is_some();
                let Some(id) = self.dialogs.insert(dialog) else {
                    // The record (its profile places, its gateway place) was dropped.
                    self.key = key;
                    return self.reply_overload(msg, src);
                };
                self.stats.processed_dialogs.inc();
                self.ensure_sweep(now);
                id
            }
        };
        self.report_request(now, msg, src, Some(id), b"");
        let gateway = self
            .dialogs
            .get(id)
            .map(|d| d.gateway)
            .expect("dialog just made");
        let fwd = Forward {
            record_route: Some(id),
            strip_route: own_route,
            ..Forward::default()
        };
        let txn = self.start_txn(now, src, gateway, msg, key, Some(id), fwd);
        let wanted = self.cfg.emit.dialogs || self.cfg.emit.failures;
        let parties = match self.txns.get(txn).and_then(|t| t.parties.as_deref()) {
            // The dialog's report reads the same parts of the INVITE it was made from.
            Some((p, _)) if fresh && wanted => Some(Box::new(p.clone())),
            _ => None,
        };
        if let Some(d) = self.dialogs.get_mut(id) {
            d.invite = Some(txn);
            d.times.invite_forwarded = unix;
            if parties.is_some() {
                d.parties = parties;
            }
        }
        // While another gateway is left, an attempt may go without a reply only so long.
        let timer_b = self.attempt_timeout(id);
        if timer_b < self.cfg.timers.timer_b
            && let Some(t) = self.txns.get_mut(txn)
        {
            t.set(Timer::B, now + timer_b);
            self.reschedule(txn);
        }
    }

    /// Where requests to the sender of an INVITE from `src` go: `src`, or for a call from a
    /// trunk (`from_trunk`) the gateway's own address (a trunk that sends from other ports or
    /// addresses listens on its configured one).
    fn sender(&self, src: SocketAddr, from_trunk: bool) -> Target {
        let gateways = &self.cfg.routing.gateways;
        match gateways.position(src).filter(|_| from_trunk) {
            Some((set, i)) => gateways.sets[set].gateways[i].target,
            None => Target::udp(src),
        }
    }

    /// When the record of a dialog not answered yet goes at the latest: its early timeout, the
    /// CANCEL that sends and siplb's own 487 when that gets no answer, then the linger. Its
    /// `default_timeout` counts from the answer, as Kamailio's does.
    fn early_expiry(&self, now: Instant) -> Instant {
        now + self.cfg.dialog.early_timeout + self.cfg.timers.timer_b * 2 + self.cfg.dialog_linger
    }

    fn new_dialog(
        &self,
        now: Instant,
        caller: Target,
        gateway: Target,
        msg: &SipMsg<'_>,
        admitted: Admitted,
    ) -> Dialog {
        let buf = msg.buf;
        let value_of = |name| {
            msg.headers_named(name)
                .next()
                .map_or(Span::default(), |(_, h)| h.value())
        };
        Dialog {
            call_id: msg.call_id().into(),
            caller,
            gateway,
            caller_leg: Leg::new(
                msg.from_tag().unwrap_or(b""),
                first_contact(msg),
                msg.cseq,
                record_routes(msg, None),
            ),
            callee_leg: Leg::default(),
            early_tag: Box::default(),
            from: value_of(HeaderName::From).of(buf).into(),
            to: value_of(HeaderName::To).of(buf).into(),
            request_uri: msg.request_uri().map_or(&b""[..], |u| u.of(buf)).into(),
            account: admitted.account,
            state: DialogState::Unconfirmed,
            created: now,
            answered: None,
            times: DialogTimes {
                invite_received: self.clock.unix_ms(now),
                ..DialogTimes::default()
            },
            outcome: Outcome::default(),
            invite: None,
            early_cancelled: false,
            cancelled_by: None,
            expires: self.early_expiry(now),
            profiles: admitted.profiles,
            vars: admitted.vars,
            end_cause: None,
            tried: vec![gateway.addr],
            set: 0,
            turn: 0,
            load: None,
            parties: None,
            cseq_shift: 0,
            inbound: false,
        }
    }

    /// The forwarded copy of request `msg` from `src`, with siplb's Via (`branch`), in a
    /// pooled buffer.
    pub(super) fn forwarded_copy(
        &mut self,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        branch: &[u8],
        fwd: Forward<'_>,
    ) -> Vec<u8> {
        let mut out = self.out.buffer();
        forward::request(
            msg,
            src,
            self.local,
            branch,
            fwd,
            &mut self.rewrite,
            &mut out,
        );
        out
    }

    /// Creates a proxy transaction for `msg`, answers 100 for INVITE, forwards to `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_txn(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: Target,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        dialog: Option<DialogId>,
        fwd: Forward<'_>,
    ) -> TxnId {
        let method = msg.method().unwrap_or(Method::Other);
        let kind = if method == Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let timers = self.cfg.timers;
        let mut t = Txn::new(kind, method, Target::udp(src), dst, timers.t1);
        t.dialog = dialog;
        t.server_key = key.as_slice().into();
        self.key = key;
        if self.cfg.emit.transaction(method) {
            // Read for its outcome's report now, while the request is parsed. Forwarding
            // changes none of it (nor does a failover's or an authenticated resend).
            let to_tag = text(msg.to_tag().unwrap_or(b""));
            t.parties = Some(Box::new((Parties::of_request(msg), to_tag)));
        }
        if kind == Kind::Invite || self.cfg.routing.gateways.has_credentials(dst.addr) {
            // Only an INVITE gets a final reply from siplb itself (408, 487): keep what it
            // came as for that (a non-INVITE times out silently, RFC 4320); and a request to
            // a gateway that may challenge it, to resend it with credentials.
            t.received.extend_from_slice(&msg.buf[..msg.end()]);
        }
        let mut branch = Vec::with_capacity(48);
        self.branches.forwarded(msg, 0, &mut branch);
        let mut ck = Vec::new();
        txn::client_key(&branch, false, &mut ck);
        t.client_key = ck.into();
        let out = self.forwarded_copy(msg, src, &branch, fwd);
        t.forwarded.extend_from_slice(&out);
        t.client = ClientState::Calling;
        match kind {
            Kind::Invite => {
                t.set(Timer::A, now + timers.t1);
                t.set(Timer::B, now + timers.timer_b);
                // 100 Trying: hop by hop, no To tag.
                let ex = Extra::default();
                reply::build(
                    msg,
                    src,
                    100,
                    b"",
                    ex,
                    &mut self.rewrite,
                    &mut t.last_response,
                );
                t.server = ServerState::Proceeding;
                self.out.send_copy(t.upstream, &t.last_response);
            }
            Kind::NonInvite => {
                t.set(Timer::E, now + timers.t1);
                t.set(Timer::F, now + timers.timer_b);
            }
        }
        let id = self.insert_txn(t);
        self.stats.fwd_requests.inc();
        self.out.send(dst, out);
        self.schedule_txn(id, now + timers.t1);
        id
    }

    pub(super) fn on_in_dialog(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        own_route: Option<(usize, Span)>,
        stranger: bool,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        let buf = msg.buf;
        let id = own_route
            .and_then(|(_, r)| NameAddr::parse(buf, r).ok())
            .and_then(|na| did_param(buf, na.uri))
            // A `did` of another run (restored after a restart) may name another dialog.
            .filter(|id| {
                self.dialogs
                    .get(*id)
                    .is_some_and(|d| *d.call_id == *msg.call_id())
            })
            .or_else(|| self.dialogs.by_call_id(msg.call_id()));
        // A source that is neither a gateway nor a customer speaks only for the side of its
        // dialog at its own address: the customer's target of an inbound call.
        if stranger
            && id
                .and_then(|id| self.dialogs.get(id))
                .is_none_or(|d| d.side_address(msg.from_tag()).addr.ip() != src.ip())
        {
            self.key = key;
            return self.forbid(msg, src, "Forbidden - Unknown Source");
        }
        let dst = id
            .and_then(|id| self.dialogs.get(id))
            .filter(|d| *d.call_id == *msg.call_id())
            .filter(|d| d.to_tag_matches(msg.from_tag(), msg.to_tag()))
            .and_then(|d| {
                let from_trunk = self.cfg.routing.gateways.same_gateway(d.trunk().addr, src);
                d.peer_for(msg.from_tag(), Target::udp(src), from_trunk)
            });
        let (Some(id), Some(dst)) = (id, dst) else {
            self.key = key;
            if method == Method::Ack {
                self.stats.drop_requests.inc();
                return;
            }
            return self.reply_stateless(msg, src, 481, Extra::default());
        };
        // The first ACK of a 2xx and the BYE of a call still up end what a call let in;
        // anything else that would be recorded waits while accounting cannot take more (its
        // records would pile up without end: a party can send BYEs to its ended dialog, or
        // ACKs, as fast as it likes).
        if self.acc_overflow
            && (self.cfg.emit.request(method) || self.cfg.emit.transaction(method))
            && !self.dialogs.get(id).is_some_and(|d| match method {
                Method::Ack => d.state == DialogState::ConfirmedNoAck,
                Method::Bye => d.state != DialogState::Ended,
                _ => false,
            })
        {
            self.key = key;
            if method == Method::Ack {
                // No answer to an ACK: the 2xx's next retransmission brings it again.
                self.stats.drop_requests.inc();
                return;
            }
            self.stats.acc_queue_full_503.inc();
            let retry = self.cfg.retry_after;
            return self.reply_stateless(msg, src, 503, Extra::overload(retry));
        }
        self.report_request(now, msg, src, Some(id), b"");
        if !matches!(method, Method::Ack | Method::Bye) {
            // A target refresh or a new CSeq: the restart journal saves the dialog again.
            self.dialogs.touch(id);
        }
        let (from_caller, shift) = {
            let d = self.dialogs.get_mut(id).expect("found above");
            let from_caller = d.from_caller(msg.from_tag());
            // Requests toward the trunk carry the CSeq it expects after authenticated resends.
            let shift = d.cseq_shift_of(msg.from_tag());
            let leg = d.leg_of_sender(msg.from_tag());
            leg.saw_cseq(msg.cseq);
            // A target refresh request updates its sender's remote target (RFC 3261 §12.2.2).
            let contact = first_contact(msg);
            if matches!(method, Method::Invite | Method::Update) && !contact.is_empty() {
                leg.contact = contact.into();
            }
            (from_caller, shift)
        };
        // A request sent to siplb's own address (a peer that took siplb's Record-Route for
        // the remote target) goes on to the other side's Contact, not back to siplb.
        let remote_target: Option<Box<[u8]>> = msg
            .request_uri()
            .filter(|&u| ingress::uri_names(buf, u, self.local.addr))
            .and_then(|_| self.dialogs.get(id))
            .map(|d| match from_caller {
                true => d.callee_leg.contact.clone(),
                false => d.caller_leg.contact.clone(),
            })
            .filter(|c| !c.is_empty());
        let fwd = Forward {
            record_route: None,
            strip_route: own_route,
            // Never past 2^31 - 1 (RFC 3261 §8.1.1.5), however near it the caller's is.
            cseq: (shift > 0).then(|| msg.cseq.saturating_add(shift).min(i32::MAX as u32)),
            rack_shift: if method == Method::Prack { shift } else { 0 },
            headers: b"",
            request_uri: remote_target.as_deref(),
        };
        if method == Method::Ack {
            self.dialogs
                .set_state(id, DialogState::ConfirmedNoAck, DialogState::Confirmed);
            self.key = key;
            // ACK for a 2xx: its own transaction end to end; forwarded without state, with a
            // branch derived from the incoming one so retransmissions carry the same branch.
            let mut branch = Vec::with_capacity(32);
            originate::ack_branch(msg, &mut branch);
            let out = self.forwarded_copy(msg, src, &branch, fwd);
            self.stats.fwd_requests.inc();
            self.out.send(dst, out);
            return;
        }
        if self.txns_full() {
            self.key = key;
            return self.reply_overload(msg, src);
        }
        // An answered dialog ends with the BYE itself, as Kamailio's does (its record stays to
        // carry the BYE's transaction and stragglers); it gives its places back only once its
        // BYE is on its way, with both tags matching. Before the answer the INVITE's outcome
        // ends it.
        if method == Method::Bye && self.dialog_state_is(Some(id), DialogState::is_confirmed) {
            if let Some(cause) = q850_cause(msg)
                && let Some(d) = self.dialogs.get_mut(id)
            {
                d.outcome.q850_cause = Some(cause);
            }
            let side = if from_caller {
                Side::Caller
            } else {
                Side::Callee
            };
            self.end_dialog_now(now, id, EndCause::Bye(side));
        }
        let txn = self.start_txn(now, src, dst, msg, key, Some(id), fwd);
        if let Some(t) = self.txns.get_mut(txn) {
            t.cseq_shift = shift;
            t.caller_cseq = msg.cseq;
        }
    }

    fn on_cancel(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) {
        // The INVITE this CANCEL is for has the same branch and sent-by.
        let mut key = std::mem::take(&mut self.key);
        txn::server_key(msg, &mut key);
        let cancel_key: Box<[u8]> = key.as_slice().into();
        txn::table::invite_key_of_cancel(&mut key);
        let invite = self.txns.by_server_key(&key);
        self.key = key;
        let Some(invite) = invite else {
            if !self.cancel_parked(now, msg, src, &cancel_key) {
                self.reply_stateless(msg, src, 481, Extra::default());
            }
            return;
        };
        let dialog = self.txns.get(invite).and_then(|t| t.dialog);
        self.report_request(now, msg, src, dialog, b"");
        self.answer_cancel(now, msg, src, cancel_key);
        let Some(inv) = self.txns.get_mut(invite) else {
            return;
        };
        if inv.kind != Kind::Invite
            || inv.server != ServerState::Proceeding
            || inv.cancel != Cancel::None
        {
            return;
        }
        if let Some(d) = dialog.and_then(|d| self.dialogs.get_mut(d))
            && d.invite == Some(invite)
        {
            d.cancelled_by.get_or_insert(EndedBy::Caller);
        }
        match inv.client {
            ClientState::Calling => self.cancel_before_reply(now, invite),
            ClientState::Proceeding => self.send_cancel(now, invite),
            _ => {}
        }
    }

    /// 200 to a CANCEL, kept in a transaction of its own (`cancel_key`) for its
    /// retransmissions.
    pub(super) fn answer_cancel(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        cancel_key: Box<[u8]>,
    ) {
        let timers = self.cfg.timers;
        let peer = Target::udp(src);
        let mut t = Txn::new(Kind::NonInvite, Method::Cancel, peer, peer, timers.t1);
        let tag = local_tag(msg);
        let ex = Extra::default();
        reply::build(
            msg,
            src,
            200,
            tag.as_bytes(),
            ex,
            &mut self.rewrite,
            &mut t.last_response,
        );
        t.server = ServerState::Completed;
        t.server_key = cancel_key;
        t.set(Timer::J, now + timers.timer_b);
        self.out.send_copy(peer, &t.last_response);
        let cid = self.insert_txn(t);
        self.schedule_txn(cid, now + timers.timer_b);
        self.stats.local_replies.inc();
    }

    /// Sends CANCEL downstream for the INVITE `invite` (same branch, RFC 3261 §9.1).
    pub(super) fn send_cancel(&mut self, now: Instant, invite: TxnId) {
        let timers = self.cfg.timers;
        let mut out = self.out.buffer();
        let Some(inv) = self.txns.get_mut(invite) else {
            return;
        };
        let branch = {
            let Ok(fwd) = SipMsg::parse(&inv.forwarded) else {
                return;
            };
            originate::hop_request(&fwd, Method::Cancel, None, &mut out);
            fwd.branch().unwrap_or(b"").to_vec()
        };
        inv.cancel = Cancel::Sent;
        inv.set(Timer::CancelGuard, now + timers.timer_b);
        let (dst, dialog) = (inv.downstream, inv.dialog);
        self.schedule_txn(invite, now + timers.timer_b);
        self.send_local_request(now, Method::Cancel, dst, &branch, dialog, out);
    }
}
