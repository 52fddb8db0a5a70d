//! Protocol defects found by probing siplb from outside with raw SIP over UDP, each driven
//! through the real binary on loopback: the test plays the caller and the gateways with
//! plain sockets (sipp where a whole call is simpler).

use siplb_tests::*;
use std::net::UdpSocket;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");
const QUIET: Duration = Duration::from_millis(300);

/// siplb on `net`; T1 of 2 s, so that no retransmission crosses a hand-made exchange.
fn start(tag: &str, net: Net, extra: &str) -> (TempDir, Siplb) {
    let dir = TempDir::new(tag);
    let extra = format!("[timers]\nt1_ms = 2000\n\n{extra}");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, &extra));
    (dir, siplb)
}

/// The caller's and both gateways' sockets.
fn peers(net: Net) -> (UdpSocket, UdpSocket, UdpSocket) {
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    (caller, udp(&net.gw(1)), udp(&net.gw(2)))
}

/// What the two gateways got, together.
/// What the two gateways got, together, retransmissions left out.
fn at_gateways(gw1: &UdpSocket, gw2: &UdpSocket) -> Vec<(UdpSocket, Vec<u8>)> {
    let mut out: Vec<(UdpSocket, Vec<u8>)> = Vec::new();
    for g in [gw1, gw2] {
        for (_, m) in drain(g, QUIET) {
            if !out.iter().any(|(_, seen)| *seen == m) {
                out.push((g.try_clone().expect("clone"), m));
            }
        }
    }
    out
}

/// The gateway answers `fwd` (an INVITE it got) with 100 Trying: siplb stops resending it.
fn trying(gw: &UdpSocket, fwd: &[u8], siplb: &str) {
    gw.send_to(&respond(fwd, 100, "Trying", "", ""), siplb)
        .unwrap();
}

/// The one message of `got` that is a request with `method`.
#[track_caller]
fn the_request(got: &[(UdpSocket, Vec<u8>)], method: &str) -> (UdpSocket, Vec<u8>) {
    let found: Vec<_> = got
        .iter()
        .filter(|(_, m)| m.starts_with(format!("{method} ").as_bytes()))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {method}: {:?}",
        got.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    let (s, m) = found[0];
    (s.try_clone().expect("clone"), m.clone())
}

fn statuses(got: &[(std::net::SocketAddr, Vec<u8>)]) -> Vec<u16> {
    got.iter().filter_map(|(_, m)| status_of(m)).collect()
}

/// Point 1: customers that use siplb as their outbound proxy put its Route on the INVITE;
/// siplb removes it and carries on (RFC 3261 §16.4). A Route set that goes on to another
/// host after siplb's is a preloaded route: 403.
#[test]
fn an_initial_invite_routed_to_siplb_itself_is_forwarded() {
    let _g = serial();
    let net = Net::new(51);
    let (_dir, mut siplb) = start("outbound-proxy", net, "");
    let (caller, gw1, gw2) = peers(net);
    let me = format!("{}:{}", net.ip(), net.caller_port());
    let inv = text(&invite(&me, &net.siplb(), "route-1@x", "r1")).replacen(
        "Max-Forwards:",
        &format!("Route: <sip:{};lr>\r\nMax-Forwards:", net.siplb()),
        1,
    );
    caller.send_to(inv.as_bytes(), net.siplb()).unwrap();
    let back = drain(&caller, QUIET);
    assert_eq!(
        statuses(&back),
        [100],
        "{:?}",
        back.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    let got = at_gateways(&gw1, &gw2);
    let (_, fwd) = the_request(&got, "INVITE");
    assert!(
        header_lines(&fwd, "Route").is_empty(),
        "siplb's Route removed: {}",
        text(&fwd)
    );
    assert_eq!(header_lines(&fwd, "Record-Route").len(), 1);

    let preloaded = text(&invite(&me, &net.siplb(), "route-2@x", "r2")).replacen(
        "Max-Forwards:",
        &format!(
            "Route: <sip:{};lr>, <sip:198.18.7.7;lr>\r\nMax-Forwards:",
            net.siplb()
        ),
        1,
    );
    caller.send_to(preloaded.as_bytes(), net.siplb()).unwrap();
    let back = drain(&caller, QUIET);
    assert_eq!(statuses(&back), [403]);
    assert!(reason_of(&back[0].1).contains("Preloaded Route"));
    assert!(at_gateways(&gw1, &gw2).is_empty());
    siplb.assert_alive();
}

/// Point 2: a request that comes back to siplb unchanged (its Via of siplb's own carries the
/// branch siplb computes for it) is a loop: 482, nothing forwarded. The same request with
/// another Request-URI is a spiral and is forwarded.
#[test]
fn a_request_that_comes_back_unchanged_gets_482_and_a_spiral_is_forwarded() {
    let _g = serial();
    let net = Net::new(52);
    let (_dir, mut siplb) = start("loop", net, "");
    let (caller, gw1, gw2) = peers(net);
    let me = format!("{}:{}", net.ip(), net.caller_port());
    caller
        .send_to(&invite(&me, &net.siplb(), "loop-1@x", "l1"), net.siplb())
        .unwrap();
    drain(&caller, QUIET);
    let (gw, fwd) = the_request(&at_gateways(&gw1, &gw2), "INVITE");
    trying(&gw, &fwd, &net.siplb());
    // The forwarded INVITE comes back to siplb, as a misconfigured route would send it.
    caller.send_to(&fwd, net.siplb()).unwrap();
    let back = drain(&caller, QUIET);
    assert_eq!(
        statuses(&back),
        [482],
        "{:?}",
        back.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    assert!(
        at_gateways(&gw1, &gw2).is_empty(),
        "a loop is not forwarded again"
    );
    assert_eq!(siplb.stat("core:loops_482"), 1);

    let spiral = text(&fwd).replacen("INVITE sip:15550001@", "INVITE sip:15550002@", 1);
    caller.send_to(spiral.as_bytes(), net.siplb()).unwrap();
    drain(&caller, QUIET);
    let (_, again) = the_request(&at_gateways(&gw1, &gw2), "INVITE");
    assert_eq!(
        header_lines(&again, "Record-Route").len(),
        2,
        "a spiral goes on"
    );
    assert_eq!(siplb.stat("core:loops_482"), 1);
    siplb.assert_alive();
}

/// Point 3: a response forged from another address with the branch of a live INVITE is not
/// relayed (and does not end the call); the real gateway's answer is. Branches carry no
/// counter or worker number to guess from, and differ between runs.
#[test]
fn responses_from_anywhere_but_the_gateway_are_dropped_and_branches_are_unguessable() {
    let _g = serial();
    let net = Net::new(53);
    let (caller, gw1, gw2) = peers(net);
    let forger = udp(&format!("{}:5099", net.ip()));
    let me = format!("{}:{}", net.ip(), net.caller_port());
    let mut branches = Vec::new();
    for run in 0..2 {
        let (_dir, mut siplb) = start(&format!("forged-{run}"), net, "");
        let inv = invite(&me, &net.siplb(), "forged-1@x", "f1");
        caller.send_to(&inv, net.siplb()).unwrap();
        drain(&caller, QUIET);
        let (gw, fwd) = the_request(&at_gateways(&gw1, &gw2), "INVITE");
        trying(&gw, &fwd, &net.siplb());
        let via = header_lines(&fwd, "Via")[0].clone();
        branches.push(via.split("branch=").nth(1).unwrap_or("").trim().to_string());
        if run == 1 {
            break;
        }
        forger
            .send_to(&respond(&fwd, 486, "Busy Here", "forged", ""), net.siplb())
            .unwrap();
        assert!(
            drain(&caller, QUIET).is_empty(),
            "the forged 486 is not relayed"
        );
        assert_eq!(siplb.stat("core:resp_wrong_source"), 1);
        let contact = format!("Contact: <sip:gw@{}>\r\n", gw.local_addr().unwrap());
        gw.send_to(&respond(&fwd, 200, "OK", "gw", &contact), net.siplb())
            .unwrap();
        let back = drain(&caller, QUIET);
        assert_eq!(statuses(&back), [200], "the gateway's 200 is relayed");
        assert!(
            drain(&gw, QUIET).is_empty(),
            "siplb did not ACK the 200 away itself"
        );
        siplb.assert_alive();
    }
    assert_ne!(branches[0], branches[1], "a secret per start: {branches:?}");
    for b in &branches {
        let hex = b.trim_start_matches("z9hG4bK-f");
        assert!(hex.len() >= 32, "{b}");
    }
}

/// Point 3, trunks that answer from several addresses: a gateway's other configured address
/// is accepted.
#[test]
fn a_gateway_may_answer_from_an_address_configured_for_it() {
    let _g = serial();
    let net = Net::new(54);
    let other = format!("{}:5091", net.ip());
    let cfg = config(net, 2, "").replace(
        "gateways = [",
        &format!(
            "answers_from = {{ \"{}\" = [\"{other}\"], \"{}\" = [\"{other}\"] }}\ngateways = [",
            net.gw(1),
            net.gw(2)
        ),
    );
    let dir = TempDir::new("answers-from");
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    let (caller, gw1, gw2) = peers(net);
    let pool = udp(&other);
    let me = format!("{}:{}", net.ip(), net.caller_port());
    caller
        .send_to(&invite(&me, &net.siplb(), "pool-1@x", "p1"), net.siplb())
        .unwrap();
    drain(&caller, QUIET);
    let (_, fwd) = the_request(&at_gateways(&gw1, &gw2), "INVITE");
    pool.send_to(&respond(&fwd, 486, "Busy Here", "gw", ""), net.siplb())
        .unwrap();
    let back = drain(&caller, QUIET);
    assert_eq!(statuses(&back), [486]);
    assert_eq!(siplb.stat("core:resp_wrong_source"), 0);
    siplb.assert_alive();
}

/// Point 4: `default_timeout` counts from the answer. Calls that ring for 3 s with a 2 s
/// `default_timeout` complete: ACK and BYE reach the gateway.
#[test]
fn a_call_that_rings_longer_than_default_timeout_completes() {
    let _g = serial();
    require_sipp();
    let net = Net::new(55);
    let (dir, mut siplb) = start("ring-long", net, "[dialog]\ndefault_timeout_s = 2\n");
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_ring_long.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_ring_long.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 10, 10, &[], 60);
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (10, 0), "uac: {:?}", uac.fields);
    // The scenario's pause is its message 3: the ACK is 5 and the BYE 6.
    let acks = c1.get("5_ACK_Recv") + c2.get("5_ACK_Recv");
    let byes = c1.get("6_BYE_Recv") + c2.get("6_BYE_Recv");
    assert_eq!(
        (acks, byes),
        (10, 10),
        "ACK and BYE of every call reached the gateway: {:?}",
        c1.fields
    );
    assert_eq!(siplb.stat("dialog:expired_dialogs"), 0);
}

/// Point 5: a request too long for a receive buffer (16 KiB by default) is answered 513 from
/// the part that arrived, instead of vanishing while the caller retransmits.
#[test]
fn a_datagram_over_the_receive_buffer_gets_513() {
    let _g = serial();
    let net = Net::new(56);
    let (_dir, mut siplb) = start("too-large", net, "");
    let (caller, gw1, gw2) = peers(net);
    let me = format!("{}:{}", net.ip(), net.caller_port());
    let pad = format!("X-Pad: {}\r\n", "a".repeat(20_000));
    let big = text(&invite(&me, &net.siplb(), "big-1@x", "b1")).replacen(
        "Max-Forwards:",
        &format!("{pad}Max-Forwards:"),
        1,
    );
    assert!(big.len() > 20_000);
    caller.send_to(big.as_bytes(), net.siplb()).unwrap();
    let back = drain(&caller, QUIET);
    assert_eq!(
        statuses(&back),
        [513],
        "{:?}",
        back.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    assert!(text(&back[0].1).contains("Call-ID: big-1@x"));
    assert!(at_gateways(&gw1, &gw2).is_empty());
    assert_eq!(siplb.stat("core:too_large_513"), 1);
    assert_eq!(siplb.stat("core:truncated"), 1);
    siplb.assert_alive();
}

/// What outside probing does first: a flood of mangled datagrams through the real sockets,
/// both workers and the hand-off between them. Valid INVITEs, responses to what siplb
/// forwarded and RFC 4475's torture messages, cut, flipped, stretched past the receive buffer
/// or replaced by random bytes, from the caller, the gateways and a stranger: siplb stays up,
/// says nothing of a panic, and a clean call afterwards is forwarded as ever. (The shard's own
/// fuzz test, `shard::tests::fuzz`, checks what it sends; this one the I/O around it.)
#[test]
fn a_flood_of_mangled_datagrams_leaves_siplb_up_and_forwarding() {
    let _g = serial();
    let net = Net::new(57);
    let (_dir, mut siplb) = start("flood", net, "");
    let (caller, gw1, gw2) = peers(net);
    let stranger = udp(&format!("{}:5099", net.ip()));
    let me = format!("{}:{}", net.ip(), net.caller_port());
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(repo().join("proxy/tests/torture"))
        .expect("tests/torture")
        .map(|e| std::fs::read(e.expect("torture").path()).expect("a torture message"))
        .collect();
    seeds.sort();
    for i in 0..20 {
        let inv = invite(&me, &net.siplb(), &format!("flood-{i}@x"), &format!("f{i}"));
        seeds.push(inv);
    }
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const PIECES: [&[u8]; 5] = [b"\r\n", b"\0", b";", b"<", b" "];
    let senders = [&caller, &caller, &gw1, &gw2, &stranger];
    let mut buf = vec![0u8; 65536];
    for g in [&gw1, &gw2] {
        g.set_nonblocking(true).unwrap();
    }
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < 20_000 && started.elapsed() < Duration::from_secs(20) {
        // Now and then a response to something a gateway got, mangled in its turn.
        let gw = [&gw1, &gw2][sent % 2];
        let mut m = match gw.recv_from(&mut buf) {
            // (One written with the long header names: the helper reads no compact ones.)
            Ok((n, _))
                if sent % 10 == 0
                    && ["From", "To", "Call-ID", "CSeq"]
                        .iter()
                        .all(|h| !header_lines(&buf[..n], h).is_empty()) =>
            {
                respond(&buf[..n], 180, "Ringing", "gw", "")
            }
            _ => seeds[next() as usize % seeds.len()].clone(),
        };
        for _ in 0..next() % 4 {
            let at = next() as usize % (m.len() + 1);
            match next() % 6 {
                0 => m.truncate(at),
                1 if at < m.len() => m[at] = next() as u8,
                2 => {
                    let piece = PIECES[next() as usize % PIECES.len()];
                    m.splice(at..at, piece.iter().copied());
                }
                3 => {
                    m.splice(at..at, std::iter::repeat_n(b'a', 20_000));
                }
                4 => m = (0..next() % 1500).map(|_| next() as u8).collect(),
                _ => {
                    m.drain(at..(at + 8).min(m.len()));
                }
            }
        }
        let from = senders[next() as usize % senders.len()];
        let _ = from.send_to(&m, net.siplb());
        sent += 1;
    }
    siplb.assert_alive();
    for s in [&caller, &gw1, &gw2, &stranger] {
        s.set_nonblocking(false).unwrap();
        drain(s, QUIET);
    }
    let took = started.elapsed();
    eprintln!(
        "flood: {sent} datagrams in {took:?}; core:bad_msg_hdr {}, core:fwd_requests {}, \
         core:fwd_replies {}, core:truncated {}, core:hand_offs {}",
        siplb.stat("core:bad_msg_hdr"),
        siplb.stat("core:fwd_requests"),
        siplb.stat("core:fwd_replies"),
        siplb.stat("core:truncated"),
        siplb.stat("core:hand_offs"),
    );
    assert!(siplb.stat("core:bad_msg_hdr") > 100, "the flood was read");

    let inv = invite(&me, &net.siplb(), "after-the-flood@x", "after");
    caller.send_to(&inv, net.siplb()).unwrap();
    let got = at_gateways(&gw1, &gw2);
    let fwd: Vec<_> = got
        .iter()
        .filter(|(_, m)| text(m).contains("Call-ID: after-the-flood@x"))
        .collect();
    assert_eq!(fwd.len(), 1, "the clean INVITE forwarded once");
    assert!(text(&fwd[0].1).starts_with("INVITE "));
    siplb.assert_alive();
    assert!(!siplb.log().contains("panicked"), "{}", siplb.log());
}

/// A ringing call at SIGTERM: siplb CANCELs it; the gateway never answers the CANCEL, so at
/// the end of `shutdown.bye_wait_ms` the caller gets siplb's own 487 instead of nothing.
#[test]
fn a_ringing_call_the_stop_cancels_gets_a_final_answer_even_from_a_silent_gateway() {
    let _g = serial();
    let net = Net::new(29);
    let (_dir, mut siplb) = start("stop-487", net, "[shutdown]\nbye_wait_ms = 500\n");
    let (caller, gw1, gw2) = peers(net);
    let me = caller.local_addr().unwrap().to_string();
    caller
        .send_to(
            &invite(&me, &net.siplb(), "stop-487@x", "z9hG4bK-s487"),
            net.siplb(),
        )
        .unwrap();
    let got = at_gateways(&gw1, &gw2);
    let (gw, fwd) = the_request(&got, "INVITE");
    gw.send_to(&respond(&fwd, 180, "Ringing", "gw1", ""), net.siplb())
        .unwrap();
    let ringing = drain(&caller, QUIET);
    assert_eq!(statuses(&ringing), [100, 180]);
    // SAFETY: a signal to the siplb this test started, by its PID.
    unsafe { libc::kill(siplb.pid() as i32, libc::SIGTERM) };
    // The gateway gets the CANCEL and says nothing.
    let cancel = drain(&gw, Duration::from_millis(400));
    assert!(
        cancel.iter().any(|(_, m)| m.starts_with(b"CANCEL ")),
        "{:?}",
        cancel.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    let status = siplb.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let answer = drain(&caller, Duration::from_millis(500));
    assert_eq!(
        statuses(&answer),
        [487],
        "{:?}",
        answer.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
}
