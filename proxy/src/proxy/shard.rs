//! [`Shard`]: the calls one worker owns. It ties the parts together — ingress classification,
//! the transaction table and its state machines, the response context, the dialog table,
//! admission, forwarding and the requests siplb originates — and owns the outputs.
//!
//! The shard takes datagrams with their source and the time ([`Shard::handle`]) and timer
//! expiries ([`Shard::handle_timeout`]); it hands out what to send ([`Shard::poll_transmit`])
//! and what happened ([`Shard::poll_event`]), and says when it next needs to be woken
//! ([`Shard::poll_timeout`]). It never reads the clock and owns no socket.
//!
//! The request paths are in `shard/requests.rs`, the response context in
//! `shard/responses.rs`, the ends of dialogs in `shard/lifecycle.rs`.

mod auth;
mod lifecycle;
mod orphans;
mod parked;
mod refuse;
mod restart;
pub use restart::JournalEntry;
mod requests;
mod responses;
mod routing;

use super::clock::{Schedule, Wake, WallClock};
use super::dialogs::{DialogFilter, DialogInfo, DialogState, DialogTable, info};
use super::event::{EndedBy, Event, Parties, Refused, TxnOutcome, text};
use super::ids::{DialogId, TxnId};
use super::originate::{Branches, local_tag};
use super::output::Output;
use super::reply::{self, Extra};
use super::target::{Target, Transmit};
use super::txn::left::LeftAttempts;
use super::txn::{self, Txn, TxnTable, machine};
use super::{DialogTimers, ProxyConfig};
use crate::metrics::ShardStats;
use crate::sip::{Method, ParseError, Rewrite, SipMsg};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often dialogs are checked against their timeouts, at most: one sweep per shard instead
/// of a 12-hour timer per call, which would stay queued long after most calls ended. Shorter
/// timeouts sweep more often (a tenth of the shortest), so that they are kept to within 10 %.
const DIALOG_SWEEP: Duration = Duration::from_secs(60);

/// The methods siplb takes outside a dialog, for 405 (RFC 3261 §21.4.6: the methods valid
/// for the address; inside a dialog every method is passed on).
const ALLOW: &[u8] = b"Allow: INVITE, ACK, CANCEL, OPTIONS\r\n";

pub struct Shard {
    cfg: Arc<ProxyConfig>,
    pub stats: Arc<ShardStats>,
    /// siplb's own address, as it writes it in Via and Record-Route.
    local: Target,
    txns: TxnTable,
    /// INVITE attempts moved past, whose late or retransmitted finals still get an ACK.
    left: LeftAttempts,
    dialogs: DialogTable,
    schedule: Schedule,
    clock: WallClock,
    branches: Branches,
    /// When the last unanswered challenge was said in the log (`challenge_given_up`).
    auth_warned: Option<Instant>,
    out: Output,
    rewrite: Rewrite,
    /// Scratch: a transaction key.
    key: Vec<u8>,
    /// Scratch: what is due in one `handle_timeout`, and what one sweep found.
    due: Vec<(Instant, Wake)>,
    swept: Vec<(DialogId, super::dialogs::table::Due)>,
    /// Accounting has no room for the records of a new call: new INVITEs get 503.
    acc_full: bool,
    /// Accounting's records pile up on the worker past its queue: requests in a dialog that
    /// would add more (other than ACK and BYE) get 503 too.
    acc_overflow: bool,
    /// siplb drains (`core.drain`): new INVITEs and OPTIONS get 503.
    draining: bool,
    /// When siplb began to stop, once it has.
    stopping_at: Option<Instant>,
    /// Calls given to each gateway set so far (round robin and weights turn on it).
    turns: Vec<u64>,
    /// The OPTIONS prober, in the one worker that probes.
    prober: Option<super::probe::Prober>,
    /// INVITEs waiting for a fleet-wide place.
    parked: Vec<parked::Parked>,
    /// Answered attempts nobody was on, ended with a BYE.
    orphans: orphans::Orphans,
}

/// A final response for the record: status, reason, Q.850 cause, To tag, and whether siplb
/// made it.
struct Final {
    code: Option<u16>,
    reason: Box<str>,
    q850_cause: Option<u16>,
    to_tag: Box<str>,
    local: bool,
}

impl Shard {
    pub fn new(cfg: Arc<ProxyConfig>, id: u32, stats: Arc<ShardStats>) -> Shard {
        Shard {
            local: Target::udp(cfg.local),
            branches: Branches::new(cfg.branch_key, id),
            auth_warned: None,
            cfg,
            stats,
            txns: TxnTable::default(),
            left: LeftAttempts::default(),
            dialogs: DialogTable::new(id),
            schedule: Schedule::default(),
            clock: WallClock::default(),
            out: Output::default(),
            rewrite: Rewrite::new(),
            key: Vec::new(),
            due: Vec::new(),
            swept: Vec::new(),
            acc_full: false,
            acc_overflow: false,
            draining: false,
            stopping_at: None,
            turns: Vec::new(),
            prober: None,
            parked: Vec::new(),
            orphans: Default::default(),
        }
    }

    /// Makes this shard the prober of the gateways (Kamailio's dispatcher pinging): it is
    /// worker `worker` of `workers`, whose owner hash key is `hash_key`, so that it can choose
    /// Call-IDs whose replies come back to it.
    pub fn enable_probing(&mut self, worker: u32, workers: u32, hash_key: u32) {
        // 64 bits of a branch of siplb's own: random per process, and unpredictable.
        let mut branch = Vec::with_capacity(48);
        self.branches.next(&mut branch);
        let token = String::from_utf8_lossy(&branch[branch.len().saturating_sub(16)..]).into();
        self.prober = Some(super::probe::Prober::new(
            worker,
            workers,
            hash_key,
            self.cfg.local,
            token,
        ));
    }

    /// Whether accounting has room for the records of new calls: while it has not, new
    /// INVITEs get `503` + `Retry-After` (counted in `acc:queue_full_503`), so that no record
    /// of a call let in is ever dropped.
    pub fn set_accounting_full(&mut self, full: bool) {
        self.acc_full = full;
    }

    /// Whether accounting's records pile up on the worker beyond its queue (the writer
    /// stalled for long): a request in a dialog that would be recorded, other than ACK and
    /// BYE, gets `503` + `Retry-After` meanwhile, so that the records waiting stay bounded.
    pub fn set_accounting_overflow(&mut self, overflow: bool) {
        self.acc_overflow = overflow;
    }

    /// Whether siplb drains (`core.drain`): new INVITEs get `503` + `Retry-After`, and so do
    /// OPTIONS to siplb (probes move traffic away); everything in a dialog goes on.
    /// A stopping siplb drains whatever `core.drain` says: a call let in during the stop's
    /// wait would be left with no CANCEL and no BYE.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining || self.stopping_at.is_some();
    }

    /// Takes a reloaded configuration: new requests and new dialogs follow it; a live dialog
    /// keeps the profile places, variables and peers it was admitted with (its timeouts follow
    /// the new `[dialog]` ones), and the transactions under way keep their timers. The listen
    /// address does not change.
    pub fn reconfigure(&mut self, cfg: Arc<ProxyConfig>) {
        debug_assert_eq!(
            cfg.local, self.cfg.local,
            "the listen address cannot change live"
        );
        self.cfg = cfg;
        if let Some(p) = self.prober.as_mut() {
            p.reconfigured();
        }
    }

    // ------------------------------------------------------------------ inspection

    /// Open transactions.
    pub fn transactions(&self) -> usize {
        self.txns.len()
    }

    /// Memory the open transactions hold ([`crate::proxy::txn::TxnTable::bytes`]).
    pub fn transaction_bytes(&self) -> usize {
        self.txns.bytes()
    }

    /// Dialog records held (active and lingering).
    pub fn dialog_records(&self) -> usize {
        self.dialogs.len()
    }

    /// The dialog of a Call-ID.
    pub fn dialog(&self, call_id: &[u8]) -> Option<&super::dialogs::Dialog> {
        self.dialogs.get(self.dialogs.by_call_id(call_id)?)
    }

    /// Dialogs not ended yet (Kamailio's `active_dialogs`).
    pub fn active_dialogs(&self) -> usize {
        self.dialogs.active()
    }

    /// Dialogs in each of the states 1–4 (Kamailio's starting, connecting, answering, ongoing).
    pub fn dialogs_by_state(&self) -> [usize; 4] {
        self.dialogs.by_state()
    }

    /// Dialogs not answered yet (Kamailio's `early_dialogs`).
    pub fn early_dialogs(&self) -> usize {
        self.dialogs.early()
    }

    /// Snapshots of the dialogs not ended that match `filter`, for the control socket.
    pub fn dialog_infos(&self, now: Instant, filter: &DialogFilter) -> Vec<DialogInfo> {
        let socket = self.local.to_string();
        let mut out: Vec<DialogInfo> = self
            .dialogs
            .iter()
            .filter(|(_, d)| info::listed(d) && filter.matches(d))
            .map(|(id, d)| {
                DialogInfo::of(id, d, now, &self.cfg.dialog, &self.cfg.profiles, &socket)
            })
            .collect();
        out.sort_by_key(|i| (i.h_entry, i.h_id));
        out
    }

    /// Retry-After seconds of an overload 503.
    pub fn retry_after(&self) -> u32 {
        self.cfg.retry_after
    }

    /// Whether a new INVITE would be refused for lack of room.
    pub fn full(&self) -> bool {
        self.txns_full() || self.dialogs.len() >= self.cfg.max_dialogs
    }

    /// No room for another transaction: as many as `limits.transactions_per_worker`, or as
    /// much memory held as `limits.transaction_mb_per_worker`.
    fn txns_full(&self) -> bool {
        self.txns.len() >= self.cfg.max_transactions
            || self.txns.bytes() >= self.cfg.max_transaction_bytes
    }

    // ---------------------------------------------------------------------- outputs

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// Gives a sent buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.out.recycle(buf);
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = self.prober.as_ref().and_then(|p| p.next_deadline());
        match (self.schedule.next_deadline(), probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the wall clock: `now` is `unix_ms` milliseconds after the Unix epoch. Dialog and
    /// event times are derived from it; without it they count from the shard's first `now`.
    pub fn set_epoch(&mut self, now: Instant, unix_ms: u64) {
        self.clock.set(now, unix_ms);
    }

    /// Unix time in ms of `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        self.clock.unix_ms(now)
    }

    fn start_clock(&mut self, now: Instant) {
        self.schedule.start(now);
        self.clock.start(now);
    }

    // ------------------------------------------------------------------------ input

    /// One datagram from `src`.
    pub fn handle(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        self.start_clock(now);
        match SipMsg::parse(data) {
            Ok(msg) if msg.is_request() => {
                self.stats.rcv_requests.inc();
                self.on_request(now, src, &msg)
            }
            Ok(msg) => {
                self.stats.rcv_replies.inc();
                self.on_response(now, src, &msg)
            }
            Err(ParseError::Empty) => {} // keep-alive CRLFs
            Err(ParseError::TooLarge) => {
                self.stats.bad_msg.inc();
                self.handle_truncated(src, &data[..data.len().min(crate::sip::MAX_MESSAGE)]);
            }
            Err(e) => {
                self.stats.bad_msg.inc();
                self.reply_unparsable(src, data, e);
            }
        }
    }

    /// The first part of a datagram too long for a receive buffer, from `src`: a request is
    /// answered `513 Message Too Large` when that part holds its Via and Call-ID; anything else
    /// is dropped. No state is kept.
    pub fn handle_truncated(&mut self, src: SocketAddr, part: &[u8]) {
        let mut out = self.out.buffer();
        if reply::build_too_large(part, &mut out) {
            self.stats.too_large_513.inc();
            self.stats.local_replies.inc();
            self.out.send(Target::udp(src), out);
        } else {
            self.out.recycle(out);
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_clock(now);
        let mut due = std::mem::take(&mut self.due);
        self.schedule.expire(now, &mut due);
        for &(at, wake) in &due {
            match wake {
                Wake::Txn(id) => {
                    // Entries of removed transactions, and entries superseded by an earlier
                    // wake-up, are stale.
                    if let Some(t) = self.txns.get_mut(id)
                        && t.queued == Some(at)
                    {
                        t.queued = None;
                        self.run_txn_timers(now, id);
                    }
                }
                Wake::Dialog(id) => {
                    if self.dialogs.get(id).is_some_and(|d| d.expires <= now) {
                        self.dialogs.remove(id);
                    }
                }
                Wake::Sweep => {
                    self.schedule.swept();
                    self.sweep(now);
                    if !self.dialogs.is_empty() {
                        self.ensure_sweep(now);
                    }
                }
            }
        }
        due.clear();
        self.due = due;
        if let Some(p) = self.prober.as_mut() {
            p.tick(now, &self.cfg.routing.gateways, &mut self.out);
        }
    }

    // ------------------------------------------------------------------- transactions

    /// Adds a transaction to the table; its id.
    fn insert_txn(&mut self, txn: Txn) -> TxnId {
        self.stats.transactions.inc();
        self.txns.insert(txn)
    }

    /// Sends `out`, a request siplb makes itself (BYE, CANCEL) with `branch`, to `dst` in a
    /// client transaction of its own (retransmitted, its answer absorbed), tied to `dialog`.
    fn send_local_request(
        &mut self,
        now: Instant,
        method: Method,
        dst: Target,
        branch: &[u8],
        dialog: Option<DialogId>,
        out: Vec<u8>,
    ) -> TxnId {
        let timers = self.cfg.timers;
        let mut t = Txn::local_request(method, dst, now, &timers);
        t.dialog = dialog;
        let mut ck = Vec::new();
        txn::client_key(branch, method == Method::Cancel, &mut ck);
        t.client_key = ck.into();
        t.forwarded.extend_from_slice(&out);
        let id = self.insert_txn(t);
        self.schedule_txn(id, now + timers.t1);
        self.stats.fwd_requests.inc();
        self.out.send(dst, out);
        id
    }

    /// Makes sure the transaction `id` is run at `at` or earlier. One schedule entry per
    /// transaction is live (`Txn::queued`); a later one is not added, so the schedule does not
    /// grow with every response and stale entries do not each run the transaction again.
    fn schedule_txn(&mut self, id: TxnId, at: Instant) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        if t.queued.is_some_and(|q| q <= at) {
            return;
        }
        t.queued = Some(at);
        self.schedule.add(at, Wake::Txn(id));
    }

    /// Schedules the transaction for its next deadline, after letting go of what its states
    /// no longer need ([`Txn::trim`]).
    fn reschedule(&mut self, id: TxnId) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        t.trim();
        if let Some(at) = t.next_deadline() {
            self.schedule_txn(id, at);
        }
    }

    fn run_txn_timers(&mut self, now: Instant, id: TxnId) {
        let timers = self.cfg.timers;
        for timer in super::txn::Timer::ALL {
            let Some(t) = self.txns.get_mut(id) else {
                return;
            };
            match machine::on_timer(t, timer, now, &timers) {
                machine::TimerAction::None => {}
                machine::TimerAction::RetransmitRequest => {
                    self.stats.retransmissions.inc();
                    self.out.send_copy(t.downstream, &t.forwarded);
                }
                machine::TimerAction::RetransmitResponse => {
                    self.stats.retransmissions.inc();
                    self.out.send_copy(t.upstream, &t.last_response);
                }
                // An attempt cancelled before the gateway said anything (its CANCEL held,
                // §9.1) just ends: the caller had its 487 at the CANCEL.
                machine::TimerAction::InviteTimeout if t.cancel == super::txn::Cancel::Pending => {}
                machine::TimerAction::InviteTimeout => {
                    self.stats.timeouts.inc();
                    self.local_final(now, id, 408);
                }
                machine::TimerAction::SendCancel => {
                    // The call rang too long (Timer C): siplb cancels it.
                    if let Some(d) = t.dialog.and_then(|d| self.dialogs.get_mut(d))
                        && d.invite == Some(id)
                    {
                        d.cancelled_by.get_or_insert(EndedBy::Timeout);
                    }
                    self.send_cancel(now, id)
                }
                machine::TimerAction::CancelUnanswered => self.local_final(now, id, 487),
                machine::TimerAction::NonInviteTimeout => self.non_invite_timeout(now, id),
            }
        }
        match self.txns.get(id) {
            Some(t) if t.done() => {
                self.txns.remove(id);
            }
            Some(_) => self.reschedule(id),
            None => {}
        }
    }

    /// Whether final responses are read for events (their reason and Q.850 cause).
    fn wants_outcomes(&self) -> bool {
        self.cfg.emit.transactions || self.cfg.emit.dialogs
    }

    /// Reports a transaction's outcome once (when events of transactions are wanted); its
    /// final response is read (`fin`) only then.
    fn report_txn(&mut self, now: Instant, id: TxnId, fin: impl FnOnce() -> Final) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        if t.reported || t.local_request {
            return;
        }
        t.reported = true;
        if !self.cfg.emit.transaction(t.method) {
            return;
        }
        let fin = fin();
        let (parties, request_to_tag) = match t.parties.take() {
            Some(p) => *p,
            None => {
                let req = if t.forwarded.is_empty() {
                    &t.received
                } else {
                    &t.forwarded
                };
                let Ok(m) = SipMsg::parse(req) else {
                    return;
                };
                let to_tag = text(m.to_tag().unwrap_or(b""));
                (Parties::of_request(&m), to_tag)
            }
        };
        let in_dialog = !request_to_tag.is_empty();
        let to_tag = if fin.to_tag.is_empty() {
            request_to_tag
        } else {
            fin.to_tag
        };
        let dialog = t.dialog.and_then(|d| self.dialogs.get(d));
        let (account, gateway) = match dialog {
            Some(d) => (text(&d.account), Some(d.trunk())),
            None => (Box::default(), None),
        };
        let outcome = TxnOutcome {
            account,
            gateway,
            dialog: t.dialog,
            method: t.method,
            parties,
            to_tag,
            in_dialog,
            source: t.upstream,
            destination: (!t.forwarded.is_empty()).then_some(t.downstream),
            code: fin.code,
            reason: fin.reason,
            q850_cause: fin.q850_cause,
            local: fin.local,
            at_ms: self.clock.unix_ms(now),
        };
        self.out.emit(Event::Transaction(Box::new(outcome)));
    }

    // ---------------------------------------------------------------- local replies

    /// A request that failed to parse is answered when enough of it is readable (a request
    /// line and a Via); a response, or anything without a Via, is dropped (RFC 3261 §16.3).
    fn reply_unparsable(&mut self, src: SocketAddr, data: &[u8], e: ParseError) {
        let mut out = self.out.buffer();
        if reply::build_unparsable(data, src, e, &mut out) {
            self.stats.local_replies.inc();
            self.out.send(Target::udp(src), out);
        } else {
            if reply::looks_like_response(data) {
                self.stats.drop_replies.inc();
            } else {
                self.stats.drop_requests.inc();
            }
            self.out.recycle(out);
        }
    }

    /// `403` with a reason that says why, counted. An ACK (most often the ACK of a 403 siplb
    /// sent) is not answered: `reply_stateless` drops it, and it is not a 403.
    fn forbid(&mut self, msg: &SipMsg<'_>, src: SocketAddr, reason: &'static str) {
        if msg.method() != Some(Method::Ack) {
            self.stats.forbidden.inc();
        }
        let extra = Extra {
            reason: Some(reason),
            ..Extra::default()
        };
        self.reply_stateless(msg, src, 403, extra)
    }

    /// Reports a request as received (for accounting rules), with its dialog's account
    /// (`account` when it has no dialog yet) and gateway.
    fn report_request(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        dialog: Option<DialogId>,
        account: &[u8],
    ) {
        if !self.cfg.emit.request(msg.method().unwrap_or(Method::Other)) {
            return;
        }
        let d = dialog.and_then(|id| self.dialogs.get(id));
        let (account, gateway) = match d {
            Some(d) => (text(&d.account), Some(d.trunk())),
            None => (text(account), None),
        };
        let to_tag = text(msg.to_tag().unwrap_or(b""));
        let seen = TxnOutcome {
            dialog,
            method: msg.method().unwrap_or(Method::Other),
            parties: Parties::of_request(msg),
            in_dialog: !to_tag.is_empty(),
            to_tag,
            source: Target::udp(src),
            destination: gateway,
            account,
            gateway,
            code: None,
            reason: Box::default(),
            q850_cause: None,
            local: false,
            at_ms: self.clock.unix_ms(now),
        };
        self.out.emit(Event::Request(Box::new(seen)));
    }

    /// A new request siplb has no room for: `503` + `Retry-After`, counted.
    fn reply_overload(&mut self, msg: &SipMsg<'_>, src: SocketAddr) {
        self.stats.overload_503.inc();
        let retry = self.cfg.retry_after;
        self.reply_stateless(msg, src, 503, Extra::overload(retry))
    }

    /// A local reply to `msg`, no transaction kept; a new INVITE refused so is reported
    /// ([`Event::Refused`]) when the call log wants it.
    fn reply_stateless(&mut self, msg: &SipMsg<'_>, src: SocketAddr, code: u16, extra: Extra<'_>) {
        if self.cfg.emit.failures
            && code >= 300
            && msg.method() == Some(Method::Invite)
            && msg.to_tag().is_none()
        {
            let refused = Refused {
                parties: Parties::of_request(msg),
                source: Target::udp(src),
                account: Box::default(),
                code,
                reason: extra
                    .reason
                    .unwrap_or_else(|| crate::sip::reason_phrase(code))
                    .into(),
            };
            self.out.emit(Event::Refused(Box::new(refused)));
        }
        self.send_stateless(msg, src, code, extra)
    }

    /// A local reply to `msg`, no transaction kept, not reported.
    /// An ACK is never answered (RFC 3261 §17): whatever is wrong with it, it is dropped.
    fn send_stateless(&mut self, msg: &SipMsg<'_>, src: SocketAddr, code: u16, extra: Extra<'_>) {
        if msg.method() == Some(Method::Ack) {
            self.stats.drop_requests.inc();
            return;
        }
        let mut out = self.out.buffer();
        self.local_reply_into(msg, src, code, extra, &mut out);
        self.stats.local_replies.inc();
        self.out.send(Target::udp(src), out);
    }

    /// Writes siplb's own reply with `code` to `msg` into `out`; its To tag (stable across the
    /// request's retransmissions).
    fn local_reply_into(
        &mut self,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        code: u16,
        extra: Extra<'_>,
        out: &mut Vec<u8>,
    ) -> String {
        let tag = local_tag(msg);
        reply::build(
            msg,
            src,
            code,
            tag.as_bytes(),
            extra,
            &mut self.rewrite,
            out,
        );
        tag
    }

    // ---------------------------------------------------------------------- dialogs

    fn ensure_sweep(&mut self, now: Instant) {
        self.schedule
            .ensure_sweep(now, sweep_interval(&self.cfg.dialog));
    }

    fn dialog_state_is(&self, id: Option<DialogId>, f: impl Fn(DialogState) -> bool) -> bool {
        id.and_then(|d| self.dialogs.get(d))
            .is_some_and(|d| f(d.state))
    }
}

/// A tenth of the shortest dialog timeout, within 100 ms and a minute.
fn sweep_interval(d: &DialogTimers) -> Duration {
    (d.default_timeout.min(d.early_timeout).min(d.noack_timeout) / 10)
        .clamp(Duration::from_millis(100), DIALOG_SWEEP)
}

#[cfg(test)]
mod tests;
