//! What the trunk tests share (`tests/trunks.rs`, `tests/trunks_failover.rs`): configs, the
//! sipp counters they read, and gateways written over raw UDP.

#![allow(dead_code)]

use md5::Md5;
use sha2::{Digest, Sha256};
use siplb_tests::*;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_siplb");

pub(crate) const USER: &str = "siplb";
pub(crate) const PASSWORD: &str = "trunk-secret";

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// A whole config for `net`: two workers, customer `local` = the test's address, `top`
/// (sections such as `[timers]`) and then `sets` (the `[[gateway_set]]`s and `[[route]]`s).
pub(crate) fn conf(net: Net, top: &str, sets: &str) -> String {
    format!(
        r#"{head}
{top}

[[customer]]
name = "local"
sources = ["{ip}/32"]

{sets}
"#,
        head = config_head(net, 2),
        ip = net.ip(),
    )
}

/// A `[[gateway_set.gateway]]` table for `addr` with `extra` keys.
pub(crate) fn gw(addr: &str, extra: &str) -> String {
    format!("[[gateway_set.gateway]]\naddress = \"{addr}\"\n{extra}\n")
}

/// The keys of a gateway that authenticates as siplb/trunk-secret.
pub(crate) fn creds(password: &str) -> String {
    format!("user = \"{USER}\"\npassword = \"{password}\"\n")
}

pub(crate) fn start(tag: &str, text: &str) -> (TempDir, Siplb) {
    require_sipp();
    let dir = TempDir::new(tag);
    let siplb = Siplb::start(BIN, &dir.0, text);
    (dir, siplb)
}

/// Waits (at most `secs`) until `f` holds.
pub(crate) fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sum of the `-trace_counts` columns of a sipp UAS that end with `suffix` (such as
/// `_INVITE_Recv`: every step that receives an INVITE).
pub(crate) fn count(c: &SippStats, suffix: &str) -> u64 {
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
pub(crate) fn method(m: &[u8]) -> Option<String> {
    if m.starts_with(b"SIP/2.0") {
        return None;
    }
    Some(text(m).split(' ').next()?.to_string())
}

pub(crate) fn request_uri(m: &[u8]) -> String {
    text(m).split(' ').nth(1).unwrap_or("").to_string()
}

/// The value of the first header `name`.
pub(crate) fn header(m: &[u8], name: &str) -> Option<String> {
    let line = header_lines(m, name).into_iter().next()?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// CSeq number and method.
pub(crate) fn cseq(m: &[u8]) -> (u32, String) {
    let v = header(m, "CSeq").expect("CSeq");
    let (n, meth) = v.split_once(' ').expect("CSeq n METHOD");
    (n.trim().parse().expect("CSeq number"), meth.trim().into())
}

pub(crate) fn call_id(m: &[u8]) -> String {
    header(m, "Call-ID").expect("Call-ID")
}

/// The branch of the top Via.
pub(crate) fn branch(m: &[u8]) -> String {
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
pub(crate) fn digest_params(value: &str) -> HashMap<String, String> {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest hash of `s` by the algorithm's name (RFC 2617, RFC 8760).
pub(crate) fn h(algorithm: &str, s: &str) -> String {
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
pub(crate) fn check_digest(
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
pub(crate) struct RawGw {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Vec<u8>>>,
}

impl RawGw {
    pub(crate) fn start(
        addr: &str,
        mut on: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> RawGw {
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
    pub(crate) fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("gateway thread")
    }
}

/// The requests of `got` with method `m`.
pub(crate) fn requests<'a>(got: &'a [Vec<u8>], m: &str) -> Vec<&'a Vec<u8>> {
    got.iter()
        .filter(|x| method(x).as_deref() == Some(m))
        .collect()
}

/// A 200 to an INVITE, with a Contact (so that the caller's ACK and BYE come back here).
pub(crate) fn ok_200(req: &[u8], contact: &str) -> Vec<u8> {
    respond(
        req,
        200,
        "OK",
        "gw-2",
        &format!("Contact: <sip:gw@{contact}>\r\n"),
    )
}

/// The hop-by-hop ACK of a caller for the non-2xx final answer `resp` to `inv`.
pub(crate) fn ack_for(inv: &[u8], resp: &[u8]) -> Vec<u8> {
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
pub(crate) fn call_raw(caller: &UdpSocket, net: Net, call_id: &str, br: &str) -> Vec<Vec<u8>> {
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
