//! Where a new call goes: the gateway set its route picks and the set's gateway (outgoing
//! calls), or the customer that owns the number dialed (calls from trunks), and the account
//! such a call counts in.

use super::Shard;
use crate::proxy::admission;
use crate::proxy::gateway::{Algorithm, CallKey};
use crate::sip::{SipMsg, Span};
use std::net::SocketAddr;
use std::time::Instant;

impl Shard {
    /// A new INVITE from a gateway: to the customer that owns the number dialed (its account
    /// is the customer, its limits apply), or `404` for a number nobody owns.
    pub(super) fn on_inbound_invite(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &SipMsg<'_>,
        key: Vec<u8>,
        own_route: Option<(usize, Span)>,
    ) {
        let dialed = crate::proxy::route::dialed(msg);
        match self.cfg.routing.inbound(&dialed, msg.call_id()) {
            Some((customer, target)) => {
                self.on_new_invite(now, src, msg, key, customer, own_route, Some(target))
            }
            // Recorded as siplb's other refusals are (a missed call, a CDR with no
            // account): attempts at numbers nobody owns are what fraud and KPI work look for.
            None => {
                let unallocated = Unrouted {
                    code: 404,
                    reason: "Not Found - Unallocated Number",
                    q850_cause: Some(1),
                    headers: b"Reason: Q.850;cause=1;text=\"Unallocated number\"\r\n",
                };
                // No customer: the record's account is empty.
                let no_customer = usize::MAX;
                self.refuse_unrouted(now, msg, src, key, no_customer, unallocated)
            }
        }
    }

    /// The gateway set a new call from `customer` goes to (its route), the worker's turn for
    /// that set, and the set's choice of gateway, on which a place is taken (`max_calls`).
    /// The answer siplb gives when there is none: 404 without a route, 503 without a gateway
    /// with room.
    pub(super) fn choose_gateway(
        &mut self,
        msg: &SipMsg<'_>,
        customer: usize,
    ) -> Result<(usize, u64, usize), Unrouted> {
        let routing = &self.cfg.routing;
        let name = routing
            .customers
            .get(customer)
            .map_or("", |c| c.name.as_str());
        let account = admission::account_of(&self.cfg, customer, msg);
        let dialed = crate::proxy::route::dialed(msg);
        let Some(set) = routing.gateways.route(name, account, &dialed) else {
            return Err(Unrouted {
                code: 404,
                reason: "No Route",
                q850_cause: Some(3),
                headers: b"Reason: Q.850;cause=3;text=\"No route to destination\"\r\n",
            });
        };
        if self.turns.len() <= set {
            self.turns.resize(set + 1, 0);
        }
        let turn = self.turns[set];
        self.turns[set] += 1;
        let gateways = &self.cfg.routing.gateways.sets[set];
        let key = CallKey {
            call_id: msg.call_id(),
            // Parsed only when the choice depends on it.
            from_user: match gateways.algorithm {
                Algorithm::FromUserHash => msg.from_user_host().0,
                _ => b"",
            },
            turn,
        };
        gateways
            .choose_and_take(&key, &[])
            .map(|i| (set, turn, i))
            .ok_or(Unrouted {
                code: 503,
                reason: "Service Unavailable - No Gateway",
                q850_cause: None,
                headers: b"",
            })
    }

    /// The account of a new call of `customer` from `src`: the customer itself for a call
    /// from a gateway, else by the customer's `account_key`.
    pub(super) fn account_of<'m>(
        &'m self,
        customer: usize,
        msg: &SipMsg<'m>,
        src: SocketAddr,
    ) -> &'m [u8] {
        // (A customer a reload removed while one of its INVITEs waited for a lease has
        // none.)
        if self.cfg.routing.gateways.position(src).is_some() {
            let c = self.cfg.routing.customers.get(customer);
            return c.map_or(&b""[..], |c| c.name.as_bytes());
        }
        admission::account_of(&self.cfg, customer, msg)
    }
}

/// siplb's own answer to a new call it has no gateway for.
pub(super) struct Unrouted {
    pub code: u16,
    pub reason: &'static str,
    pub q850_cause: Option<u16>,
    pub headers: &'static [u8],
}
