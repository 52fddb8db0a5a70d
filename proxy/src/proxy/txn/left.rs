//! INVITE attempts a transaction has moved past (an authenticated resend, a failover): the
//! gateway may still retransmit the final answer it gave the old attempt, or give one late,
//! and each must get an ACK (RFC 3261 §17.1.1.2, Timer D) or the gateway goes on
//! retransmitting. Kept by the old attempt's client key, with the INVITE as it was forwarded
//! then (the ACK is built from it and the answer's To), for [`LINGER`] at least and at most
//! [`MAX_LEFT`] attempts or [`MAX_LEFT_BYTES`] at once (the oldest go first). Nothing here
//! sends or reads a clock.

use crate::proxy::target::Target;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long an attempt is remembered: Timer D's least for UDP, or Timer B when longer.
pub const LINGER: Duration = Duration::from_secs(32);

/// Attempts remembered at once per shard; beyond, the oldest is forgotten (its stragglers go
/// unacknowledged, as before).
pub const MAX_LEFT: usize = 4096;

/// The bytes of the requests remembered at once per shard, at most.
pub const MAX_LEFT_BYTES: usize = 8 << 20;

/// One attempt left behind.
#[derive(Debug)]
pub struct Left {
    /// Where the attempt went.
    pub dst: Target,
    /// The INVITE as forwarded in that attempt.
    pub forwarded: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct LeftAttempts {
    by_key: HashMap<Box<[u8]>, Left>,
    /// Client keys in the order they were left, with the time each may be forgotten.
    order: VecDeque<(Instant, Box<[u8]>)>,
    /// The bytes of the requests held.
    bytes: usize,
}

impl LeftAttempts {
    /// Remembers the attempt with client key `key` until `now + linger`.
    pub fn leave(&mut self, now: Instant, linger: Duration, key: Box<[u8]>, left: Left) {
        self.expire(now);
        if left.forwarded.len() > MAX_LEFT_BYTES {
            return;
        }
        while self.order.len() >= MAX_LEFT || self.bytes + left.forwarded.len() > MAX_LEFT_BYTES {
            self.forget_oldest();
        }
        self.bytes += left.forwarded.len();
        match self.by_key.insert(key.clone(), left) {
            Some(old) => self.bytes -= old.forwarded.len(),
            None => self.order.push_back((now + linger.max(LINGER), key)),
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, k)) = self.order.pop_front()
            && let Some(l) = self.by_key.remove(&k)
        {
            self.bytes -= l.forwarded.len();
        }
    }

    /// The attempt a response with client key `key` answers, if it is remembered.
    pub fn get(&mut self, now: Instant, key: &[u8]) -> Option<&Left> {
        self.expire(now);
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            self.forget_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left() -> Left {
        Left {
            dst: Target::udp("127.0.0.1:5081".parse().unwrap()),
            forwarded: b"INVITE".to_vec(),
        }
    }

    #[test]
    fn an_attempt_is_found_until_it_lingers_no_longer() {
        let now = Instant::now();
        let mut l = LeftAttempts::default();
        l.leave(now, Duration::from_secs(1), (*b"k1").into(), left());
        assert!(l.get(now + Duration::from_secs(31), b"k1").is_some());
        assert!(l.get(now + Duration::from_secs(31), b"k2").is_none());
        assert!(l.get(now + LINGER, b"k1").is_none());
        assert!(l.is_empty());
    }

    #[test]
    fn at_most_max_left_are_kept_and_the_oldest_go_first() {
        let now = Instant::now();
        let mut l = LeftAttempts::default();
        for i in 0..MAX_LEFT + 10 {
            l.leave(now, LINGER, i.to_string().into_bytes().into(), left());
        }
        assert_eq!(l.len(), MAX_LEFT);
        assert!(l.get(now, b"0").is_none());
        assert!(l.get(now, (MAX_LEFT + 9).to_string().as_bytes()).is_some());
        // Big requests: the bytes bound the count.
        let big = || Left {
            forwarded: vec![b'x'; 60_000],
            ..left()
        };
        for i in 0..1000 {
            l.leave(now, LINGER, format!("b{i}").into_bytes().into(), big());
        }
        assert!(l.bytes <= MAX_LEFT_BYTES);
        assert_eq!(l.len(), MAX_LEFT_BYTES / 60_000);
        assert!(l.get(now, b"b999").is_some());
    }
}
