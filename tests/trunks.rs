//! Carrier trunks end to end: digest authentication towards a gateway that challenges
//! (401/407, MD5 and SHA-256, with and without qop); failover, `max_calls` and the gateway
//! algorithms are in `tests/trunks_failover.rs` — the real siplb binary, sipp callers and gateways, and gateways
//! written here over raw UDP where sipp cannot check what a test needs (sipp's `verifyauth`
//! reads `Authorization` only, never `Proxy-Authorization`, and knows MD5 only).
//!
//! Tests take `serial()` and the nets 96–99.

use siplb_tests::*;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "trunks_kit.rs"]
mod kit;
use kit::*;

// ---------------------------------------------------------------------------------------
// Digest authentication towards the trunks
// ---------------------------------------------------------------------------------------

/// A gateway that challenges every INVITE (sipp's `uas_auth.xml`: 401 MD5, sipp verifies the
/// credentials and every CSeq): 500 calls complete; each went out twice with CSeq 1 then 2;
/// the caller's ACK and BYE reached the gateway shifted (2 ACK, 3 BYE) and the answers came
/// back to the caller unshifted (`uac_cseq.xml` fails a call whose answer has another CSeq
/// than its request; sipp by itself matches answers by branch, never by CSeq number).
#[test]
fn a_challenging_trunk_gets_credentials_and_500_calls_complete_with_shifted_cseq() {
    let _g = serial();
    let net = Net::new(96);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}{}",
        gw(&net.gw(1), &creds(PASSWORD)),
        gw(&net.gw(2), &creds(PASSWORD)),
    );
    let (dir, mut siplb) = start("auth", &conf(net, "", &sets));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_auth.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_auth.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac_cseq.xml", 500, 100, &[], 120);
    let (s1, c1) = uas1.finish();
    let (s2, c2) = uas2.finish();
    siplb.assert_alive();
    let errors = std::fs::read_to_string(dir.0.join("uas1_errors.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.0.join("uas2_errors.log")).unwrap_or_default();
    assert_eq!(
        (uac.ok(), uac.failed()),
        (500, 0),
        "uac: {:?}; gateway errors: {errors}",
        uac.fields
    );
    assert_eq!(
        (s1.ok() + s2.ok(), s1.failed() + s2.failed()),
        (500, 0),
        "the gateways accepted the credentials and every CSeq; errors: {errors}"
    );
    assert!(s1.ok() > 0 && s2.ok() > 0, "both gateways challenged");
    let invites = count(&c1, "_INVITE_Recv") + count(&c2, "_INVITE_Recv");
    let byes = count(&c1, "_BYE_Recv") + count(&c2, "_BYE_Recv");
    assert_eq!(
        (invites, byes),
        (1000, 500),
        "two INVITEs and one BYE a call"
    );
    assert_eq!(siplb.stat("uac:auth_resends"), 500);
}

/// The realm, nonce and challenge of the raw gateways.
const REALM: &str = "raw.example";
const NONCE: &str = "b1c2d3e4f5a6";

/// A gateway that challenges INVITEs without credentials with `challenge` (status and
/// header line), answers those with the right ones 200 (and with wrong ones 403), and BYEs
/// 200; a failed check is kept in `bad`.
fn answering_gateway(
    addr: &str,
    status: u16,
    challenge: String,
    auth_header: &'static str,
    algorithm: &'static str,
    bad: Arc<std::sync::Mutex<Vec<String>>>,
) -> RawGw {
    let contact = addr.to_string();
    RawGw::start(addr, move |m| match method(m).as_deref() {
        Some("INVITE") if header(m, auth_header).is_none() => {
            let reason = if status == 401 {
                "Unauthorized"
            } else {
                "Proxy Authentication Required"
            };
            vec![respond(m, status, reason, "gw-1", &challenge)]
        }
        Some("INVITE") => match check_digest(m, auth_header, REALM, NONCE, algorithm, PASSWORD) {
            Ok(_) => vec![ok_200(m, &contact)],
            Err(e) => {
                bad.lock().unwrap().push(e);
                vec![respond(m, 403, "Bad Credentials", "gw-2", "")]
            }
        },
        Some("BYE") => vec![respond(m, 200, "OK", "gw-2", "")],
        _ => vec![],
    })
}

/// SHA-256 and a challenge without qop (RFC 8760, RFC 2069 style): a raw gateway sends 401
/// `WWW-Authenticate: Digest ..., algorithm=SHA-256`, computes the expected response itself
/// and answers 200 only to the right one; the calls complete, and the `Authorization` says
/// SHA-256 and carries no qop, nc or cnonce.
#[test]
fn a_sha256_challenge_without_qop_is_answered_and_the_calls_complete() {
    let _g = serial();
    let net = Net::new(97);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}",
        gw(&net.gw(1), &creds(PASSWORD))
    );
    let (dir, mut siplb) = start("sha256", &conf(net, "", &sets));
    let bad = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gw1 = answering_gateway(
        &net.gw(1),
        401,
        format!(
            "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", algorithm=SHA-256\r\n"
        ),
        "Authorization",
        "SHA-256",
        bad.clone(),
    );
    let uac = Sipp::caller(&dir.0, net, "uac_cseq.xml", 20, 20, &[], 60);
    let got = gw1.finish();
    siplb.assert_alive();
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    assert_eq!((uac.ok(), uac.failed()), (20, 0), "uac: {:?}", uac.fields);
    let invites = requests(&got, "INVITE");
    assert_eq!(invites.len(), 40, "each INVITE twice");
    for inv in invites
        .iter()
        .filter(|m| header(m, "Authorization").is_some())
    {
        let p = digest_params(&header(inv, "Authorization").unwrap());
        assert_eq!(p.get("algorithm").map(String::as_str), Some("SHA-256"));
        assert!(
            !p.contains_key("qop") && !p.contains_key("nc") && !p.contains_key("cnonce"),
            "no qop offered, none answered: {p:?}"
        );
        assert_eq!(cseq(inv), (2, "INVITE".into()));
    }
    assert_eq!(requests(&got, "BYE").len(), 20);
    assert!(
        requests(&got, "BYE").iter().all(|b| cseq(b).0 == 3),
        "BYEs shifted"
    );
    assert_eq!(siplb.stat("uac:auth_resends"), 20);
}

/// Wrong credentials (the config's password is not the trunk's): the trunk challenges the
/// resent INVITE again; that second 407 goes to the caller, once; no loop: the gateway sees
/// exactly two INVITEs a call; and no transaction or dialog is left behind.
#[test]
fn wrong_credentials_give_the_caller_the_407_once_without_a_loop() {
    let _g = serial();
    let net = Net::new(98);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}",
        gw(&net.gw(1), &creds("not-the-secret"))
    );
    let (_dir, mut siplb) = start("wrongpw", &conf(net, "", &sets));
    let challenge = format!(
        "Proxy-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", qop=\"auth\", algorithm=MD5\r\n"
    );
    let gw1 = RawGw::start(&net.gw(1), move |m| match method(m).as_deref() {
        Some("INVITE") => vec![respond(
            m,
            407,
            "Proxy Authentication Required",
            "gw-1",
            &challenge,
        )],
        _ => vec![],
    });
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let calls = 5;
    for i in 0..calls {
        let got = call_raw(&caller, net, &format!("wrong-{i}"), &format!("w{i}"));
        let finals: Vec<u16> = got
            .iter()
            .filter_map(|m| status_of(m))
            .filter(|s| *s >= 200)
            .collect();
        assert_eq!(
            finals,
            [407],
            "call {i}: {:?}",
            got.iter().map(|m| text(m)).collect::<Vec<_>>()
        );
        let r = got.iter().find(|m| status_of(m) == Some(407)).unwrap();
        assert_eq!(cseq(r), (1, "INVITE".into()), "the caller's CSeq");
        assert!(header(r, "Proxy-Authenticate").is_some());
    }
    std::thread::sleep(Duration::from_millis(500));
    eventually(40, "transactions and dialogs end", || {
        let st = siplb.stats();
        st["tmx:inuse_transactions"] == 0 && st["dialog:active_dialogs"] == 0
    });
    let got = gw1.finish();
    siplb.assert_alive();
    let invites = requests(&got, "INVITE");
    for i in 0..calls {
        let of_call: Vec<_> = invites
            .iter()
            .filter(|m| call_id(m) == format!("wrong-{i}"))
            .collect();
        assert_eq!(of_call.len(), 2, "call {i}: one INVITE, one resend");
        assert_eq!(cseq(of_call[0]).0, 1);
        assert_eq!(cseq(of_call[1]).0, 2);
        assert!(header(of_call[1], "Proxy-Authorization").is_some());
        // The resend was computed right; only the password is wrong.
        check_digest(
            of_call[1],
            "Proxy-Authorization",
            REALM,
            NONCE,
            "MD5",
            "not-the-secret",
        )
        .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    assert_eq!(requests(&got, "ACK").len(), 2 * calls, "each 407 ACKed");
    assert_eq!(siplb.stat("uac:auth_resends"), calls as u64);
}

/// A CANCEL of an INVITE that went again with credentials (407, MD5, qop=auth, checked
/// here) reaches the gateway with the resent INVITE's branch and CSeq number; the caller
/// (sipp `uac_cancel.xml`) gets 200 and 487.
#[test]
fn cancel_of_an_authenticated_invite_carries_its_branch_and_cseq() {
    let _g = serial();
    let net = Net::new(99);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}",
        gw(&net.gw(1), &creds(PASSWORD))
    );
    let (dir, mut siplb) = start("cancel", &conf(net, "", &sets));
    let challenge = format!(
        "Proxy-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", qop=\"auth\", algorithm=MD5\r\n"
    );
    let bad = Arc::new(std::sync::Mutex::new(Vec::new()));
    let bad2 = bad.clone();
    let mut ringing: HashMap<String, Vec<u8>> = HashMap::new();
    let gw1 = RawGw::start(&net.gw(1), move |m| match method(m).as_deref() {
        Some("INVITE") if header(m, "Proxy-Authorization").is_none() => vec![respond(
            m,
            407,
            "Proxy Authentication Required",
            "gw-1",
            &challenge,
        )],
        Some("INVITE") => {
            if let Err(e) = check_digest(m, "Proxy-Authorization", REALM, NONCE, "MD5", PASSWORD) {
                bad2.lock().unwrap().push(e);
            }
            ringing.insert(call_id(m), m.to_vec());
            vec![respond(m, 180, "Ringing", "gw-2", "")]
        }
        Some("CANCEL") => {
            let mut out = vec![respond(m, 200, "OK", "gw-2", "")];
            if let Some(inv) = ringing.get(&call_id(m)) {
                out.push(respond(inv, 487, "Request Terminated", "gw-2", ""));
            }
            out
        }
        _ => vec![],
    });
    let uac = Sipp::caller(&dir.0, net, "uac_cancel.xml", 10, 10, &[], 60);
    std::thread::sleep(Duration::from_millis(300));
    let got = gw1.finish();
    siplb.assert_alive();
    assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
    assert_eq!((uac.ok(), uac.failed()), (10, 0), "uac: {:?}", uac.fields);
    let cancels = requests(&got, "CANCEL");
    assert_eq!(cancels.len(), 10, "one CANCEL a call");
    for c in cancels {
        let resent = requests(&got, "INVITE")
            .into_iter()
            .find(|i| call_id(i) == call_id(c) && header(i, "Proxy-Authorization").is_some())
            .expect("the resent INVITE");
        let p = digest_params(&header(resent, "Proxy-Authorization").unwrap());
        assert_eq!(p.get("qop").map(String::as_str), Some("auth"), "{p:?}");
        assert_eq!(branch(c), branch(resent), "the CANCEL's branch");
        assert_eq!(
            cseq(c),
            (cseq(resent).0, "CANCEL".into()),
            "the CANCEL's CSeq"
        );
        assert_eq!(cseq(resent).0, 2);
    }
    // The gateway's 487 was ACKed by siplb (same branch as the resent INVITE).
    let acks = requests(&got, "ACK");
    assert_eq!(acks.len(), 20, "the ACKs of the 407s and of the 487s");
}

/// An in-dialog request of the raw caller after the 200 `ok` it got: to the gateway's
/// Contact, along the Record-Route (reversed: one entry here), From and To of the dialog.
fn caller_in_dialog(ok: &[u8], net: Net, m: &str, cseq: u32, br: &str) -> Vec<u8> {
    let contact = header(ok, "Contact").expect("Contact");
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_string();
    let mut s = format!("{m} {uri} SIP/2.0\r\n");
    s += &format!(
        "Via: SIP/2.0/UDP {}:{};branch=z9hG4bK{br}\r\n",
        net.ip(),
        net.caller_port()
    );
    for rr in header_lines(ok, "Record-Route").iter().rev() {
        s += &rr.replacen("Record-Route", "Route", 1);
    }
    s += &header_lines(ok, "From")[0];
    s += &header_lines(ok, "To")[0];
    s += &header_lines(ok, "Call-ID")[0];
    s += &format!("CSeq: {cseq} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// The first message `sock` gets within 5 s that `pred` accepts (others are passed over).
fn wait_for(sock: &UdpSocket, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && pred(&buf[..n])
        {
            return buf[..n].to_vec();
        }
    }
    panic!("nothing expected arrived");
}

/// A re-INVITE inside an authenticated dialog works from either side: the caller's goes to the
/// trunk shifted (and, challenged again, is answered with credentials and shifted once more),
/// its 200 comes back with the caller's CSeq; the trunk's own re-INVITE reaches the caller
/// with the trunk's CSeq, untouched.
#[test]
fn a_reinvite_inside_an_authenticated_dialog_works_from_either_side() {
    let _g = serial();
    let net = Net::new(106);
    let sets = format!(
        "[[gateway_set]]\nname = \"trunk\"\n{}",
        gw(&net.gw(1), &creds(PASSWORD))
    );
    let (_dir, mut siplb) = start("reinvite", &conf(net, "", &sets));
    let challenge = format!(
        "Proxy-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", qop=\"auth\", algorithm=MD5\r\n"
    );
    let contact = net.gw(1);
    let gw_addr = net.gw(1);
    let mut first_invite: Option<Vec<u8>> = None;
    let gw1 = RawGw::start(&net.gw(1), move |m| match method(m).as_deref() {
        Some("INVITE") if header(m, "Proxy-Authorization").is_none() => vec![respond(
            m,
            407,
            "Proxy Authentication Required",
            "gw-1",
            &challenge,
        )],
        Some("INVITE") => {
            if first_invite.is_none() {
                first_invite = Some(m.to_vec());
            }
            vec![ok_200(m, &contact)]
        }
        // The ACK of the caller's re-INVITE: the trunk sends its own re-INVITE (CSeq 10).
        Some("ACK") if cseq(m).0 >= 4 => {
            let inv = first_invite.as_ref().expect("the dialog's INVITE");
            let caller_contact = header(inv, "Contact").unwrap_or_default();
            let uri = caller_contact
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let mut s = format!("INVITE {uri} SIP/2.0\r\n");
            s += &format!("Via: SIP/2.0/UDP {gw_addr};branch=z9hG4bKgwre\r\n");
            for rr in header_lines(inv, "Record-Route") {
                s += &rr.replacen("Record-Route", "Route", 1);
            }
            let to = header_lines(inv, "To")[0]
                .trim_end()
                .replacen("To:", "From:", 1);
            s += &format!("{to};tag=gw-2\r\n");
            s += &header_lines(inv, "From")[0].replacen("From:", "To:", 1);
            s += &header_lines(inv, "Call-ID")[0];
            s += &format!(
                "CSeq: 10 INVITE\r\nContact: <sip:gw@{gw_addr}>\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            vec![s.into_bytes()]
        }
        _ => vec![],
    });
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let got = call_raw(&caller, net, "reinv-1", "c1");
    let ok = got
        .iter()
        .find(|m| status_of(m) == Some(200))
        .expect("the call is answered")
        .clone();
    assert_eq!(cseq(&ok), (1, "INVITE".into()));
    caller
        .send_to(&caller_in_dialog(&ok, net, "ACK", 1, "a1"), net.siplb())
        .expect("ACK");
    // The caller's re-INVITE, CSeq 2.
    caller
        .send_to(&caller_in_dialog(&ok, net, "INVITE", 2, "r1"), net.siplb())
        .expect("re-INVITE");
    let re_ok = wait_for(&caller, |m| {
        status_of(m) == Some(200) && cseq(m).1 == "INVITE" && cseq(m).0 == 2
    });
    caller
        .send_to(&caller_in_dialog(&re_ok, net, "ACK", 2, "a2"), net.siplb())
        .expect("ACK of the re-INVITE");
    // The trunk's re-INVITE reaches the caller with the trunk's CSeq.
    let from_trunk = wait_for(&caller, |m| method(m).as_deref() == Some("INVITE"));
    assert_eq!(cseq(&from_trunk), (10, "INVITE".into()));
    caller
        .send_to(&respond(&from_trunk, 200, "OK", "x", ""), net.siplb())
        .expect("200 to the trunk");
    std::thread::sleep(Duration::from_millis(500));
    let at_gw = gw1.finish();
    siplb.assert_alive();
    let invites: Vec<(u32, bool)> = requests(&at_gw, "INVITE")
        .iter()
        .map(|m| (cseq(m).0, header(m, "Proxy-Authorization").is_some()))
        .collect();
    // 1 challenged, 2 with credentials; the caller's re-INVITE (2) as 3, challenged, as 4.
    assert_eq!(
        invites,
        [(1, false), (2, true), (3, false), (4, true)],
        "{invites:?}"
    );
    let acks: Vec<u32> = requests(&at_gw, "ACK").iter().map(|m| cseq(m).0).collect();
    assert!(
        acks.contains(&2) && acks.contains(&4),
        "the caller's ACKs shifted: {acks:?}"
    );
    let back = at_gw
        .iter()
        .find(|m| status_of(m) == Some(200) && cseq(m) == (10, "INVITE".into()));
    assert!(
        back.is_some(),
        "the caller's 200 reached the trunk with CSeq 10"
    );
}
