//! The calls, without I/O: the caller's side of each call (INVITE, ACK, hold, BYE, with
//! retransmissions by RFC 3261's timers) and the gateways' side (100, 180 and 200, the 200
//! resent until its ACK, 200 to BYE), the flow of `examples/sipp/uac.xml` and `uas.xml`. Datagrams
//! to send go into `out`, tagged with the socket they leave from (0: the caller, 1…: the
//! gateways).

use super::io::Out;
use super::sip::{self, Msg, Party};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// RFC 3261's T1 and T2, and the 64·T1 transaction timeout (Timers B, F, H).
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const TIMEOUT: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// INVITE answered 200, BYE answered 200.
    Ok,
    /// A final reply ≥ 300 to the INVITE (its code).
    Refused(u16),
    /// No final reply to the INVITE or to the BYE within 64·T1.
    Timeout,
    /// Still under way when the run ended.
    Unfinished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    NotStarted,
    /// INVITE sent; `answered`: a provisional reply stopped its retransmissions.
    Inviting {
        answered: bool,
    },
    /// ACK sent; the BYE goes at the end of the hold.
    Holding,
    Byeing,
    Done(Outcome),
}

pub struct Call {
    stage: Stage,
    invite_at: Instant,
    bye_at: Instant,
    /// The next retransmission interval.
    interval: Duration,
    sent_invite: Vec<u8>,
    /// The ACK of the 2xx (resent when the 2xx is) and the BYE, until the call ends.
    ack: Vec<u8>,
    bye: Vec<u8>,
    /// INVITE → 200 and BYE → 200, µs.
    pub invite_rtt_us: u64,
    pub bye_rtt_us: u64,
}

/// A gateway's memory of a call.
#[derive(Default)]
struct Uas {
    /// The 200 to the INVITE, resent until the ACK.
    ok: Vec<u8>,
    provisional: Vec<u8>,
    acked: bool,
    interval: Duration,
    /// When its 200 was first sent (Timer H runs from there).
    since: Option<Instant>,
    /// Which gateway socket holds the call, and where its replies go.
    socket: usize,
    peer: Option<SocketAddr>,
}

impl Uas {
    /// The ACK (or the BYE) came: the replies kept for retransmission are let go.
    fn acked(&mut self) {
        self.acked = true;
        self.ok = Vec::new();
        self.provisional = Vec::new();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Resend the INVITE (Timer A), or give up on it (B).
    Invite,
    Bye,
    /// The hold is over: send the BYE.
    Hangup,
    /// Resend a gateway's 200 (Timer G).
    Uas,
}

/// The calls' timers. Most are set T1 ahead, or the hold ahead, of the time they are set,
/// and so come due in the order they were set: those wait in a queue each (constant time);
/// the rest (doubled retransmission intervals, the 64·T1 ends) in a heap.
#[derive(Default)]
struct Timers {
    t1: VecDeque<(Instant, usize, Timer)>,
    hold: VecDeque<(Instant, usize, Timer)>,
    other: BinaryHeap<Reverse<(Instant, usize, Timer)>>,
}

impl Timers {
    /// A timer at `at`, T1 after the time it is set (which never goes back).
    fn after(&mut self, at: Instant, n: usize, t: Timer) {
        self.t1.push_back((at, n, t));
    }

    /// A timer at `at`, the hold after the time it is set.
    fn after_hold(&mut self, at: Instant, n: usize, t: Timer) {
        self.hold.push_back((at, n, t));
    }

    fn at(&mut self, at: Instant, n: usize, t: Timer) {
        self.other.push(Reverse((at, n, t)));
    }

    fn next(&self) -> Option<Instant> {
        let fronts = [
            self.t1.front().map(|e| e.0),
            self.hold.front().map(|e| e.0),
            self.other.peek().map(|Reverse(e)| e.0),
        ];
        fronts.into_iter().flatten().min()
    }

    /// The earliest timer due at `now`, taken out.
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Timer)> {
        let at = self.next().filter(|at| *at <= now)?;
        let (n, t) = if self.t1.front().is_some_and(|e| e.0 == at) {
            self.t1.pop_front().map(|e| (e.1, e.2))?
        } else if self.hold.front().is_some_and(|e| e.0 == at) {
            self.hold.pop_front().map(|e| (e.1, e.2))?
        } else {
            self.other.pop().map(|Reverse(e)| (e.1, e.2))?
        };
        Some((n, t))
    }
}

/// A mark of this run: the process and the time it started, in hex.
fn run_mark() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", std::process::id(), ns & 0xff_ffff_ffff)
}

struct Names {
    local: String,
    local_ip: String,
    /// This run's mark in every Call-ID, tag and branch, so that a run started right after
    /// another is not taken for its retransmissions (a proxy keeps an answered INVITE's
    /// transaction for 64·T1).
    run: String,
    target: String,
    gateways: Vec<String>,
}

pub struct Calls<'a> {
    pub calls: Vec<Call>,
    uas: Vec<Uas>,
    accounts: &'a [(String, String)],
    target: SocketAddr,
    /// The caller's address, its IP, `target` and the gateways' addresses as text, for the
    /// messages.
    names: Names,
    hold: Duration,
    timers: Timers,
    pub out: Out,
    pub retransmissions: u64,
    pub finished: usize,
}

impl<'a> Calls<'a> {
    pub fn new(
        count: usize,
        accounts: &'a [(String, String)],
        local: SocketAddr,
        target: SocketAddr,
        gateways: Vec<SocketAddr>,
        hold: Duration,
        now: Instant,
    ) -> Calls<'a> {
        let call = || Call {
            stage: Stage::NotStarted,
            invite_at: now,
            bye_at: now,
            interval: T1,
            sent_invite: Vec::new(),
            ack: Vec::new(),
            bye: Vec::new(),
            invite_rtt_us: 0,
            bye_rtt_us: 0,
        };
        let names = Names {
            local: local.to_string(),
            local_ip: local.ip().to_string(),
            run: run_mark(),
            target: target.to_string(),
            gateways: gateways.iter().map(SocketAddr::to_string).collect(),
        };
        Calls {
            calls: (0..count).map(|_| call()).collect(),
            uas: (0..count).map(|_| Uas::default()).collect(),
            accounts,
            target,
            names,
            hold,
            timers: Timers::default(),
            out: Out::default(),
            retransmissions: 0,
            finished: 0,
        }
    }

    fn party(&self, n: usize) -> Party<'_> {
        let (account, number) = &self.accounts[n % self.accounts.len()];
        Party {
            local: &self.names.local,
            local_ip: &self.names.local_ip,
            run: &self.names.run,
            target: &self.names.target,
            account,
            number,
        }
    }

    /// Ends call `n`. What it kept to send again is let go, so that a long run's memory is
    /// that of the calls under way (a 2xx that comes again gets an ACK made afresh).
    fn finish(&mut self, n: usize, o: Outcome) {
        let c = &mut self.calls[n];
        if !matches!(c.stage, Stage::Done(_)) {
            c.stage = Stage::Done(o);
            c.sent_invite = Vec::new();
            c.ack = Vec::new();
            c.bye = Vec::new();
            self.finished += 1;
        }
    }

    pub fn outcome(&self, n: usize) -> Outcome {
        match self.calls[n].stage {
            Stage::Done(o) => o,
            _ => Outcome::Unfinished,
        }
    }

    /// Starts call `n`: its INVITE.
    pub fn start(&mut self, n: usize, now: Instant) {
        let inv = sip::invite(&self.party(n), n);
        self.out.push(0, self.target, &inv);
        let c = &mut self.calls[n];
        c.stage = Stage::Inviting { answered: false };
        c.invite_at = now;
        c.interval = T1;
        c.sent_invite = inv;
        self.timers.after(now + T1, n, Timer::Invite);
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires the timers due at `now`.
    pub fn on_timers(&mut self, now: Instant) {
        while let Some((n, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Invite => self.invite_timer(n, now),
                Timer::Hangup => self.hang_up(n, now),
                Timer::Bye => self.bye_timer(n, now),
                Timer::Uas => self.uas_timer(n, now),
            }
        }
    }

    fn invite_timer(&mut self, n: usize, now: Instant) {
        let c = &mut self.calls[n];
        let Stage::Inviting { answered } = c.stage else {
            return;
        };
        if now.duration_since(c.invite_at) >= TIMEOUT {
            return self.finish(n, Outcome::Timeout);
        }
        if !answered {
            self.out.push(0, self.target, &c.sent_invite);
            self.retransmissions += 1;
            c.interval *= 2;
        } else {
            c.interval = TIMEOUT;
        }
        let next = (c.invite_at + TIMEOUT).min(now + c.interval);
        self.timers.at(next, n, Timer::Invite);
    }

    fn hang_up(&mut self, n: usize, now: Instant) {
        let c = &mut self.calls[n];
        if c.stage != Stage::Holding {
            return;
        }
        c.stage = Stage::Byeing;
        c.bye_at = now;
        c.interval = T1;
        self.out.push(0, self.target, &c.bye);
        self.timers.after(now + T1, n, Timer::Bye);
    }

    fn bye_timer(&mut self, n: usize, now: Instant) {
        let c = &mut self.calls[n];
        if c.stage != Stage::Byeing {
            return;
        }
        if now.duration_since(c.bye_at) >= TIMEOUT {
            return self.finish(n, Outcome::Timeout);
        }
        self.out.push(0, self.target, &c.bye);
        self.retransmissions += 1;
        c.interval = (c.interval * 2).min(T2);
        let next = (c.bye_at + TIMEOUT).min(now + c.interval);
        self.timers.at(next, n, Timer::Bye);
    }

    fn uas_timer(&mut self, n: usize, now: Instant) {
        let u = &mut self.uas[n];
        let (Some(peer), Some(since)) = (u.peer, u.since) else {
            return;
        };
        if u.acked || now.duration_since(since) >= TIMEOUT {
            return;
        }
        self.out.push(u.socket, peer, &u.ok);
        self.retransmissions += 1;
        u.interval = (u.interval * 2).min(T2);
        self.timers.at(now + u.interval, n, Timer::Uas);
    }

    /// A datagram for the caller (socket 0).
    pub fn on_caller(&mut self, buf: &[u8], now: Instant) {
        let Some(m) = Msg::parse(buf) else { return };
        let (Some(code), Some(n)) = (m.status, m.call()) else {
            return;
        };
        if n >= self.calls.len() {
            return;
        }
        match m.cseq_method() {
            b"INVITE" => self.invite_reply(n, &m, code, now),
            b"BYE" if code >= 200 && self.calls[n].stage == Stage::Byeing => {
                let c = &mut self.calls[n];
                c.bye_rtt_us = now.duration_since(c.bye_at).as_micros() as u64;
                self.finish(n, Outcome::Ok);
            }
            _ => {}
        }
    }

    fn invite_reply(&mut self, n: usize, m: &Msg<'_>, code: u16, now: Instant) {
        let stage = self.calls[n].stage;
        match (stage, code) {
            (Stage::Inviting { .. }, 100..=199) => {
                self.calls[n].stage = Stage::Inviting { answered: true };
            }
            (Stage::Inviting { .. }, 200..=299) => {
                let (ack, bye) = self.ack_and_bye(n, m);
                let c = &mut self.calls[n];
                c.invite_rtt_us = now.duration_since(c.invite_at).as_micros() as u64;
                c.stage = Stage::Holding;
                c.ack = ack;
                c.bye = bye;
                self.out.push(0, self.target, &self.calls[n].ack);
                self.timers.after_hold(now + self.hold, n, Timer::Hangup);
            }
            // The 2xx again: its ACK was lost.
            (Stage::Holding | Stage::Byeing, 200..=299) => {
                self.out.push(0, self.target, &self.calls[n].ack);
            }
            (Stage::Done(Outcome::Ok), 200..=299) => {
                let (ack, _) = self.ack_and_bye(n, m);
                self.out.push(0, self.target, &ack);
            }
            (Stage::Inviting { .. } | Stage::Done(Outcome::Refused(_)), 300..) => {
                // The ACK of a failure: hop by hop, the INVITE's branch and Request-URI.
                let p = self.party(n);
                let uri = format!("sip:{}@{}", p.number, p.target);
                let tag = m.to_tag().unwrap_or(b"");
                let ack = sip::in_dialog(&p, n, "ACK", 1, "i", uri.as_bytes(), tag, &[]);
                self.out.push(0, self.target, &ack);
                self.finish(n, Outcome::Refused(code));
            }
            _ => {}
        }
    }

    /// The ACK of call `n`'s 2xx `m` and its BYE: to the 2xx's Contact, through its
    /// Record-Route reversed.
    fn ack_and_bye(&self, n: usize, m: &Msg<'_>) -> (Vec<u8>, Vec<u8>) {
        let p = self.party(n);
        let tag = m.to_tag().unwrap_or(b"");
        let uri = m.contact_uri().unwrap_or(b"sip:gw@invalid");
        let mut routes: Vec<Vec<u8>> = m.all("record-route").map(<[u8]>::to_vec).collect();
        routes.reverse();
        (
            sip::in_dialog(&p, n, "ACK", 1, "a", uri, tag, &routes),
            sip::in_dialog(&p, n, "BYE", 2, "b", uri, tag, &routes),
        )
    }

    /// A datagram for gateway socket `socket` (1…) from `src`.
    pub fn on_gateway(&mut self, socket: usize, src: SocketAddr, buf: &[u8], now: Instant) {
        let Some(m) = Msg::parse(buf) else { return };
        if m.status.is_some() {
            return;
        }
        let local = self.names.gateways[socket - 1].as_str();
        let Some(n) = m.call().filter(|&n| n < self.uas.len()) else {
            // Not one of ours: answer BYEs anyway, drop the rest.
            if m.method == b"BYE" {
                self.out
                    .push_with(socket, src, |b| sip::reply(&m, 200, "OK", "", local, b));
            }
            return;
        };
        // The gateway's To tag, made only for the replies that carry it (not for ACKs).
        let tag = || format!("u{n}");
        let reply = |code, reason, tag: &str| {
            let mut b = Vec::with_capacity(512);
            sip::reply(&m, code, reason, tag, local, &mut b);
            b
        };
        match m.method {
            b"INVITE" => {
                let u = &mut self.uas[n];
                if u.peer.is_none() {
                    // As uas.xml: 100, 180, 200.
                    self.out
                        .push_with(socket, src, |b| sip::reply(&m, 100, "Trying", "", local, b));
                    let tag = tag();
                    u.provisional = reply(180, "Ringing", &tag);
                    u.ok = reply(200, "OK", &tag);
                    u.socket = socket;
                    u.peer = Some(src);
                    u.since = Some(now);
                    u.interval = T1;
                    self.timers.after(now + T1, n, Timer::Uas);
                }
                // A retransmitted INVITE gets them again, until the ACK let them go.
                let u = &self.uas[n];
                if !u.acked {
                    self.out.push(u.socket, src, &u.provisional);
                    self.out.push(u.socket, src, &u.ok);
                }
            }
            b"ACK" => self.uas[n].acked(),
            b"BYE" => {
                self.uas[n].acked();
                self.out
                    .push_with(socket, src, |b| sip::reply(&m, 200, "OK", &tag(), local, b));
            }
            _ => {
                self.out.push_with(socket, src, |b| {
                    sip::reply(&m, 501, "Not Implemented", &tag(), local, b)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relays what the calls queued as a proxy that changes nothing would: the caller's
    /// requests to gateway 1, the gateways' replies to the caller. Drops the first `lose`
    /// datagrams. How many went through.
    fn relay(c: &mut Calls<'_>, now: Instant, lose: &mut usize) -> usize {
        let caller: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut moved = 0;
        while !c.out.is_empty() {
            let out = std::mem::take(&mut c.out);
            for (from, _to, data) in out.iter() {
                if *lose > 0 {
                    *lose -= 1;
                    continue;
                }
                moved += 1;
                if from == 0 {
                    c.on_gateway(1, caller, data, now);
                } else {
                    c.on_caller(data, now);
                }
            }
        }
        moved
    }

    /// One call, no hold, from the caller at :5070 through siplb at :5060 to one gateway.
    fn one_call(accounts: &[(String, String)], t0: Instant) -> Calls<'_> {
        Calls::new(
            1,
            accounts,
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            vec!["127.0.0.1:5081".parse().unwrap()],
            Duration::ZERO,
            t0,
        )
    }

    #[test]
    fn a_lost_invite_is_resent_after_t1_and_the_call_completes() {
        let accounts = vec![("acct001".to_string(), "15550000001".to_string())];
        let t0 = Instant::now();
        let mut c = one_call(&accounts, t0);
        c.start(0, t0);
        let mut lose = 1;
        assert_eq!(relay(&mut c, t0, &mut lose), 0, "the INVITE is lost");
        assert_eq!(c.outcome(0), Outcome::Unfinished);
        assert_eq!(c.next_timer(), Some(t0 + T1));
        let t1 = t0 + T1;
        c.on_timers(t1);
        assert_eq!(c.retransmissions, 1);
        // INVITE, 100, 180, 200, ACK.
        assert_eq!(relay(&mut c, t1, &mut lose), 5);
        // The hold (none) is over: BYE and its 200.
        c.on_timers(t1);
        assert_eq!(relay(&mut c, t1, &mut lose), 2);
        assert_eq!(c.outcome(0), Outcome::Ok);
        assert_eq!(c.calls[0].invite_rtt_us, T1.as_micros() as u64);
        // The gateway's 200 was acknowledged: its timer resends nothing.
        c.on_timers(t1 + T2);
        assert!(c.out.is_empty());
        assert_eq!(c.retransmissions, 1);
    }

    #[test]
    fn an_invite_nobody_answers_times_out_after_64_t1() {
        let accounts = vec![("a".to_string(), "1".to_string())];
        let t0 = Instant::now();
        let mut c = one_call(&accounts, t0);
        c.start(0, t0);
        let mut t = t0;
        while let Some(next) = c.next_timer() {
            t = next;
            c.on_timers(t);
        }
        assert_eq!(c.outcome(0), Outcome::Timeout);
        assert_eq!(t, t0 + TIMEOUT);
        // Resent at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s (Timer A doubling).
        assert_eq!(c.retransmissions, 6);
    }
}
