//! [`Shard`]: transactions, per-call records and timers of the calls one worker owns.

use super::call::{Call, CallState, DialogFilter, DialogInfo, EndCause, EndTarget, Leg, LegInfo};
use super::reply::{self, Extra};
use super::route::{AccountKey, Peer};
use super::txn::{Cancel, ClientState, Kind, ServerState, Timer, Txn};
use super::via::{MAGIC_COOKIE, Received, add_received, top_via_is_ours, write_via};
use super::wheel::TimerWheel;
use super::{ProxyConfig, Transmit};
use crate::dialog::{CallFacts, Denied, Membership, VarAt};
use crate::metrics::ShardStats;
use crate::sip::value::{CommaList, NameAddr, SipUri, host_ip, param};
use crate::sip::{HeaderName, Method, ParseError, Rewrite, SipMsg, Span};
use hashbrown::HashMap;
use siplb_common::owner_hash;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a timer queue entry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Txn {
        slot: u32,
        generation: u32,
    },
    /// A call record whose linger (after its end) is over.
    Call {
        did: u64,
    },
    /// The sweep that removes call records past `call_max_age` (calls that never ended).
    Sweep,
}

/// How often dialogs are checked against their timeouts, at most: one sweep per shard instead
/// of a 12-hour timer per call, which would stay queued long after most calls ended. Shorter
/// timeouts sweep more often (a tenth of the shortest), so that they are kept to within 10 %.
const CALL_SWEEP: Duration = Duration::from_secs(60);

/// Allowed methods, for 405.
const ALLOW: &[u8] =
    b"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY\r\n";

pub struct Shard {
    cfg: Arc<ProxyConfig>,
    id: u32,
    pub stats: Arc<ShardStats>,
    txns: Vec<Option<Txn>>,
    free: Vec<u32>,
    live_txns: usize,
    next_generation: u32,
    server_index: HashMap<Box<[u8]>, u32>,
    client_index: HashMap<Box<[u8]>, u32>,
    calls: HashMap<u64, Call>,
    call_ids: HashMap<Box<[u8]>, u64>,
    next_did: u64,
    next_branch: u64,
    /// Created with the first `now` the shard is given as its origin (it reads no clock).
    timers: Option<TimerWheel<TimerRef>>,
    /// Scratch list of the timers due in one `handle_timeout`.
    due: Vec<(Instant, TimerRef)>,
    /// When the next call sweep runs, if one is scheduled.
    sweep_at: Option<Instant>,
    /// Wall-clock origin: an instant and its Unix time in ms (given by the worker).
    epoch: Option<(Instant, u64)>,
    /// Dialogs in each state 1–4 (index = state − 1).
    by_state: [usize; 4],
    /// Scratch: dialogs to act on in one sweep.
    swept: Vec<u64>,
    rewrite: Rewrite,
    key: Vec<u8>,
    /// Datagrams to send; the worker drains it and gives the buffers back with `recycle`.
    pub transmits: Vec<Transmit>,
    /// `Call_End` events (JSON) of dialogs that ended; the worker drains it.
    pub events: Vec<String>,
    pool: Vec<Vec<u8>>,
}

fn did_param(buf: &[u8], uri: Span) -> Option<u64> {
    let u = SipUri::parse(buf, uri).ok()?;
    let v = param(buf, u.params, b"did")?;
    u64::from_str_radix(std::str::from_utf8(v.of(buf)).ok()?, 16).ok()
}

/// Appends the server-transaction key of `msg` to `out`: top Via branch and sent-by, and the
/// method class (ACK matches INVITE; RFC 3261 §17.2.3).
fn server_key(msg: &SipMsg<'_>, out: &mut Vec<u8>) {
    out.clear();
    let buf = msg.buf;
    match msg.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => out.extend_from_slice(b),
        // RFC 2543 peers: no usable branch; Call-ID, From tag and CSeq number instead.
        _ => {
            out.extend_from_slice(msg.call_id());
            out.push(b'|');
            out.extend_from_slice(msg.from_tag().unwrap_or(b""));
            let _ = write!(out, "|{}", msg.cseq);
        }
    }
    out.push(b'|');
    out.extend_from_slice(msg.top_via.host.of(buf));
    let _ = write!(out, ":{}|", msg.top_via.port.unwrap_or(5060));
    let class = match msg.method() {
        Some(Method::Ack) | Some(Method::Invite) => b"INVITE",
        _ => msg.cseq_method_span.of(buf),
    };
    out.extend_from_slice(if msg.method() == Some(Method::Cancel) {
        b"CANCEL"
    } else {
        class
    });
}

/// Client index key: our branch, plus a marker for the CANCEL that shares it.
fn client_key(branch: &[u8], cancel: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(branch);
    if cancel {
        out.extend_from_slice(b"|C");
    }
}

impl Shard {
    pub fn new(cfg: Arc<ProxyConfig>, id: u32, stats: Arc<ShardStats>) -> Shard {
        Shard {
            cfg,
            id,
            stats,
            txns: Vec::new(),
            free: Vec::new(),
            live_txns: 0,
            next_generation: 1,
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            calls: HashMap::new(),
            call_ids: HashMap::new(),
            next_did: 1,
            next_branch: 1,
            timers: None,
            due: Vec::new(),
            sweep_at: None,
            epoch: None,
            by_state: [0; 4],
            swept: Vec::new(),
            rewrite: Rewrite::new(),
            key: Vec::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// Open transactions.
    pub fn transactions(&self) -> usize {
        self.live_txns
    }

    /// Per-call records held (active and lingering).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn call(&self, call_id: &[u8]) -> Option<&Call> {
        self.calls.get(self.call_ids.get(call_id)?)
    }

    /// Dialogs not ended yet (Kamailio's `active_dialogs`).
    pub fn active_dialogs(&self) -> usize {
        self.by_state.iter().sum()
    }

    /// Dialogs in each of the states 1–4 (Kamailio's starting, connecting, answering, ongoing).
    pub fn dialogs_by_state(&self) -> [usize; 4] {
        self.by_state
    }

    /// Dialogs not answered yet (Kamailio's `early_dialogs`).
    pub fn early_dialogs(&self) -> usize {
        self.by_state[0] + self.by_state[1]
    }

    /// Every dialog record, ended ones (still lingering) included.
    pub fn dialogs(&self) -> impl Iterator<Item = (u64, &Call)> {
        self.calls.iter().map(|(did, c)| (*did, c))
    }

    /// Snapshots of the dialogs not ended that match `filter`, for the control socket.
    pub fn dialog_infos(&self, now: Instant, filter: &DialogFilter) -> Vec<DialogInfo> {
        let profiles = &self.cfg.profiles;
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let uri = |v: &[u8]| {
            NameAddr::locate(v, Span::new(0, v.len()))
                .map_or_else(String::new, |na| lossy(na.uri.of(v)))
        };
        let socket = format!("udp:{}", self.cfg.local);
        let d = self.cfg.dialog;
        let unix_s = |ms: u64| ms / 1000;
        let mut out = Vec::new();
        for (did, c) in &self.calls {
            if c.state == CallState::Ended {
                continue;
            }
            if let Some((p, v)) = &filter.profile
                && !c.profiles.iter().any(|m| {
                    m.profile == *p
                        && v.as_deref()
                            .is_none_or(|v| m.value.as_ref().is_some_and(|(mv, _)| **mv == *v))
                })
            {
                continue;
            }
            let leg = |l: &Leg| LegInfo {
                tag: lossy(&l.tag),
                contact: lossy(&l.contact),
                cseq: l.cseq,
                route_set: lossy(&l.route_set),
                socket: socket.clone(),
            };
            let timeout = match c.answered {
                Some(_) => unix_s(c.start_ms) + d.default_timeout.as_secs(),
                None => unix_s(c.init_ms) + d.early_timeout.as_secs(),
            };
            out.push(DialogInfo {
                h_entry: (did >> 48) as u32,
                h_id: did & ((1 << 48) - 1),
                call_id: lossy(&c.call_id),
                from_uri: uri(&c.from),
                to_uri: uri(&c.to),
                state: c.state.number(),
                start_ts: unix_s(c.start_ms),
                init_ts: unix_s(c.init_ms),
                end_ts: unix_s(c.end_ms),
                duration: c
                    .answered
                    .map_or(0, |a| now.saturating_duration_since(a).as_secs()),
                timeout,
                lifetime: d.default_timeout.as_secs(),
                caller: leg(&c.caller_leg),
                callee: leg(&c.callee_leg),
                profiles: c
                    .profiles
                    .iter()
                    .map(|m| {
                        let name = &profiles.list[m.profile as usize].name;
                        match &m.value {
                            Some((v, _)) => format!("{name}: {}", lossy(v)),
                            None => name.clone(),
                        }
                    })
                    .collect(),
                variables: c
                    .vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
        out.sort_by_key(|i| (i.h_entry, i.h_id));
        out
    }

    /// Ends the dialog `target` names, if this shard has it: BYE to both sides when answered,
    /// CANCEL when not yet. Whether it was found.
    pub fn end_dialog(&mut self, now: Instant, target: &EndTarget) -> bool {
        let did = match target {
            EndTarget::Id { h_entry, h_id } => {
                if *h_entry >= 1 << 16 || *h_id >= 1 << 48 {
                    return false;
                }
                let did = ((*h_entry as u64) << 48) | h_id;
                self.calls.contains_key(&did).then_some(did)
            }
            EndTarget::Tags {
                call_id,
                from_tag,
                to_tag,
            } => self.call_ids.get(call_id).copied().filter(|did| {
                let c = &self.calls[did];
                let (a, b) = (c.caller_tag(), c.callee_tag().unwrap_or(b""));
                (**from_tag == *a && **to_tag == *b) || (**from_tag == *b && **to_tag == *a)
            }),
        };
        let Some(did) = did else { return false };
        let c = &self.calls[&did];
        match c.state {
            CallState::Ended => false,
            s if s.is_early() => {
                let invite = c.invite;
                self.cancel_invite(now, did, invite);
                true
            }
            _ => self.terminate(now, did, EndCause::Admin),
        }
    }

    /// Sets the wall clock: `now` is `unix_ms` milliseconds after the Unix epoch. Dialog times
    /// (`init_ts`, `start_ts`, `end_ts`) are derived from it; without it they count from the
    /// shard's first `now`.
    pub fn set_epoch(&mut self, now: Instant, unix_ms: u64) {
        self.epoch = Some((now, unix_ms));
    }

    /// Unix time in ms of `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        match self.epoch {
            Some((at, ms)) if now >= at => ms + now.duration_since(at).as_millis() as u64,
            Some((at, ms)) => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
            None => 0,
        }
    }

    /// Gives a sent buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < 1024 && buf.capacity() <= 70_000 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(2048))
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.as_ref().and_then(TimerWheel::next_deadline)
    }

    /// Retry-After seconds of an overload 503.
    pub fn retry_after(&self) -> u32 {
        self.cfg.retry_after
    }

    /// Whether a new INVITE would be refused for lack of room.
    pub fn full(&self) -> bool {
        self.live_txns >= self.cfg.max_transactions || self.calls.len() >= self.cfg.max_calls
    }

    // ---------------------------------------------------------------- input

    /// One datagram from `src`.
    pub fn handle(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        self.start_clock(now);
        match SipMsg::parse(data) {
            Ok(msg) if msg.is_request() => {
                self.stats.rcv_requests.inc();
                self.handle_request(now, src, &msg)
            }
            Ok(msg) => {
                self.stats.rcv_replies.inc();
                self.handle_response(now, src, &msg)
            }
            Err(ParseError::Empty) => {} // keep-alive CRLFs
            Err(e) => {
                self.stats.bad_msg.inc();
                self.reply_unparsable(src, data, e);
            }
        }
    }

    /// A request that failed to parse is answered when enough of it is readable (a request
    /// line and a Via); a response, or anything without a Via, is dropped (RFC 3261 §16.3).
    fn reply_unparsable(&mut self, src: SocketAddr, data: &[u8], e: ParseError) {
        let mut out = self.buffer();
        if reply::build_unparsable(data, src, e, &mut out) {
            self.stats.local_replies.inc();
            self.transmits.push(Transmit {
                dst: src,
                data: out,
            });
        } else {
            if reply::looks_like_response(data) {
                self.stats.drop_replies.inc();
            } else {
                self.stats.drop_requests.inc();
            }
            self.recycle(out);
        }
    }

    fn handle_request(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) {
        let method = msg.method().unwrap_or(Method::Other);
        let mut key = std::mem::take(&mut self.key);
        server_key(msg, &mut key);
        let existing = self.server_index.get(key.as_slice()).copied();
        if let Some(slot) = existing {
            self.key = key;
            return self.on_request_retransmission(now, src, slot, msg);
        }
        if method == Method::Cancel {
            self.key = key;
            return self.on_cancel(now, src, msg);
        }
        let buf = msg.buf;
        let from_domain = SipUri::parse(buf, msg.from().map_or(Span::default(), |f| f.uri))
            .map(|u| u.host.of(buf))
            .unwrap_or(b"");
        let peer = self.cfg.routing.classify(src, from_domain);
        if peer == Peer::Unknown {
            self.key = key;
            return self.forbid(msg, src, "Forbidden - Unknown Source");
        }
        if let Some((0, _)) = msg.max_forwards {
            self.key = key;
            return self.reply_stateless(msg, src, 483, Extra::default());
        }
        if let Some(idx) = msg.proxy_require {
            self.key = key;
            let h = msg.headers()[idx];
            let mut line = Vec::with_capacity(h.value().len() + 16);
            line.extend_from_slice(b"Unsupported: ");
            line.extend_from_slice(h.value().of(buf));
            line.extend_from_slice(b"\r\n");
            return self.reply_stateless(
                msg,
                src,
                420,
                Extra {
                    headers: &line,
                    ..Extra::default()
                },
            );
        }
        let own_route = msg
            .first_route()
            .filter(|(_, r)| self.route_is_ours(buf, *r));
        if msg.to_tag().is_some() || own_route.is_some() {
            return self.on_in_dialog(now, src, msg, key, own_route);
        }
        if msg.first_route().is_some() {
            self.key = key;
            return self.forbid(msg, src, "Forbidden - Preloaded Route");
        }
        match (method, peer) {
            (Method::Invite, Peer::Customer(c)) => self.on_new_invite(now, src, msg, key, c),
            (Method::Invite, _) => {
                self.key = key;
                self.forbid(msg, src, "Forbidden - Not A Customer")
            }
            (Method::Ack, _) => {
                // ACK for a reply siplb sent statelessly, or stray: absorbed.
                self.key = key;
                self.stats.drop_requests.inc();
            }
            (Method::Options, _) => {
                self.key = key;
                self.reply_stateless(msg, src, 200, Extra::default())
            }
            _ => {
                self.key = key;
                self.reply_stateless(
                    msg,
                    src,
                    405,
                    Extra {
                        headers: ALLOW,
                        ..Extra::default()
                    },
                )
            }
        }
    }

    fn route_is_ours(&self, buf: &[u8], route: Span) -> bool {
        let Ok(na) = crate::sip::value::NameAddr::parse(buf, route) else {
            return false;
        };
        let Ok(uri) = SipUri::parse(buf, na.uri) else {
            return false;
        };
        uri.port.unwrap_or(5060) == self.cfg.local.port()
            && host_ip(uri.host.of(buf)) == Some(self.cfg.local.ip())
    }

    /// `403` with a reason that says why, counted.
    fn forbid(&mut self, msg: &SipMsg<'_>, src: SocketAddr, reason: &'static str) {
        self.stats.forbidden.inc();
        self.reply_stateless(
            msg,
            src,
            403,
            Extra {
                reason: Some(reason),
                ..Extra::default()
            },
        )
    }

    /// A new request siplb has no room for: `503` + `Retry-After`, counted.
    fn reply_overload(&mut self, msg: &SipMsg<'_>, src: SocketAddr) {
        self.stats.overload_503.inc();
        let retry = self.cfg.retry_after;
        self.reply_stateless(msg, src, 503, Extra::overload(retry))
    }

    /// A local reply to `msg`, no transaction kept.
    /// An ACK is never answered (RFC 3261 §17): whatever is wrong with it, it is dropped.
    fn reply_stateless(&mut self, msg: &SipMsg<'_>, src: SocketAddr, code: u16, extra: Extra<'_>) {
        if msg.method() == Some(Method::Ack) {
            self.stats.drop_requests.inc();
            return;
        }
        let mut out = self.buffer();
        let tag = local_tag(msg);
        reply::build(
            msg,
            src,
            code,
            tag.as_bytes(),
            extra,
            &mut self.rewrite,
            &mut out,
        );
        self.stats.local_replies.inc();
        self.transmits.push(Transmit {
            dst: src,
            data: out,
        });
    }

    fn on_request_retransmission(
        &mut self,
        now: Instant,
        src: SocketAddr,
        slot: u32,
        msg: &SipMsg<'_>,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        match (t.kind, t.server, method) {
            (Kind::Invite, ServerState::Completed, Method::Ack) => {
                t.server = ServerState::Confirmed;
                t.clear(Timer::G);
                t.clear(Timer::H);
                t.set(Timer::I, now + self.cfg.timers.t4);
                self.stats.retrans_absorbed.inc();
                self.schedule(slot, now + self.cfg.timers.t4);
            }
            (Kind::Invite, ServerState::Accepted, Method::Ack) => {
                // A peer that reuses the INVITE branch for the ACK of a 2xx: end to end.
                let own_route = msg
                    .first_route()
                    .filter(|(_, r)| self.route_is_ours(msg.buf, *r));
                let key = std::mem::take(&mut self.key);
                self.on_in_dialog(now, src, msg, key, own_route);
            }
            (_, _, Method::Ack) | (_, ServerState::Trying, _) | (_, ServerState::Confirmed, _) => {
                self.stats.retrans_absorbed.inc();
            }
            (Kind::Invite, ServerState::Accepted, _) => self.stats.retrans_absorbed.inc(),
            (_, ServerState::Proceeding | ServerState::Completed, _)
                if !t.last_response.is_empty() =>
            {
                self.stats.retrans_absorbed.inc();
                push_copy(
                    &mut self.pool,
                    &mut self.transmits,
                    t.upstream,
                    &t.last_response,
                );
            }
            _ => self.stats.retrans_absorbed.inc(),
        }
    }

    fn alloc_txn(&mut self, txn: Txn) -> u32 {
        self.live_txns += 1;
        self.stats.transactions.inc();
        match self.free.pop() {
            Some(slot) => {
                self.txns[slot as usize] = Some(txn);
                slot
            }
            None => {
                self.txns.push(Some(txn));
                (self.txns.len() - 1) as u32
            }
        }
    }

    fn new_txn(
        &mut self,
        kind: Kind,
        method: Method,
        upstream: SocketAddr,
        downstream: SocketAddr,
    ) -> Txn {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        Txn {
            generation,
            kind,
            method,
            server_key: Box::default(),
            client_key: Box::default(),
            upstream,
            downstream,
            server: ServerState::Trying,
            client: ClientState::Terminated,
            received: Vec::new(),
            forwarded: Vec::new(),
            last_response: Vec::new(),
            ack: Vec::new(),
            client_interval: self.cfg.timers.t1,
            server_interval: self.cfg.timers.t1,
            timers: [None; super::txn::N_TIMERS],
            queued: None,
            cancel: Cancel::None,
            local_request: false,
            call: None,
        }
    }

    fn new_branch(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(MAGIC_COOKIE);
        let n = self.next_branch;
        self.next_branch += 1;
        let _ = write!(out, "-{:x}.{:x}.{:x}", self.cfg.instance, self.id, n);
    }

    fn add_timer(&mut self, at: Instant, r: TimerRef) {
        self.timers
            .get_or_insert_with(|| TimerWheel::new(at))
            .insert(at, r);
    }

    fn ensure_sweep(&mut self, now: Instant) {
        if self.sweep_at.is_none() {
            let at = now + self.sweep_interval();
            self.sweep_at = Some(at);
            self.add_timer(at, TimerRef::Sweep);
        }
    }

    /// The wheel's origin is the first time the shard hears of: every deadline comes after it.
    fn sweep_interval(&self) -> Duration {
        let d = self.cfg.dialog;
        (d.default_timeout.min(d.early_timeout).min(d.noack_timeout) / 10)
            .clamp(Duration::from_millis(100), CALL_SWEEP)
    }

    fn start_clock(&mut self, now: Instant) {
        if self.timers.is_none() {
            self.timers = Some(TimerWheel::new(now));
        }
        if self.epoch.is_none() {
            self.epoch = Some((now, 0));
        }
    }

    /// Makes sure the transaction in `slot` is run at `at` or earlier. One queue entry per
    /// transaction is live (`Txn::queued`); a later one is not pushed, so the queue does not
    /// grow with every response and stale entries do not each run the transaction again.
    fn schedule(&mut self, slot: u32, at: Instant) {
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        if t.queued.is_some_and(|q| q <= at) {
            return;
        }
        t.queued = Some(at);
        let generation = t.generation;
        self.add_timer(at, TimerRef::Txn { slot, generation });
    }

    fn on_new_invite(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        customer: usize,
    ) {
        if self.full() {
            self.key = key;
            return self.reply_overload(msg, src);
        }
        let call_id = msg.call_id();
        let caller_tag = msg.from_tag().unwrap_or(b"");
        // An INVITE for a known call from the same caller: one resent while the first is still
        // pending keeps the dialog; one after a failure (e.g. answering a challenge) revives it,
        // taking its places in the profiles again.
        let known = self.call_ids.get(call_id).copied().filter(|did| {
            self.calls.get(did).is_some_and(|c| {
                c.caller_tag() == caller_tag
                    && (c.state.is_early() || c.end_cause == Some(EndCause::Failed))
            })
        });
        let (did, gateway) = match known {
            Some(did) => {
                let failed = self.calls[&did].state == CallState::Ended;
                let (mut profiles, mut vars) = (Vec::new(), Vec::new());
                if failed
                    && let Err(why) = self.admit(now, msg, src, customer, &mut profiles, &mut vars)
                {
                    return self.reply_limit(now, msg, src, key, why);
                }
                let init_ms = self.unix_ms(now);
                let c = self
                    .calls
                    .get_mut(&did)
                    .expect("did from call_ids is in calls");
                c.caller = src;
                c.caller_leg.cseq = c.caller_leg.cseq.max(msg.cseq);
                if failed {
                    c.state = CallState::Unconfirmed;
                    c.profiles = profiles;
                    c.vars = vars;
                    c.created = now;
                    c.init_ms = init_ms;
                    c.end_ms = 0;
                    c.end_cause = None;
                    c.early_cancelled = false;
                    c.expires = now + self.cfg.dialog.default_timeout;
                }
                let gateway = c.gateway;
                if failed {
                    self.by_state[0] += 1;
                    self.stats.processed_dialogs.inc();
                    self.ensure_sweep(now);
                }
                (did, gateway)
            }
            None => {
                let Some(gateway) = self.cfg.routing.select_gateway(call_id) else {
                    self.key = key;
                    return self.reply_stateless(
                        msg,
                        src,
                        503,
                        Extra {
                            reason: Some("Service Unavailable - No Gateway"),
                            ..Extra::default()
                        },
                    );
                };
                if self.call_ids.contains_key(call_id) {
                    self.key = key;
                    return self.reply_stateless(msg, src, 482, Extra::default());
                }
                let (mut profiles, mut vars) = (Vec::new(), Vec::new());
                if let Err(why) = self.admit(now, msg, src, customer, &mut profiles, &mut vars) {
                    return self.reply_limit(now, msg, src, key, why);
                }
                let did = ((self.id as u64) << 48) | self.next_did;
                self.next_did += 1;
                let expires = now + self.cfg.dialog.default_timeout;
                let buf = msg.buf;
                let value_of = |name| {
                    msg.headers_named(name)
                        .next()
                        .map_or(Span::default(), |(_, h)| h.value())
                };
                let (from, to) = (value_of(HeaderName::From), value_of(HeaderName::To));
                let caller_routes = record_routes(msg, None);
                self.calls.insert(
                    did,
                    Call {
                        call_id: call_id.into(),
                        caller: src,
                        gateway,
                        caller_leg: Leg {
                            tag: caller_tag.into(),
                            contact: first_contact(msg).into(),
                            cseq: msg.cseq,
                            route_set: caller_routes.into(),
                        },
                        callee_leg: Leg::default(),
                        from: from.of(buf).into(),
                        to: to.of(buf).into(),
                        state: CallState::Unconfirmed,
                        created: now,
                        answered: None,
                        init_ms: self.unix_ms(now),
                        start_ms: 0,
                        end_ms: 0,
                        invite: None,
                        early_cancelled: false,
                        expires,
                        profiles,
                        vars,
                        end_cause: None,
                    },
                );
                self.call_ids.insert(call_id.into(), did);
                self.by_state[0] += 1;
                self.stats.processed_dialogs.inc();
                self.ensure_sweep(now);
                (did, gateway)
            }
        };
        let slot = self.start_txn(
            now,
            src,
            gateway,
            msg,
            key,
            Some(did),
            Forward {
                record_route: Some(did),
                strip_route: None,
            },
        );
        let generation = self.txns[slot as usize]
            .as_ref()
            .map_or(0, |t| t.generation);
        if let Some(c) = self.calls.get_mut(&did) {
            c.invite = Some((slot, generation));
        }
    }

    /// Puts a new call into its account's profile and those its rules select (DESIGN §3),
    /// and gives it the variables set at INVITE.
    fn admit(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        customer: usize,
        out: &mut Vec<Membership>,
        vars: &mut Vec<(Box<str>, Box<str>)>,
    ) -> Result<(), crate::dialog::Refusal> {
        let buf = msg.buf;
        let user_host = |uri: Option<Span>| -> (&[u8], &[u8]) {
            match uri.and_then(|u| SipUri::parse(buf, u).ok()) {
                Some(u) => (u.user.map_or(&b""[..], |s| s.of(buf)), u.host.of(buf)),
                None => (b"", b""),
            }
        };
        let (dialed, _) = user_host(msg.request_uri());
        let (from_user, from_domain) = user_host(msg.from().map(|f| f.uri));
        let (to_user, _) = user_host(msg.to().map(|t| t.uri));
        let c = &self.cfg.routing.customers[customer];
        let account = match c.account_key {
            AccountKey::Customer => c.name.as_bytes(),
            AccountKey::FromUser => from_user,
            AccountKey::FromDomain => from_domain,
        };
        let facts = CallFacts {
            dialed,
            from_user,
            from_domain,
            to_user,
            source: src.ip(),
            customer: &c.name,
            customer_index: customer as u16,
            account,
        };
        self.cfg.profiles.enter(&facts, out)?;
        vars.clear();
        vars.push((
            "SetupTime".into(),
            (self.unix_ms(now) / 1000).to_string().into(),
        ));
        for v in self.cfg.vars.iter().filter(|v| v.at == VarAt::Invite) {
            let value = crate::dialog::profiles::value_of(&v.value, &facts);
            vars.push((
                v.name.as_str().into(),
                String::from_utf8_lossy(&value).into(),
            ));
        }
        Ok(())
    }

    /// Sets the configured variables of one moment (answer or end) on dialog `did`.
    fn set_vars(&mut self, did: u64, at: VarAt) {
        let Some(c) = self.calls.get_mut(&did) else {
            return;
        };
        for v in self.cfg.vars.iter().filter(|v| v.at == at) {
            if let crate::dialog::ValueFrom::Literal(s) = &v.value {
                c.set_var(&v.name, s.clone());
            }
        }
    }

    /// The reply to an INVITE a profile limit refused: by default `503 Account call limit`
    /// with `Reason: Q.850;cause=34` and no `Retry-After` (DESIGN §3). Counted once: the reply
    /// is kept in a server transaction, which answers the INVITE's retransmissions with it
    /// (without asking the limits again) and resends it until the ACK (Timers G, H).
    fn reply_limit(
        &mut self,
        now: Instant,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        key: Vec<u8>,
        why: crate::dialog::Refusal,
    ) {
        self.stats.limits_rejected.inc();
        if why.why == Denied::TableFull {
            self.stats.limits_account_table_full.inc();
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
        let (code, reason) = (lr.code, lr.reason.clone());
        let extra = Extra {
            reason: Some(&reason),
            headers: &headers,
            ..Extra::default()
        };
        if self.live_txns >= self.cfg.max_transactions {
            self.key = key;
            return self.reply_stateless(msg, src, code, extra);
        }
        let timers = self.cfg.timers;
        let mut t = self.new_txn(Kind::Invite, Method::Invite, src, src);
        reply::build(
            msg,
            src,
            code,
            local_tag(msg).as_bytes(),
            extra,
            &mut self.rewrite,
            &mut t.last_response,
        );
        t.server = ServerState::Completed;
        t.server_key = key.as_slice().into();
        self.key = key;
        t.set(Timer::G, now + timers.t1);
        t.set(Timer::H, now + timers.timer_b);
        push_copy(&mut self.pool, &mut self.transmits, src, &t.last_response);
        let sk = t.server_key.clone();
        let slot = self.alloc_txn(t);
        self.server_index.insert(sk, slot);
        self.schedule(slot, now + timers.t1);
        self.stats.local_replies.inc();
    }

    /// Creates a proxy transaction for `msg`, answers 100 for INVITE, forwards to `dst`.
    #[allow(clippy::too_many_arguments)]
    fn start_txn(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        call: Option<u64>,
        fwd: Forward,
    ) -> u32 {
        let method = msg.method().unwrap_or(Method::Other);
        let kind = if method == Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let mut t = self.new_txn(kind, method, src, dst);
        t.call = call;
        t.server_key = key.as_slice().into();
        self.key = key;
        if kind == Kind::Invite {
            // Only an INVITE gets a final reply from siplb itself (408, 487): keep what it
            // came as for that. A non-INVITE times out silently (RFC 4320).
            t.received.extend_from_slice(&msg.buf[..msg.end()]);
        }
        let mut branch = Vec::with_capacity(40);
        self.new_branch(&mut branch);
        let mut ck = Vec::new();
        client_key(&branch, false, &mut ck);
        t.client_key = ck.into();
        let mut out = self.buffer();
        self.forward_request(msg, src, &branch, fwd, &mut out);
        t.forwarded.extend_from_slice(&out);
        t.client = ClientState::Calling;
        let t1 = self.cfg.timers.t1;
        match kind {
            Kind::Invite => {
                t.set(Timer::A, now + t1);
                t.set(Timer::B, now + self.cfg.timers.timer_b);
                // 100 Trying: hop by hop, no To tag.
                reply::build(
                    msg,
                    src,
                    100,
                    b"",
                    Extra::default(),
                    &mut self.rewrite,
                    &mut t.last_response,
                );
                t.server = ServerState::Proceeding;
            }
            Kind::NonInvite => {
                t.set(Timer::E, now + t1);
                t.set(Timer::F, now + self.cfg.timers.timer_b);
            }
        }
        if kind == Kind::Invite {
            push_copy(&mut self.pool, &mut self.transmits, src, &t.last_response);
        }
        let (sk, ckey) = (t.server_key.clone(), t.client_key.clone());
        let slot = self.alloc_txn(t);
        self.server_index.insert(sk, slot);
        self.client_index.insert(ckey, slot);
        self.stats.fwd_requests.inc();
        self.transmits.push(Transmit { dst, data: out });
        self.schedule(slot, now + t1);
        slot
    }

    /// Builds the forwarded copy of a request: our Via on top, `received`/`rport` on the
    /// sender's, Max-Forwards decremented, optional Record-Route, our Route removed.
    fn forward_request(
        &mut self,
        msg: &SipMsg<'_>,
        src: SocketAddr,
        branch: &[u8],
        fwd: Forward,
        out: &mut Vec<u8>,
    ) {
        let buf = msg.buf;
        let local = self.cfg.local;
        let rw = &mut self.rewrite;
        rw.clear();
        let headers = msg.headers();
        let top = headers[msg.top_via_header];
        let headers_start = msg.start_line.end as usize;
        match msg.max_forwards {
            Some((mf, idx)) => {
                let v = headers[idx].value();
                rw.replace(v.start as usize, v.end as usize, |o| {
                    let _ = write!(o, "{}", mf.saturating_sub(1));
                });
            }
            // RFC 3261 §16.6 step 3: added with the value 70.
            None => rw.insert(headers_start, |o| {
                o.extend_from_slice(b"Max-Forwards: 70\r\n")
            }),
        }
        if let Some(did) = fwd.record_route {
            rw.insert_fmt(
                headers_start,
                format_args!("Record-Route: <sip:{local};lr;did={did:x}>\r\n"),
            );
        }
        // After the insertions above: when the Via is the first header they share its position,
        // and edits at one position keep their order, so our Via stays next to the sender's.
        rw.insert(top.line().start as usize, |o| write_via(o, local, branch));
        add_received(msg, src, Received::Always, rw);
        if let Some((idx, elem)) = fwd.strip_route {
            remove_list_element(buf, headers[idx].line(), headers[idx].value(), elem, rw);
        }
        if msg.content_length.is_none() {
            rw.insert_fmt(
                msg.headers_end as usize,
                format_args!("Content-Length: {}\r\n", msg.body.len()),
            );
        }
        rw.apply(buf, msg.end(), out);
    }

    fn on_in_dialog(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        own_route: Option<(usize, Span)>,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        let buf = msg.buf;
        let did = own_route
            .and_then(|(_, r)| crate::sip::value::NameAddr::parse(buf, r).ok())
            .and_then(|na| did_param(buf, na.uri))
            .filter(|did| self.calls.contains_key(did))
            .or_else(|| self.call_ids.get(msg.call_id()).copied());
        let call = did.and_then(|d| self.calls.get(&d));
        let dst = call
            .filter(|c| *c.call_id == *msg.call_id())
            .filter(|c| c.to_tag_matches(msg.from_tag(), msg.to_tag()))
            .and_then(|c| c.peer_for(msg.from_tag(), src));
        let (Some(did), Some(dst)) = (did, dst) else {
            self.key = key;
            if method == Method::Ack {
                self.stats.drop_requests.inc();
                return;
            }
            return self.reply_stateless(msg, src, 481, Extra::default());
        };
        let fwd = Forward {
            record_route: None,
            strip_route: own_route,
        };
        if let Some(c) = self.calls.get_mut(&did) {
            let leg = if c.from_caller(msg.from_tag()) {
                &mut c.caller_leg
            } else {
                &mut c.callee_leg
            };
            leg.cseq = leg.cseq.max(msg.cseq);
            // A target refresh request updates its sender's remote target (RFC 3261 §12.2.2).
            let contact = first_contact(msg);
            if matches!(method, Method::Invite | Method::Update) && !contact.is_empty() {
                leg.contact = contact.into();
            }
        }
        if method == Method::Ack {
            self.set_state(Some(did), CallState::ConfirmedNoAck, CallState::Confirmed);
            self.key = key;
            // ACK for a 2xx: its own transaction end to end; forwarded without state, with a
            // branch derived from the incoming one so retransmissions carry the same branch.
            let mut branch = Vec::with_capacity(32);
            branch.extend_from_slice(MAGIC_COOKIE);
            let b = msg.branch().unwrap_or(msg.call_id());
            let _ = write!(branch, "-a{:08x}{:08x}", owner_hash(1, b), owner_hash(2, b));
            let mut out = self.buffer();
            self.forward_request(msg, src, &branch, fwd, &mut out);
            self.stats.fwd_requests.inc();
            self.transmits.push(Transmit { dst, data: out });
            return;
        }
        if self.live_txns >= self.cfg.max_transactions {
            self.key = key;
            return self.reply_overload(msg, src);
        }
        // An answered dialog ends with the BYE itself, as Kamailio's does (its record stays to
        // carry the BYE's transaction and stragglers); it gives its places back only once its
        // BYE is on its way, with both tags matching. Before the answer the INVITE's outcome
        // ends it.
        if method == Method::Bye && self.calls[&did].state.is_confirmed() {
            self.end_call(now, Some(did), EndCause::Bye);
        }
        self.start_txn(now, src, dst, msg, key, Some(did), fwd);
    }

    fn on_cancel(&mut self, now: Instant, src: SocketAddr, msg: &SipMsg<'_>) {
        // The INVITE this CANCEL is for has the same branch and sent-by.
        let mut key = std::mem::take(&mut self.key);
        server_key(msg, &mut key);
        let cancel_key: Box<[u8]> = key.as_slice().into();
        let n = key.len() - b"CANCEL".len();
        key.truncate(n);
        key.extend_from_slice(b"INVITE");
        let invite = self.server_index.get(key.as_slice()).copied();
        self.key = key;
        let Some(slot) = invite else {
            return self.reply_stateless(msg, src, 481, Extra::default());
        };
        // 200 to the CANCEL, kept in a transaction of its own for its retransmissions.
        let mut t = self.new_txn(Kind::NonInvite, Method::Cancel, src, src);
        reply::build(
            msg,
            src,
            200,
            local_tag(msg).as_bytes(),
            Extra::default(),
            &mut self.rewrite,
            &mut t.last_response,
        );
        t.server = ServerState::Completed;
        t.server_key = cancel_key.clone();
        t.set(Timer::J, now + self.cfg.timers.timer_b);
        push_copy(&mut self.pool, &mut self.transmits, src, &t.last_response);
        let cslot = self.alloc_txn(t);
        self.server_index.insert(cancel_key, cslot);
        self.schedule(cslot, now + self.cfg.timers.timer_b);
        self.stats.local_replies.inc();

        let Some(inv) = self.txns[slot as usize].as_mut() else {
            return;
        };
        if inv.kind != Kind::Invite
            || inv.server != ServerState::Proceeding
            || inv.cancel != Cancel::None
        {
            return;
        }
        match inv.client {
            ClientState::Calling => inv.cancel = Cancel::Pending,
            ClientState::Proceeding => self.send_cancel(now, slot),
            _ => {}
        }
    }

    /// Sends CANCEL downstream for the INVITE in `slot` (same branch, RFC 3261 §9.1).
    fn send_cancel(&mut self, now: Instant, slot: u32) {
        let Some(inv) = self.txns[slot as usize].as_mut() else {
            return;
        };
        let mut out = self.pool.pop().unwrap_or_default();
        let branch = {
            let Ok(fwd) = SipMsg::parse(&inv.forwarded) else {
                return;
            };
            build_hop_request(&fwd, Method::Cancel, None, &mut out);
            fwd.branch().unwrap_or(b"").to_vec()
        };
        inv.cancel = Cancel::Sent;
        inv.set(Timer::CancelGuard, now + self.cfg.timers.timer_b);
        let (dst, call) = (inv.downstream, inv.call);
        let mut t = self.new_txn(Kind::NonInvite, Method::Cancel, dst, dst);
        t.server = ServerState::Terminated;
        t.client = ClientState::Calling;
        t.local_request = true;
        t.call = call;
        let mut ck = Vec::new();
        client_key(&branch, true, &mut ck);
        t.client_key = ck.as_slice().into();
        t.forwarded.extend_from_slice(&out);
        t.set(Timer::E, now + self.cfg.timers.t1);
        t.set(Timer::F, now + self.cfg.timers.timer_b);
        let cslot = self.alloc_txn(t);
        self.client_index.insert(ck.into(), cslot);
        self.schedule(cslot, now + self.cfg.timers.t1);
        self.schedule(slot, now + self.cfg.timers.timer_b);
        self.stats.fwd_requests.inc();
        self.transmits.push(Transmit { dst, data: out });
    }

    // ------------------------------------------------------------- responses

    fn handle_response(&mut self, now: Instant, _src: SocketAddr, msg: &SipMsg<'_>) {
        if !top_via_is_ours(msg, self.cfg.local) {
            self.stats.drop_replies.inc();
            return;
        }
        let mut key = std::mem::take(&mut self.key);
        client_key(
            msg.branch().unwrap_or(b""),
            msg.cseq_method == Method::Cancel,
            &mut key,
        );
        let slot = self.client_index.get(key.as_slice()).copied();
        self.key = key;
        let Some(slot) = slot else {
            self.stats.drop_replies.inc();
            return;
        };
        let code = msg.status().unwrap_or(500);
        let timers = self.cfg.timers;
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        if t.local_request {
            if code >= 200 && matches!(t.client, ClientState::Calling | ClientState::Proceeding) {
                t.client = ClientState::Completed;
                t.clear(Timer::E);
                t.clear(Timer::F);
                t.set(Timer::K, now + timers.t4);
                self.schedule(slot, now + timers.t4);
            }
            return;
        }
        match (t.kind, t.client) {
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding) if code < 200 => {
                t.client = ClientState::Proceeding;
                t.clear(Timer::A);
                t.clear(Timer::B);
                // Timer C runs from the first provisional (Timer B covers the time before)
                // and is reset by each one from 101 to 199 (RFC 3261 §16.7 step 2).
                if code > 100 || !t.is_set(Timer::C) {
                    t.set(Timer::C, now + timers.timer_c);
                }
                let pending = t.cancel == Cancel::Pending;
                let call = t.call;
                if code > 100 {
                    self.forward_response(slot, msg, false);
                    self.set_state(call, CallState::Unconfirmed, CallState::Early);
                }
                if pending {
                    self.send_cancel(now, slot);
                }
                self.schedule(slot, now + timers.timer_c);
            }
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding) if code < 300 => {
                t.client = ClientState::Accepted;
                t.server = ServerState::Accepted;
                for x in [Timer::A, Timer::B, Timer::C, Timer::CancelGuard] {
                    t.clear(x);
                }
                t.set(Timer::L, now + timers.timer_b);
                t.set(Timer::M, now + timers.timer_b);
                let call = t.call;
                self.forward_response(slot, msg, true);
                self.schedule(slot, now + timers.timer_b);
                self.answer(now, call, msg);
            }
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding) => {
                // Non-2xx final: ACK it ourselves (hop by hop), pass it upstream.
                let mut ack = Vec::new();
                if let Ok(fwd) = SipMsg::parse(&t.forwarded) {
                    build_hop_request(&fwd, Method::Ack, Some(msg), &mut ack);
                }
                t.client = ClientState::Completed;
                for x in [Timer::A, Timer::B, Timer::C, Timer::CancelGuard] {
                    t.clear(x);
                }
                t.set(Timer::D, now + timers.timer_d);
                push_copy(&mut self.pool, &mut self.transmits, t.downstream, &ack);
                t.ack = ack;
                self.complete_server_invite(now, slot);
                self.forward_response(slot, msg, true);
                self.schedule(slot, now + timers.t1);
            }
            (Kind::Invite, ClientState::Accepted) if (200..300).contains(&code) => {
                // 2xx retransmission: forwarded end to end.
                self.forward_response(slot, msg, false);
            }
            (Kind::Invite, ClientState::Completed) if code >= 300 => {
                self.stats.retrans_absorbed.inc();
                push_copy(&mut self.pool, &mut self.transmits, t.downstream, &t.ack);
            }
            (Kind::NonInvite, ClientState::Calling | ClientState::Proceeding) if code < 200 => {
                t.client = ClientState::Proceeding;
                if code > 100 {
                    // Sent upstream: request retransmissions now get it again (§17.2.2).
                    t.server = ServerState::Proceeding;
                    self.forward_response(slot, msg, false);
                }
            }
            (Kind::NonInvite, ClientState::Calling | ClientState::Proceeding) => {
                t.client = ClientState::Completed;
                t.clear(Timer::E);
                t.clear(Timer::F);
                t.set(Timer::K, now + timers.t4);
                t.server = ServerState::Completed;
                t.set(Timer::J, now + timers.timer_b);
                let (method, call) = (t.method, t.call);
                self.forward_response(slot, msg, true);
                self.schedule(slot, now + timers.t4);
                if method == Method::Bye && self.call_confirmed(call) {
                    self.end_call(now, call, EndCause::Bye);
                }
            }
            _ => self.stats.retrans_absorbed.inc(),
        }
    }

    /// Server side of an INVITE gets its non-2xx final: retransmit until ACK (Timers G, H).
    fn complete_server_invite(&mut self, now: Instant, slot: u32) {
        let timers = self.cfg.timers;
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        t.server = ServerState::Completed;
        t.server_interval = timers.t1;
        t.set(Timer::G, now + timers.t1);
        t.set(Timer::H, now + timers.timer_b);
        let call = t.call;
        self.fail_call(now, call);
    }

    /// Passes a response upstream without our Via; `keep` stores it for retransmissions.
    fn forward_response(&mut self, slot: u32, msg: &SipMsg<'_>, keep: bool) {
        let buf = msg.buf;
        let rw = &mut self.rewrite;
        rw.clear();
        let h = msg.headers()[msg.top_via_header];
        remove_list_element(buf, h.line(), h.value(), msg.top_via.span, rw);
        if msg.content_length.is_none() {
            rw.insert_fmt(
                msg.headers_end as usize,
                format_args!("Content-Length: {}\r\n", msg.body.len()),
            );
        }
        let mut out = self.pool.pop().unwrap_or_default();
        rw.apply(buf, msg.end(), &mut out);
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        if keep || msg.status().is_some_and(|c| c > 100 && c < 200) {
            t.last_response.clear();
            t.last_response.extend_from_slice(&out);
        }
        self.stats.fwd_replies.inc();
        self.transmits.push(Transmit {
            dst: t.upstream,
            data: out,
        });
    }

    /// A reply siplb makes for the INVITE in `slot` (408 on Timer B, 487 after CANCEL), sent
    /// upstream as its final response.
    fn local_final(&mut self, now: Instant, slot: u32, code: u16) {
        let Some(t) = self.txns[slot as usize].as_mut() else {
            return;
        };
        if t.server != ServerState::Proceeding && t.server != ServerState::Trying {
            return;
        }
        let received = std::mem::take(&mut t.received);
        let upstream = t.upstream;
        let mut out = Vec::new();
        if let Ok(req) = SipMsg::parse(&received) {
            let tag = local_tag(&req);
            reply::build(
                &req,
                upstream,
                code,
                tag.as_bytes(),
                Extra::default(),
                &mut self.rewrite,
                &mut out,
            );
        }
        let t = self.txns[slot as usize]
            .as_mut()
            .expect("slot checked above");
        t.received = received;
        t.last_response = out.clone();
        debug_assert_eq!(t.kind, Kind::Invite, "only INVITEs get a local final reply");
        self.complete_server_invite(now, slot);
        self.stats.local_replies.inc();
        self.transmits.push(Transmit {
            dst: upstream,
            data: out,
        });
    }

    fn call_confirmed(&self, call: Option<u64>) -> bool {
        call.and_then(|d| self.calls.get(&d))
            .is_some_and(|c| c.state.is_confirmed())
    }

    /// Moves the dialog from `from` to `to` (nothing if it is elsewhere), keeping the counts.
    fn set_state(&mut self, call: Option<u64>, from: CallState, to: CallState) -> bool {
        let Some(c) = call.and_then(|d| self.calls.get_mut(&d)) else {
            return false;
        };
        if c.state != from {
            return false;
        }
        c.state = to;
        debug_assert!(from != CallState::Ended && to != CallState::Ended);
        self.by_state[from as usize - 1] -= 1;
        self.by_state[to as usize - 1] += 1;
        true
    }

    /// The 2xx of the initial INVITE confirms the dialog and names the callee; that of a
    /// re-INVITE (either way) changes neither.
    fn answer(&mut self, now: Instant, call: Option<u64>, msg: &SipMsg<'_>) {
        let Some(did) = call else { return };
        let unix = self.unix_ms(now);
        let Some(c) = self.calls.get_mut(&did) else {
            return;
        };
        if c.state.is_confirmed() {
            // The 2xx of a re-INVITE updates its sender's remote target (RFC 3261 §12.2.1.2):
            // the side whose tag is in the To header answered.
            let contact = first_contact(msg);
            if !contact.is_empty() {
                let leg = if msg.to_tag() == Some(c.caller_tag()) {
                    &mut c.caller_leg
                } else {
                    &mut c.callee_leg
                };
                leg.contact = contact.into();
            }
            return;
        }
        if !c.state.is_early() {
            return;
        }
        let state = c.state;
        c.answered = Some(now);
        c.start_ms = unix;
        c.callee_leg.tag = msg.to_tag().unwrap_or(b"").into();
        c.callee_leg.contact = first_contact(msg).into();
        c.callee_leg.route_set = record_routes(msg, Some(did)).into();
        if let Some((_, h)) = msg.headers_named(HeaderName::To).next() {
            c.to = h.value().of(msg.buf).into();
        }
        // The dialog lives `default_timeout` from its answer (and a while longer as a record).
        c.expires = now + self.cfg.dialog.default_timeout + self.cfg.call_linger;
        c.set_var("AnswerTime", (unix / 1000).to_string());
        self.set_state(call, state, CallState::ConfirmedNoAck);
        self.set_vars(did, VarAt::Start);
    }

    /// The INVITE of a dialog not answered yet failed: the dialog ends.
    fn fail_call(&mut self, now: Instant, call: Option<u64>) {
        if let Some(c) = call.and_then(|d| self.calls.get(&d))
            && c.state.is_early()
        {
            self.stats.failed_dialogs.inc();
            self.end_call(now, call, EndCause::Failed);
        }
    }

    /// Ends a dialog: its places in the profiles are given back (exactly once: only here), and
    /// its record stays `call_linger` to absorb stragglers.
    fn end_call(&mut self, now: Instant, call: Option<u64>, cause: EndCause) {
        let Some(did) = call else { return };
        let linger = now + self.cfg.call_linger;
        let unix = self.unix_ms(now);
        let Some(c) = self.calls.get_mut(&did) else {
            return;
        };
        if c.state == CallState::Ended {
            return;
        }
        let was = c.state;
        let was_early = was.is_early();
        c.state = CallState::Ended;
        c.end_ms = unix;
        c.end_cause = Some(cause);
        self.cfg.profiles.leave(&mut c.profiles);
        c.expires = c.expires.min(linger);
        let expires = c.expires;
        // Billed seconds: the answered time rounded to the nearest second (not the difference
        // of the two times in whole seconds, which can be a second off).
        let bill = match c.answered {
            Some(_) => (unix.saturating_sub(c.start_ms) + 500) / 1000,
            None => 0,
        };
        c.set_var("EndTime", (unix / 1000).to_string());
        c.set_var("BillSec", bill.to_string());
        self.by_state[was as usize - 1] -= 1;
        self.add_timer(expires, TimerRef::Call { did });
        self.set_vars(did, VarAt::End);
        if !was_early && self.cfg.call_end_events {
            let event = call_end_event(&self.calls[&did]);
            self.events.push(event);
        }
    }

    // ---------------------------------------------------------------- timers

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_clock(now);
        let Some(wheel) = self.timers.as_mut() else {
            return;
        };
        let mut due = std::mem::take(&mut self.due);
        wheel.expire(now, |at, r| due.push((at, r)));
        // Deadline order, as the RFC timers of one transaction expect.
        due.sort_unstable();
        for &(at, r) in &due {
            match r {
                TimerRef::Txn { slot, generation } => {
                    // Entries of removed transactions, and entries superseded by an earlier
                    // wake-up, are stale.
                    if let Some(t) = self.txns.get_mut(slot as usize).and_then(Option::as_mut)
                        && t.generation == generation
                        && t.queued == Some(at)
                    {
                        t.queued = None;
                        self.run_txn_timers(now, slot);
                    }
                }
                TimerRef::Call { did } => {
                    if self.calls.get(&did).is_some_and(|c| c.expires <= now) {
                        let c = self.calls.remove(&did).expect("checked above");
                        self.call_ids.remove(&c.call_id);
                    }
                }
                TimerRef::Sweep => {
                    self.sweep_at = None;
                    self.sweep(now);
                    if !self.calls.is_empty() {
                        self.ensure_sweep(now);
                    }
                }
            }
        }
        due.clear();
        self.due = due;
    }

    /// The dialog timeouts (DESIGN §3), checked in one pass over the shard's dialogs: records
    /// past their time are removed, dialogs unanswered after `early_timeout` are cancelled,
    /// answered ones past `noack_timeout` without ACK or past `default_timeout` get BYE on
    /// both sides.
    fn sweep(&mut self, now: Instant) {
        let d = self.cfg.dialog;
        let mut due = std::mem::take(&mut self.swept);
        for (did, c) in &self.calls {
            let late = |from: Option<Instant>, after| from.is_some_and(|t| t + after <= now);
            let act = c.expires <= now
                || match c.state {
                    CallState::Ended => false,
                    s if s.is_early() => {
                        !c.early_cancelled && late(Some(c.created), d.early_timeout)
                    }
                    CallState::ConfirmedNoAck => {
                        late(c.answered, d.noack_timeout) || late(c.answered, d.default_timeout)
                    }
                    _ => late(c.answered, d.default_timeout),
                };
            if act {
                due.push(*did);
            }
        }
        for did in due.drain(..) {
            let Some(c) = self.calls.get_mut(&did) else {
                continue;
            };
            let (state, expired) = (c.state, c.expires <= now);
            if state.is_confirmed() {
                self.stats.expired_dialogs.inc();
                self.terminate(now, did, EndCause::Expired);
            } else if state.is_early() && !expired {
                c.early_cancelled = true;
                let invite = c.invite;
                self.cancel_invite(now, did, invite);
            } else if expired {
                // A record past its time: an ended call's linger is over, or (a backstop) a
                // dialog nothing ended gives its places back now.
                if state != CallState::Ended {
                    self.end_call(now, Some(did), EndCause::Expired);
                }
                if let Some(c) = self.calls.remove(&did) {
                    self.call_ids.remove(&c.call_id);
                }
            }
        }
        self.swept = due;
    }

    /// Cancels the INVITE of a dialog not answered in time, as Timer C would.
    fn cancel_invite(&mut self, now: Instant, did: u64, invite: Option<(u32, u32)>) {
        let alive = invite.and_then(|(slot, generation)| {
            let t = self.txns.get(slot as usize)?.as_ref()?;
            (t.generation == generation && t.call == Some(did)).then_some((slot, t))
        });
        match alive {
            Some((slot, t)) if t.client == ClientState::Proceeding && t.cancel == Cancel::None => {
                self.send_cancel(now, slot)
            }
            Some((slot, t)) if t.client == ClientState::Calling && t.cancel == Cancel::None => {
                if let Some(t) = self.txns[slot as usize].as_mut() {
                    t.cancel = Cancel::Pending;
                }
            }
            Some(_) => {}
            // Its transaction is gone: nothing can answer it any more.
            None => self.fail_call(now, Some(did)),
        }
    }

    /// Ends an answered dialog from siplb's side: BYE to the callee (as the caller would send
    /// it) and to the caller (as the callee would), each in a transaction of its own.
    pub fn terminate(&mut self, now: Instant, did: u64, cause: EndCause) -> bool {
        let local = self.cfg.local;
        let Some(c) = self.calls.get_mut(&did).filter(|c| c.state.is_confirmed()) else {
            return false;
        };
        c.caller_leg.cseq += 1;
        c.callee_leg.cseq += 1;
        let mut byes = Vec::with_capacity(2);
        for toward_callee in [true, false] {
            let mut branch = Vec::with_capacity(40);
            self.new_branch(&mut branch);
            let mut out = self.pool.pop().unwrap_or_default();
            let c = &self.calls[&did];
            build_bye(c, toward_callee, local, &branch, cause, &mut out);
            let dst = if toward_callee { c.gateway } else { c.caller };
            byes.push((dst, branch, out));
        }
        self.end_call(now, Some(did), cause);
        for (dst, branch, out) in byes {
            let mut t = self.new_txn(Kind::NonInvite, Method::Bye, dst, dst);
            t.server = ServerState::Terminated;
            t.client = ClientState::Calling;
            t.local_request = true;
            t.call = Some(did);
            let mut ck = Vec::new();
            client_key(&branch, false, &mut ck);
            t.client_key = ck.as_slice().into();
            t.forwarded.extend_from_slice(&out);
            t.set(Timer::E, now + self.cfg.timers.t1);
            t.set(Timer::F, now + self.cfg.timers.timer_b);
            let slot = self.alloc_txn(t);
            self.client_index.insert(ck.into(), slot);
            self.schedule(slot, now + self.cfg.timers.t1);
            self.stats.fwd_requests.inc();
            self.transmits.push(Transmit { dst, data: out });
        }
        true
    }

    fn run_txn_timers(&mut self, now: Instant, slot: u32) {
        let timers = self.cfg.timers;
        for timer in Timer::ALL {
            let Some(t) = self.txns[slot as usize].as_mut() else {
                return;
            };
            match t.timers[timer as usize] {
                Some(at) if at <= now => t.clear(timer),
                _ => continue,
            }
            match timer {
                // Retransmit the request: INVITE every doubled interval (A), non-INVITE doubling
                // up to T2 and at T2 once a provisional arrived (E).
                Timer::A | Timer::E
                    if (timer == Timer::A && t.client == ClientState::Calling)
                        || (timer == Timer::E
                            && matches!(
                                t.client,
                                ClientState::Calling | ClientState::Proceeding
                            )) =>
                {
                    t.client_interval = match (timer, t.client) {
                        (Timer::A, _) => t.client_interval * 2,
                        (_, ClientState::Calling) => (t.client_interval * 2).min(timers.t2),
                        _ => timers.t2,
                    };
                    let next = now + t.client_interval;
                    t.set(timer, next);
                    self.stats.retransmissions.inc();
                    push_copy(
                        &mut self.pool,
                        &mut self.transmits,
                        t.downstream,
                        &t.forwarded,
                    );
                }
                Timer::B if t.client == ClientState::Calling => {
                    t.client = ClientState::Terminated;
                    t.clear(Timer::A);
                    self.stats.timeouts.inc();
                    self.local_final(now, slot, 408);
                }
                Timer::C if t.client == ClientState::Proceeding => {
                    if t.cancel == Cancel::Sent {
                        continue;
                    }
                    self.send_cancel(now, slot);
                }
                Timer::CancelGuard if t.client == ClientState::Proceeding => {
                    t.client = ClientState::Terminated;
                    t.clear(Timer::C);
                    self.local_final(now, slot, 487);
                }
                Timer::F if matches!(t.client, ClientState::Calling | ClientState::Proceeding) => {
                    // No 408 upstream for non-INVITE (RFC 4320): the sender times out itself.
                    t.client = ClientState::Terminated;
                    t.clear(Timer::E);
                    if t.server != ServerState::Completed {
                        t.server = ServerState::Terminated;
                    }
                    if t.method == Method::Bye && !t.local_request {
                        let call = t.call;
                        if self.call_confirmed(call) {
                            self.end_call(now, call, EndCause::Bye);
                        }
                    }
                }
                Timer::D | Timer::K | Timer::M => t.client = ClientState::Terminated,
                Timer::G if t.server == ServerState::Completed => {
                    t.server_interval = (t.server_interval * 2).min(timers.t2);
                    let next = now + t.server_interval;
                    t.set(Timer::G, next);
                    self.stats.retransmissions.inc();
                    push_copy(
                        &mut self.pool,
                        &mut self.transmits,
                        t.upstream,
                        &t.last_response,
                    );
                }
                Timer::H => {
                    t.server = ServerState::Terminated;
                    t.clear(Timer::G);
                }
                Timer::I | Timer::J | Timer::L => t.server = ServerState::Terminated,
                _ => {}
            }
        }
        let Some(t) = self.txns[slot as usize].as_ref() else {
            return;
        };
        if t.done() {
            self.remove_txn(slot);
        } else if let Some(next) = t.next_deadline() {
            self.schedule(slot, next);
        }
    }

    fn remove_txn(&mut self, slot: u32) {
        let Some(t) = self.txns[slot as usize].take() else {
            return;
        };
        if !t.server_key.is_empty() && self.server_index.get(&t.server_key) == Some(&slot) {
            self.server_index.remove(&t.server_key);
        }
        if !t.client_key.is_empty() && self.client_index.get(&t.client_key) == Some(&slot) {
            self.client_index.remove(&t.client_key);
        }
        self.free.push(slot);
        self.live_txns -= 1;
    }
}

/// Queues a copy of `data` for `dst` in a pooled buffer. Takes the two fields rather than the
/// shard so that it can send what a transaction borrowed from the shard holds, without a copy.
fn push_copy(pool: &mut Vec<Vec<u8>>, transmits: &mut Vec<Transmit>, dst: SocketAddr, data: &[u8]) {
    let mut buf = pool.pop().unwrap_or_else(|| Vec::with_capacity(2048));
    buf.extend_from_slice(data);
    transmits.push(Transmit { dst, data: buf });
}

/// How to forward a request.
#[derive(Debug, Clone, Copy)]
struct Forward {
    /// Add our Record-Route with this dialog id.
    record_route: Option<u64>,
    /// Remove this element (our own Route) of the header at this index.
    strip_route: Option<(usize, Span)>,
}

/// Removes one element of a comma-separated header: the whole line when it is the only one.
fn remove_list_element(buf: &[u8], line: Span, value: Span, elem: Span, rw: &mut Rewrite) {
    let mut elems = CommaList::new(buf, value);
    let first = elems.next();
    let second = elems.next();
    match (first, second) {
        (Some(Ok(f)), None) if f == elem => rw.delete(line.start as usize, line.end as usize),
        _ => {
            // Element and the comma (and white space) after it.
            let mut end = elem.end as usize;
            while end < value.end as usize && buf[end] != b',' {
                end += 1;
            }
            if end < value.end as usize {
                end += 1;
                while end < value.end as usize && (buf[end] == b' ' || buf[end] == b'\t') {
                    end += 1;
                }
                rw.delete(elem.start as usize, end);
            } else {
                // Last element: remove the comma before it instead.
                let mut start = elem.start as usize;
                while start > value.start as usize && buf[start - 1] != b',' {
                    start -= 1;
                }
                rw.delete(
                    start.saturating_sub(1).max(value.start as usize),
                    elem.end as usize,
                );
            }
        }
    }
}

/// The To tag of replies siplb generates for `msg`: stable across its retransmissions.
fn local_tag(msg: &SipMsg<'_>) -> String {
    let b = msg.branch().unwrap_or(msg.call_id());
    format!("sl{:08x}", owner_hash(0x746167, b))
}

/// The URI of the first Contact of `msg` (empty when it has none).
fn first_contact<'a>(msg: &SipMsg<'a>) -> &'a [u8] {
    msg.headers_named(HeaderName::Contact)
        .find_map(|(_, h)| CommaList::new(msg.buf, h.value()).next()?.ok())
        .and_then(|el| NameAddr::locate(msg.buf, el))
        .map_or(&b""[..], |na| na.uri.of(msg.buf))
}

/// A route set from the Record-Route headers of `msg` (RFC 3261 §12.1), nearest hop first,
/// as the comma-separated values of a Route header. From an INVITE as received (`ours` none):
/// the proxies toward the caller, in order. From the 2xx (`ours` the dialog id siplb put in
/// its own entry): the entries above siplb's, which are the proxies toward the callee, in
/// reverse.
fn record_routes(msg: &SipMsg<'_>, ours: Option<u64>) -> Vec<u8> {
    let buf = msg.buf;
    let mut all: Vec<Span> = msg
        .headers_named(HeaderName::RecordRoute)
        .flat_map(|(_, h)| CommaList::new(buf, h.value()).filter_map(Result::ok))
        .collect();
    if let Some(did) = ours {
        let mine = all.iter().position(|el| {
            NameAddr::locate(buf, *el).and_then(|na| did_param(buf, na.uri)) == Some(did)
        });
        all.truncate(mine.unwrap_or(0));
        all.reverse();
    }
    let mut out = Vec::new();
    for (i, el) in all.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(el.of(buf));
    }
    out
}

/// The `Call_End` event of an answered dialog, as the dialog article's `dialog:end` route
/// writes it: CallID, From and To URIs, the built-in times as numbers, and the configured
/// variables as strings.
fn call_end_event(c: &Call) -> String {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let uri = |v: &[u8]| {
        NameAddr::locate(v, Span::new(0, v.len()))
            .map_or_else(String::new, |na| lossy(na.uri.of(v)))
    };
    let mut obj = serde_json::Map::new();
    obj.insert("Event".into(), "Call_End".into());
    obj.insert("CallID".into(), lossy(&c.call_id).into());
    obj.insert("From".into(), uri(&c.from).into());
    obj.insert("To".into(), uri(&c.to).into());
    for name in crate::dialog::BUILTIN_VARS {
        let v = c
            .vars
            .iter()
            .find(|(n, _)| &**n == name)
            .map_or("0", |(_, v)| v);
        obj.insert(
            name.into(),
            v.parse::<u64>().map_or_else(|_| v.into(), Into::into),
        );
    }
    for (n, v) in &c.vars {
        if !crate::dialog::BUILTIN_VARS.contains(&&**n) {
            obj.insert(n.to_string(), v.to_string().into());
        }
    }
    serde_json::Value::Object(obj).to_string()
}

/// A BYE siplb sends on its own to one side of a dialog (RFC 3261 §15.1.1): toward the
/// callee as the caller would send it, toward the caller as the callee would.
fn build_bye(
    c: &Call,
    toward_callee: bool,
    local: SocketAddr,
    branch: &[u8],
    cause: EndCause,
    out: &mut Vec<u8>,
) {
    let (leg, peer, from, to, cseq) = if toward_callee {
        (&c.callee_leg, c.gateway, &c.from, &c.to, c.caller_leg.cseq)
    } else {
        (&c.caller_leg, c.caller, &c.to, &c.from, c.callee_leg.cseq)
    };
    out.extend_from_slice(b"BYE ");
    if leg.contact.is_empty() {
        let _ = write!(out, "sip:{peer}");
    } else {
        out.extend_from_slice(&leg.contact);
    }
    out.extend_from_slice(b" SIP/2.0\r\n");
    write_via(out, local, branch);
    if !leg.route_set.is_empty() {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(&leg.route_set);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(&c.call_id);
    let _ = write!(out, "\r\nCSeq: {cseq} BYE\r\n");
    if cause == EndCause::Expired {
        out.extend_from_slice(b"Reason: SIP;cause=408;text=\"dialog timeout\"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// A request siplb sends hop by hop for an INVITE it forwarded (`fwd`): CANCEL (§9.1) or the
/// ACK of a non-2xx final (§17.1.1.3, To from `response`).
fn build_hop_request(
    fwd: &SipMsg<'_>,
    method: Method,
    response: Option<&SipMsg<'_>>,
    out: &mut Vec<u8>,
) {
    let buf = fwd.buf;
    let uri = fwd.request_uri().map_or(&b""[..], |u| u.of(buf));
    let m = method.as_str();
    let _ = write!(out, "{m} ");
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    // Our Via is the first element of the first Via line of what we forwarded.
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(fwd.top_via.span.of(buf));
    out.extend_from_slice(b"\r\n");
    for h in fwd.headers() {
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => {
                out.extend_from_slice(h.line().of(buf))
            }
            HeaderName::To => match response {
                Some(r) => {
                    if let Some((_, rh)) = r.headers_named(HeaderName::To).next() {
                        out.extend_from_slice(rh.line().of(r.buf));
                    }
                }
                None => out.extend_from_slice(h.line().of(buf)),
            },
            _ => continue,
        }
        if !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    let _ = write!(
        out,
        "CSeq: {} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        fwd.cseq
    );
}

#[cfg(test)]
mod tests;
