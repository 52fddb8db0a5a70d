//! The gateway sets: addresses, failover and probe keys, routes, and a gateway listed in
//! several sets.

use super::tests::{MIN, parse};
use std::time::Duration;

#[test]
fn bad_gateway_address() {
    let src = MIN.replace("127.0.0.1:5082", "gw.example.com:5060");
    let e = parse(&src).unwrap_err().to_string();
    assert!(
        e.starts_with("/etc/siplb/t.toml:11: `gateway_set.gateways`"),
        "{e}"
    );
}

#[test]
fn a_gateway_listed_twice_in_a_set_is_refused() {
    let src = MIN.replace(
        "[\"127.0.0.1:5081\", \"127.0.0.1:5082\"]",
        "[\n  \"127.0.0.1:5081\",\n  \"127.0.0.1:5082\",\n  \"127.0.0.1:5081\",\n]",
    );
    let e = parse(&src).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `gateway_set.gateways`: `127.0.0.1:5081` is listed twice in \
         gateway set `trunk`"
    );
}

#[test]
fn failover_keys_are_read_and_checked() {
    let set = |extra: &str| {
        parse(&MIN.replace(
            "name = \"trunk\"\n",
            &format!("name = \"trunk\"\n{extra}\n"),
        ))
    };
    let c = set("failover_codes = [503]\nfailover_timeout_ms = 0").unwrap();
    let g = &c.proxy.routing.gateways.sets[0];
    assert!(g.failover && g.failover_codes == [503] && g.failover_timeout.is_none());
    let c = set("failover = false").unwrap();
    assert!(!c.proxy.routing.gateways.sets[0].failover);
    let d = parse(MIN).unwrap();
    assert_eq!(
        d.proxy.routing.gateways.sets[0].failover_codes,
        [500, 502, 503]
    );
    assert_eq!(
        d.proxy.routing.gateways.sets[0].failover_timeout,
        Some(Duration::from_millis(5000))
    );
    let e = set("failover_codes = [486]").unwrap_err().to_string();
    assert!(
        e.contains("`gateway_set.failover_codes`: 486 is not a 5xx"),
        "{e}"
    );
}

#[test]
fn probe_keys_are_read_and_checked() {
    let set = |extra: &str| {
        parse(&MIN.replace(
            "name = \"trunk\"\n",
            &format!("name = \"trunk\"\n{extra}\n"),
        ))
    };
    let d = parse(MIN).unwrap();
    let g = &d.proxy.routing.gateways.sets[0];
    assert!(g.probe.is_none(), "not probed by default");
    assert!(!g.gateways[0].state.health.probing());
    let c = set(
        "probe_interval_ms = 2000\nprobe_timeout_ms = 1000\nprobe_down_after = 2\n\
         probe_up_after = 1\nprobe_fail_codes = [503, 404]\nprobe_from = \"sip:ping@lb.example\"",
    )
    .unwrap();
    let g = &c.proxy.routing.gateways.sets[0];
    let p = g.probe.as_ref().unwrap();
    assert_eq!(p.interval, Duration::from_secs(2));
    assert_eq!(p.timeout, Duration::from_secs(1));
    assert_eq!((p.thresholds.down_after, p.thresholds.up_after), (2, 1));
    assert_eq!(p.fail_codes, [503, 404]);
    assert_eq!(p.from.as_deref(), Some("sip:ping@lb.example"));
    assert!(g.gateways[0].state.health.probing());
    let c = set("probe_interval_ms = 500").unwrap();
    let p = c.proxy.routing.gateways.sets[0].probe.clone().unwrap();
    assert_eq!(p.timeout, Duration::from_millis(1000));
    assert_eq!(p.fail_codes.len(), 100, "every 5xx");
    for (extra, key) in [
        ("probe_timeout_ms = 0", "gateway_set.probe_timeout_ms"),
        ("probe_down_after = 0", "gateway_set.probe_down_after"),
        ("probe_up_after = 0", "gateway_set.probe_up_after"),
        ("probe_fail_codes = [100]", "gateway_set.probe_fail_codes"),
        (
            "probe_fail_codes = [503, 200]",
            "gateway_set.probe_fail_codes",
        ),
        ("probe_from = \"ping@x\"", "gateway_set.probe_from"),
    ] {
        let e = set(extra).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
    }
}

#[test]
fn gateway_sets_and_routes_are_read_and_checked() {
    let src = format!(
        "{MIN}
[[gateway_set]]
name = \"intl\"
algorithm = \"weighted\"
[[gateway_set.gateway]]
address = \"127.0.0.1:5091\"
weight = 3
priority = 2
max_calls = 10
match_ip_only = true
[[gateway_set.gateway]]
address = \"127.0.0.1:5092\"

[[route]]
prefix = \"00\"
gateway_set = \"intl\"
[[route]]
customer = \"local\"
gateway_set = \"trunk\"
"
    );
    let c = parse(&src).unwrap();
    let g = &c.proxy.routing.gateways;
    assert_eq!(g.sets.len(), 2);
    let intl = &g.sets[1];
    assert_eq!(intl.algorithm, crate::proxy::Algorithm::Weighted);
    let first = &intl.gateways[0];
    assert_eq!(
        (first.weight, first.priority, first.max_calls),
        (3, 2, Some(10))
    );
    assert!(first.match_ip_only);
    assert_eq!(g.route("local", b"local", b"0044"), Some(1));
    assert_eq!(g.route("local", b"local", b"1555"), Some(0));
    for (from, to, want) in [
        (
            "name = \"intl\"",
            "name = \"trunk\"",
            "`gateway_set.name`: gateway set `trunk` is defined twice",
        ),
        (
            "gateway_set = \"intl\"",
            "gateway_set = \"nope\"",
            "`route.gateway_set`: no gateway set named `nope`",
        ),
        (
            "customer = \"local\"",
            "customer = \"nobody\"",
            "`route.customer`: no customer named `nobody`",
        ),
        (
            "algorithm = \"weighted\"",
            "algorithm = \"random\"",
            "`gateway_set.algorithm`: `random` is not one of callid_hash, from_user_hash, round_robin, weighted",
        ),
        (
            "max_calls = 10",
            "max_calls = 0",
            "`gateway_set.gateway.max_calls`",
        ),
        (
            "address = \"127.0.0.1:5092\"",
            "address = \"127.0.0.1:5091\"",
            "listed twice",
        ),
    ] {
        let e = parse(&src.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(e.contains(want), "{to}: {e}");
    }
}

/// A gateway in two sets is one gateway: one count of calls against `max_calls` and one
/// health (probed when either set probes), while each set keeps its own credentials for it.
#[test]
fn a_gateway_in_two_sets_shares_its_state_and_keeps_each_sets_credentials() {
    let src = format!(
        "{MIN}
[[gateway_set]]
name = \"a\"
[[gateway_set.gateway]]
address = \"127.0.0.1:5091\"
user = \"first\"
password = \"p1\"
max_calls = 1

[[gateway_set]]
name = \"b\"
probe_interval_ms = 1000
[[gateway_set.gateway]]
address = \"127.0.0.1:5091\"
user = \"second\"
password = \"p2\"
max_calls = 1
"
    );
    let c = parse(&src).unwrap();
    let g = &c.proxy.routing.gateways;
    let (a, b) = (&g.sets[1].gateways[0], &g.sets[2].gateways[0]);
    assert!(std::sync::Arc::ptr_eq(&a.state, &b.state));
    assert!(a.state.take(a.max_calls));
    assert!(!b.usable(), "the one call counts in both sets");
    assert!(a.state.health.probing(), "set b probes it");
    let addr = "127.0.0.1:5091".parse().unwrap();
    let user = |set| g.credentials_of(set, addr).map(|c| c.user.as_str());
    assert_eq!(user(1), Some("first"));
    assert_eq!(user(2), Some("second"));
    assert_eq!(
        user(usize::MAX),
        Some("first"),
        "a call from the trunk: the first set's"
    );
    assert_eq!(
        user(0),
        Some("first"),
        "a set without it: the first that has it"
    );
    assert_eq!(g.distinct(), 3);
}
