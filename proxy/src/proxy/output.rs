//! What a shard hands out: datagrams to send and events, in the order they were made, and
//! the pool of send buffers the worker gives back once a datagram is sent.

use super::event::Event;
use super::target::{Target, Transmit};
use std::collections::VecDeque;

/// Buffers kept for reuse at most, and the largest kept.
const POOL_MAX: usize = 1024;
const POOL_BUFFER_MAX: usize = 70_000;

#[derive(Debug, Default)]
pub struct Output {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pool: Vec<Vec<u8>>,
}

impl Output {
    /// An empty buffer, from the pool when it has one.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(2048))
    }

    /// Gives a sent buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() <= POOL_BUFFER_MAX {
            buf.clear();
            self.pool.push(buf);
        }
    }

    pub fn send(&mut self, dst: Target, data: Vec<u8>) {
        // A message that could not be made is not sent as an empty datagram.
        if data.is_empty() {
            return self.recycle(data);
        }
        self.transmits.push_back(Transmit { dst, data });
    }

    /// Sends a copy of `data` (kept elsewhere for retransmissions) in a pooled buffer.
    pub fn send_copy(&mut self, dst: Target, data: &[u8]) {
        let mut buf = self.buffer();
        buf.extend_from_slice(data);
        self.send(dst, buf);
    }

    pub fn emit(&mut self, e: Event) {
        self.events.push_back(e);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dst() -> Target {
        Target::udp("127.0.0.1:5060".parse().unwrap())
    }

    #[test]
    fn transmits_come_out_in_order() {
        let mut o = Output::default();
        o.send(dst(), b"one".to_vec());
        o.send_copy(dst(), b"two");
        assert_eq!(o.poll_transmit().unwrap().data, b"one");
        assert_eq!(o.poll_transmit().unwrap().data, b"two");
        assert!(o.poll_transmit().is_none());
    }

    #[test]
    fn recycled_buffers_come_back_empty_and_huge_ones_are_let_go() {
        let mut o = Output::default();
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(b"x");
        o.recycle(b);
        o.recycle(Vec::with_capacity(POOL_BUFFER_MAX + 1));
        let b = o.buffer();
        assert!(b.is_empty() && b.capacity() == 4096);
        assert_eq!(o.buffer().capacity(), 2048, "the huge one was not kept");
    }
}
