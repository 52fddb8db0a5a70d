//! The project's load generator (`siplb_tests::load`, `cargo xtask load`) against the real
//! binary, checked against sipp: the same calls through siplb leave the same counters.

use siplb_tests::load::{self, Load};
use siplb_tests::*;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// The counters a call flow leaves in siplb, whoever drives it.
const COUNTERS: &[&str] = &[
    "core:rcv_requests",
    "core:rcv_replies",
    "core:fwd_requests",
    "core:fwd_replies",
    "dialog:processed_dialogs",
    "dialog:failed_dialogs",
    "tmx:retransmissions",
];

fn counters(siplb: &Siplb) -> Vec<(&'static str, u64)> {
    let stats = siplb.stats();
    COUNTERS
        .iter()
        .map(|c| (*c, stats.get(*c).copied().unwrap_or(0)))
        .collect()
}

/// 3,000 calls at 1,000 calls/s, once from the generator (its default tick for the rate, as
/// `xtask load` runs it) and once from sipp, each through a fresh siplb: every call completes
/// both times and siplb counts the same messages.
#[test]
fn the_generator_and_sipp_leave_the_same_calls_and_counters() {
    let _g = serial();
    require_sipp();
    let (calls, rate) = (3000u32, 1000u32);
    let net = Net::new(110);

    let dir = TempDir::new("load-gen");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let accounts = load::read_accounts(&repo().join("examples/sipp/accounts.csv")).unwrap();
    let ip = net.ip();
    let report = load::run(&Load {
        target: net.siplb().parse().unwrap(),
        caller: format!("{ip}:5070").parse().unwrap(),
        gateways: vec![net.gw(1).parse().unwrap(), net.gw(2).parse().unwrap()],
        accounts,
        rate,
        calls: calls as usize,
        hold: Duration::ZERO,
        max: Duration::from_secs(60),
        tick: Load::default_tick(rate),
    })
    .expect("the generator runs");
    assert_eq!(report.ok, calls as usize, "{}", report.summary());
    assert_eq!(report.retransmissions, 0, "{}", report.summary());
    let generated = counters(&siplb);
    drop(siplb);

    let dir = TempDir::new("load-sipp");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &ip,
        "uac.xml",
        calls,
        rate,
        &["-d", "0"],
        60,
    );
    assert_eq!(uac.ok(), u64::from(calls));
    assert_eq!(uac.get("Retransmissions(C)"), 0);
    let by_sipp = counters(&siplb);
    drop((uas1, uas2));
    assert_eq!(generated, by_sipp, "generator (left) against sipp (right)");
    assert_eq!(
        generated[0].1,
        3 * u64::from(calls),
        "INVITE, ACK, BYE per call"
    );
}
