//! Gateway sets (Kamailio's dispatcher sets): the trunks a new call may go to, how one is
//! chosen, and every address each gateway is known by. One set with Call-ID hashing is what
//! the configuration offers today; priorities, weights, probing and failover come here.

use super::target::Target;
use siplb_common::owner_hash;
use std::net::SocketAddr;
use std::time::Duration;

/// Key of the gateway choice hash: fixed, and different from any owner key in practice, so
/// that the gateway a call goes to does not follow the worker that owns it.
const GATEWAY_HASH_KEY: u32 = 0x6761_7465;

/// How a gateway is chosen for a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// A hash of the Call-ID over the gateways (Kamailio's dispatcher algorithm 0).
    #[default]
    CallIdHash,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::CallIdHash => "callid_hash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Where requests go.
    pub target: Target,
    /// Other addresses it sends from (trunks that answer from a pool of addresses): its
    /// responses are accepted from these too, and its requests are a gateway's.
    pub answers_from: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySet {
    pub name: String,
    pub algorithm: Algorithm,
    pub gateways: Vec<Gateway>,
    /// Whether a call moves on to the next gateway at all.
    pub failover: bool,
    /// Final replies on which a call moves on to the next gateway (besides 408 and no
    /// answer at all).
    pub failover_codes: Vec<u16>,
    /// How long one attempt may go without any reply before the call moves on (none: Timer
    /// B alone).
    pub failover_timeout: Option<Duration>,
}

/// The final replies a call moves on from by default.
pub const DEFAULT_FAILOVER_CODES: [u16; 3] = [500, 502, 503];
/// How long an attempt may stay without a reply by default.
pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 5000;

impl Default for GatewaySet {
    fn default() -> GatewaySet {
        GatewaySet {
            name: String::new(),
            algorithm: Algorithm::default(),
            gateways: Vec::new(),
            failover: true,
            failover_codes: DEFAULT_FAILOVER_CODES.to_vec(),
            failover_timeout: Some(Duration::from_millis(DEFAULT_FAILOVER_TIMEOUT_MS)),
        }
    }
}

impl GatewaySet {
    /// A set of UDP gateways at `addrs`.
    pub fn udp(name: &str, algorithm: Algorithm, addrs: &[SocketAddr]) -> GatewaySet {
        GatewaySet {
            name: name.into(),
            algorithm,
            failover: true,
            failover_codes: DEFAULT_FAILOVER_CODES.to_vec(),
            failover_timeout: Some(Duration::from_millis(DEFAULT_FAILOVER_TIMEOUT_MS)),
            gateways: addrs
                .iter()
                .map(|a| Gateway {
                    target: Target::udp(*a),
                    answers_from: Vec::new(),
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// The gateway a message from `src` comes from.
    pub fn position(&self, src: SocketAddr) -> Option<usize> {
        self.gateways
            .iter()
            .position(|g| g.target.addr == src || g.answers_from.contains(&src))
    }

    /// Whether the gateway at `addr` may answer from `src` (one of its other addresses).
    pub fn answers_from(&self, addr: SocketAddr, src: SocketAddr) -> bool {
        self.gateways
            .iter()
            .any(|g| g.target.addr == addr && g.answers_from.contains(&src))
    }

    /// Every address of every gateway (for the XDP guard's allow list).
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.gateways
            .iter()
            .flat_map(|g| std::iter::once(g.target.addr).chain(g.answers_from.iter().copied()))
    }

    /// The gateway for a new call; none when the set is empty.
    pub fn select(&self, call_id: &[u8]) -> Option<Target> {
        self.failover(call_id, &[])
    }

    /// Where the call goes after the gateways in `tried` (in the order of the set from the
    /// one it was given first); none when every gateway was tried.
    pub fn failover(&self, call_id: &[u8], tried: &[SocketAddr]) -> Option<Target> {
        let n = self.gateways.len();
        if n == 0 {
            return None;
        }
        let first = match self.algorithm {
            Algorithm::CallIdHash => owner_hash(GATEWAY_HASH_KEY, call_id) as usize % n,
        };
        (0..n)
            .map(|k| self.gateways[(first + k) % n].target)
            .find(|g| !tried.contains(&g.addr))
    }

    /// Whether a final reply with `code` moves a call on to the next gateway.
    pub fn fails_over_on(&self, code: u16) -> bool {
        self.failover && (code == 408 || self.failover_codes.contains(&code))
    }
}

/// A set named `default` of UDP gateways, as tests write one.
impl From<Vec<SocketAddr>> for GatewaySet {
    fn from(addrs: Vec<SocketAddr>) -> GatewaySet {
        GatewaySet::udp("default", Algorithm::CallIdHash, &addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> GatewaySet {
        vec![
            "127.0.0.1:5081".parse().unwrap(),
            "127.0.0.1:5082".parse().unwrap(),
        ]
        .into()
    }

    #[test]
    fn the_same_call_id_always_goes_to_the_same_gateway_and_both_are_used() {
        let s = set();
        let mut used = [0; 2];
        for i in 0..100 {
            let id = format!("call-{i}");
            let g = s.select(id.as_bytes()).unwrap();
            assert_eq!(s.select(id.as_bytes()), Some(g));
            used[s.position(g.addr).unwrap()] += 1;
        }
        assert!(used[0] > 20 && used[1] > 20, "{used:?}");
    }

    #[test]
    fn an_empty_set_chooses_nothing() {
        assert_eq!(GatewaySet::default().select(b"c"), None);
    }

    #[test]
    fn a_gateway_may_answer_from_its_other_addresses_only() {
        let mut s = set();
        let other = "127.0.0.1:5091".parse().unwrap();
        s.gateways[0].answers_from.push(other);
        let (gw1, gw2) = (s.gateways[0].target.addr, s.gateways[1].target.addr);
        assert!(s.answers_from(gw1, other));
        assert!(!s.answers_from(gw2, other));
        assert_eq!(s.position(other), Some(0));
        assert_eq!(s.addresses().count(), 3);
    }

    #[test]
    fn gateways_are_known_by_their_address() {
        let s = set();
        assert_eq!(s.position("127.0.0.1:5082".parse().unwrap()), Some(1));
        assert_eq!(s.position("127.0.0.1:5083".parse().unwrap()), None);
        assert_eq!(s.addresses().count(), 2);
    }
}
