//! RFC 4475 and RFC 5118 torture messages, and NULs.

use super::*;

// ---------------------------------------------------------------------------------------------
// RFC 4475 and RFC 5118 torture messages (tests/torture/*.sip)

/// What the parser must do with a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Parses: the proxy goes on with it (it may still answer it itself, e.g. 420 or 483).
    Parse,
    /// A request answered with this status, failing this way.
    Reject(u16, ParseError),
    /// A malformed response, failing this way: dropped (no answer to a response).
    DropResponse(ParseError),
}

pub(super) struct Fixture {
    name: &'static str,
    pub(super) bytes: &'static [u8],
    pub(super) expect: Outcome,
}

macro_rules! fixtures {
    ($($name:literal => $expect:expr,)*) => {
        &[$(Fixture {
            name: $name,
            bytes: include_bytes!(concat!("../../../../tests/torture/", $name, ".sip")),
            expect: $expect,
        },)*]
    };
}

use Outcome::{DropResponse, Parse, Reject};
use ParseError as E;

pub(super) const TORTURE: &[Fixture] = fixtures! {
    // RFC 4475 §3.1.1: valid messages.
    "wsinv" => Parse,
    "intmeth" => Parse,
    "esc01" => Parse,
    "escnull" => Parse,
    "esc02" => Parse,
    "lwsdisp" => Parse,
    "longreq" => Parse,
    "dblreq" => Parse,
    "semiuri" => Parse,
    "transports" => Parse,
    "mpart01" => Parse,
    "unreason" => Parse,
    "noreason" => Parse,
    // §3.1.2: invalid messages.
    "badinv01" => Reject(400, E::BadHeader("Via")),
    "clerr" => Reject(400, E::ContentLength),
    "ncl" => Reject(400, E::BadHeader("Content-Length")),
    "scalar02" => Reject(400, E::BadHeader("CSeq")),
    "scalarlg" => DropResponse(E::BadHeader("CSeq")),
    "quotbal" => Reject(400, E::BadHeader("To")),
    "ltgtruri" => Reject(400, E::RequestUri),
    "lwsruri" => Reject(400, E::RequestUri),
    "lwsstart" => Reject(400, E::RequestUri),
    "trws" => Reject(400, E::StartLine),
    "escruri" => Reject(400, E::RequestUri),
    // A non-GMT Date: a proxy does not look at Date, so it forwards it (the RFC allows both).
    "baddate" => Parse,
    // The bad Contact of a REGISTER is the registrar's to refuse; a proxy forwards it
    // unread (RFC 3261 §16.3; RFC 4475 §3.1.2.8 leaves it to the element that reads it).
    "regbadct" => Parse,
    "badaspec" => Reject(400, E::BadHeader("To")),
    "baddn" => Reject(400, E::BadHeader("From")),
    "badvers" => Reject(505, E::Version),
    "mismatch01" => Reject(400, E::CSeqMethod),
    "mismatch02" => Reject(400, E::CSeqMethod),
    "bigcode" => DropResponse(E::StartLine),
    // §3.2: transaction layer.
    "badbranch" => Parse,
    // §3.3: application layer.
    "insuf" => Reject(400, E::Missing("Call-ID")),
    "unkscm" => Reject(416, E::UriScheme),
    "novelsc" => Reject(416, E::UriScheme),
    "unksm2" => Parse,
    "bext01" => Parse, // the proxy answers 420 for Proxy-Require
    "invut" => Parse,
    "regaut01" => Parse,
    "multi01" => Reject(400, E::Repeated("CSeq")),
    "mcl01" => Reject(400, E::Repeated("Content-Length")),
    "bcast" => Parse,
    "zeromf" => Parse, // the proxy answers 483
    "cparam01" => Parse,
    "cparam02" => Parse,
    "regescrt" => Parse,
    "sdp01" => Parse,
    // §3.4: RFC 2543 syntax.
    "inv2543" => Parse,
    // RFC 5118: IPv6.
    "ipv6-good" => Parse,
    "ipv6-bad" => Reject(400, E::RequestUri),
    "port-ambiguous" => Parse,
    "port-unambiguous" => Parse,
    "via-received-param-with-delim" => Parse,
    "via-received-param-no-delim" => Parse,
    "ipv6-bug-abnf-3-colons" => Reject(400, E::RequestUri),
    "ipv6-correct-abnf-2-colons" => Parse,
    "mult-ip-in-header" => Parse,
    "ipv4-mapped-ipv6" => Parse,
};

fn torture(name: &str) -> &'static [u8] {
    TORTURE
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .bytes
}

#[test]
fn torture_fixtures_match_expected_outcomes() {
    let mut failures = Vec::new();
    for f in TORTURE {
        let got = SipMsg::parse(f.bytes);
        let ok = match (f.expect, &got) {
            (Parse, Ok(_)) => true,
            (Reject(code, want), Err(e)) => *e == want && e.status() == code,
            (DropResponse(want), Err(e)) => *e == want && f.bytes.starts_with(b"SIP/"),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                f.name,
                f.expect,
                got.map(|_| ()).map_err(|e| (e.status(), e))
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} torture fixtures mismatch:\n  {}",
        failures.len(),
        TORTURE.len(),
        failures.join("\n  ")
    );
}

#[test]
fn torture_fixture_files_all_listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torture");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".sip")
            && !TORTURE.iter().any(|f| f.name == stem)
        {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "fixtures not in TORTURE: {missing:?}");
}

#[test]
fn torture_wsinv_fields() {
    let m = parse_ok(torture("wsinv"));
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.span(m.from().unwrap().uri), b"sip:jdrosen@example.com");
    assert_eq!(m.max_forwards.map(|m| m.0), Some(68));
    assert_eq!((m.cseq, m.cseq_method), (9, Method::Invite));
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.via_count(), 3);
    assert_eq!(m.span(m.top_via.host), b"192.0.2.2");
    assert_eq!(m.span(m.top_via.transport), b"UDP");
    assert_eq!(m.branch(), Some(&b"390skdjuw"[..]));
    assert_eq!(m.body.len(), 150);
    assert_eq!(m.end(), m.buf.len());
    assert_eq!(value(&m, HeaderName::Subject), b"");
    assert_eq!(
        value_as_written(&m, "NewFangledHeader"),
        b"newfangled value\r\n continued newfangled value"
    );
    assert_eq!(
        value_as_written(&m, "UnknownHeaderWithUnusualValue"),
        b";;,,;;,;"
    );
    let (_, v) = m.headers_named(HeaderName::Via).nth(1).unwrap();
    let second: Vec<Via> = CommaList::new(m.buf, v.value())
        .map(|e| Via::parse(m.buf, e.unwrap()).unwrap())
        .collect();
    assert_eq!(m.span(second[0].host), b"spindle.example.com");
    assert_eq!(m.span(second[0].branch(m.buf).unwrap()), b"z9hG4bK9ikj8");
    assert_eq!(m.span(second[1].host), b"192.168.255.111");
    assert_eq!(m.span(second[1].branch(m.buf).unwrap()), b"z9hG4bK30239");
}

#[test]
fn torture_intmeth_fields() {
    let m = parse_ok(torture("intmeth"));
    assert_eq!(m.method(), Some(Method::Other));
    assert_eq!(
        m.span(m.cseq_method_span),
        b"!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert_eq!(m.branch(), Some(&b"z9hG4bK-.!%66*_+`'~"[..]));
    assert_eq!(m.from_tag(), Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(
        m.call_id(),
        br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
    );
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.host), b"example.com");
}

#[test]
fn torture_dblreq_frames_first_message_only() {
    let b = torture("dblreq");
    let m = parse_ok(b);
    assert_eq!(m.method(), Some(Method::Register));
    assert!(m.body.is_empty());
    assert!(b[m.end()..].starts_with(b"INVITE sip:joe@example.com SIP/2.0\r\n"));
}

#[test]
fn torture_inv2543_body_is_rest_of_datagram() {
    let b = torture("inv2543");
    let m = parse_ok(b);
    assert_eq!(m.content_length, None);
    assert_eq!(m.max_forwards, None);
    assert_eq!(m.branch(), None);
    assert_eq!(m.from_tag(), None);
    assert_eq!(m.end(), b.len());
    assert!(m.span(m.body).starts_with(b"v=0\r\n"));
}

#[test]
fn torture_mpart01_binary_body() {
    let m = parse_ok(torture("mpart01"));
    let body = m.span(m.body);
    assert_eq!(m.content_length.map(|c| c.0 as usize), Some(body.len()));
    assert!(body.windows(256).any(|w| w.iter().copied().eq(0..=255u8)));
    assert!(body.ends_with(b"--7a9cbec02ceef655--\r\n"));
}

#[test]
fn torture_longreq_fields() {
    let m = parse_ok(torture("longreq"));
    assert_eq!(m.via_count(), 34);
    assert_eq!(m.from_tag().map(<[u8]>::len), Some(2 + 150 + 3));
    assert!(m.branch().unwrap().len() > 200);
    assert_eq!(m.end(), m.buf.len());
}

#[test]
fn torture_transports_vias() {
    let m = parse_ok(torture("transports"));
    let transports: Vec<&[u8]> = m
        .headers_named(HeaderName::Via)
        .map(|(_, h)| m.span(Via::parse(m.buf, h.value()).unwrap().transport))
        .collect();
    assert_eq!(
        transports,
        [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]
    );
}

#[test]
fn torture_port_ambiguous_address_has_no_port() {
    // RFC 5118 §4.3: `[2001:db8::10:5070]` is one IPv6 address, not an address and a port.
    let m = parse_ok(torture("port-ambiguous"));
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.host), b"[2001:db8::10:5070]");
    assert_eq!(u.port, None);
    let m = parse_ok(torture("port-unambiguous"));
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.host), b"[2001:db8::10]");
    assert_eq!(u.port, Some(5070));
}

#[test]
fn torture_ipv6_vias() {
    let m = parse_ok(torture("mult-ip-in-header"));
    let hosts: Vec<(&[u8], Option<u16>)> = m
        .headers_named(HeaderName::Via)
        .map(|(_, h)| {
            let v = Via::parse(m.buf, h.value()).unwrap();
            (m.span(v.host), v.port)
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (&b"[2001:db8::9:1]"[..], Some(6050)),
            (b"192.0.2.1", None),
            (b"[2001:db8::9:255]", None)
        ]
    );
    let m = parse_ok(torture("ipv4-mapped-ipv6"));
    assert_eq!(m.span(m.top_via.host), b"[::ffff:192.0.2.10]");
    assert_eq!(m.top_via.port, Some(19823));
    let m = parse_ok(torture("via-received-param-no-delim"));
    assert_eq!(
        m.span(param(m.buf, m.top_via.params, b"received").unwrap()),
        b"2001:db8::9:255"
    );
}

#[test]
fn a_raw_nul_in_a_requests_start_line_or_header_is_a_bad_header_line_and_elsewhere_not() {
    for (prefix, line, e) in [
        ("Call-ID", "Call-ID: a\0b@host", ParseError::HeaderLine),
        (
            "From",
            "From: <sip:al\0ice@example.com>;tag=1",
            ParseError::HeaderLine,
        ),
        ("Max-Forwards", "Max-Forwards: 70\0", ParseError::HeaderLine),
        // After a `\` outside a quoted string it is no quoted pair.
        ("Call-ID", "Call-ID: a\\\0b@host", ParseError::HeaderLine),
        (
            "From",
            "From: \"a\\\"\" \\\0<sip:a@b>;tag=1",
            ParseError::HeaderLine,
        ),
        (
            "Call-ID",
            "Call-ID: a\x7fb@host",
            ParseError::BadHeader("Call-ID"),
        ),
    ] {
        let b = request_with(prefix, line);
        assert_eq!(parse_err(&b), e, "{line:?}");
    }
    // First in the datagram: refused, not read before its start.
    let mut b = request(&[]);
    b[0] = 0;
    parse_err(&b);
    let mut b = request(&[]);
    let at = b.iter().position(|&c| c == b' ').unwrap() + 5;
    b[at] = 0;
    assert_eq!(parse_err(&b), ParseError::HeaderLine, "in the Request-URI");
    // A quoted pair in a quoted string, also across a folded line, passes.
    parse_ok(&request_with("From", "From: \"a \\\0 b\" <sip:a@b>;tag=1"));
    parse_ok(&request_with(
        "From",
        "From: \"a\r\n  \\\0 b\" <sip:a@b>;tag=1",
    ));
    // Escaped, it is a URI's business; in a body, the body's.
    parse_ok(&request_with(
        "From",
        "From: <sip:al%00ice@example.com>;tag=1",
    ));
    let lines: Vec<&str> = BASE
        .iter()
        .copied()
        .chain(["Content-Type: text/plain", "Content-Length: 3"])
        .collect();
    parse_ok(&build(&lines, b"a\0b"));
    // A response's is forwarded.
    parse_ok(&build(
        &[
            "SIP/2.0 200 O\0K",
            BASE[1],
            "To: Bob <sip:bob@biloxi.example.com>;tag=a\0b",
            BASE[4],
            BASE[5],
            BASE[6],
        ],
        b"",
    ));
}
