//! The requests siplb originates itself: a BYE to one side of a dialog it ends (RFC 3261
//! §15.1.1), the CANCEL of an INVITE it forwarded (§9.1), the ACK of a non-2xx final it
//! received (§17.1.1.3), and the branches of everything it sends downstream. Builders only:
//! the shard decides when and keeps the transactions.

use super::dialogs::Dialog;
use super::target::Target;
use super::via::{MAGIC_COOKIE, write_via};
use crate::sip::{HeaderName, Method, SipMsg};
use siplb_common::owner_hash;
use std::io::Write;

/// Branches of one shard's client transactions: unique per run, shard and request.
#[derive(Debug)]
pub struct Branches {
    instance: u32,
    shard: u32,
    next: u64,
}

impl Branches {
    pub fn new(instance: u32, shard: u32) -> Branches {
        Branches {
            instance,
            shard,
            next: 1,
        }
    }

    /// A new branch, into `out`.
    pub fn next(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(MAGIC_COOKIE);
        let n = self.next;
        self.next += 1;
        let _ = write!(out, "-{:x}.{:x}.{:x}", self.instance, self.shard, n);
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
/// would send it, toward the caller as the callee would. `cseq` is the sending side's next.
pub fn bye(
    d: &Dialog,
    toward_callee: bool,
    local: Target,
    branch: &[u8],
    cseq: u32,
    reason: Option<&str>,
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
    if let Some(r) = reason {
        let _ = write!(out, "Reason: {r}\r\n");
    }
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
            HeaderName::To => match response {
                Some(r) => {
                    if let Some((_, rh)) = r.headers_named(HeaderName::To).next() {
                        out.extend_from_slice(rh.line().of(r.buf));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::dialogs::tests_support::dialog;

    fn local() -> Target {
        Target::udp("127.0.0.1:5060".parse().unwrap())
    }

    #[test]
    fn branches_are_unique_and_carry_the_cookie() {
        let mut b = Branches::new(7, 1);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        b.next(&mut x);
        b.next(&mut y);
        assert!(x.starts_with(MAGIC_COOKIE));
        assert_ne!(x, y);
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
            Some("SIP;cause=408"),
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
        bye(&d, false, local(), b"z9hG4bK-x", 9, None, &mut out);
        let m = SipMsg::parse(&out).unwrap();
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
