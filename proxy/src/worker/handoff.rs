//! The software hand-off between workers (no BPF steering): a datagram a worker received
//! for a Call-ID another owns goes into the owner's bounded queue, and the owner takes a
//! round's share of its queue at a time. A full queue answers a new INVITE 503 from here.

use super::{ROUND_MAX, Worker};
use crate::proxy::Transmit;
use crate::proxy::reply::{self, Extra};
use crate::proxy::target::Target;
use crate::sip::{Method, SipMsg};
use std::net::SocketAddr;
use std::time::Instant;

/// A datagram on its way to its owner.
pub struct HandOff {
    pub src: SocketAddr,
    pub data: Vec<u8>,
    pub received_by: u32,
    /// When the kernel received it (CLOCK_REALTIME ns; 0 = unknown).
    pub rx_ns: u64,
}

impl Worker {
    /// Hands a datagram to its owner's queue (a new INVITE gets 503 when it is full).
    pub(super) fn hand_off(
        &mut self,
        now: Instant,
        owner: u32,
        src: SocketAddr,
        payload: &[u8],
        rx_ns: u64,
    ) {
        let h = HandOff {
            src,
            data: payload.to_vec(),
            received_by: self.id,
            rx_ns,
        };
        match self.plane.workers[owner as usize].queue.push(h) {
            Ok(()) => {
                self.stats.hand_offs.inc();
                self.wake[owner as usize] = true;
            }
            Err(h) => {
                self.stats.hand_off_drops.inc();
                self.overload_reply(now, &h);
            }
        }
    }

    /// The owner's queue is full: a new INVITE gets 503 + Retry-After from here.
    fn overload_reply(&mut self, now: Instant, h: &HandOff) {
        let Ok(msg) = SipMsg::parse(&h.data) else {
            return;
        };
        if msg.method() != Some(Method::Invite) || msg.to_tag().is_some() {
            return;
        }
        let mut out = Vec::with_capacity(512);
        let retry = self.shard.retry_after();
        reply::build(
            &msg,
            h.src,
            503,
            b"ovl",
            Extra::overload(retry),
            &mut self.rewrite,
            &mut out,
        );
        self.stats.overload_503.inc();
        if let Some(calls) = self.calls.as_mut() {
            let call_id = String::from_utf8_lossy(msg.call_id());
            let line = crate::logging::CallLine {
                what: "refused",
                call_id: &call_id,
                source: h.src,
                account: "",
                code: 503,
                reason: "Service Unavailable - Overload",
                gateway: None,
                ended_by: None,
            };
            if calls.admit(now, &line, &self.stats.log_dropped_lines) {
                crate::logging::write(&line);
            }
        }
        self.own_transmits.push(Transmit {
            dst: Target::udp(h.src),
            data: out,
        });
    }

    /// A round's share of the hand-offs (a flood of datagrams other workers hand over must not
    /// keep this one from its timers, sends and control work); the next round does not wait
    /// while some are left.
    pub(super) fn drain_hand_offs(&mut self, now: Instant) {
        let handle = self.plane.workers[self.id as usize].clone();
        for _ in 0..ROUND_MAX {
            let Some(h) = handle.queue.pop() else {
                return;
            };
            self.process(now, h.src, &h.data, h.received_by, h.rx_ns);
        }
        self.more = !handle.queue.is_empty();
    }
}
