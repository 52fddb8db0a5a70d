//! New INVITEs that siplb answers itself with a final reply instead of forwarding them: those a
//! profile limit refuses, and those cancelled while they waited for a fleet place. The reply
//! is kept in a server transaction, which answers the INVITE's retransmissions with it and
//! resends it until the ACK (Timers G, H), and the call gets its records as any other does:
//! the INVITE as received, its transaction's outcome and a CDR.

use super::Shard;
use crate::dialog::{Denied, Refusal};
use crate::proxy::dialogs::{DialogTimes, Outcome};
use crate::proxy::event::{DialogRecord, EndedBy, Event, Parties, TxnOutcome, text};
use crate::proxy::originate::local_tag;
use crate::proxy::reply::Extra;
use crate::proxy::target::Target;
use crate::proxy::txn::{self, Kind, Txn, machine};
use crate::sip::{HeaderName, Method, SipMsg};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

/// siplb's own final reply to a new INVITE.
struct LocalFinal {
    code: u16,
    reason: String,
    q850_cause: Option<u16>,
    /// Extra header lines (`Reason`), CRLF-terminated.
    headers: Vec<u8>,
    /// Why siplb answers it itself.
    why: Why,
}

/// Why a new INVITE was answered by siplb without being forwarded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A limit (the CDR's `rejected_limit`).
    Limit,
    /// The caller cancelled it while it waited (a 487).
    Cancelled,
    /// No route, no gateway with room, or (from a trunk) a number nobody owns (404, 503).
    Unrouted,
}

impl Shard {
    /// The reply to an INVITE a profile limit refused: by default `503 Account call limit`
    /// with `Reason: Q.850;cause=34` and no `Retry-After`. Counted once: the reply is kept in
    /// a server transaction, which answers the INVITE's retransmissions with it (without
    /// asking the limits again) and resends it until the ACK (Timers G, H).
    pub(super) fn reply_limit(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        key: Vec<u8>,
        customer: usize,
        why: Refusal,
    ) {
        match why.why {
            Denied::Lease => {
                self.key = key;
                return self.park(now, msg, src, customer);
            }
            Denied::Unavailable => {
                self.key = key;
                return self.reply_unavailable(msg, src);
            }
            Denied::Limit | Denied::TableFull => {}
        }
        self.refuse_over_limit(now, now, msg, src, key, customer, why.why);
    }

    /// The limit reply to an INVITE received at `received`, for limit reason `why`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse_over_limit(
        &mut self,
        now: Instant,
        received: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        key: Vec<u8>,
        customer: usize,
        why: Denied,
    ) {
        self.stats.limits_rejected.inc();
        if why == Denied::TableFull {
            self.stats.limits_account_table_full.inc();
        }
        if self.cfg.emit.request(Method::Invite) {
            let account = self.account_of(customer, msg, src).to_vec();
            self.report_request(received, msg, src, None, &account);
        }
        let lr = &self.cfg.limit_reply;
        let mut headers = Vec::new();
        if let Some(cause) = lr.q850_cause {
            let _ = write!(
                headers,
                "Reason: Q.850;cause={cause};text=\"{}\"\r\n",
                lr.reason.replace('"', "'")
            );
        }
        let reply = LocalFinal {
            code: lr.code,
            reason: lr.reason.clone(),
            q850_cause: lr.q850_cause,
            headers,
            why: Why::Limit,
        };
        self.refuse_invite(now, received, msg, src, key, customer, reply);
    }

    /// 487 to an INVITE received at `received` and cancelled by its caller before siplb
    /// forwarded it (while it waited for a fleet place); the INVITE and the CANCEL were
    /// reported as received.
    pub(super) fn refuse_cancelled(
        &mut self,
        now: Instant,
        received: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        customer: usize,
    ) {
        let mut key = std::mem::take(&mut self.key);
        txn::server_key(msg, &mut key);
        let reply = LocalFinal {
            code: 487,
            reason: crate::sip::reason_phrase(487).into(),
            q850_cause: None,
            headers: Vec::new(),
            why: Why::Cancelled,
        };
        self.refuse_invite(now, received, msg, src, key, customer, reply);
    }

    /// siplb's own answer `u` to a new INVITE of `customer` it has no gateway for (no route,
    /// or none with room), with the call's records as any refused call has them: a missed
    /// call and a CDR.
    pub(super) fn refuse_unrouted(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        key: Vec<u8>,
        customer: usize,
        u: super::routing::Unrouted,
    ) {
        if self.cfg.emit.request(Method::Invite) {
            let account = self.account_of(customer, msg, src).to_vec();
            self.report_request(now, msg, src, None, &account);
        }
        let reply = LocalFinal {
            code: u.code,
            reason: u.reason.into(),
            q850_cause: u.q850_cause,
            headers: u.headers.to_vec(),
            why: Why::Unrouted,
        };
        self.refuse_invite(now, now, msg, src, key, customer, reply);
    }

    /// siplb's own final reply to a new INVITE it did not forward, with the call's records:
    /// its transaction's outcome (flags) and the call's CDR.
    #[allow(clippy::too_many_arguments)]
    fn refuse_invite(
        &mut self,
        now: Instant,
        received: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        key: Vec<u8>,
        customer: usize,
        reply: LocalFinal,
    ) {
        // Who calls whom and the account, read once for both records.
        let emit_txn = self.cfg.emit.transaction(Method::Invite);
        let emit_cdr = self.cfg.emit.dialogs || self.cfg.emit.failures;
        let call = (emit_txn || emit_cdr).then(|| {
            (
                Parties::of_request(msg),
                text(self.account_of(customer, msg, src)),
            )
        });
        if let (true, Some((parties, account))) = (emit_cdr, &call) {
            self.report_refused(
                now,
                received,
                msg,
                src,
                parties.clone(),
                account.clone(),
                &reply,
            );
        }
        let LocalFinal {
            code,
            reason,
            q850_cause: cause,
            headers,
            ..
        } = reply;
        let extra = Extra {
            reason: Some(&reason),
            headers: &headers,
            ..Extra::default()
        };
        let peer = Target::udp(src);
        let tag = if self.txns_full() {
            self.key = key;
            self.send_stateless(msg, src, code, extra);
            local_tag(msg)
        } else {
            let timers = self.cfg.timers;
            let mut t = Txn::new(Kind::Invite, Method::Invite, peer, peer, timers.t1);
            let tag = self.local_reply_into(msg, src, code, extra, &mut t.last_response);
            machine::complete_server_invite(&mut t, now, &timers);
            t.server_key = key.as_slice().into();
            // Reported below, at once: the transaction keeps only its reply.
            t.reported = true;
            self.key = key;
            self.out.send_copy(peer, &t.last_response);
            let id = self.insert_txn(t);
            self.reschedule(id);
            self.stats.local_replies.inc();
            tag
        };
        if let (true, Some((parties, account))) = (emit_txn, call) {
            let outcome = TxnOutcome {
                dialog: None,
                method: Method::Invite,
                parties,
                to_tag: tag.into(),
                in_dialog: false,
                source: peer,
                destination: None,
                account,
                gateway: None,
                code: Some(code),
                reason: reason.into(),
                q850_cause: cause,
                local: true,
                at_ms: self.clock.unix_ms(now),
            };
            self.out.emit(Event::Transaction(Box::new(outcome)));
        }
    }

    /// The CDR of a call siplb ended itself before forwarding it: it never became a dialog.
    #[allow(clippy::too_many_arguments)]
    fn report_refused(
        &mut self,
        now: Instant,
        received: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        parties: Parties,
        account: Box<str>,
        reply: &LocalFinal,
    ) {
        let unix = self.clock.unix_ms(now);
        let header = |name| {
            msg.headers_named(name)
                .next()
                .map_or(Default::default(), |(_, h)| text(h.value().of(msg.buf)))
        };
        let inbound = self.cfg.routing.gateways.position(src).is_some();
        let record = DialogRecord {
            id: None,
            parties,
            to_tag: Box::default(),
            from: header(HeaderName::From),
            to: header(HeaderName::To),
            caller: Target::udp(src),
            gateway: inbound.then_some(Target::udp(src)),
            inbound,
            account,
            times: DialogTimes {
                invite_received: self.clock.unix_ms(received),
                end: unix,
                ..DialogTimes::default()
            },
            attempts: 0,
            outcome: Outcome {
                code: Some(reply.code),
                reason: reply.reason.as_str().into(),
                q850_cause: reply.q850_cause,
            },
            limit_refused: reply.why == Why::Limit,
            answered: false,
            ended_by: None::<EndedBy>,
            cancelled_by: (reply.why == Why::Cancelled).then_some(EndedBy::Caller),
            vars: Vec::new(),
        };
        self.out.emit(Event::Dialog(Box::new(record)));
    }
}
