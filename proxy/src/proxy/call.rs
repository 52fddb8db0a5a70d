//! The small per-call record a shard keeps from the first INVITE on: who the two peers are and
//! the tags that tell the directions apart. Dialogs grow out of it.

use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE forwarded, no 2xx yet.
    Early,
    /// A 2xx was forwarded.
    Confirmed,
    /// BYE answered, INVITE failed or timed out: kept only to absorb stragglers.
    Ended,
}

#[derive(Debug)]
pub struct Call {
    pub call_id: Box<[u8]>,
    /// Where the INVITE came from: in-dialog requests toward the caller go here.
    pub caller: SocketAddr,
    /// The gateway chosen for the call: in-dialog requests toward the callee go here.
    pub gateway: SocketAddr,
    pub caller_tag: Box<[u8]>,
    pub callee_tag: Option<Box<[u8]>>,
    pub state: CallState,
    /// When the record is removed.
    pub expires: Instant,
}

impl Call {
    /// Where an in-dialog request with this From tag, received from `src`, goes: to the
    /// gateway when the caller sent it, to the caller when the callee did.
    pub fn peer_for(&self, from_tag: Option<&[u8]>, src: SocketAddr) -> Option<SocketAddr> {
        match from_tag {
            Some(t) if *t == *self.caller_tag => Some(self.gateway),
            Some(t) if self.callee_tag.as_deref() == Some(t) => Some(self.caller),
            // A callee tag not seen yet (e.g. a BYE racing the 2xx): go by source.
            Some(_) if src == self.gateway => Some(self.caller),
            _ => None,
        }
    }
}
