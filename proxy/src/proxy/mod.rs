//! The transaction-stateful proxy core of one worker's shard (sans-IO).
//!
//! A [`Shard`] takes datagrams with their source and the time ([`Shard::handle`]), and timer
//! expiries ([`Shard::handle_timeout`]); it hands out what to send
//! ([`Shard::poll_transmit`]) and typed events ([`Shard::poll_event`]) and says when it next
//! needs to be woken ([`Shard::poll_timeout`]). It never reads the clock and owns no socket,
//! so tests drive it on a virtual clock.
//!
//! Each request takes one of the paths of [`ingress`]: an existing transaction
//! (retransmission, ACK), CANCEL, an in-dialog request, a new INVITE, or a reply siplb sends
//! itself without state (403, 481, 483, 400 …). The parts, each with its own state and tests:
//!
//! | part | what it owns or decides |
//! |---|---|
//! | [`ingress`] | which path a request takes (a pure function) |
//! | [`txn`] | the transaction table and the RFC 3261 state machines |
//! | [`dialogs`] | the dialog records and table: states, ends, timeouts |
//! | [`admission`] | profiles, limits and variables of a new call |
//! | [`route`], [`gateway`] | customers; gateway sets and the choice of a gateway |
//! | [`health`], [`probe`] | a gateway's shared state (up, down, forced); the OPTIONS prober |
//! | [`forward`] | what a forwarded request or response looks like |
//! | [`originate`] | requests siplb sends itself: BYE, CANCEL, ACK; branches |
//! | [`reply`] | replies siplb answers itself |
//! | [`event`] | the typed events handed out |
//! | [`clock`], [`output`] | time given to the shard; what it hands out |
//! | `shard` | the orchestration, and the response context |

pub mod admission;
pub mod auth;
pub mod chunked;
pub mod clock;
pub mod dialogs;
pub mod event;
pub mod forward;
pub mod gateway;
pub mod health;
pub mod ids;
pub mod ingress;
pub mod originate;
pub mod output;
pub mod probe;
pub mod reply;
pub mod route;
pub mod shard;
pub mod target;
pub mod txn;
pub mod via;
pub mod wheel;

pub use dialogs::{
    Dialog, DialogFilter, DialogInfo, DialogState, EndCause, EndTarget, LegInfo, Side,
};
pub use event::{DialogRecord, Emit, EndedBy, Event, Refused, TxnOutcome};
pub use gateway::{
    Algorithm, CallKey, Credentials, Gateway, GatewaySet, Gateways, LiveGateways, Secret, SetRoute,
};
pub use health::{Admin, Health};
pub use ids::{DialogId, TxnId};
pub use probe::ProbeConfig;
pub use route::{AccountKey, Cidr, Customer, Numbers, Peer, Routing};
pub use shard::Shard;
pub use target::{Target, Transmit, Transport};
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
    /// Bytes the open transactions of a shard may hold (the messages they keep, as
    /// [`txn::TxnTable::bytes`] counts them); a new INVITE beyond it gets 503 + Retry-After.
    pub max_transaction_bytes: usize,
    /// Dialog records per shard (`limits.calls_per_worker`); a new INVITE beyond it gets 503 +
    /// Retry-After.
    pub max_dialogs: usize,
    /// How long a dialog record stays after the dialog ended, to absorb late retransmissions
    /// (`timers.call_linger_ms`).
    pub dialog_linger: Duration,
    /// Dialog timeouts (Kamailio's `default_timeout`, `early_timeout`, `noack_timeout`).
    pub dialog: DialogTimers,
    /// Retry-After seconds on an overload 503.
    pub retry_after: u32,
    /// How long an INVITE waits for a fleet-wide place (`cluster.wait_ms`).
    pub lease_wait: Duration,
    /// The secret key of the branches siplb computes, chosen at start.
    pub branch_key: [u64; 2],
    pub routing: Routing,
    /// Profiles, their counts and limits; shared by all workers (and kept across reloads).
    pub profiles: Arc<Profiles>,
    /// The classification rules that put new dialogs into profiles (a reload replaces them).
    pub rules: Arc<Vec<crate::dialog::Rule>>,
    /// The reply to an INVITE over a profile limit.
    pub limit_reply: LimitReply,
    /// Dialog variables set from the configuration.
    pub vars: Vec<crate::dialog::DialogVar>,
    /// Which events the shard emits.
    pub emit: Emit,
}

/// How long a dialog may stay in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogTimers {
    /// Lifetime of a dialog from its answer: then BYE to both sides.
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

/// The reply to an INVITE refused by a profile limit: no Retry-After, so that the customer's
/// SBC does not shun the whole node for every account.
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
            max_transaction_bytes: 1 << 30,
            max_dialogs: 200_000,
            dialog_linger: Duration::from_secs(32),
            dialog: DialogTimers::default(),
            retry_after: 5,
            lease_wait: Duration::from_secs(1),
            branch_key: [0x5349_504c_4221, 0x6272_616e_6368],
            routing,
            profiles: Arc::new(Profiles::new(&[], &[], 100_000)),
            rules: Arc::default(),
            limit_reply: LimitReply::default(),
            vars: Vec::new(),
            emit: Emit::default(),
        }
    }
}
