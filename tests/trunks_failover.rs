//! Carrier trunks end to end, the routing half: failover inside the transaction (503, every
//! gateway 503, a silent gateway), `max_calls`, and the weighted and Call-ID hash algorithms —
//! the real siplb binary, sipp callers and gateways.
//!
//! Tests take `serial()` and the nets 100–106.

#[path = "trunks_kit.rs"]
mod kit;
use kit::*;

use siplb_tests::*;

// ---------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------

/// The first gateway (higher priority) answers every INVITE 503: each call goes on to the
/// second and completes there; the caller never sees the 503 (sipp's UAC fails a call on
/// any unexpected final answer).
#[test]
fn a_503_moves_the_call_to_the_second_gateway_and_the_caller_never_sees_it() {
    let _g = serial();
    let net = Net::new(100);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}{}",
        gw(&net.gw(1), "priority = 1"),
        gw(&net.gw(2), "priority = 0"),
    );
    let (dir, mut siplb) = start("fo503", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_503.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 50, 25, &[], 60);
    let (s1, c1) = uas1.finish();
    let (s2, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (50, 0), "uac: {:?}", uac.fields);
    assert_eq!(
        (count(&c1, "_INVITE_Recv"), count(&c1, "_ACK_Recv"), s1.ok()),
        (50, 50, 50),
        "every call tried the first gateway, which answered 503 (ACKed by siplb)"
    );
    assert_eq!(
        (count(&c2, "_INVITE_Recv"), count(&c2, "_BYE_Recv"), s2.ok()),
        (50, 50, 50),
        "and completed on the second"
    );
    assert_eq!(siplb.stat("dispatcher:failovers"), 50);
}

/// Every gateway answers 503 (with Retry-After): the caller gets one final answer, 500,
/// without Retry-After.
#[test]
fn when_every_gateway_answers_503_the_caller_gets_500_without_retry_after() {
    let _g = serial();
    let net = Net::new(101);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}{}",
        gw(&net.gw(1), ""),
        gw(&net.gw(2), ""),
    );
    let (dir, mut siplb) = start("all503", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_503.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_503.xml", &[]);
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let calls = 5;
    for i in 0..calls {
        let got = call_raw(&caller, net, &format!("all503-{i}"), &format!("a{i}"));
        let finals: Vec<&Vec<u8>> = got
            .iter()
            .filter(|m| status_of(m).is_some_and(|s| s >= 200))
            .collect();
        assert_eq!(
            finals.len(),
            1,
            "call {i}: one final answer: {:?}",
            got.iter().map(|m| text(m)).collect::<Vec<_>>()
        );
        let r = finals[0];
        assert_eq!(status_of(r), Some(500), "{}", text(r));
        assert_eq!(reason_of(r), "Server Internal Error");
        assert!(header(r, "Retry-After").is_none(), "{}", text(r));
    }
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!(
        (count(&c1, "_INVITE_Recv"), count(&c2, "_INVITE_Recv")),
        (calls, calls),
        "each call tried both gateways"
    );
    assert_eq!(siplb.stat("dispatcher:failovers"), calls);
}

/// The first gateway (higher priority) never answers INVITEs: after `failover_timeout_ms`
/// each call goes on to the second and completes there.
#[test]
fn a_gateway_that_does_not_answer_hands_the_call_to_the_next() {
    let _g = serial();
    let net = Net::new(102);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\nfailover_timeout_ms = 300\n{}{}",
        gw(&net.gw(1), "priority = 1"),
        gw(&net.gw(2), "priority = 0"),
    );
    let (dir, mut siplb) = start("silent", &conf(net, "", &sets));
    let gw1 = RawGw::start(&net.gw(1), |_| vec![]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 20, 10, &[], 60);
    let got = gw1.finish();
    let (s2, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (20, 0), "uac: {:?}", uac.fields);
    let mut tried: Vec<String> = requests(&got, "INVITE")
        .iter()
        .map(|m| call_id(m))
        .collect();
    tried.sort();
    tried.dedup();
    assert_eq!(tried.len(), 20, "every call tried the silent gateway first");
    assert_eq!(
        (count(&c2, "_INVITE_Recv"), s2.ok()),
        (20, 20),
        "and completed on the second"
    );
    assert_eq!(siplb.stat("dispatcher:failovers"), 20);
}

// ---------------------------------------------------------------------------------------
// Choosing the gateway
// ---------------------------------------------------------------------------------------

/// `max_calls = 3` on the preferred gateway: of four calls at once, three go there and the
/// fourth to the other; once they have ended the places are free again.
#[test]
fn a_full_gateway_sends_the_fourth_call_to_the_other() {
    let _g = serial();
    let net = Net::new(103);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}{}",
        gw(&net.gw(1), "priority = 1\nmax_calls = 3"),
        gw(&net.gw(2), "priority = 0"),
    );
    let (dir, mut siplb) = start("maxcalls", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    for round in ["a", "b"] {
        // Four calls started within 0.2 s, each held 3 s: all four at once.
        let uac = Sipp::uac(
            &dir.0,
            &format!("uac_{round}"),
            &net.siplb(),
            &net.ip(),
            "uac.xml",
            4,
            20,
            &["-d", "3000"],
            60,
        );
        assert_eq!(
            (uac.ok(), uac.failed()),
            (4, 0),
            "round {round}: {:?}",
            uac.fields
        );
        eventually(40, "calls end", || {
            siplb.stats()["dialog:active_dialogs"] == 0
        });
    }
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!(
        (count(&c1, "_INVITE_Recv"), count(&c2, "_INVITE_Recv")),
        (6, 2),
        "three of each four calls on the limited gateway, the fourth on the other"
    );
}

/// `algorithm = "weighted"` with weights 3 and 1: of 4,000 calls the gateways get 75 % and
/// 25 % (within ±5 points; the per-worker cycle makes it nearly exact).
#[test]
fn weights_3_to_1_share_4000_calls_75_to_25() {
    let _g = serial();
    let net = Net::new(104);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\nalgorithm = \"weighted\"\n{}{}",
        gw(&net.gw(1), "weight = 3"),
        gw(&net.gw(2), "weight = 1"),
    );
    let (dir, mut siplb) = start("weighted", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 4000, 400, &[], 180);
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (4000, 0), "uac: {:?}", uac.fields);
    let (i1, i2) = (count(&c1, "_INVITE_Recv"), count(&c2, "_INVITE_Recv"));
    assert_eq!(i1 + i2, 4000);
    assert!(
        (2800..=3200).contains(&i1),
        "weight 3 of 4: {i1} of 4000 (weight 1: {i2})"
    );
    eprintln!("weighted 3:1 over 4000 calls: {i1} / {i2}");
}

/// `algorithm = "callid_hash"`: every message of a call reaches the gateway its INVITE went
/// to, so each sipp gateway sees whole calls only: as many ACKs and BYEs as INVITEs, nothing
/// unexpected and nothing it cannot place in a call.
#[test]
fn with_callid_hash_each_gateway_sees_whole_calls_only() {
    let _g = serial();
    let net = Net::new(105);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\nalgorithm = \"callid_hash\"\ngateways = [\"{}\", \"{}\"]\n",
        net.gw(1),
        net.gw(2),
    );
    let (dir, mut siplb) = start("callid", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 1000, 200, &[], 120);
    let (s1, c1) = uas1.finish();
    let (s2, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (1000, 0), "uac: {:?}", uac.fields);
    for (name, s, c) in [("uas1", &s1, &c1), ("uas2", &s2, &c2)] {
        let invites = count(c, "_INVITE_Recv");
        assert!(invites > 0, "{name} used");
        assert_eq!(
            (count(c, "_ACK_Recv"), count(c, "_BYE_Recv"), s.ok()),
            (invites, invites, invites),
            "{name}: whole calls; counts {:?}",
            c.fields
        );
        let unexpected: u64 = c
            .fields
            .iter()
            .filter(|(k, _)| k.ends_with("_Unexp"))
            .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
            .sum();
        assert_eq!(unexpected, 0, "{name}: {:?}", c.fields);
        assert_eq!(s.get("OutOfCallMsgs(C)"), 0, "{name}: {:?}", s.fields);
        assert_eq!(s.failed(), 0, "{name}: {:?}", s.fields);
    }
    assert_eq!(
        count(&c1, "_INVITE_Recv") + count(&c2, "_INVITE_Recv"),
        1000
    );
}
