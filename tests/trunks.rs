//! Carrier trunks end to end (issue 13): digest authentication towards a gateway that
//! challenges (401/407, MD5 and SHA-256, with and without qop), failover inside the
//! transaction (503, every gateway 503, a silent gateway), `max_calls`, and the weighted and
//! Call-ID hash algorithms — the real siplb binary, sipp callers and gateways, and gateways
//! written here over raw UDP where sipp cannot check what a test needs (sipp's `verifyauth`
//! reads `Authorization` only, never `Proxy-Authorization`, and knows MD5 only).
//!
//! Tests take `serial()` and the nets 96–99 and 100–106.

use md5::Md5;
use sha2::{Digest, Sha256};
use siplb_tests::*;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

const USER: &str = "siplb";
const PASSWORD: &str = "trunk-secret";

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// A whole config for `net`: two workers, customer `local` = the test's address, `top`
/// (sections such as `[timers]`) and then `sets` (the `[[gateway_set]]`s and `[[route]]`s).
fn conf(net: Net, top: &str, sets: &str) -> String {
    format!(
        r#"[listen]
sip = ["{siplb}"]

[workers]
count = 2
pin = false

[steering]
mode = "off"
hash_key = 12345

[control]
socket = "siplb.ctl"

{top}

[[customer]]
name = "local"
sources = ["{ip}/32"]

{sets}
"#,
        siplb = net.siplb(),
        ip = net.ip(),
    )
}

/// A `[[gateway_set.gateway]]` table for `addr` with `extra` keys.
fn gw(addr: &str, extra: &str) -> String {
    format!("[[gateway_set.gateway]]\naddress = \"{addr}\"\n{extra}\n")
}

/// The keys of a gateway that authenticates as siplb/trunk-secret.
fn creds(password: &str) -> String {
    format!("user = \"{USER}\"\npassword = \"{password}\"\n")
}

fn start(tag: &str, text: &str) -> (TempDir, Siplb) {
    require_sipp();
    let dir = TempDir::new(tag);
    let siplb = Siplb::start(BIN, &dir.0, text);
    (dir, siplb)
}

/// Waits (at most `secs`) until `f` holds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sum of the `-trace_counts` columns of a sipp UAS that end with `suffix` (such as
/// `_INVITE_Recv`: every step that receives an INVITE).
fn count(c: &SippStats, suffix: &str) -> u64 {
    c.fields
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
        .sum()
}

// ---------------------------------------------------------------------------------------
// Reading messages
// ---------------------------------------------------------------------------------------

/// The method of a request (None for a response).
fn method(m: &[u8]) -> Option<String> {
    if m.starts_with(b"SIP/2.0") {
        return None;
    }
    Some(text(m).split(' ').next()?.to_string())
}

fn request_uri(m: &[u8]) -> String {
    text(m).split(' ').nth(1).unwrap_or("").to_string()
}

/// The value of the first header `name`.
fn header(m: &[u8], name: &str) -> Option<String> {
    let line = header_lines(m, name).into_iter().next()?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// CSeq number and method.
fn cseq(m: &[u8]) -> (u32, String) {
    let v = header(m, "CSeq").expect("CSeq");
    let (n, meth) = v.split_once(' ').expect("CSeq n METHOD");
    (n.trim().parse().expect("CSeq number"), meth.trim().into())
}

fn call_id(m: &[u8]) -> String {
    header(m, "Call-ID").expect("Call-ID")
}

/// The branch of the top Via.
fn branch(m: &[u8]) -> String {
    let via = header(m, "Via").expect("Via");
    via.split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .expect("branch")
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

/// The parameters of a Digest header value (`Digest a="b", c=d`), names lower-cased.
fn digest_params(value: &str) -> HashMap<String, String> {
    let rest = value
        .trim()
        .strip_prefix("Digest")
        .unwrap_or_else(|| panic!("not Digest: {value}"));
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() || chars.next().is_none() {
            break;
        }
        let val: String = if chars.peek() == Some(&'"') {
            chars.next();
            let v = std::iter::from_fn(|| chars.next_if(|c| *c != '"')).collect();
            chars.next();
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        out.insert(name.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest hash of `s` by the algorithm's name (RFC 2617, RFC 8760).
fn h(algorithm: &str, s: &str) -> String {
    match algorithm.to_ascii_uppercase().as_str() {
        "MD5" => hex(&Md5::digest(s.as_bytes())),
        "SHA-256" => hex(&Sha256::digest(s.as_bytes())),
        a => panic!("algorithm {a}"),
    }
}

/// Checks the credentials of request `req` in header `name` (`Authorization` or
/// `Proxy-Authorization`) against user/password, computing the digest here (independently
/// of siplb's `digest_auth`): the user, the realm and nonce the challenge named, the
/// Request-URI, the algorithm, and the response. Returns the header's parameters.
fn check_digest(
    req: &[u8],
    name: &str,
    realm: &str,
    nonce: &str,
    algorithm: &str,
    password: &str,
) -> Result<HashMap<String, String>, String> {
    let value = header(req, name).ok_or_else(|| format!("no {name}"))?;
    let p = digest_params(&value);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let want = [
        ("username", USER),
        ("realm", realm),
        ("nonce", nonce),
        ("uri", &request_uri(req)),
    ];
    for (k, v) in want {
        if get(k) != v {
            return Err(format!("{k} = {:?}, want {v:?} in {value}", get(k)));
        }
    }
    let algo = p.get("algorithm").map_or("MD5", String::as_str);
    if !algo.eq_ignore_ascii_case(algorithm) {
        return Err(format!("algorithm {algo}, want {algorithm}: {value}"));
    }
    let ha1 = h(algorithm, &format!("{USER}:{realm}:{password}"));
    let ha2 = h(
        algorithm,
        &format!("{}:{}", method(req).unwrap(), request_uri(req)),
    );
    let expected = match p.get("qop") {
        None => h(algorithm, &format!("{ha1}:{nonce}:{ha2}")),
        Some(qop) => h(
            algorithm,
            &format!("{ha1}:{nonce}:{}:{}:{qop}:{ha2}", get("nc"), get("cnonce")),
        ),
    };
    if get("response") != expected {
        return Err(format!("response {}, want {expected}", get("response")));
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------
// Raw UDP gateways and callers
// ---------------------------------------------------------------------------------------

/// A gateway written in the test: a thread that answers every datagram it receives with
/// what `on` returns (sent back to the source), and keeps them all.
struct RawGw {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Vec<u8>>>,
}

impl RawGw {
    fn start(addr: &str, mut on: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> RawGw {
        let sock = udp(addr);
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let m = buf[..n].to_vec();
                        for reply in on(&m) {
                            sock.send_to(&reply, from).expect("send");
                        }
                        got.push(m);
                    }
                    Err(_) if flag.load(Ordering::Relaxed) => return got,
                    Err(_) => {}
                }
            }
        });
        RawGw { stop, handle }
    }

    /// Stops it and returns everything it received.
    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("gateway thread")
    }
}

/// The requests of `got` with method `m`.
fn requests<'a>(got: &'a [Vec<u8>], m: &str) -> Vec<&'a Vec<u8>> {
    got.iter()
        .filter(|x| method(x).as_deref() == Some(m))
        .collect()
}

/// A 200 to an INVITE, with a Contact (so that the caller's ACK and BYE come back here).
fn ok_200(req: &[u8], contact: &str) -> Vec<u8> {
    respond(
        req,
        200,
        "OK",
        "gw-2",
        &format!("Contact: <sip:gw@{contact}>\r\n"),
    )
}

/// The hop-by-hop ACK of a caller for the non-2xx final answer `resp` to `inv`.
fn ack_for(inv: &[u8], resp: &[u8]) -> Vec<u8> {
    let mut s = format!("ACK {} SIP/2.0\r\n", request_uri(inv));
    s += &header_lines(inv, "Via")[0];
    s += &header_lines(inv, "From")[0];
    s += &header_lines(resp, "To")[0];
    s += &header_lines(inv, "Call-ID")[0];
    s += "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    s.into_bytes()
}

/// A raw caller's INVITE `call_id` to siplb: everything that came back until its final
/// answer (at most 10 s), which is ACKed when it is not a 2xx.
fn call_raw(caller: &UdpSocket, net: Net, call_id: &str, br: &str) -> Vec<Vec<u8>> {
    let from = format!("{}:{}", net.ip(), net.caller_port());
    let inv = invite(&from, &net.siplb(), call_id, br);
    caller.send_to(&inv, net.siplb()).expect("send INVITE");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    caller
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while Instant::now() < deadline {
        let Ok((n, _)) = caller.recv_from(&mut buf) else {
            continue;
        };
        let m = buf[..n].to_vec();
        let fin = status_of(&m).is_some_and(|s| s >= 200);
        if fin && status_of(&m) >= Some(300) {
            caller
                .send_to(&ack_for(&inv, &m), net.siplb())
                .expect("ACK");
        }
        got.push(m);
        if fin {
            // Anything more (a retransmitted or second final answer) arrives here too.
            got.extend(
                drain(caller, Duration::from_millis(700))
                    .into_iter()
                    .map(|x| x.1),
            );
            return got;
        }
    }
    panic!(
        "{call_id}: no final answer; got {:?}",
        got.iter().map(|m| text(m)).collect::<Vec<_>>()
    );
}

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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac_cseq.xml",
        500,
        100,
        &[],
        120,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac_cseq.xml",
        20,
        20,
        &[],
        60,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac_cancel.xml",
        10,
        10,
        &[],
        60,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        50,
        25,
        &[],
        60,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        20,
        10,
        &[],
        60,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        4000,
        400,
        &[],
        180,
    );
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
    let uac = Sipp::uac(
        &dir.0,
        "uac",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        1000,
        200,
        &[],
        120,
    );
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
