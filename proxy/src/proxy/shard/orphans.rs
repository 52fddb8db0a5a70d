//! 2xx answers to INVITE attempts siplb no longer has: a gateway that answered after siplb
//! moved on to the next gateway (failover), or after the call was over (the caller's CANCEL
//! crossed the answer of a gateway that had not rung yet). The caller never saw that attempt,
//! so nobody else would end it: siplb acknowledges the 2xx, as RFC 3261 §13.2.2.4 asks of
//! the client whose INVITE it answers, and ends that call with a BYE (§15), so that the
//! gateway does not keep (and bill) an answered call nobody is on. Never while the call still
//! runs on the gateway that answered: only the attempts siplb left.

use super::Shard;
use crate::proxy::dialogs::DialogState;
use crate::proxy::forward::{did_param, first_contact, record_routes};
use crate::proxy::originate;
use crate::proxy::target::Target;
use crate::sip::value::{CommaList, NameAddr};
use crate::sip::{HeaderName, Method, SipMsg};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Attempts ended with a BYE that are remembered, so that the 2xx's retransmissions get the
/// ACK again and no second BYE. Past this many the oldest half is forgotten.
const REMEMBERED: usize = 4096;
/// How long one is remembered: past the 2xx's retransmissions (64 × T1 with the default T1).
const REMEMBER: Duration = Duration::from_secs(40);

/// The attempts this shard ended: (Call-ID, To tag) and when each may be forgotten.
#[derive(Default)]
pub(super) struct Orphans {
    ended: HashMap<Box<[u8]>, Instant>,
}

impl Orphans {
    /// Notes the attempt of `key`; whether it is new (its BYE is to be sent).
    fn first(&mut self, key: Box<[u8]>, now: Instant) -> bool {
        if self.ended.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        if self.ended.len() >= REMEMBERED {
            self.ended.retain(|_, until| *until > now);
            if self.ended.len() >= REMEMBERED {
                let mut untils: Vec<Instant> = self.ended.values().copied().collect();
                let (_, mid, _) = untils.select_nth_unstable(REMEMBERED / 2);
                let mid = *mid;
                self.ended.retain(|_, until| *until > mid);
            }
        }
        self.ended.insert(key, now + REMEMBER);
        true
    }
}

impl Shard {
    /// A response from `src` that matched no transaction: when it is a gateway's 2xx to an
    /// INVITE, siplb ACKs it and (once) sends a BYE. Whether it did.
    pub(super) fn on_orphan_2xx(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
    ) -> bool {
        let ok = msg.status().is_some_and(|c| (200..300).contains(&c));
        // Only a gateway's answer: a stranger's must not make siplb send anything.
        if !ok
            || msg.cseq_method != Method::Invite
            || self.cfg.routing.gateways.position(src).is_none()
            || msg.from_tag().is_none()
            || msg.to_checked().is_none()
        {
            return false;
        }
        let Some(to_tag) = msg.to_tag() else {
            return false;
        };
        // The call still runs on that gateway: an answer with a branch siplb does not know
        // may be a garbled copy of the live attempt's, which a BYE would end.
        let gateways = &self.cfg.routing.gateways;
        if self
            .dialogs
            .by_call_id(msg.call_id())
            .and_then(|id| self.dialogs.get(id))
            .is_some_and(|d| {
                d.state != DialogState::Ended && gateways.same_gateway(d.gateway.addr, src)
            })
        {
            return false;
        }
        self.end_answered_leg(now, src, msg, to_tag)
    }

    /// A 2xx from `src` to an INVITE whose caller already has siplb's final answer (487 after
    /// a CANCEL that came before the gateway said anything): acknowledged and ended with a
    /// BYE, as the caller will never take it. Whether it did.
    pub(super) fn on_2xx_after_final(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
    ) -> bool {
        match msg.to_tag() {
            Some(to_tag) if msg.from_tag().is_some() && msg.to_checked().is_some() => {
                self.end_answered_leg(now, src, msg, to_tag)
            }
            _ => false,
        }
    }

    /// A second 2xx to the call's INVITE from its gateway, with a To tag other than the
    /// answer's: a second dialog (a fork behind the gateway) that siplb neither counts nor
    /// bills. It is acknowledged and ended with a BYE, not passed to the caller, so that one
    /// call is one dialog. Whether it was such a 2xx.
    pub(super) fn on_forked_2xx(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        txn: crate::proxy::ids::TxnId,
        dialog: Option<crate::proxy::ids::DialogId>,
    ) -> bool {
        let Some(to_tag) = msg.to_tag() else {
            return false;
        };
        // The call's own INVITE only: the answer to a re-INVITE the callee sent carries the
        // caller's tag.
        let other = dialog
            .and_then(|id| self.dialogs.get(id))
            .filter(|d| d.invite == Some(txn))
            .and_then(|d| d.callee_tag())
            .is_some_and(|answered| answered != to_tag);
        if !other || msg.from_tag().is_none() || msg.to_checked().is_none() {
            return false;
        }
        self.end_answered_leg(now, src, msg, to_tag)
    }

    /// ACKs the 2xx `msg` from `src` (each copy) and, once per (Call-ID, To tag), ends its
    /// dialog with a BYE. Whether the ACK could be made.
    fn end_answered_leg(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        to_tag: &[u8],
    ) -> bool {
        let dst = Target::udp(src);
        let contact = first_contact(msg);
        let contact = if contact.is_empty() {
            format!("sip:{src}").into_bytes()
        } else {
            contact.to_vec()
        };
        let route_set = our_dialog(msg)
            .map(|did| record_routes(msg, Some(did)))
            .unwrap_or_default();
        let leg = originate::AnsweredLeg {
            ok: msg,
            contact: &contact,
            route_set: &route_set,
        };
        let mut branch = Vec::with_capacity(40);
        // The same branch for the ACK of every retransmission of the 2xx.
        originate::ack_branch(msg, &mut branch);
        let mut ack = self.out.buffer();
        originate::in_answered_leg(&leg, Method::Ack, self.local, &branch, msg.cseq, &mut ack);
        // Responses are read only as far as siplb routes them: a From (or Call-ID) garbled
        // past that would make these requests garbage too.
        if SipMsg::parse(&ack).is_err() {
            return false;
        }
        self.out.send(dst, ack);
        self.stats.orphan_2xx.inc();
        let mut key = msg.call_id().to_vec();
        key.push(0);
        key.extend_from_slice(to_tag);
        if !self.orphans.first(key.into(), now) {
            return true;
        }
        self.stats.orphan_byes.inc();
        branch.clear();
        self.branches.next(&mut branch);
        let mut bye = self.out.buffer();
        let cseq = msg.cseq.saturating_add(1).min(i32::MAX as u32);
        originate::in_answered_leg(&leg, Method::Bye, self.local, &branch, cseq, &mut bye);
        self.send_local_request(now, Method::Bye, dst, &branch, None, bye);
        true
    }
}

/// The dialog id of siplb's own Record-Route entry in `msg`, if there is one.
fn our_dialog(msg: &SipMsg<'_>) -> Option<crate::proxy::ids::DialogId> {
    let buf = msg.buf;
    msg.headers_named(HeaderName::RecordRoute)
        .flat_map(|(_, h)| CommaList::new(buf, h.value()).filter_map(Result::ok))
        .find_map(|el| did_param(buf, NameAddr::locate(buf, el)?.uri))
}
