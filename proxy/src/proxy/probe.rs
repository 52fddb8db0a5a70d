//! OPTIONS probing of gateways (Kamailio's dispatcher pinging), sans-IO.
//!
//! One worker probes (the shard that [`Prober`] belongs to). Each probed gateway gets an
//! OPTIONS every `interval`; a probe not answered with a final reply within `timeout` (its
//! own timer, not Timer F, so that a dead gateway is noticed in seconds) counts as a failure,
//! as does a reply with one of the set's failure codes; any other final reply counts as an
//! answer. [`Health::record`](super::health::Health::record) turns those into up and down.
//!
//! Replies reach the prober because they carry its Call-ID, and every datagram goes to the
//! worker that owns its Call-ID: each probe's Call-ID (`siplb-probe-<token>-<n>-<k>`) is
//! chosen with `k` such that it hashes to the prober's worker. They are recognised by the
//! Call-ID prefix before any transaction matching. The token is random per process, so that
//! the Call-IDs, From tags and branches of one run's probes are never those of another's (a
//! restart, another node probing the same gateway; RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).

use super::event::{Event, GatewayChange};
use super::gateway::Gateways;
use super::health::{Change, Outcome, Thresholds};
use super::output::Output;
use super::target::Target;
use super::via::write_via;
use crate::sip::SipMsg;
use siplb_common::{owner_hash, owner_of};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The start of every probe's Call-ID.
pub const CALL_ID_PREFIX: &[u8] = b"siplb-probe-";

pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_DOWN_AFTER: u32 = 2;
pub const DEFAULT_UP_AFTER: u32 = 1;

/// How a gateway set's gateways are probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// One OPTIONS per gateway this often.
    pub interval: Duration,
    /// A probe without a final reply after this has failed.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// Final replies that count as a failure (besides no reply).
    pub fail_codes: Vec<u16>,
    /// The From URI of the probes (none: `sip:siplb@<listen address>`).
    pub from: Option<String>,
}

impl ProbeConfig {
    /// Probes every `interval` with the defaults: 1 s timeout, down after 2 failures, up
    /// after 1 answer, every 5xx a failure.
    pub fn every(interval: Duration) -> ProbeConfig {
        ProbeConfig {
            interval,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            thresholds: Thresholds {
                down_after: DEFAULT_DOWN_AFTER,
                up_after: DEFAULT_UP_AFTER,
            },
            fail_codes: (500..=599).collect(),
            from: None,
        }
    }
}

/// A probe out, not answered yet.
#[derive(Debug)]
struct Out {
    call_id: String,
    sent: Instant,
    deadline: Instant,
}

/// One probed gateway.
#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    next_at: Instant,
    out: Option<Out>,
}

/// The probes of one worker.
#[derive(Debug)]
pub struct Prober {
    worker: u32,
    workers: u32,
    hash_key: u32,
    local: Target,
    /// Random per process: in every probe's Call-ID and From tag.
    token: String,
    /// Probes sent so far (Call-ID and CSeq).
    seq: u64,
    entries: Vec<Entry>,
    /// The earliest probe or timeout due; none until the first tick.
    next: Option<Instant>,
    /// The gateway sets changed (or never seen): the entries are checked against them.
    stale: bool,
}

impl Prober {
    /// The prober of worker `worker` of `workers`, whose owner hash key is `hash_key`;
    /// `token` (random per process) sets its probes apart from any other run's.
    pub fn new(
        worker: u32,
        workers: u32,
        hash_key: u32,
        local: SocketAddr,
        token: String,
    ) -> Prober {
        Prober {
            worker,
            workers,
            hash_key,
            local: Target::udp(local),
            token,
            seq: 0,
            entries: Vec::new(),
            next: None,
            stale: true,
        }
    }

    /// When [`tick`](Self::tick) next has work (none before the first tick).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// The gateway sets changed (a reload).
    pub fn reconfigured(&mut self) {
        self.stale = true;
    }

    /// Probes out, not answered yet.
    pub fn outstanding(&self) -> usize {
        self.entries.iter().filter(|e| e.out.is_some()).count()
    }

    /// Times out the probes due, sends the probes due.
    pub fn tick(&mut self, now: Instant, gateways: &Gateways, out: &mut Output) {
        if !self.stale && self.next.is_some_and(|n| n > now) {
            return;
        }
        if self.stale {
            self.refresh(now, gateways);
        }
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if e.out.as_ref().is_some_and(|o| o.deadline <= now) {
                e.out = None;
                let addr = e.addr;
                record(gateways, addr, Outcome::Timeout, out);
            }
            let e = &mut self.entries[i];
            if e.out.is_none() && e.next_at <= now {
                let Some((cfg, probing)) = probe_of(gateways, e.addr) else {
                    continue;
                };
                // Missed intervals are not made up for.
                e.next_at = (e.next_at + cfg.interval).max(now);
                if !probing {
                    continue;
                }
                self.seq += 1;
                let call_id = self.call_id();
                let e = &mut self.entries[i];
                let mut buf = out.buffer();
                let tag = format!("p{}-{}", self.token, self.seq);
                write_options(&mut buf, self.local, e.addr, &call_id, &tag, self.seq, cfg);
                out.send(Target::udp(e.addr), buf);
                e.out = Some(Out {
                    call_id,
                    sent: now,
                    deadline: now + cfg.timeout,
                });
                for_each_state(gateways, e.addr, |s, _| s.health.sent());
            }
        }
        self.next = self
            .entries
            .iter()
            .map(|e| e.out.as_ref().map_or(e.next_at, |o| o.deadline))
            .min();
    }

    /// Whether `msg` (a response) answers a probe; if so it is taken here: a final reply
    /// from the probed gateway is recorded, anything else dropped.
    pub fn on_response(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        gateways: &Gateways,
        out: &mut Output,
    ) -> bool {
        let call_id = msg.call_id();
        if !call_id.starts_with(CALL_ID_PREFIX) {
            return false;
        }
        let code = msg.status().unwrap_or(0);
        if code < 200 {
            return true;
        }
        let Some(e) = self.entries.iter_mut().find(|e| {
            e.out
                .as_ref()
                .is_some_and(|o| o.call_id.as_bytes() == call_id)
        }) else {
            return true; // late, or not ours
        };
        if src != e.addr && !gateways.answers_from(e.addr, src) {
            return true;
        }
        let Some(o) = e.out.take() else {
            return true;
        };
        let addr = e.addr;
        let failed = probe_of(gateways, addr).is_some_and(|(c, _)| c.fail_codes.contains(&code));
        let rtt = now.saturating_duration_since(o.sent);
        record(gateways, addr, Outcome::Reply { code, rtt, failed }, out);
        true
    }

    /// `siplb-probe-<token>-<seq>-<k>` with the first `k` whose owner is this worker.
    fn call_id(&self) -> String {
        let mut k = 0u32;
        loop {
            let id = format!("siplb-probe-{}-{}-{k}", self.token, self.seq);
            let h = owner_hash(self.hash_key, id.as_bytes());
            if owner_of(h, self.workers) == self.worker {
                return id;
            }
            k += 1;
        }
    }

    /// One entry per probed gateway address (in a set with probing), in order; entries of
    /// gateways still there keep their probe and schedule.
    fn refresh(&mut self, now: Instant, gateways: &Gateways) {
        self.stale = false;
        let mut old = std::mem::take(&mut self.entries);
        for set in gateways.sets.iter().filter(|s| s.probe.is_some()) {
            for g in &set.gateways {
                let addr = g.target.addr;
                if self.entries.iter().any(|e| e.addr == addr) {
                    continue;
                }
                let e = match old.iter().position(|e| e.addr == addr) {
                    Some(i) => old.swap_remove(i),
                    None => Entry {
                        addr,
                        next_at: now,
                        out: None,
                    },
                };
                self.entries.push(e);
            }
        }
    }
}

/// The probe settings of the first probed set with the gateway at `addr`, and whether that
/// gateway is probed now (not disabled, probing not turned off).
fn probe_of(gateways: &Gateways, addr: SocketAddr) -> Option<(&ProbeConfig, bool)> {
    gateways.sets.iter().find_map(|s| {
        let cfg = s.probe.as_ref()?;
        let g = s.gateways.iter().find(|g| g.target.addr == addr)?;
        Some((cfg, g.state.health.probing()))
    })
}

/// Calls `f` once per distinct state of the gateways at `addr` (a gateway in two sets may
/// have one state or two), with the thresholds of its set (defaults when not probed).
fn for_each_state(
    gateways: &Gateways,
    addr: SocketAddr,
    mut f: impl FnMut(&super::gateway::GatewayState, Thresholds),
) {
    let mut seen: Vec<*const super::gateway::GatewayState> = Vec::new();
    let default = ProbeConfig::every(Duration::ZERO).thresholds;
    for set in &gateways.sets {
        let t = set.probe.as_ref().map_or(default, |p| p.thresholds);
        for g in set.gateways.iter().filter(|g| g.target.addr == addr) {
            let p = std::sync::Arc::as_ptr(&g.state);
            if !seen.contains(&p) {
                seen.push(p);
                f(&g.state, t);
            }
        }
    }
}

/// Records a probe's outcome on the gateway at `addr`; a change of state is reported
/// ([`Event::Gateway`]), for the log.
fn record(gateways: &Gateways, addr: SocketAddr, outcome: Outcome, out: &mut Output) {
    let mut change = None;
    for_each_state(gateways, addr, |s, t| {
        change = change.or(s.health.record(outcome, t));
    });
    if let Some(c) = change {
        out.emit(Event::Gateway(GatewayChange {
            gateway: addr,
            up: c == Change::Up,
            outcome,
        }));
    }
}

/// The OPTIONS of one probe.
fn write_options(
    out: &mut Vec<u8>,
    local: Target,
    to: SocketAddr,
    call_id: &str,
    tag: &str,
    seq: u64,
    cfg: &ProbeConfig,
) {
    let _ = write!(out, "OPTIONS sip:{to} SIP/2.0\r\n");
    write_via(out, local, format!("z9hG4bK-{call_id}").as_bytes());
    let from = match &cfg.from {
        Some(f) => f.clone(),
        None => format!("sip:siplb@{}", local.addr),
    };
    let _ = write!(
        out,
        "Max-Forwards: 70\r\nFrom: <{from}>;tag={tag}\r\nTo: <sip:{to}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {seq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
}

#[cfg(test)]
mod tests;
