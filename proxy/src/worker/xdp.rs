//! A worker's AF_XDP side (`workers.io = "af_xdp"`): datagrams the XDP program redirected
//! to the worker's socket go through the same path as those from the kernel's socket, and
//! what the shard sends leaves through the socket's TX ring when the port can send it (the
//! kernel's socket otherwise).

use super::{TOKEN_XSK, Worker};
use crate::proxy::Transmit;
use crate::steering::clock_ns;
use io_uring::{opcode, types};
use siplb_common::owner_of;
use std::io;
use std::time::Instant;

impl Worker {
    /// A multishot poll of the AF_XDP socket: a completion when frames arrive in its RX ring.
    pub(super) fn arm_xsk_poll(&mut self) -> io::Result<()> {
        let Some(port) = &self.xsk else {
            return Ok(());
        };
        let e = opcode::PollAdd::new(types::Fd(port.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(TOKEN_XSK);
        self.push_sqe(&e)
    }

    /// Takes what the AF_XDP socket received: the owner's datagrams are processed here,
    /// others (a queue's socket taking them for an owner bound elsewhere) handed on.
    pub(super) fn xsk_receive(&mut self, now: Instant) {
        let Some(mut port) = self.xsk.take() else {
            return;
        };
        let mut taken = 0;
        // The XDP program stamps frames with CLOCK_MONOTONIC; the latency figures use
        // CLOCK_REALTIME (the socket path's SCM_TIMESTAMPNS). A frame without a stamp (a
        // kernel that refuses the guard the helper for it) counts from when it is read.
        let to_realtime =
            clock_ns(libc::CLOCK_REALTIME).wrapping_sub(clock_ns(libc::CLOCK_MONOTONIC));
        loop {
            let read_ns = clock_ns(libc::CLOCK_REALTIME);
            let n = port.receive(|src, payload, rx_mono| {
                let rx_ns = if rx_mono == 0 {
                    read_ns
                } else {
                    rx_mono.wrapping_add(to_realtime)
                };
                let owner = super::owner::call_id_hash(self.plane.hash_key, payload)
                    .map_or(self.id, |h| owner_of(h, self.workers));
                if owner == self.id {
                    self.process(now, src, payload, self.id, rx_ns);
                } else {
                    self.hand_off(now, owner, src, payload, rx_ns);
                }
            });
            if n == 0 {
                break;
            }
            taken += n;
            // A round's share: timers, sends and control work come between (the next round
            // does not wait while frames are left).
            if taken >= super::ROUND_MAX {
                self.more = true;
                break;
            }
        }
        // One poll completion may stand for many frames: the batching decision counts the
        // frames, as it counts the socket's completions (a datagram each).
        self.batching.observe_frames(taken);
        let c = port.counts;
        self.stats.xsk_rx.set(c.rx);
        self.stats.xsk_rx_bad.set(c.rx_bad);
        self.xsk = Some(port);
    }

    /// Sends `t` through the AF_XDP socket if the port can; gives it back otherwise.
    pub(super) fn xsk_send(&mut self, t: Transmit) -> Option<Transmit> {
        let Some(port) = self.xsk.as_mut() else {
            return Some(t);
        };
        if port.send(Instant::now(), t.dst.addr, &t.data) {
            self.shard.recycle(t.data);
            return None;
        }
        Some(t)
    }

    /// Sends what [`Worker::xsk_send`] queued.
    pub(super) fn xsk_flush(&mut self) {
        if let Some(port) = self.xsk.as_mut() {
            port.flush();
            self.stats.xsk_tx.set(port.counts.tx);
        }
    }
}
