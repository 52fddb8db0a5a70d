//! The transaction-stateful proxy core of one worker's shard (sans-IO).
//!
//! A [`Shard`] takes datagrams with their source and the time ([`Shard::handle`]), and timer
//! expiries ([`Shard::handle_timeout`]); it queues what to send in [`Shard::transmits`] and
//! says when it next needs to be woken ([`Shard::poll_timeout`]). It never reads the clock and
//! owns no socket, so tests drive it on a virtual clock.
//!
//! Each datagram takes one of three paths, as quinn's `Endpoint::handle` does: an existing
//! transaction (retransmission, ACK, response), a new transaction (forwarded), or a reply
//! siplb sends itself without state (403, 481, 483, 400 …).

mod call;
pub mod reply;
pub mod route;
mod shard;
mod txn;
pub mod via;
pub mod wheel;

pub use call::{Call, CallState, DialogFilter, DialogInfo, EndCause, EndTarget, LegInfo};
pub use route::{AccountKey, Cidr, Customer, Peer, Routing};
pub use shard::Shard;
pub use txn::{ClientState, ServerState, Timer};

use crate::dialog::Profiles;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// RFC 3261 timer values and the proxy's own time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (T1), 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (T2), 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network (T4), 5 s.
    pub t4: Duration,
    /// INVITE transaction timeout (Timer B) and the other 64·T1 timers (F, H, J, L, M).
    pub timer_b: Duration,
    /// Proxy INVITE timeout after a provisional response (Timer C), 180 s.
    pub timer_c: Duration,
    /// Wait for response retransmissions after a non-2xx final (Timer D), 32 s.
    pub timer_d: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_b: Duration::from_secs(32),
            timer_c: Duration::from_secs(180),
            timer_d: Duration::from_secs(32),
        }
    }
}

/// What a shard needs to know; shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The address siplb puts in its Via and Record-Route (the listen address).
    pub local: SocketAddr,
    pub timers: Timers,
    /// Open transactions per shard; a new INVITE beyond it gets 503 + Retry-After.
    pub max_transactions: usize,
    /// Calls (per-call records) per shard; a new INVITE beyond it gets 503 + Retry-After.
    pub max_calls: usize,
    /// How long a call record stays after the call ended, to absorb late retransmissions.
    pub call_linger: Duration,
    /// Dialog timeouts (Kamailio's `default_timeout`, `early_timeout`, `noack_timeout`).
    pub dialog: DialogTimers,
    /// Retry-After seconds on an overload 503.
    pub retry_after: u32,
    /// A value fixed at start that makes the branches of this run unique.
    pub instance: u32,
    pub routing: Routing,
    /// Profiles, their counts and limits, and the classification rules; shared by all workers.
    pub profiles: Arc<Profiles>,
    /// The reply to an INVITE over a profile limit.
    pub limit_reply: LimitReply,
    /// Dialog variables set from the configuration.
    pub vars: Vec<crate::dialog::DialogVar>,
    /// Whether answered dialogs emit a `Call_End` event when they end.
    pub call_end_events: bool,
}

/// How long a dialog may stay in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogTimers {
    /// Lifetime of a dialog from its answer (and the longest a call record lives at all):
    /// then BYE to both sides.
    pub default_timeout: Duration,
    /// A dialog without a final answer after this is cancelled.
    pub early_timeout: Duration,
    /// A dialog answered but never acknowledged is ended with BYE after this.
    pub noack_timeout: Duration,
}

impl Default for DialogTimers {
    fn default() -> Self {
        DialogTimers {
            default_timeout: Duration::from_secs(43_200),
            early_timeout: Duration::from_secs(300),
            noack_timeout: Duration::from_secs(60),
        }
    }
}

/// The reply to an INVITE refused by a profile limit (DESIGN §3): no Retry-After.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReply {
    pub code: u16,
    pub reason: String,
    /// Q.850 cause of its `Reason` header; none = no `Reason` header.
    pub q850_cause: Option<u16>,
}

impl Default for LimitReply {
    fn default() -> Self {
        LimitReply {
            code: 503,
            reason: "Account call limit".into(),
            q850_cause: Some(34),
        }
    }
}

impl ProxyConfig {
    pub fn new(local: SocketAddr, routing: Routing) -> Self {
        ProxyConfig {
            local,
            timers: Timers::default(),
            max_transactions: 200_000,
            max_calls: 200_000,
            call_linger: Duration::from_secs(32),
            dialog: DialogTimers::default(),
            retry_after: 5,
            instance: 0,
            routing,
            profiles: Arc::new(Profiles::new(&[], &[], 100_000)),
            limit_reply: LimitReply::default(),
            vars: Vec::new(),
            call_end_events: false,
        }
    }
}

/// One datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}
