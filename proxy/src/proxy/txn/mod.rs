//! Transactions: a proxy transaction is the server transaction facing the sender of a request
//! joined to the client transaction facing where siplb forwarded it (RFC 3261 §17, §16; RFC
//! 6026's Accepted state for 2xx to INVITE).
//!
//! [`Txn`] is the record and its timers; [`table`] keeps them (slab, generations, the server
//! and client indices); [`machine`] holds the state machines, which change a transaction's
//! states and timers and return what the shard must do; [`left`] remembers the attempts a
//! transaction moved past, to acknowledge their late answers. Nothing here sends or reads a clock.

pub mod left;
pub mod machine;
pub mod table;

pub use machine::{ClientAction, ServerAction, TimerAction};
pub use table::{TxnTable, client_key, server_key};

use super::ids::DialogId;
use super::target::Target;
use crate::sip::Method;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    NonInvite,
}

/// Server side (facing upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, nothing sent back yet.
    Trying,
    /// A provisional response was sent back.
    Proceeding,
    /// A final response was sent back (non-2xx for INVITE): retransmit it on request
    /// retransmissions; for INVITE wait for the ACK.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived.
    Confirmed,
    /// INVITE: a 2xx was forwarded (RFC 6026).
    Accepted,
    Terminated,
}

/// Client side (facing downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, no response yet (INVITE "Calling", non-INVITE "Trying").
    Calling,
    Proceeding,
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026).
    Accepted,
    Terminated,
}

/// What happens with a CANCEL for this INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    None,
    /// Cancelled before any provisional response: send CANCEL when one arrives (§9.1).
    Pending,
    /// CANCEL sent downstream.
    Sent,
}

/// The timers of a transaction (RFC 3261 §17 names; L and M from RFC 6026; `CancelGuard` ends
/// an INVITE whose CANCEL got no final response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Timer {
    A = 0,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    CancelGuard,
}

pub const N_TIMERS: usize = Timer::CancelGuard as usize + 1;

impl Timer {
    pub const ALL: [Timer; N_TIMERS] = [
        Timer::A,
        Timer::B,
        Timer::C,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::CancelGuard,
    ];
}

#[derive(Debug)]
pub struct Txn {
    /// Set by the table when the transaction is inserted.
    pub(super) generation: u32,
    pub kind: Kind,
    pub method: Method,
    /// Key in the server index (empty for a CANCEL siplb originated).
    pub server_key: Box<[u8]>,
    /// Key in the client index (empty when nothing was forwarded).
    pub client_key: Box<[u8]>,
    /// Where the request came from: responses go back there.
    pub upstream: Target,
    /// Where the request was forwarded.
    pub downstream: Target,
    pub server: ServerState,
    pub client: ClientState,
    /// The request as received, INVITE only (for replies siplb generates: 408, 487).
    pub received: Vec<u8>,
    /// The request as forwarded (retransmissions; source of CANCEL and ACK).
    pub forwarded: Vec<u8>,
    /// The last response sent upstream, resent on request retransmissions.
    pub last_response: Vec<u8>,
    /// The ACK sent downstream for a non-2xx final, resent on its retransmissions.
    pub ack: Vec<u8>,
    /// Current retransmission interval of Timer A/E and of Timer G.
    pub client_interval: Duration,
    pub server_interval: Duration,
    pub timers: [Option<Instant>; N_TIMERS],
    /// The wake-up in the shard's timer queue that will run this transaction's timers (the
    /// earliest; later entries for it are stale and skipped).
    pub queued: Option<Instant>,
    pub cancel: Cancel,
    /// A request siplb originated (CANCEL, BYE): its responses are absorbed.
    pub local_request: bool,
    /// The dialog the request belongs to.
    pub dialog: Option<DialogId>,
    /// A final response was sent upstream (or the transaction ended without one): its outcome
    /// has been reported.
    pub reported: bool,
    /// Who calls whom and the request's To tag, read from the request as it came when its
    /// outcome is to be reported (so that reporting needs no second parse of it).
    pub parties: Option<Box<(crate::proxy::event::Parties, Box<str>)>>,
    /// Times the request was forwarded afresh (failover, authentication): its branches'
    /// attempt numbers.
    pub attempts: u32,
    /// Authenticated resends after a challenge (one, and one more for a stale nonce).
    pub auth_tries: u8,
    /// The challenges the request's resends answer (one per realm on its way), once it was
    /// challenged.
    pub challenges: Option<Box<Vec<crate::proxy::auth::Answered>>>,
    /// How far the forwarded request's CSeq is above the caller's: when not 0, responses go
    /// back with `caller_cseq`.
    pub cseq_shift: u32,
    /// The CSeq number of the request as the caller sent it (with a shift only).
    pub caller_cseq: u32,
    /// What [`TxnTable::bytes`] counts for it, from its insertion.
    pub charged: u32,
}

impl Txn {
    /// A transaction in its first states: server Trying, client not started.
    pub fn new(
        kind: Kind,
        method: Method,
        upstream: Target,
        downstream: Target,
        t1: Duration,
    ) -> Txn {
        Txn {
            generation: 0,
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
            client_interval: t1,
            server_interval: t1,
            timers: [None; N_TIMERS],
            queued: None,
            cancel: Cancel::None,
            local_request: false,
            dialog: None,
            reported: false,
            parties: None,
            attempts: 0,
            auth_tries: 0,
            challenges: None,
            cseq_shift: 0,
            caller_cseq: 0,
            charged: 0,
        }
    }

    /// A request siplb sends on its own (CANCEL, BYE): client side Calling with Timers E and F,
    /// no server side.
    pub fn local_request(method: Method, dst: Target, now: Instant, timers: &super::Timers) -> Txn {
        let mut t = Txn::new(Kind::NonInvite, method, dst, dst, timers.t1);
        t.server = ServerState::Terminated;
        t.client = ClientState::Calling;
        t.local_request = true;
        t.set(Timer::E, now + timers.t1);
        t.set(Timer::F, now + timers.timer_b);
        t
    }

    pub fn set(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    pub fn clear(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    pub fn is_set(&self, t: Timer) -> bool {
        self.timers[t as usize].is_some()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Lets go of the copies its states no longer need, so that a transaction lingering
    /// after its end (Timers J, K, L, M: up to 64·T1) holds little. Once both sides have
    /// their final answer, nothing is forwarded, cancelled or answered by siplb any more: the
    /// request as received and as forwarded go; the last response stays only while the
    /// server side may resend it, the ACK only while the client side may (Completed).
    pub fn trim(&mut self) {
        let server_final = matches!(
            self.server,
            ServerState::Completed
                | ServerState::Confirmed
                | ServerState::Accepted
                | ServerState::Terminated
        );
        let client_final = matches!(
            self.client,
            ClientState::Completed | ClientState::Accepted | ClientState::Terminated
        );
        if !(server_final && client_final) {
            return;
        }
        self.received = Vec::new();
        self.forwarded = Vec::new();
        if self.server != ServerState::Completed {
            self.last_response = Vec::new();
        }
        if self.client != ClientState::Completed {
            self.ack = Vec::new();
        }
    }

    pub fn done(&self) -> bool {
        self.server == ServerState::Terminated && self.client == ClientState::Terminated
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Txn {
        let peer = Target::udp("127.0.0.1:5081".parse().unwrap());
        let mut t = Txn::new(
            Kind::Invite,
            Method::Invite,
            peer,
            peer,
            Duration::from_millis(500),
        );
        t.server = ServerState::Proceeding;
        t.client = ClientState::Proceeding;
        t.received = b"INVITE as received".to_vec();
        t.forwarded = b"INVITE as forwarded".to_vec();
        t.last_response = b"SIP/2.0 180 Ringing".to_vec();
        t
    }

    #[test]
    fn a_transaction_keeps_its_copies_until_both_sides_have_their_final_answer() {
        let mut t = invite();
        t.trim();
        assert!(!t.received.is_empty() && !t.forwarded.is_empty());
        // A non-2xx from the gateway: failover or authentication may still forward it again.
        t.client = ClientState::Completed;
        t.ack = b"ACK".to_vec();
        t.trim();
        assert!(!t.received.is_empty() && !t.forwarded.is_empty());
        // Passed upstream: nothing is forwarded any more, but both sides may still resend.
        t.server = ServerState::Completed;
        t.trim();
        assert!(t.received.is_empty() && t.forwarded.is_empty());
        assert!(!t.last_response.is_empty() && !t.ack.is_empty());
        t.server = ServerState::Confirmed;
        t.trim();
        assert!(t.last_response.is_empty() && !t.ack.is_empty());
    }

    #[test]
    fn an_accepted_invite_lingers_with_nothing_kept() {
        let mut t = invite();
        t.server = ServerState::Accepted;
        t.client = ClientState::Accepted;
        t.trim();
        assert_eq!(t.received.capacity(), 0);
        assert_eq!(t.forwarded.capacity(), 0);
        assert_eq!(t.last_response.capacity(), 0);
    }
}
