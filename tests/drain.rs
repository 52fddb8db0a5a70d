//! The graceful drain through the real binary: `siplb ctl core.drain <seconds>` with calls up.

use siplb_tests::*;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// An OPTIONS or INVITE from a raw socket to siplb, and the status of its one reply.
fn ask(caller: &std::net::UdpSocket, siplb: &str, msg: &[u8]) -> (u16, Vec<u8>) {
    caller.send_to(msg, siplb).expect("send");
    let replies = drain(caller, Duration::from_millis(500));
    let (_, reply) = replies
        .into_iter()
        .find(|(_, m)| status_of(m).is_some_and(|s| s >= 200))
        .expect("a final reply");
    (status_of(&reply).unwrap(), reply)
}

fn options(caller: &std::net::UdpSocket, siplb: &str, n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@{siplb} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-dr{n}\r\n\
         From: <sip:probe@{c}>;tag=d{n}\r\nTo: <sip:ping@{siplb}>\r\nCall-ID: drain-op{n}@x\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        c = caller.local_addr().unwrap()
    )
    .into_bytes()
}

/// With three calls up, `core.drain`: new INVITEs and OPTIONS get 503 with Retry-After, the
/// calls up end normally (their BYEs still go through), and siplb exits by itself, well
/// before the deadline, with status 0.
#[test]
fn a_drain_refuses_new_calls_lets_the_live_ones_end_and_exits_by_itself() {
    let _g = serial();
    require_sipp();
    let net = Net::new(108);
    let dir = TempDir::new("drain");
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let probe = udp(&format!("{}:5075", net.ip()));
    assert_eq!(
        ask(&probe, &net.siplb(), &options(&probe, &net.siplb(), 1)).0,
        200
    );
    assert_eq!(siplb.stat("core:draining"), 0);
    let calls = std::thread::scope(|s| {
        let uac = s.spawn(|| Sipp::caller(&dir.0, net, "uac.xml", 3, 10, &["-d", "3000"], 20));
        siplb.wait_stat("dialog:active_dialogs", 3, "calls did not come up");
        let out = siplb.ctl(&["core.drain", "60"]).expect("core.drain");
        assert!(out.contains("draining"), "{out}");
        assert_eq!(siplb.stat("core:draining"), 1);

        let (code, reply) = ask(&probe, &net.siplb(), &options(&probe, &net.siplb(), 2));
        assert_eq!(code, 503, "{}", text(&reply));
        assert_eq!(
            header_lines(&reply, "Retry-After").len(),
            1,
            "{}",
            text(&reply)
        );
        let new = invite(
            &probe.local_addr().unwrap().to_string(),
            &net.siplb(),
            "drain-new@x",
            "dn1",
        );
        let (code, reply) = ask(&probe, &net.siplb(), &new);
        assert_eq!(code, 503, "{}", text(&reply));
        assert!(text(&reply).contains("Draining"), "{}", text(&reply));
        assert_eq!(
            header_lines(&reply, "Retry-After").len(),
            1,
            "{}",
            text(&reply)
        );
        siplb.assert_alive();
        uac.join().expect("uac")
    });
    assert_eq!(calls.ok(), 3, "the calls up ended normally");
    assert_eq!(calls.failed(), 0);
    let status = siplb
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("siplb did not exit by itself: {}", siplb.log()));
    assert!(status.success(), "{status}: {}", siplb.log());
    let log = siplb.log();
    assert!(log.contains("drained: no dialog is up any more"), "{log}");
    // Its own stop, not a signal from outside.
    assert!(
        !log.contains("signal 15") && !log.contains("SIGTERM"),
        "{log}"
    );
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    assert_eq!(
        c1.get("5_BYE_Recv") + c2.get("5_BYE_Recv"),
        3,
        "each call's BYE reached its gateway"
    );
}

/// Past the deadline siplb exits with the calls still up, as at SIGTERM; a bad argument is
/// refused with the usage.
#[test]
fn a_drain_ends_at_its_deadline_with_calls_still_up() {
    let _g = serial();
    require_sipp();
    let net = Net::new(109);
    let dir = TempDir::new("drain-deadline");
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let e = siplb.ctl(&["core.drain", "0"]).unwrap_err();
    assert!(e.contains("from 1 to 86400"), "{e}");
    assert!(siplb.ctl(&["core.drain"]).is_err());
    assert_eq!(
        siplb.stat("core:draining"),
        0,
        "a refused drain does not start"
    );
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    std::thread::scope(|s| {
        let uac = s.spawn(|| Sipp::caller(&dir.0, net, "uac.xml", 2, 10, &["-d", "8000"], 20));
        siplb.wait_stat("dialog:active_dialogs", 2, "calls did not come up");
        siplb.ctl(&["core.drain", "2"]).expect("core.drain");
        let status = siplb
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("siplb did not exit at the deadline: {}", siplb.log()));
        assert!(status.success(), "{status}");
        // The calls would have ended after 8 s: the deadline, not their end, stopped siplb.
        let log = siplb.log();
        assert!(
            log.contains("drain deadline reached with 2 dialogs up"),
            "{log}"
        );
        assert!(log.contains("2 dialogs up at shutdown"), "{log}");
        let _ = uac.join();
    });
    drop(uas1);
    drop(uas2);
}
