//! siplb: a SIP load balancer for carrier trunks.
//!
//! The crate is split along the line between protocol and I/O. [`sip`] (message view and
//! rewriting) and [`proxy`] (transactions, per-call records, routing) never touch a socket or
//! the clock: they take bytes, a source address and `now`, and return what to send and when to
//! wake up. [`worker`] owns the sockets and io_uring rings and drives them; [`config`] reads
//! the TOML file.

pub mod acc;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dialog;
pub mod drain;
pub mod events;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod peer;
pub mod proxy;
pub mod reload;
pub mod restart;
pub mod sip;
pub mod steering;
pub mod worker;
pub mod xsk;
