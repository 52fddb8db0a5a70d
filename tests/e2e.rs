//! End to end: the real siplb binary on loopback, two workers, driven by sipp.
//!
//! Each test has its own loopback address (`127.0.N.1`) and runs under `serial()` so that
//! two sipp loads never share the machine's two cores.

use siplb_tests::*;
use std::collections::HashMap;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

fn setup(tag: &str, net: Net, extra: &str) -> (TempDir, Siplb) {
    require_sipp();
    let dir = TempDir::new(tag);
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, extra));
    (dir, siplb)
}

/// Two sipp gateways with the same scenario on the test's gateway addresses.
fn gateways(dir: &TempDir, net: Net, scenario: &str, extra: &[&str]) -> (Sipp, Sipp) {
    (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), scenario, extra),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), scenario, extra),
    )
}

#[test]
fn calls_2000_at_200_cps_over_two_gateways() {
    let _g = serial();
    let net = Net::new(11);
    let (dir, mut siplb) = setup("basic", net, "");
    let (uas1, uas2) = gateways(&dir, net, "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 2000, 200, &[], 120);
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    siplb.assert_alive();
    // Kernel receive times reach the latency statistics (figures belong in benchmarks).
    std::thread::sleep(Duration::from_millis(1100));
    let stats = siplb.stats();
    assert!(
        stats["core:latency_p99_us"] >= stats["core:latency_p50_us"],
        "{stats:?}"
    );
    assert!(stats["core:latency_max_us"] > 0, "{stats:?}");
    assert_eq!(uac.ok(), 2000, "successful calls; uac: {:?}", uac.fields);
    assert_eq!(uac.failed(), 0);
    let (i1, i2) = (c1.get("0_INVITE_Recv"), c2.get("0_INVITE_Recv"));
    assert!(i1 > 0 && i2 > 0, "both gateways used: {i1} + {i2}");
    assert_eq!(i1 + i2, 2000, "each INVITE forwarded once");
    let acks = c1.get("4_ACK_Recv") + c2.get("4_ACK_Recv");
    let byes = c1.get("5_BYE_Recv") + c2.get("5_BYE_Recv");
    assert_eq!(
        (acks, byes),
        (2000, 2000),
        "ACK and BYE of every call reached the gateway"
    );
}

#[test]
fn cancel_after_ringing_gets_487() {
    let _g = serial();
    let net = Net::new(12);
    let (dir, mut siplb) = setup("cancel", net, "");
    let (uas1, uas2) = gateways(&dir, net, "uas_cancel.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac_cancel.xml", 100, 50, &[], 60);
    let (s1, _) = uas1.finish();
    let (s2, _) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (100, 0), "uac: {:?}", uac.fields);
    assert_eq!(
        s1.ok() + s2.ok(),
        100,
        "every gateway call saw CANCEL and the proxy's ACK"
    );
}

#[test]
fn busy_gateway_486_reaches_caller_and_ack_is_hop_by_hop() {
    let _g = serial();
    let net = Net::new(13);
    let (dir, mut siplb) = setup("busy", net, "");
    let (uas1, uas2) = gateways(&dir, net, "uas_busy.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac_486.xml", 100, 50, &[], 60);
    let (s1, c1) = uas1.finish();
    let (s2, c2) = uas2.finish();
    let stats = siplb.stats();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (100, 0), "uac: {:?}", uac.fields);
    assert_eq!(
        s1.ok() + s2.ok(),
        100,
        "gateways got the proxy's ACK for each 486"
    );
    // The caller's ACK is absorbed: the only requests forwarded are the INVITEs, and each
    // gateway saw exactly one ACK per call (the proxy's own).
    assert_eq!(stats["core:fwd_requests"], 100, "{stats:?}");
    assert_eq!(c1.get("2_ACK_Recv") + c2.get("2_ACK_Recv"), 100);
    assert_eq!(c1.get("2_ACK_Unexp") + c2.get("2_ACK_Unexp"), 0);
}

#[test]
fn silent_gateway_gives_408() {
    let _g = serial();
    let net = Net::new(14);
    let (dir, mut siplb) = setup("silent", net, "[timers]\nt1_ms = 100\ntimer_b_ms = 1500\n");
    // The gateways are sockets that read and never answer.
    let gw1 = udp(&net.gw(1));
    let gw2 = udp(&net.gw(2));
    let uac = Sipp::caller(&dir.0, net, "uac_408.xml", 20, 20, &[], 60);
    let got = drain(&gw1, Duration::from_millis(100)).len()
        + drain(&gw2, Duration::from_millis(100)).len();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (20, 0), "uac: {:?}", uac.fields);
    assert!(
        got >= 20 * 2,
        "INVITEs were retransmitted by Timer A ({got} datagrams at the gateways)"
    );
    // Each call timed out at both gateways (failover), and got its 408 after the second.
    assert_eq!(siplb.stat("tmx:timeouts"), 40);
    assert_eq!(siplb.stat("dispatcher:failovers"), 20);
}

#[test]
fn lossy_network_calls_complete_through_retransmissions() {
    let _g = serial();
    let net = Net::new(15);
    let (dir, mut siplb) = setup("lossy", net, "");
    let (uas1, uas2) = gateways(&dir, net, "uas.xml", &["-lost", "10"]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 500, 50, &["-lost", "10"], 180);
    drop((uas1, uas2));
    siplb.assert_alive();
    let ok = uac.ok();
    assert!(
        ok * 100 >= 500 * 99,
        "at least 99 % of 500 calls complete: {ok}; uac: {:?}",
        uac.fields
    );
    assert!(
        siplb.stat("tmx:retrans_absorbed") > 0,
        "loss caused retransmissions that were absorbed"
    );
}

#[test]
fn unknown_source_gets_403_and_nothing_reaches_a_gateway() {
    let _g = serial();
    let net = Net::new(16);
    require_sipp();
    let dir = TempDir::new("forbidden");
    // The customer is another address than the one sipp calls from.
    let cfg = config(net, 2, "").replace(
        &format!("sources = [\"{}/32\"]", net.ip()),
        "sources = [\"127.0.99.1/32\"]",
    );
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    let gw1 = udp(&net.gw(1));
    let gw2 = udp(&net.gw(2));
    let uac = Sipp::caller(&dir.0, net, "uac_403.xml", 50, 50, &[], 60);
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (50, 0), "uac: {:?}", uac.fields);
    assert!(drain(&gw1, Duration::from_millis(200)).is_empty());
    assert!(drain(&gw2, Duration::from_millis(200)).is_empty());
    assert_eq!(siplb.stat("core:fwd_requests"), 0);
}

/// Every message of every call is processed by the worker that owns its Call-ID; the ones
/// the kernel delivered to the other worker went through exactly one hand-off each.
#[test]
fn every_message_is_processed_by_its_owner() {
    let _g = serial();
    let net = Net::new(17);
    require_sipp();
    let dir = TempDir::new("owner");
    let trace = dir.0.join("trace");
    let extra = format!("[debug]\ntrace_ownership = \"{}\"\n", trace.display());
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, &extra));
    // Loss (sipp drops some of what it sends) makes the other side retransmit, so
    // retransmissions are covered too.
    let (uas1, uas2) = gateways(&dir, net, "uas.xml", &["-lost", "5"]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 300, 100, &["-lost", "5"], 120);
    drop((uas1, uas2));
    let hand_offs = siplb.stat("core:hand_offs");
    assert_eq!(siplb.stat("core:hand_off_drops"), 0);
    siplb.stop();
    assert!(uac.ok() >= 290, "uac: {:?}", uac.fields);

    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let (mut lines, mut handed) = (0u64, 0u64);
    for t in read_trace(&trace, 2) {
        assert_eq!(t.processed, owner(12345, t.call_id.as_bytes(), 2), "{t:?}");
        if t.processed != t.received {
            handed += 1;
        }
        *kinds
            .entry(format!("{} {}", t.kind, t.cseq_method))
            .or_default() += 1;
        *seen
            .entry(format!("{} {} {}", t.kind, t.cseq_method, t.call_id))
            .or_default() += 1;
        lines += 1;
    }
    assert_eq!(
        handed, hand_offs,
        "hand_offs counts exactly the hand-offs ({lines} messages)"
    );
    assert!(
        handed > 0,
        "with software steering some messages arrive at the wrong worker"
    );
    for k in [
        "INVITE INVITE",
        "ACK ACK",
        "BYE BYE",
        "100 INVITE",
        "180 INVITE",
        "200 INVITE",
        "200 BYE",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} in the trace: {kinds:?}"
        );
    }
    let repeated = seen.values().filter(|n| **n > 1).count();
    assert!(
        repeated > 0,
        "retransmissions are in the trace (and were checked) too: {lines} lines"
    );
}

/// A small deterministic generator (xorshift64*), so a failing flood can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Datagram `i` of the bad-input flood: random bytes, truncated or mutated INVITEs, broken
/// headers and numbers, oversized datagrams (up to 64 KiB).
fn junk(rng: &mut Rng, i: usize, from: &str, to: &str) -> Vec<u8> {
    let valid = invite(from, to, &format!("junk-{i}@x"), &format!("j{i}"));
    match rng.below(100) {
        0..=24 => (0..1 + rng.below(1500)).map(|_| rng.next() as u8).collect(),
        25..=49 => valid[..rng.below(valid.len())].to_vec(),
        50..=69 => {
            let mut m = valid.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(m.len());
                m[at] = rng.next() as u8;
            }
            m
        }
        70..=89 => {
            let text = String::from_utf8(valid).expect("ascii");
            let broken = [
                ("Content-Length: 0", "Content-Length: 99999999999"),
                ("Content-Length: 0", "Content-Length: -1"),
                ("Content-Length: 0", "Content-Length: 40"),
                ("SIP/2.0\r\n", "SIP/7.0\r\n"),
                ("From: <sip:acct1", "From: \"unbalanced <sip:acct1"),
                ("Call-ID", "X-No-Call-ID"),
                ("CSeq: 1 INVITE", "CSeq: 1 BYE"),
                ("Max-Forwards: 70", "Max-Forwards: 0"),
                ("INVITE sip:", "INVITE  sip:"),
                ("INVITE sip:", "INVITE unknown:"),
                ("Via: SIP/2.0/UDP", "Via: SIP/2.0/UDP [::1"),
            ];
            let (a, b) = broken[rng.below(broken.len())];
            text.replacen(a, b, 1).into_bytes()
        }
        _ => {
            // Oversized: a valid start, then a body far past any receive buffer.
            let mut m = valid.clone();
            let n = 20_000 + rng.below(65_000 - 20_000);
            m.resize(n, b'x');
            m
        }
    }
}

#[test]
fn bad_input_flood_is_answered_or_dropped_and_calls_go_on() {
    let _g = serial();
    let net = Net::new(18);
    // Short timers, so that the calls' own state is gone again when memory is measured.
    let (dir, mut siplb) = setup(
        "junk",
        net,
        "[timers]\ntimer_b_ms = 1500\nt4_ms = 1000\ntimer_d_ms = 1000\ncall_linger_ms = 1000\n",
    );
    // The flood comes from a non-customer address, so nothing it sends creates state: the
    // memory check then sees leaks, not transactions.
    let flood_from = "127.0.18.2:5999";
    let sock = std::sync::Arc::new(udp(flood_from));
    let target = net.siplb();
    let send = |n: usize, seed: u64| {
        let mut rng = Rng(seed);
        for i in 0..n {
            let d = junk(&mut rng, i, flood_from, &target);
            let _ = sock.send_to(&d, &target);
            if i % 500 == 499 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let (sock, replies, stop) = (sock.clone(), replies.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    replies.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        })
    };
    // Warm-up: fills every receive buffer to the brim once (oversized datagrams) and warms
    // the allocator's pools, so that what is measured after is growth, not first touch.
    let big = vec![b'x'; 60_000];
    for _ in 0..4_000 {
        let _ = sock.send_to(&big, &target);
    }
    send(60_000, 1);
    let (uas1, uas2) = gateways(&dir, net, "uas.xml", &[]);
    let warm = Sipp::uac(
        &dir.0,
        "warm",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        300,
        100,
        &[],
        60,
    );
    assert_eq!(warm.ok(), 300, "warm-up calls: {:?}", siplb.stats());
    std::thread::sleep(Duration::from_millis(3000));
    let rss0 = siplb.rss_kib();

    let calls = {
        let (d, t, ip) = (dir.0.clone(), net.siplb(), net.ip());
        std::thread::spawn(move || Sipp::uac(&d, "uac", &t, &ip, "uac.xml", 300, 50, &[], 120))
    };
    send(100_000, 2);
    let uac = calls.join().expect("sipp thread");
    drop((uas1, uas2));
    std::thread::sleep(Duration::from_millis(3000));
    let rss1 = siplb.rss_kib();
    let (txns, calls) = (
        siplb.stat("tmx:inuse_transactions"),
        siplb.stat("core:call_records"),
    );
    assert_eq!((txns, calls), (0, 0), "all state expired");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    receiver.join().expect("receiver");
    siplb.assert_alive();

    assert_eq!(
        (uac.ok(), uac.failed()),
        (300, 0),
        "calls during the flood: {:?}",
        uac.fields
    );
    let replies = replies.lock().unwrap();
    assert!(
        replies.len() > 10_000,
        "many junk requests could be answered: {}",
        replies.len()
    );
    let allowed = [400, 403, 405, 416, 420, 481, 483, 505, 513];
    for r in replies.iter() {
        let code = status_of(r)
            .unwrap_or_else(|| panic!("not a response: {:?}", String::from_utf8_lossy(r)));
        assert!(
            allowed.contains(&code),
            "unexpected {code}: {}",
            String::from_utf8_lossy(r)
        );
        assert!(
            !reason_of(r).is_empty(),
            "a reason phrase says what was wrong"
        );
    }
    assert!(
        replies.iter().any(|r| status_of(r) == Some(505)),
        "SIP/7.0 gets 505"
    );
    assert!(
        replies
            .iter()
            .any(|r| reason_of(r).contains("Content-Length")),
        "bad Content-Length is named"
    );
    let stats = siplb.stats();
    assert!(stats["core:bad_msg_hdr"] > 10_000, "{stats:?}");
    assert!(
        stats["core:truncated"] > 0,
        "oversized datagrams were dropped and counted: {stats:?}"
    );
    assert!(
        rss1 < rss0 + 4 * 1024,
        "memory flat: {rss0} KiB before, {rss1} KiB after the flood and calls"
    );
}

#[test]
fn full_tables_and_queues_answer_503_with_retry_after() {
    let _g = serial();
    let net = Net::new(19);
    require_sipp();
    let dir = TempDir::new("overload");
    let extra =
        "[limits]\nqueue_per_worker = 1\ntransactions_per_worker = 20\ncalls_per_worker = 20\n";
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, extra));
    // Gateways that never answer: every accepted INVITE holds its transaction.
    let _gw1 = udp(&net.gw(1));
    let _gw2 = udp(&net.gw(2));
    let caller = udp(&format!("{}:5070", net.ip()));
    let target = net.siplb();
    let me = format!("{}:5070", net.ip());
    let (mut trying, mut busy, mut other) = (0u64, 0u64, Vec::new());
    let mut rss = Vec::new();
    for round in 0..10 {
        for i in 0..2000 {
            let n = round * 2000 + i;
            caller
                .send_to(
                    &invite(&me, &target, &format!("ovl-{n}@x"), &format!("o{n}")),
                    &target,
                )
                .expect("send");
        }
        for (_, r) in drain(&caller, Duration::from_millis(300)) {
            match status_of(&r) {
                Some(100) => trying += 1,
                Some(503) => {
                    let text = String::from_utf8_lossy(&r);
                    assert!(
                        text.contains("\r\nRetry-After: "),
                        "overload 503 has Retry-After: {text}"
                    );
                    busy += 1;
                }
                _ => other.push(String::from_utf8_lossy(&r).to_string()),
            }
        }
        rss.push(siplb.rss_kib());
    }
    siplb.assert_alive();
    assert!(other.is_empty(), "only 100 and 503: {other:?}");
    assert!(
        (1..=40).contains(&trying),
        "two workers hold at most 20 transactions each: {trying}"
    );
    assert_eq!(trying + busy, 20_000, "every INVITE got an answer");
    let stats = siplb.stats();
    assert_eq!(stats["core:overload_503"], busy, "{stats:?}");
    assert!(
        stats["core:hand_off_drops"] > 0,
        "the one-slot hand-off queue overflowed: {stats:?}"
    );
    let (first, last) = (rss[0], *rss.last().expect("ten rounds"));
    assert!(
        last < first + 4 * 1024,
        "memory bounded under overload: {rss:?} KiB"
    );
}
