//! The requests siplb originates itself: a BYE to one side of a dialog it ends (RFC 3261
//! §15.1.1), the CANCEL of an INVITE it forwarded (§9.1), the ACK of a non-2xx final it
//! received (§17.1.1.3), and the branches of everything it sends downstream. Builders only:
//! the shard decides when and keeps the transactions.

use super::dialogs::Dialog;
use super::target::Target;
use super::via::{MAGIC_COOKIE, write_via};
use crate::sip::value::{CommaList, Via, host_ip, param};
use crate::sip::{HeaderName, Method, SipMsg};
use siphasher::sip128::{Hasher128, SipHasher13};
use siplb_common::owner_hash;
use std::hash::Hasher;
use std::io::Write;
use std::net::SocketAddr;

/// Branches of what siplb sends downstream. Each is a keyed hash (SipHash-1-3, 128 bits,
/// under a secret key chosen at start), so that nobody who sees siplb's Vias can guess the
/// branch of another transaction:
///
/// - a forwarded request's branch is computed from the request as received (RFC 3261 §16.6
///   step 8): Request-URI, From and To tags, Call-ID, CSeq, the top Via's branch and sent-by,
///   and the attempt (each try of a request gets a branch of its own). The same request
///   always gets the same branch, which is what loop detection checks (§16.3 step 4);
/// - a request siplb originates (a BYE) hashes the shard and a counter.
#[derive(Debug)]
pub struct Branches {
    key: [u64; 2],
    shard: u32,
    next: u64,
}

/// What tells a branch siplb computed for a forwarded request (the attempt follows it).
const FORWARDED: &[u8] = b"-f";
/// What tells the branch of a request siplb originated.
const ORIGINATED: &[u8] = b"-o";

impl Branches {
    pub fn new(key: [u64; 2], shard: u32) -> Branches {
        Branches {
            key,
            shard,
            next: 1,
        }
    }

    fn hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.key[0], self.key[1])
    }

    /// The branch of a request siplb originates, into `out`.
    pub fn next(&mut self, out: &mut Vec<u8>) {
        let mut h = self.hasher();
        h.write_u32(self.shard);
        h.write_u64(self.next);
        self.next += 1;
        out.clear();
        out.extend_from_slice(MAGIC_COOKIE);
        out.extend_from_slice(ORIGINATED);
        let _ = write!(out, "{:032x}", h.finish128().as_u128());
    }

    /// The branch of request `msg` (as received) forwarded for the `attempt`-th time (0 for
    /// the first), into `out`.
    pub fn forwarded(&self, msg: &SipMsg<'_>, attempt: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(MAGIC_COOKIE);
        out.extend_from_slice(FORWARDED);
        let h = self.request_hash(msg, &msg.top_via, attempt);
        let _ = write!(out, "{h:032x}.{attempt:x}");
    }

    /// The hash of `msg` as it was when its top Via was `via`.
    fn request_hash(&self, msg: &SipMsg<'_>, via: &Via, attempt: u32) -> u128 {
        let buf = msg.buf;
        let mut h = self.hasher();
        let mut field = |b: &[u8]| {
            h.write_usize(b.len());
            h.write(b);
        };
        field(msg.request_uri().map_or(&b""[..], |u| u.of(buf)));
        field(msg.from_tag().unwrap_or(b""));
        field(msg.to_tag().unwrap_or(b""));
        field(msg.call_id());
        field(msg.cseq_method_span.of(buf));
        field(param(buf, via.params, b"branch").map_or(&b""[..], |b| b.of(buf)));
        field(via.host.of(buf));
        h.write_u32(msg.cseq);
        h.write_u16(via.port.unwrap_or(0));
        h.write_u32(attempt);
        h.finish128().as_u128()
    }

    /// Whether `msg` has passed through siplb before, unchanged: one of its Vias names siplb
    /// (`local`) with the branch siplb computes for the request as it was then, when the Via
    /// below it was on top (RFC 3261 §16.3 step 4). A spiral — the same request back with
    /// another Request-URI — gets another hash and is not a loop.
    pub fn is_loop(&self, msg: &SipMsg<'_>, local: SocketAddr) -> bool {
        if msg.via_count() < 2 {
            return false;
        }
        let buf = msg.buf;
        let mut vias = msg
            .headers_named(HeaderName::Via)
            .flat_map(|(_, h)| CommaList::new(buf, h.value()).filter_map(Result::ok))
            .filter_map(|el| Via::parse(buf, el).ok())
            .peekable();
        while let Some(via) = vias.next() {
            let ours = via.port.unwrap_or(5060) == local.port()
                && host_ip(via.host.of(buf)) == Some(local.ip());
            if !ours {
                continue;
            }
            let Some(below) = vias.peek() else {
                return false;
            };
            let Some(branch) = param(buf, via.params, b"branch").map(|b| b.of(buf)) else {
                continue;
            };
            let Some(rest) = branch
                .strip_prefix(MAGIC_COOKIE)
                .and_then(|b| b.strip_prefix(FORWARDED))
            else {
                continue;
            };
            let Some(dot) = rest.iter().position(|&b| b == b'.') else {
                continue;
            };
            let attempt = std::str::from_utf8(&rest[dot + 1..])
                .ok()
                .and_then(|a| u32::from_str_radix(a, 16).ok());
            let Some(attempt) = attempt else { continue };
            let mut want = Vec::with_capacity(32);
            let _ = write!(want, "{:032x}", self.request_hash(msg, below, attempt));
            if rest[..dot] == want[..] {
                return true;
            }
        }
        false
    }
}

/// The branch of the ACK of a 2xx forwarded end to end: derived from the incoming one, so
/// that its retransmissions carry the same branch.
pub fn ack_branch(msg: &SipMsg<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(MAGIC_COOKIE);
    let b = msg.branch().unwrap_or(msg.call_id());
    let _ = write!(out, "-a{:08x}{:08x}", owner_hash(1, b), owner_hash(2, b));
}

/// The To tag of replies siplb generates for `msg`: stable across its retransmissions.
pub fn local_tag(msg: &SipMsg<'_>) -> String {
    let b = msg.branch().unwrap_or(msg.call_id());
    format!("sl{:08x}", owner_hash(0x746167, b))
}

/// A BYE siplb sends on its own to one side of dialog `d`: toward the callee as the caller
/// would send it, toward the caller as the callee would. `cseq` is the sending side's next;
/// `headers` (each line with its CRLF) go before Content-Length: a `Reason`, an operator's.
pub fn bye(
    d: &Dialog,
    toward_callee: bool,
    local: Target,
    branch: &[u8],
    cseq: u32,
    headers: &[u8],
    out: &mut Vec<u8>,
) {
    let (leg, peer, from, to) = if toward_callee {
        (&d.callee_leg, d.gateway, &d.from, &d.to)
    } else {
        (&d.caller_leg, d.caller, &d.to, &d.from)
    };
    out.extend_from_slice(b"BYE ");
    if leg.contact.is_empty() {
        let _ = write!(out, "sip:{}", peer.addr);
    } else {
        out.extend_from_slice(&leg.contact);
    }
    out.extend_from_slice(b" SIP/2.0\r\n");
    write_via(out, local, branch);
    if !leg.route_set.is_empty() {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(&leg.route_set);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(&d.call_id);
    let _ = write!(out, "\r\nCSeq: {cseq} BYE\r\n");
    out.extend_from_slice(headers);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// A request siplb sends hop by hop for an INVITE it forwarded (`fwd`): CANCEL (§9.1) or the
/// ACK of a non-2xx final (§17.1.1.3, To from `response`). Same branch, Request-URI, Call-ID,
/// From, Route and CSeq number as the INVITE.
pub fn hop_request(
    fwd: &SipMsg<'_>,
    method: Method,
    response: Option<&SipMsg<'_>>,
    out: &mut Vec<u8>,
) {
    let buf = fwd.buf;
    let uri = fwd.request_uri().map_or(&b""[..], |u| u.of(buf));
    let m = method.as_str();
    let _ = write!(out, "{m} ");
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    // Our Via is the first element of the first Via line of what we forwarded.
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(fwd.top_via.span.of(buf));
    out.extend_from_slice(b"\r\n");
    for h in fwd.headers() {
        match h.name {
            HeaderName::From | HeaderName::CallId | HeaderName::Route => {
                out.extend_from_slice(h.line().of(buf))
            }
            // The response's To when it is one (a gateway's garbled To would make the ACK
            // garbage too; the branch matches the ACK to its transaction either way).
            HeaderName::To => match response
                .filter(|r| r.to_checked().is_some())
                .and_then(|r| Some((r, r.headers_named(HeaderName::To).next()?.1)))
            {
                Some((r, rh)) => out.extend_from_slice(rh.line().of(r.buf)),
                None => out.extend_from_slice(h.line().of(buf)),
            },
            _ => continue,
        }
        if !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    let _ = write!(
        out,
        "CSeq: {} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        fwd.cseq
    );
}

/// The leg a 2xx to siplb's INVITE made (`ok`), as siplb sends in it on its own: to the
/// 2xx's Contact (`contact`), along `route_set` (nearest hop first, may be empty).
pub struct AnsweredLeg<'a, 'b> {
    pub ok: &'a SipMsg<'b>,
    pub contact: &'a [u8],
    pub route_set: &'a [u8],
}

/// A request siplb sends on its own in `leg` as the caller would (the ACK of the 2xx, or a
/// BYE), with the 2xx's From, To and Call-ID.
pub fn in_answered_leg(
    leg: &AnsweredLeg<'_, '_>,
    method: Method,
    local: Target,
    branch: &[u8],
    cseq: u32,
    out: &mut Vec<u8>,
) {
    let (ok, contact, route_set) = (leg.ok, leg.contact, leg.route_set);
    let buf = ok.buf;
    let m = method.as_str();
    let _ = write!(out, "{m} ");
    out.extend_from_slice(contact);
    out.extend_from_slice(b" SIP/2.0\r\n");
    write_via(out, local, branch);
    if !route_set.is_empty() {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(route_set);
        out.extend_from_slice(b"\r\n");
    }
    for h in ok.headers() {
        if matches!(
            h.name,
            HeaderName::From | HeaderName::To | HeaderName::CallId
        ) {
            out.extend_from_slice(h.line().of(buf));
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    let _ = write!(
        out,
        "CSeq: {cseq} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::dialogs::tests_support::dialog;

    fn local() -> Target {
        Target::udp("127.0.0.1:5060".parse().unwrap())
    }

    #[test]
    fn branches_are_unique_and_carry_the_cookie() {
        let mut b = Branches::new([7, 8], 1);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        b.next(&mut x);
        b.next(&mut y);
        assert!(x.starts_with(MAGIC_COOKIE));
        assert_ne!(x, y);
    }

    const INVITE: &str = "INVITE sip:b@gw SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.5:5070;branch=z9hG4bK1\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 4 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn branch_of(b: &Branches, text: &str, attempt: u32) -> String {
        let mut out = Vec::new();
        b.forwarded(&SipMsg::parse(text.as_bytes()).unwrap(), attempt, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_forwarded_branch_depends_on_the_request_the_key_and_the_attempt() {
        let b = Branches::new([1, 2], 0);
        let first = branch_of(&b, INVITE, 0);
        assert_eq!(
            first,
            branch_of(&b, INVITE, 0),
            "the same request, the same branch"
        );
        assert_ne!(first, branch_of(&b, INVITE, 1));
        assert_ne!(
            first,
            branch_of(&b, &INVITE.replace("4 INVITE", "5 INVITE"), 0)
        );
        assert_ne!(first, branch_of(&Branches::new([1, 3], 0), INVITE, 0));
        assert!(first.starts_with("z9hG4bK-f"));
    }

    /// `text` as siplb at 127.0.0.1:5060 forwards it: its Via (with the branch it computes)
    /// on top.
    fn forwarded(b: &Branches, text: &str) -> String {
        let branch = branch_of(b, text, 0);
        text.replacen(
            "Via:",
            &format!("Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nVia:"),
            1,
        )
    }

    #[test]
    fn a_request_back_unchanged_is_a_loop_and_a_spiral_is_not() {
        let b = Branches::new([1, 2], 0);
        let local = "127.0.0.1:5060".parse().unwrap();
        let first = SipMsg::parse(INVITE.as_bytes()).unwrap();
        assert!(!b.is_loop(&first, local));
        let back = forwarded(&b, INVITE);
        // Another proxy on the way added its Via and a received parameter on the original.
        let back = back
            .replacen(
                "Via:",
                "Via: SIP/2.0/UDP 198.18.9.9;branch=z9hG4bKx\r\nVia:",
                1,
            )
            .replace("branch=z9hG4bK1", "branch=z9hG4bK1;received=198.18.0.5");
        assert!(b.is_loop(&SipMsg::parse(back.as_bytes()).unwrap(), local));
        let spiral = back.replace("INVITE sip:b@gw", "INVITE sip:b@other");
        assert!(!b.is_loop(&SipMsg::parse(spiral.as_bytes()).unwrap(), local));
        let other_key = Branches::new([9, 9], 0);
        assert!(!other_key.is_loop(&SipMsg::parse(back.as_bytes()).unwrap(), local));
    }

    #[test]
    fn a_bye_toward_the_callee_speaks_as_the_caller() {
        let mut d = dialog();
        d.callee_leg.contact = (*b"sip:b@10.0.0.1").into();
        let mut out = Vec::new();
        bye(
            &d,
            true,
            local(),
            b"z9hG4bK-x",
            2,
            b"Reason: SIP;cause=408\r\n",
            &mut out,
        );
        let m = SipMsg::parse(&out).unwrap();
        assert_eq!(m.method(), Some(Method::Bye));
        assert_eq!(
            m.request_uri().map(|u| u.of(&out)),
            Some(&b"sip:b@10.0.0.1"[..])
        );
        assert_eq!(m.from_tag(), Some(&b"a"[..]));
        assert_eq!(m.cseq, 2);
        assert!(String::from_utf8_lossy(&out).contains("Reason: SIP;cause=408\r\n"));
    }

    #[test]
    fn a_bye_toward_the_caller_speaks_as_the_callee_and_falls_back_to_its_address() {
        let mut d = dialog();
        d.caller_leg.contact = Box::default();
        let mut out = Vec::new();
        let extra = b"X-Why: operator\r\n";
        bye(&d, false, local(), b"z9hG4bK-x", 9, extra, &mut out);
        let m = SipMsg::parse(&out).unwrap();
        assert!(
            String::from_utf8_lossy(&out).contains("\r\nX-Why: operator\r\nContent-Length: 0\r\n")
        );
        assert_eq!(
            m.request_uri().map(|u| u.of(&out)),
            Some(&b"sip:127.0.0.1:5070"[..])
        );
        assert_eq!(m.to_tag(), Some(&b"a"[..]));
        assert_eq!(m.cseq, 9);
    }

    #[test]
    fn cancel_copies_the_invites_branch_uri_and_cseq() {
        let inv =
            b"INVITE sip:b@gw SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-s\r\n\
            Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n\
            Call-ID: c\r\nCSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n";
        let fwd = SipMsg::parse(inv).unwrap();
        let mut out = Vec::new();
        hop_request(&fwd, Method::Cancel, None, &mut out);
        let m = SipMsg::parse(&out).unwrap();
        assert_eq!(m.method(), Some(Method::Cancel));
        assert_eq!(m.branch(), Some(&b"z9hG4bK-s"[..]));
        assert_eq!((m.cseq, m.cseq_method), (4, Method::Cancel));
        assert_eq!(m.via_count(), 1);
    }
}
