//! INVITEs waiting for a fleet-wide place (`[cluster]`): the account had no spare leased
//! place on this node, one was asked of the lease task, and the INVITE waits here (the worker
//! goes on with everything else) until the answer: admitted again when places came, the
//! limit reply when the fleet is full, 503 with Retry-After when Redis cannot be reached or
//! the answer takes longer than `cluster.wait_ms`.

use super::Shard;
use crate::cluster::fleet::Answer;
use crate::dialog::Denied;
use crate::proxy::reply::Extra;
use crate::proxy::txn;
use crate::sip::SipMsg;
use std::net::SocketAddr;
use std::time::Instant;

/// One waiting INVITE, as received.
pub(super) struct Parked {
    account: Box<[u8]>,
    call_id: Box<[u8]>,
    customer: usize,
    data: Vec<u8>,
    src: SocketAddr,
    received: Instant,
    until: Instant,
}

/// INVITEs waiting at once in one worker; beyond, 503 with Retry-After.
const MAX_PARKED: usize = 4096;

impl Shard {
    /// Parks `msg` until the lease task answers for its account (a retransmission of one
    /// already waiting is dropped).
    pub(super) fn park(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        customer: usize,
    ) {
        let call_id = msg.call_id();
        if self.parked.iter().any(|p| &*p.call_id == call_id) {
            return;
        }
        if self.parked.len() >= MAX_PARKED {
            return self.reply_unavailable(msg, src);
        }
        let account = self.account_of(customer, msg, src).into();
        self.parked.push(Parked {
            account,
            call_id: call_id.into(),
            customer,
            data: msg.buf.to_vec(),
            src,
            received: now,
            until: now + self.cfg.lease_wait,
        });
        self.stats.cluster_parked.inc();
    }

    /// 503 with Retry-After: no fleet place can be had now.
    pub(super) fn reply_unavailable(&mut self, msg: &SipMsg<'_>, src: SocketAddr) {
        self.stats.cluster_unavailable_503.inc();
        let retry = self.cfg.retry_after;
        self.reply_stateless(msg, src, 503, Extra::overload(retry));
    }

    /// Whether INVITEs are waiting (the worker then looks for answers often).
    pub fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// The lease task's answer for `account`.
    pub fn lease_answer(&mut self, now: Instant, account: &[u8], answer: Answer) {
        if answer == Answer::EndOver {
            return self.end_over(now, account);
        }
        if !self.parked.iter().any(|p| &*p.account == account) {
            return;
        }
        let (mine, rest) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| &*p.account == account);
        self.parked = rest;
        for p in mine {
            self.settle(now, p, answer);
        }
    }

    /// A CANCEL of an INVITE waiting here (same Call-ID and CSeq number): 200 to the CANCEL
    /// (kept in a transaction under `cancel_key`), 487 to the INVITE, which goes no further,
    /// and the call's records as for any cancelled call. False when none waits.
    pub(super) fn cancel_parked(
        &mut self,
        now: Instant,
        cancel: &SipMsg<'_>,
        src: SocketAddr,
        cancel_key: &[u8],
    ) -> bool {
        let Some(i) = self.parked.iter().position(|p| {
            &*p.call_id == cancel.call_id()
                && SipMsg::parse(&p.data).is_ok_and(|m| m.cseq == cancel.cseq)
        }) else {
            return false;
        };
        let p = self.parked.swap_remove(i);
        let Ok(invite) = SipMsg::parse(&p.data) else {
            return false;
        };
        // As received, in order: the INVITE (not reported while it waited), the CANCEL.
        self.report_request(p.received, &invite, p.src, None, &p.account);
        self.report_request(now, cancel, src, None, &p.account);
        self.answer_cancel(now, cancel, src, cancel_key.into());
        self.refuse_cancelled(now, p.received, &invite, p.src, p.customer);
        true
    }

    /// Ends (BYE to both sides) answered calls of `account` while its lease says some are
    /// over the fleet's limit: calls restored after a restart whose places others took.
    fn end_over(&mut self, now: Instant, account: &[u8]) {
        let Some(fleet) = self.cfg.profiles.fleet.get() else {
            return;
        };
        let lease = fleet.lease(account);
        let ids: Vec<_> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.state.is_confirmed() && &*d.account == account)
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            if !lease.take_one_to_end() {
                break;
            }
            self.terminate(now, id, crate::proxy::dialogs::EndCause::Operator);
        }
    }

    /// Those that waited too long get 503.
    pub fn expire_parked(&mut self, now: Instant) {
        if !self.parked.iter().any(|p| p.until <= now) {
            return;
        }
        let (late, rest) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.until <= now);
        self.parked = rest;
        for p in late {
            self.settle(now, p, Answer::Unavailable);
        }
    }

    fn settle(&mut self, now: Instant, p: Parked, answer: Answer) {
        let Ok(msg) = SipMsg::parse(&p.data) else {
            return;
        };
        match answer {
            // Admitted again from the start: the places may have gone to INVITEs before it,
            // then it waits again.
            Answer::Granted => self.on_request(now, p.src, &msg),
            // (EndOver is not about parked INVITEs: handled above.)
            Answer::Full | Answer::EndOver => {
                let mut key = std::mem::take(&mut self.key);
                txn::server_key(&msg, &mut key);
                let (received, customer) = (p.received, p.customer);
                self.refuse_over_limit(now, received, &msg, p.src, key, customer, Denied::Limit);
            }
            Answer::Unavailable => self.reply_unavailable(&msg, p.src),
        }
    }
}
