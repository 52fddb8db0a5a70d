//! Gateway sets (Kamailio's dispatcher sets): the trunks a new call may go to, how one is
//! chosen (Call-ID hash, From-user hash, round robin, weights), in which order the others are
//! tried when it fails (priority), the routes that pick a set for a call (customer, account,
//! dialed prefix), and every address each gateway is known by.

use super::health::Health;
use super::probe::ProbeConfig;
use super::target::Target;
use siplb_common::owner_hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Key of the gateway choice hash: fixed, and different from any owner key in practice, so
/// that the gateway a call goes to does not follow the worker that owns it.
const GATEWAY_HASH_KEY: u32 = 0x6761_7465;

/// How a gateway is chosen for a new call, among the usable gateways of the highest
/// priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// A hash of the Call-ID (Kamailio's dispatcher algorithm 0).
    #[default]
    CallIdHash,
    /// A hash of the From user (algorithm 1's idea: a caller's calls go to one gateway).
    FromUserHash,
    /// Each in turn (algorithm 4), per worker.
    RoundRobin,
    /// In proportion to the gateways' weights (algorithm 9), per worker.
    Weighted,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::CallIdHash,
        Algorithm::FromUserHash,
        Algorithm::RoundRobin,
        Algorithm::Weighted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::CallIdHash => "callid_hash",
            Algorithm::FromUserHash => "from_user_hash",
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Weighted => "weighted",
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// How siplb authenticates to a gateway that challenges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: Secret,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// `MD5(user:realm:password)` as hex, for one realm.
    Ha1(String),
}

impl std::fmt::Debug for Secret {
    /// Never prints the secret (logs, reload messages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(…)"),
            Secret::Ha1(_) => f.write_str("Ha1(…)"),
        }
    }
}

/// What the workers share of a gateway while it runs: its calls at the moment (for
/// `max_calls`) and its health (probes, forced states). Atomics: no lock on the call path.
#[derive(Debug, Default)]
pub struct GatewayState {
    pub calls: AtomicU32,
    pub health: Health,
}

impl GatewayState {
    /// Takes a place for a call, unless `max` are taken already.
    pub fn take(&self, max: Option<u32>) -> bool {
        let Some(max) = max else {
            self.calls.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        self.calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a call's place back.
    pub fn give_back(&self) {
        let _ = self
            .calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Whether a place is free under `max`.
    pub fn has_room(&self, max: Option<u32>) -> bool {
        max.is_none_or(|m| self.calls.load(Ordering::Relaxed) < m)
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    /// Where requests go.
    pub target: Target,
    /// Other addresses it sends from (trunks that answer from a pool of addresses): its
    /// responses are accepted from these too, and its requests are a gateway's.
    pub answers_from: Vec<SocketAddr>,
    /// Its share under the weighted algorithm.
    pub weight: u32,
    /// Higher first: calls go to the usable gateways of the highest priority, and fail over
    /// to lower ones when those are used up.
    pub priority: i32,
    /// Calls at once at most (none: no limit).
    pub max_calls: Option<u32>,
    pub credentials: Option<Credentials>,
    /// Requests from it are recognised by IP alone (any source port).
    pub match_ip_only: bool,
    /// Shared by every worker and kept across reloads (by address).
    pub state: Arc<GatewayState>,
}

/// The configuration of a gateway, not its state.
impl PartialEq for Gateway {
    fn eq(&self, o: &Gateway) -> bool {
        self.target == o.target
            && self.answers_from == o.answers_from
            && self.weight == o.weight
            && self.priority == o.priority
            && self.max_calls == o.max_calls
            && self.credentials == o.credentials
            && self.match_ip_only == o.match_ip_only
    }
}

impl Eq for Gateway {}

impl Gateway {
    pub fn udp(addr: SocketAddr) -> Gateway {
        Gateway {
            target: Target::udp(addr),
            answers_from: Vec::new(),
            weight: 1,
            priority: 0,
            max_calls: None,
            credentials: None,
            match_ip_only: false,
            state: Arc::default(),
        }
    }

    /// Whether it may take another call now: active (not down, not disabled) and not at
    /// `max_calls`.
    pub fn usable(&self) -> bool {
        self.state.health.usable() && self.state.has_room(self.max_calls)
    }

    /// Whether a message from `src` comes from this gateway.
    pub fn sends_from(&self, src: SocketAddr) -> bool {
        self.target.addr == src
            || self.answers_from.contains(&src)
            || (self.match_ip_only && self.target.addr.ip() == src.ip())
    }
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
    /// OPTIONS probing of its gateways (none: not probed).
    pub probe: Option<ProbeConfig>,
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
            probe: None,
        }
    }
}

/// What a gateway choice is keyed by.
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub call_id: &'a [u8],
    pub from_user: &'a [u8],
    /// The worker's count of calls given to this set so far (round robin, weights).
    pub turn: u64,
}

impl GatewaySet {
    /// A set of UDP gateways at `addrs`.
    pub fn udp(name: &str, algorithm: Algorithm, addrs: &[SocketAddr]) -> GatewaySet {
        GatewaySet {
            name: name.into(),
            algorithm,
            gateways: addrs.iter().map(|a| Gateway::udp(*a)).collect(),
            ..GatewaySet::default()
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
        // An exact address first: two gateways may share an IP when neither is IP-only.
        self.gateways
            .iter()
            .position(|g| g.target.addr == src || g.answers_from.contains(&src))
            .or_else(|| self.gateways.iter().position(|g| g.sends_from(src)))
    }

    /// Whether the gateway at `addr` may answer from `src` (one of its other addresses, or
    /// any port of its IP when it is matched by IP alone).
    pub fn answers_from(&self, addr: SocketAddr, src: SocketAddr) -> bool {
        self.gateways
            .iter()
            .any(|g| g.target.addr == addr && g.sends_from(src))
    }

    /// Whether `a` and `b` are addresses of one gateway (or the same address).
    pub fn same_gateway(&self, a: SocketAddr, b: SocketAddr) -> bool {
        a == b
            || self
                .gateways
                .iter()
                .any(|g| g.sends_from(a) && g.sends_from(b))
    }

    /// Every address of every gateway (for the XDP guard's allow list).
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.gateways
            .iter()
            .flat_map(|g| std::iter::once(g.target.addr).chain(g.answers_from.iter().copied()))
    }

    /// The gateway for a call keyed `key`, none tried before: see [`choose`](Self::choose).
    pub fn select(&self, call_id: &[u8]) -> Option<Target> {
        let key = CallKey {
            call_id,
            from_user: b"",
            turn: 0,
        };
        self.choose(&key, &[], |_| true)
            .map(|i| self.gateways[i].target)
    }

    /// The gateway (its index) for a call keyed `key` that has been to the gateways in
    /// `tried`: among those not tried and `usable` (up, not full), the ones of the highest
    /// priority, and of those one by the set's algorithm. None when no gateway is left.
    pub fn choose(
        &self,
        key: &CallKey<'_>,
        tried: &[SocketAddr],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        // `usable` reads what other workers change (places taken, health): asked once per
        // gateway, so that the group counted is the group chosen from.
        let mut inline = [0usize; 64];
        let mut spill = Vec::new();
        let all: &mut [usize] = if self.gateways.len() <= inline.len() {
            &mut inline
        } else {
            spill.resize(self.gateways.len(), 0);
            &mut spill
        };
        let mut left = 0;
        for i in 0..self.gateways.len() {
            if !tried.contains(&self.gateways[i].target.addr) && usable(i) {
                all[left] = i;
                left += 1;
            }
        }
        let top = all[..left]
            .iter()
            .map(|&i| self.gateways[i].priority)
            .max()?;
        let mut n = 0;
        for k in 0..left {
            let i = all[k];
            if self.gateways[i].priority == top {
                all[n] = i;
                n += 1;
            }
        }
        let group = &all[..n];
        let pick = match self.algorithm {
            Algorithm::CallIdHash => owner_hash(GATEWAY_HASH_KEY, key.call_id) as usize % n,
            Algorithm::FromUserHash => owner_hash(GATEWAY_HASH_KEY, key.from_user) as usize % n,
            Algorithm::RoundRobin => (key.turn % n as u64) as usize,
            Algorithm::Weighted => {
                let total: u64 = group
                    .iter()
                    .map(|&i| u64::from(self.gateways[i].weight))
                    .sum();
                if total == 0 {
                    (key.turn % n as u64) as usize
                } else {
                    let mut x = key.turn % total;
                    let mut k = 0;
                    for &i in group {
                        let w = u64::from(self.gateways[i].weight);
                        if x < w {
                            break;
                        }
                        x -= w;
                        k += 1;
                    }
                    k
                }
            }
        };
        group.get(pick).copied()
    }

    /// Chooses as [`choose`](Self::choose) among the gateways with room, and takes a place
    /// on the one chosen (another worker may have taken the last place meanwhile: then the
    /// next is chosen).
    pub fn choose_and_take(&self, key: &CallKey<'_>, tried: &[SocketAddr]) -> Option<usize> {
        let mut passed: Vec<SocketAddr> = tried.to_vec();
        loop {
            let i = self.choose(key, &passed, |i| self.gateways[i].usable())?;
            let g = &self.gateways[i];
            if g.state.take(g.max_calls) {
                return Some(i);
            }
            passed.push(g.target.addr);
        }
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

/// `[[route]]`: the calls that go to a gateway set. Every condition given must hold; the
/// first route that matches wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRoute {
    /// The set (index into [`Gateways::sets`]).
    pub set: usize,
    /// The customer's name.
    pub customer: Option<String>,
    pub account: Option<String>,
    /// The dialed number (Request-URI user) starts with it.
    pub prefix: Option<String>,
}

impl SetRoute {
    fn matches(&self, customer: &str, account: &[u8], dialed: &[u8]) -> bool {
        self.customer.as_deref().is_none_or(|c| c == customer)
            && self
                .account
                .as_deref()
                .is_none_or(|a| a.as_bytes() == account)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| dialed.starts_with(p.as_bytes()))
    }
}

/// Every gateway set, and the routes that choose among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    pub sets: Vec<GatewaySet>,
    /// None: every call goes to the first set.
    pub routes: Vec<SetRoute>,
}

impl Gateways {
    /// The set for a call of `customer` and `account` dialing `dialed`: the first route that
    /// matches, or the first set when there are no routes; none when no route matches.
    pub fn route(&self, customer: &str, account: &[u8], dialed: &[u8]) -> Option<usize> {
        if self.sets.is_empty() {
            return None;
        }
        if self.routes.is_empty() {
            return Some(0);
        }
        self.routes
            .iter()
            .find(|r| r.matches(customer, account, dialed))
            .map(|r| r.set)
    }

    pub fn set(&self, i: usize) -> Option<&GatewaySet> {
        self.sets.get(i)
    }

    /// Gateways in all sets.
    pub fn len(&self) -> usize {
        self.sets.iter().map(GatewaySet::len).sum()
    }

    /// Gateways, one in several sets counted once (by address).
    pub fn distinct(&self) -> usize {
        let mut seen: Vec<Target> = Vec::new();
        for g in self.sets.iter().flat_map(|s| &s.gateways) {
            if !seen.contains(&g.target) {
                seen.push(g.target);
            }
        }
        seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set and index of the gateway a message from `src` comes from.
    pub fn position(&self, src: SocketAddr) -> Option<(usize, usize)> {
        self.sets
            .iter()
            .enumerate()
            .find_map(|(s, set)| set.position(src).map(|g| (s, g)))
    }

    /// Whether the gateway at `addr` may answer from `src`.
    pub fn answers_from(&self, addr: SocketAddr, src: SocketAddr) -> bool {
        self.sets.iter().any(|s| s.answers_from(addr, src))
    }

    /// Whether `a` and `b` are addresses of one gateway (or the same address).
    pub fn same_gateway(&self, a: SocketAddr, b: SocketAddr) -> bool {
        a == b || self.sets.iter().any(|s| s.same_gateway(a, b))
    }

    /// Every address of every gateway.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sets.iter().flat_map(GatewaySet::addresses)
    }

    /// The credentials of the gateway at `addr` for a call in set `set`: that set's entry
    /// for it (a gateway in two sets may have an account in each), else the first set's that
    /// has any (a call from a trunk belongs to no set).
    pub fn credentials_of(&self, set: usize, addr: SocketAddr) -> Option<&Credentials> {
        fn of(s: &GatewaySet, addr: SocketAddr) -> Option<Option<&Credentials>> {
            s.gateways
                .iter()
                .find(|g| g.target.addr == addr)
                .map(|g| g.credentials.as_ref())
        }
        match self.sets.get(set).and_then(|s| of(s, addr)) {
            Some(own) => own,
            None => self.sets.iter().find_map(|s| of(s, addr).flatten()),
        }
    }

    /// Whether the gateway at `addr` has credentials in any set.
    pub fn has_credentials(&self, addr: SocketAddr) -> bool {
        self.sets.iter().any(|s| {
            s.gateways
                .iter()
                .any(|g| g.target.addr == addr && g.credentials.is_some())
        })
    }

    /// Gives every gateway listed in several sets one state (its calls count once against
    /// `max_calls`, its health is one), probed when any of its sets probes.
    pub fn share_states(&mut self) {
        let mut first: Vec<(Target, Arc<GatewayState>, bool)> = Vec::new();
        for set in &mut self.sets {
            let probed = set.probe.is_some();
            for g in &mut set.gateways {
                match first.iter_mut().find(|(t, ..)| *t == g.target) {
                    Some((_, state, any)) => {
                        g.state = state.clone();
                        *any |= probed;
                    }
                    None => first.push((g.target, g.state.clone(), probed)),
                }
            }
        }
        for (_, state, probed) in first {
            state.health.set_probing(probed);
        }
    }

    /// Whether any set probes the gateway at `target`.
    pub fn probed(&self, target: Target) -> bool {
        self.sets
            .iter()
            .any(|s| s.probe.is_some() && s.gateways.iter().any(|g| g.target == target))
    }

    /// The first set's choice for `call_id` (tests, and calls before routes are asked).
    pub fn select(&self, call_id: &[u8]) -> Option<Target> {
        self.sets.first()?.select(call_id)
    }
}

/// The gateway sets in force, for the threads that only look (control, metrics): replaced
/// whole on a reload. The workers never take its lock; they have their own `Arc` of the
/// configuration.
#[derive(Debug, Default)]
pub struct LiveGateways(std::sync::RwLock<Arc<Gateways>>);

impl LiveGateways {
    pub fn new(g: Gateways) -> LiveGateways {
        LiveGateways(std::sync::RwLock::new(Arc::new(g)))
    }

    pub fn get(&self) -> Arc<Gateways> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, g: Gateways) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(g);
    }
}

/// One set named `default` of UDP gateways, as tests write one.
impl From<Vec<SocketAddr>> for Gateways {
    fn from(addrs: Vec<SocketAddr>) -> Gateways {
        Gateways {
            sets: vec![addrs.into()],
            routes: Vec::new(),
        }
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

    /// Whether a gateway has room is asked once per choice: another worker that takes the
    /// last place (or a probe that takes the gateway down) between two looks used to leave
    /// an empty group to pick from, a division by zero in a worker.
    #[test]
    fn a_gateway_that_fills_up_while_a_call_chooses_is_asked_once() {
        for algorithm in [
            Algorithm::CallIdHash,
            Algorithm::FromUserHash,
            Algorithm::RoundRobin,
            Algorithm::Weighted,
        ] {
            let mut s = set();
            s.algorithm = algorithm;
            let asked = std::cell::Cell::new(0);
            // Room at the first look at each gateway, none at any later one.
            let usable = |_| {
                asked.set(asked.get() + 1);
                asked.get() <= 2
            };
            assert!(s.choose(&key(7), &[], usable).is_some(), "{algorithm:?}");
            assert_eq!(asked.get(), 2);
        }
    }

    fn key(turn: u64) -> CallKey<'static> {
        CallKey {
            call_id: b"c",
            from_user: b"alice",
            turn,
        }
    }

    #[test]
    fn weights_share_the_calls_exactly_over_a_cycle() {
        let mut s = set();
        s.algorithm = Algorithm::Weighted;
        s.gateways[0].weight = 3;
        let mut used = [0; 2];
        for turn in 0..4000 {
            used[s.choose(&key(turn), &[], |_| true).unwrap()] += 1;
        }
        assert_eq!(used, [3000, 1000]);
    }

    /// Weight 0 is a standby: no calls while a gateway of its priority has a weight, the
    /// failover's after that one was tried, and turns when all have 0.
    #[test]
    fn a_gateway_of_weight_0_is_a_standby() {
        let mut s = set();
        s.algorithm = Algorithm::Weighted;
        s.gateways[1].weight = 0;
        assert!((0..100).all(|t| s.choose(&key(t), &[], |_| true) == Some(0)));
        let first = s.gateways[0].target.addr;
        assert_eq!(s.choose(&key(0), &[first], |_| true), Some(1));
        assert_eq!(
            s.choose(&key(0), &[], |i| i == 1),
            Some(1),
            "the only usable"
        );
        s.gateways[0].weight = 0;
        let picks: Vec<_> = (0..4).map(|t| s.choose(&key(t), &[], |_| true)).collect();
        assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_from_user_hash_keeps_a_caller_on_one() {
        let mut s = set();
        s.algorithm = Algorithm::RoundRobin;
        let picks: Vec<usize> = (0..4)
            .map(|t| s.choose(&key(t), &[], |_| true).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        s.algorithm = Algorithm::FromUserHash;
        let first = s.choose(&key(0), &[], |_| true);
        assert!((1..50).all(|t| s.choose(&key(t), &[], |_| true) == first));
    }

    #[test]
    fn the_highest_priority_is_used_first_and_failover_goes_down_the_priorities() {
        let mut s: GatewaySet = vec![
            "127.0.0.1:5081".parse().unwrap(),
            "127.0.0.1:5082".parse().unwrap(),
            "127.0.0.1:5083".parse().unwrap(),
        ]
        .into();
        s.gateways[1].priority = 10;
        s.gateways[2].priority = 5;
        let addr = |i: usize| s.gateways[i].target.addr;
        assert_eq!(s.choose(&key(0), &[], |_| true), Some(1));
        assert_eq!(s.choose(&key(0), &[addr(1)], |_| true), Some(2));
        assert_eq!(s.choose(&key(0), &[addr(1), addr(2)], |_| true), Some(0));
        assert_eq!(
            s.choose(&key(0), &[addr(0), addr(1), addr(2)], |_| true),
            None
        );
        // A gateway that is not usable (down, full) is passed over.
        assert_eq!(s.choose(&key(0), &[], |i| i != 1), Some(2));
    }

    #[test]
    fn routes_pick_the_set_by_customer_account_and_prefix() {
        let g = Gateways {
            sets: vec![set(), set(), set()],
            routes: vec![
                SetRoute {
                    set: 2,
                    prefix: Some("00".into()),
                    ..SetRoute::default()
                },
                SetRoute {
                    set: 1,
                    customer: Some("acme".into()),
                    account: Some("a1".into()),
                    ..SetRoute::default()
                },
            ],
        };
        assert_eq!(g.route("acme", b"a1", b"0044"), Some(2));
        assert_eq!(g.route("acme", b"a1", b"1555"), Some(1));
        assert_eq!(g.route("acme", b"a2", b"1555"), None);
        let no_routes = Gateways::from(vec!["127.0.0.1:5081".parse().unwrap()]);
        assert_eq!(no_routes.route("x", b"", b""), Some(0));
    }

    #[test]
    fn an_ip_only_gateway_is_known_from_any_port() {
        let mut s = set();
        s.gateways[1].match_ip_only = true;
        assert_eq!(s.position("127.0.0.1:5081".parse().unwrap()), Some(0));
        assert_eq!(s.position("127.0.0.1:40000".parse().unwrap()), Some(1));
    }

    #[test]
    fn a_full_gateway_passes_its_calls_to_the_next() {
        let mut s = set();
        s.gateways[0].max_calls = Some(3);
        s.gateways[0].priority = 1;
        let picks: Vec<usize> = (0..5)
            .map(|t| s.choose_and_take(&key(t), &[]).unwrap())
            .collect();
        assert_eq!(picks, [0, 0, 0, 1, 1]);
        s.gateways[0].state.give_back();
        assert_eq!(s.choose_and_take(&key(9), &[]), Some(0));
        assert_eq!(s.gateways[0].state.calls.load(Ordering::Relaxed), 3);
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
