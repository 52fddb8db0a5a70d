use super::*;
use crate::sip::Rewrite;
use crate::sip::value::{NameAddr, SipUri, host_ip, param};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

/// The start line and the headers every request needs; tests add, drop or replace lines.
const BASE: &[&str] = &[
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
];

/// `lines` joined with CRLF, the empty line, then `body`.
fn build(lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(body);
    v
}

/// [`BASE`] plus `extra` header lines, no body.
fn request(extra: &[&str]) -> Vec<u8> {
    let lines: Vec<&str> = BASE.iter().chain(extra).copied().collect();
    build(&lines, b"")
}

/// [`BASE`] with the line starting with `prefix` replaced by `line` (dropped if `line` is empty).
fn request_with(prefix: &str, line: &str) -> Vec<u8> {
    assert!(
        BASE.iter().any(|l| l.starts_with(prefix)),
        "no line {prefix}"
    );
    let lines: Vec<&str> = BASE
        .iter()
        .map(|l| if l.starts_with(prefix) { line } else { l })
        .filter(|l| !l.is_empty())
        .collect();
    build(&lines, b"")
}

#[track_caller]
fn parse_ok(b: &[u8]) -> SipMsg<'_> {
    match SipMsg::parse(b) {
        Ok(m) => m,
        Err(e) => panic!("{e:?} for\n{}", String::from_utf8_lossy(b)),
    }
}

#[track_caller]
fn parse_err(b: &[u8]) -> ParseError {
    match SipMsg::parse(b) {
        Ok(_) => panic!("parsed, expected an error:\n{}", String::from_utf8_lossy(b)),
        Err(e) => e,
    }
}

/// The value of the first header called `name`.
fn value<'a>(m: &SipMsg<'a>, name: HeaderName) -> &'a [u8] {
    let (_, h) = m.headers_named(name).next().expect("header present");
    m.span(h.value())
}

/// The value of the first header whose name is written exactly `name`.
fn value_as_written<'a>(m: &SipMsg<'a>, name: &str) -> &'a [u8] {
    let h = m
        .headers()
        .iter()
        .find(|h| h.name_bytes(m.buf) == name.as_bytes())
        .unwrap_or_else(|| panic!("no header written {name}"));
    m.span(h.value())
}

#[test]
fn parses_basic_invite() {
    let m = SipMsg::parse(INVITE).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(m.from_tag(), Some(&b"1928301774"[..]));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.cseq, 314159);
    assert_eq!(m.branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(m.span(m.body), b"v=0\n");
    assert_eq!(m.max_forwards.map(|m| m.0), Some(70));
}

#[test]
fn users_and_hosts_are_those_of_their_uris_read_once() {
    fn uh<'a>(m: &SipMsg<'a>, uri: Option<crate::sip::Span>) -> (&'a [u8], &'a [u8]) {
        uri.map_or((b"", b""), |u| SipUri::user_and_host(m.buf, u))
    }
    let cases = [
        request(&[]),
        request_with("INVITE", "INVITE tel:+1-555-0100;phone-context=x SIP/2.0"),
        request_with("INVITE", "INVITE sip:[2001:db8::1]:5070;lr SIP/2.0"),
        request_with("From", "From: <sip:a;b=c@host:5061>;tag=1"),
        request_with("From", "From: <tel:+15550100>;tag=1"),
        request_with("To", "To: <sips:carol@chicago.example.com;transport=tls>"),
    ];
    for b in &cases {
        let m = parse_ok(b);
        for _ in 0..2 {
            assert_eq!(m.from_user_host(), uh(&m, m.from().map(|f| f.uri)));
            assert_eq!(m.to_user_host(), uh(&m, m.to().map(|t| t.uri)));
            assert_eq!(m.request_user_host(), uh(&m, m.request_uri()));
        }
        let (uri, parsed) = m.request_sip_uri().unwrap();
        assert_eq!(parsed, SipUri::parse(m.buf, uri));
    }
    assert_eq!(
        parse_ok(&cases[1]).request_user_host(),
        (&b"+1-555-0100"[..], &b""[..])
    );
    assert_eq!(
        parse_ok(&cases[3]).from_user_host(),
        (&b"a;b=c"[..], &b"host"[..])
    );
    // A response's From and To are read when asked; it has no Request-URI.
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:bob@b.example>;tag=9\r\nFrom: <sip:alice@a.example>;tag=1\r\nCall-ID: c\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = parse_ok(resp);
    assert_eq!(m.from_user_host(), (&b"alice"[..], &b"a.example"[..]));
    assert_eq!(m.to_user_host(), (&b"bob"[..], &b"b.example"[..]));
    assert_eq!(
        (m.request_sip_uri(), m.request_user_host()),
        (None, (&b""[..], &b""[..]))
    );
}

mod framing;
mod headers;
mod start_line;
mod torture;
