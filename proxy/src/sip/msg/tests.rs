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

// ---------------------------------------------------------------------------------------------
// Header names

#[test]
fn compact_header_names_parse() {
    let b = build(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKcompact",
            "f: <sip:alice@example.com>;tag=ft",
            "t: <sip:bob@example.com>;tag=tt",
            "i: compact-call-id",
            "CSeq: 1 INVITE",
            "m: <sip:alice@pc33.example.com>",
            "c: text/plain",
            "k: 100rel",
            "s: hello",
            "e: gzip",
            "o: dialog",
            "r: <sip:carol@example.com>",
            "u: presence",
            "x: 1800",
            "l: 4",
        ],
        b"body",
    );
    let m = parse_ok(&b);
    assert_eq!(m.branch(), Some(&b"z9hG4bKcompact"[..]));
    assert_eq!(m.from_tag(), Some(&b"ft"[..]));
    assert_eq!(m.to_tag(), Some(&b"tt"[..]));
    assert_eq!(m.call_id(), b"compact-call-id");
    assert_eq!(m.content_length.map(|c| c.0), Some(4));
    assert_eq!(m.span(m.body), b"body");
    assert_eq!(
        value(&m, HeaderName::Contact),
        b"<sip:alice@pc33.example.com>"
    );
    assert_eq!(value(&m, HeaderName::ContentType), b"text/plain");
    assert_eq!(value(&m, HeaderName::Supported), b"100rel");
    assert_eq!(value(&m, HeaderName::Subject), b"hello");
    // e, o, r, u, x: recognised as header lines, forwarded untouched.
    for (name, v) in [
        ("e", &b"gzip"[..]),
        ("o", b"dialog"),
        ("r", b"<sip:carol@example.com>"),
        ("u", b"presence"),
        ("x", b"1800"),
    ] {
        let h = m
            .headers()
            .iter()
            .find(|h| h.name_bytes(m.buf) == name.as_bytes())
            .unwrap();
        assert_eq!(h.name, HeaderName::Other, "{name}");
        assert_eq!(m.span(h.value()), v, "{name}");
    }
    assert_eq!(m.headers().len(), 15);
}

#[test]
fn long_header_names_parse() {
    let b = build(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKlong",
            "From: <sip:alice@example.com>;tag=ft",
            "To: <sip:bob@example.com>",
            "Call-ID: long-call-id",
            "CSeq: 1 INVITE",
            "Max-Forwards: 9",
            "Contact: <sip:alice@pc33.example.com>",
            "Content-Type: text/plain",
            "Supported: 100rel",
            "Subject: hello",
            "Route: <sip:p1.example.com;lr>",
            "Record-Route: <sip:p2.example.com;lr>",
            "Require: timer",
            "Proxy-Require: foo",
            "Content-Length: 2",
        ],
        b"hi",
    );
    let m = parse_ok(&b);
    let names: Vec<HeaderName> = m.headers().iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::Contact,
            HeaderName::ContentType,
            HeaderName::Supported,
            HeaderName::Subject,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::ContentLength,
        ]
    );
    assert_eq!(m.max_forwards, Some((9, 5)));
    assert_eq!(m.proxy_require, Some(13));
    assert_eq!(m.content_length, Some((2, 14)));
    assert_eq!(
        m.first_route().map(|(i, s)| (i, m.span(s))),
        Some((10, &b"<sip:p1.example.com;lr>"[..]))
    );
}

#[test]
fn header_names_are_case_insensitive() {
    let b = build(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "VIA: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKcase",
            "fROM: <sip:alice@example.com>;tag=ft",
            "tO: <sip:bob@example.com>",
            "CALL-id: case-call-id",
            "cseq: 1 INVITE",
            "max-FORWARDS: 3",
            "I: ignored-not-really",
        ],
        b"",
    );
    // A compact name in upper case is the same header: `I` repeats Call-ID.
    assert_eq!(parse_err(&b), ParseError::Repeated("Call-ID"));
    let b = build(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "VIA: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKcase",
            "fROM: <sip:alice@example.com>;tag=ft",
            "T: <sip:bob@example.com>",
            "CALL-id: case-call-id",
            "cseq: 1 INVITE",
            "max-FORWARDS: 3",
            "L: 0",
        ],
        b"",
    );
    let m = parse_ok(&b);
    assert_eq!(m.call_id(), b"case-call-id");
    assert_eq!(m.max_forwards.map(|m| m.0), Some(3));
    assert_eq!(m.content_length.map(|c| c.0), Some(0));
    assert_eq!(m.branch(), Some(&b"z9hG4bKcase"[..]));
}

#[test]
fn white_space_before_colon_allowed() {
    let b = request(&["Subject   \t: spaced", "Content-Length : 0"]);
    let m = parse_ok(&b);
    assert_eq!(value(&m, HeaderName::Subject), b"spaced");
    assert_eq!(m.content_length.map(|c| c.0), Some(0));
}

#[test]
fn header_line_without_colon_is_400() {
    let e = parse_err(&request(&["NoColonHere"]));
    assert_eq!((e, e.status()), (ParseError::HeaderLine, 400));
    let e = parse_err(&request(&[": no name"]));
    assert_eq!(e, ParseError::HeaderLine);
    let e = parse_err(&request(&["Bad Name: x"]));
    assert_eq!(e, ParseError::HeaderLine);
}

// ---------------------------------------------------------------------------------------------
// Folding, repeated and comma-separated headers

#[test]
fn folded_header_value_joined() {
    let b = request(&[
        "Subject: first part",
        "  second part",
        "\tthird part",
        "X-After: y",
    ]);
    let m = parse_ok(&b);
    assert_eq!(
        value(&m, HeaderName::Subject),
        b"first part\r\n  second part\r\n\tthird part"
    );
    let (_, h) = m.headers_named(HeaderName::Subject).next().unwrap();
    assert_eq!(
        m.span(h.line()),
        b"Subject: first part\r\n  second part\r\n\tthird part\r\n"
    );
    assert_eq!(value_as_written(&m, "X-After"), b"y");
}

#[test]
fn folded_value_starting_on_next_line() {
    let b = build(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "Via:",
            "  SIP/2.0/UDP",
            "  192.0.2.1:5060",
            "  ;branch=z9hG4bKfold",
            "From:",
            " <sip:alice@example.com>",
            " ;tag=ft",
            "To: <sip:bob@example.com>",
            "Call-ID:",
            " folded-call-id",
            "CSeq: 7",
            " INVITE",
            "Max-Forwards:",
            "\t70",
        ],
        b"",
    );
    let m = parse_ok(&b);
    assert_eq!(m.call_id(), b"folded-call-id");
    assert_eq!(m.branch(), Some(&b"z9hG4bKfold"[..]));
    assert_eq!(m.span(m.top_via.host), b"192.0.2.1");
    assert_eq!(m.top_via.port, Some(5060));
    assert_eq!(m.from_tag(), Some(&b"ft"[..]));
    assert_eq!((m.cseq, m.cseq_method), (7, Method::Invite));
    assert_eq!(m.max_forwards.map(|m| m.0), Some(70));
}

#[test]
fn folded_line_before_any_header_is_400() {
    let b = build(
        &["INVITE sip:bob@example.com SIP/2.0", " continuation"],
        b"",
    );
    assert_eq!(parse_err(&b), ParseError::HeaderLine);
}

#[test]
fn repeated_via_headers_counted() {
    let b = build(
        &[
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKtop",
            "Via: SIP/2.0/TCP 192.0.2.9:5070;branch=z9hG4bKmid",
            "v: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKbottom",
            "From: <sip:alice@example.com>;tag=ft",
            "To: <sip:bob@example.com>;tag=tt",
            "Call-ID: vias",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        ],
        b"",
    );
    let m = parse_ok(&b);
    assert_eq!(m.via_count(), 3);
    assert_eq!(m.top_via_header, 0);
    assert_eq!(m.branch(), Some(&b"z9hG4bKtop"[..]));
    assert_eq!(m.headers_named(HeaderName::Via).count(), 3);
}

#[test]
fn comma_separated_via_counted() {
    let b = request_with(
        "Via:",
        "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bKone , SIP/2.0/TCP second.example.com:5080;branch=z9hG4bKtwo",
    );
    let m = parse_ok(&b);
    assert_eq!(m.via_count(), 2);
    assert_eq!(m.headers_named(HeaderName::Via).count(), 1);
    assert_eq!(m.span(m.top_via.host), b"first.example.com");
    assert_eq!(m.span(m.top_via.transport), b"UDP");
    assert_eq!(m.branch(), Some(&b"z9hG4bKone"[..]));
    assert_eq!(
        m.span(m.top_via.span),
        b"SIP/2.0/UDP first.example.com;branch=z9hG4bKone"
    );
}

#[test]
fn via_list_and_repeats_mixed() {
    let b = request(&[
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb",
        "v: SIP/2.0/UDP c.example.com;branch=z9hG4bKc",
    ]);
    let m = parse_ok(&b);
    assert_eq!(m.via_count(), 4);
    // The top Via is the first element of the first Via header.
    assert_eq!(m.branch(), Some(&b"z9hG4bK776asdhds"[..]));
}

#[test]
fn malformed_lower_via_is_400() {
    for bad in [
        "Via: SIP/2.0/UDP ok.example.com;branch=z9hG4bKa, garbage",
        "Via: SIP/2.0/UDP ok.example.com;branch=z9hG4bKa,",
        "Via: SIP/2.0/UDP ok.example.com;branch=z9hG4bKa,,SIP/2.0/UDP b.example.com",
        "Via: SIP/3.0/UDP later.example.com",
        "Via: SIP/2.0/UDP",
    ] {
        let e = parse_err(&request(&[bad]));
        assert_eq!(
            (e, e.status()),
            (ParseError::BadHeader("Via"), 400),
            "{bad}"
        );
    }
}

#[test]
fn repeated_single_headers_are_400() {
    for (line, name) in [
        ("Call-ID: second", "Call-ID"),
        ("i: second", "Call-ID"),
        ("From: <sip:x@example.com>;tag=2", "From"),
        ("f: <sip:x@example.com>;tag=2", "From"),
        ("To: <sip:x@example.com>", "To"),
        ("CSeq: 2 INVITE", "CSeq"),
        ("Max-Forwards: 69", "Max-Forwards"),
    ] {
        let e = parse_err(&request(&[line]));
        assert_eq!((e, e.status()), (ParseError::Repeated(name), 400), "{line}");
    }
    let e = parse_err(&request(&["Content-Length: 0", "l: 0"]));
    assert_eq!(e, ParseError::Repeated("Content-Length"));
}

#[test]
fn repeated_list_headers_kept_in_order() {
    let b = request(&[
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        "Route: <sip:p3.example.com;lr>",
        "Contact: <sip:a@192.0.2.1>",
        "Contact: \"Quoted, with comma\" <sip:b@192.0.2.2>;q=0.5, <sip:c@192.0.2.3>",
    ]);
    let m = parse_ok(&b);
    let routes: Vec<&[u8]> = m
        .headers_named(HeaderName::Route)
        .flat_map(|(_, h)| CommaList::new(m.buf, h.value()))
        .map(|r| m.span(r.unwrap()))
        .collect();
    assert_eq!(
        routes,
        [
            &b"<sip:p1.example.com;lr>"[..],
            b"<sip:p2.example.com;lr>",
            b"<sip:p3.example.com;lr>"
        ]
    );
    assert_eq!(
        m.first_route().map(|(_, s)| m.span(s)),
        Some(&b"<sip:p1.example.com;lr>"[..])
    );
    let contacts: Vec<&[u8]> = m
        .headers_named(HeaderName::Contact)
        .flat_map(|(_, h)| CommaList::new(m.buf, h.value()))
        .map(|r| {
            let na = NameAddr::parse(m.buf, r.unwrap()).unwrap();
            m.span(na.uri)
        })
        .collect();
    assert_eq!(
        contacts,
        [
            &b"sip:a@192.0.2.1"[..],
            b"sip:b@192.0.2.2",
            b"sip:c@192.0.2.3"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Quoted strings and name-addr

#[test]
fn quoted_display_name_with_escapes() {
    let b = request_with(
        "From:",
        r#"From: "Alice \"Al\" \\ <Smith>, ;tag=no" <sip:alice@atlanta.example.com>;tag=real"#,
    );
    let m = parse_ok(&b);
    assert_eq!(m.from_tag(), Some(&b"real"[..]));
    assert_eq!(
        m.span(m.from().unwrap().uri),
        b"sip:alice@atlanta.example.com"
    );
}

#[test]
fn quoted_display_name_ending_in_escaped_backslash() {
    let b = request_with("To:", r#"To: "Bob \\" <sip:bob@biloxi.example.com>;tag=t1"#);
    let m = parse_ok(&b);
    assert_eq!(m.to_tag(), Some(&b"t1"[..]));
    assert_eq!(m.span(m.to().unwrap().uri), b"sip:bob@biloxi.example.com");
}

#[test]
fn token_display_name_without_space_before_angle() {
    let b = request_with("From:", "From: caller<sip:caller@example.com>;tag=323");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.from().unwrap().uri), b"sip:caller@example.com");
    assert_eq!(m.from_tag(), Some(&b"323"[..]));
}

#[test]
fn unbalanced_quote_is_400() {
    let e = parse_err(&request_with(
        "To:",
        r#"To: "Mr. J. User <sip:j.user@example.com>"#,
    ));
    assert_eq!((e, e.status()), (ParseError::BadHeader("To"), 400));
    // The closing quote is escaped, so the string never ends.
    let e = parse_err(&request_with(
        "From:",
        r#"From: "Alice \" <sip:alice@example.com>;tag=1"#,
    ));
    assert_eq!(e, ParseError::BadHeader("From"));
}

#[test]
fn unclosed_angle_bracket_is_400() {
    let e = parse_err(&request_with("To:", "To: <sip:bob@example.com"));
    assert_eq!(e, ParseError::BadHeader("To"));
}

#[test]
fn addr_spec_with_header_params() {
    let b = request_with("From:", "From: sip:alice@example.com;tag=abc;other=1");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.from().unwrap().uri), b"sip:alice@example.com");
    assert_eq!(m.from_tag(), Some(&b"abc"[..]));
}

#[test]
fn empty_tag_is_no_tag() {
    let b = request_with("To:", "To: <sip:bob@example.com>;tag=");
    assert_eq!(parse_ok(&b).to_tag(), None);
}

// ---------------------------------------------------------------------------------------------
// IPv6 references

#[test]
fn ipv6_in_via() {
    let b = request_with(
        "Via:",
        "Via: SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];branch=z9hG4bKv6",
    );
    let m = parse_ok(&b);
    assert_eq!(m.span(m.top_via.host), b"[2001:db8::9:1]");
    assert_eq!(m.top_via.port, Some(5070));
    assert_eq!(m.branch(), Some(&b"z9hG4bKv6"[..]));
    assert_eq!(
        m.span(param(m.buf, m.top_via.params, b"received").unwrap()),
        b"[2001:db8::9:255]"
    );
    assert_eq!(
        host_ip(m.span(m.top_via.host)),
        Some("2001:db8::9:1".parse().unwrap())
    );
}

#[test]
fn ipv6_via_without_port() {
    let b = request_with("Via:", "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKv6");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.top_via.host), b"[2001:db8::9:1]");
    assert_eq!(m.top_via.port, None);
}

#[test]
fn ipv6_in_request_uri() {
    let b = request_with(
        "INVITE",
        "INVITE sip:bob@[2001:db8::10]:5070;transport=udp SIP/2.0",
    );
    let m = parse_ok(&b);
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.host), b"[2001:db8::10]");
    assert_eq!(u.port, Some(5070));
    assert_eq!(m.span(u.user.unwrap()), b"bob");
    assert_eq!(
        m.span(param(m.buf, u.params, b"transport").unwrap()),
        b"udp"
    );
}

#[test]
fn ipv6_in_contact() {
    let b =
        request(&["Contact: \"Caller\" <sip:caller@[2001:db8::1]:5062;transport=tcp>;expires=60"]);
    let m = parse_ok(&b);
    let c = NameAddr::parse(
        m.buf,
        m.headers_named(HeaderName::Contact)
            .next()
            .unwrap()
            .1
            .value(),
    )
    .unwrap();
    let u = SipUri::parse(m.buf, c.uri).unwrap();
    assert_eq!(m.span(u.host), b"[2001:db8::1]");
    assert_eq!(u.port, Some(5062));
    assert_eq!(
        host_ip(m.span(u.host)),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(m.span(param(m.buf, c.params, b"expires").unwrap()), b"60");
}

#[test]
fn unbracketed_ipv6_request_uri_is_400() {
    let e = parse_err(&request_with("INVITE", "INVITE sip:2001:db8::10 SIP/2.0"));
    assert_eq!((e, e.status()), (ParseError::RequestUri, 400));
}

#[test]
fn invalid_ipv6_reference_is_400() {
    for uri in [
        "sip:user@[2001:db8:::192.0.2.1]",
        "sip:user@[2001:db8::10",
        "sip:user@[not-an-address]",
        "sip:user@[2001:db8::10]x",
    ] {
        let e = parse_err(&request_with("INVITE", &format!("INVITE {uri} SIP/2.0")));
        assert_eq!(e, ParseError::RequestUri, "{uri}");
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Length framing and bodies

#[test]
fn content_length_frames_body_exactly() {
    let lines: Vec<&str> = BASE.iter().copied().chain(["Content-Length: 5"]).collect();
    let b = build(&lines, b"hello");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.body), b"hello");
    assert_eq!(m.end(), b.len());
    assert_eq!(&b[m.headers_end as usize..m.body.start as usize], b"\r\n");
}

#[test]
fn extra_trailing_bytes_ignored() {
    let lines: Vec<&str> = BASE.iter().copied().chain(["Content-Length: 5"]).collect();
    let b = build(&lines, b"hello, and then some garbage\r\n\r\n");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.body), b"hello");
    assert_eq!(m.end(), b.len() - b", and then some garbage\r\n\r\n".len());
}

#[test]
fn content_length_zero_ignores_trailing_bytes() {
    let lines: Vec<&str> = BASE.iter().copied().chain(["Content-Length: 0"]).collect();
    let b = build(&lines, b"INVITE sip:x@y SIP/2.0\r\n\r\n");
    let m = parse_ok(&b);
    assert!(m.body.is_empty());
    assert_eq!(m.end(), m.body.start as usize);
}

#[test]
fn missing_content_length_takes_rest_of_datagram() {
    let b = build(BASE, b"v=0\r\ns=-\r\n");
    let m = parse_ok(&b);
    assert_eq!(m.content_length, None);
    assert_eq!(m.span(m.body), b"v=0\r\ns=-\r\n");
    assert_eq!(m.end(), b.len());
}

#[test]
fn content_length_mismatch_is_400() {
    let lines: Vec<&str> = BASE.iter().copied().chain(["Content-Length: 6"]).collect();
    let e = parse_err(&build(&lines, b"hello"));
    assert_eq!((e, e.status()), (ParseError::ContentLength, 400));
}

#[test]
fn negative_content_length_is_400() {
    let e = parse_err(&request(&["Content-Length: -1"]));
    assert_eq!(
        (e, e.status()),
        (ParseError::BadHeader("Content-Length"), 400)
    );
}

#[test]
fn huge_content_length_is_400() {
    for v in ["4294967296", "99999999999999999999", "1e3", "12 3", ""] {
        let e = parse_err(&request(&[&format!("Content-Length: {v}")]));
        assert_eq!(e, ParseError::BadHeader("Content-Length"), "{v}");
    }
    // Fits in u32 but not in the datagram.
    let e = parse_err(&request(&["Content-Length: 4294967295"]));
    assert_eq!(e, ParseError::ContentLength);
}

#[test]
fn binary_body_kept_intact() {
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(b"\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n\n\r\0");
    body.extend((0..=255u8).rev());
    let cl = format!("Content-Length: {}", body.len());
    let lines: Vec<&str> = BASE
        .iter()
        .copied()
        .chain(["Content-Type: application/octet-stream", &cl])
        .collect();
    let mut b = build(&lines, &body);
    b.extend_from_slice(b"trailing");
    let m = parse_ok(&b);
    assert_eq!(m.span(m.body), &body[..]);
    // Without Content-Length the binary body is the rest of the datagram.
    let b = build(BASE, &body);
    let m = parse_ok(&b);
    assert_eq!(m.span(m.body), &body[..]);
}

// ---------------------------------------------------------------------------------------------
// Line ends and framing of the header block

#[test]
fn leading_crlfs_skipped() {
    let mut b = b"\r\n\r\n\n\r\n".to_vec();
    b.extend_from_slice(INVITE);
    let m = parse_ok(&b);
    assert_eq!(m.start_line.start, 7);
    assert_eq!(
        m.span(m.start_line),
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    );
    assert_eq!(m.span(m.body), b"v=0\n");
    assert_eq!(m.end(), b.len());
}

#[test]
fn bare_lf_line_endings_parse() {
    let b = INVITE
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(&b'\n');
    assert!(!b.contains(&b'\r'));
    let m = parse_ok(&b);
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(m.branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(value(&m, HeaderName::ContentType), b"application/sdp");
    assert_eq!(m.span(m.body), b"v=0\n");
    assert_eq!(m.end(), b.len());
}

#[test]
fn bare_lf_folding_and_mixed_line_ends_parse() {
    let b = b"OPTIONS sip:bob@example.com SIP/2.0\n\
Via: SIP/2.0/UDP h.example.com\r\n ;branch=z9hG4bKmixed\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:b@example.com>\n\
Call-ID: mixed\n\
CSeq: 1\n OPTIONS\n\
Content-Length: 3\n\
\r\n\
abc";
    let m = parse_ok(b);
    assert_eq!(m.branch(), Some(&b"z9hG4bKmixed"[..]));
    assert_eq!((m.cseq, m.cseq_method), (1, Method::Options));
    assert_eq!(m.span(m.body), b"abc");
}

#[test]
fn missing_empty_line_is_400() {
    let mut b = request(&[]);
    b.truncate(b.len() - 2);
    let e = parse_err(&b);
    assert_eq!((e, e.status()), (ParseError::Unterminated, 400));
    let e = parse_err(b"INVITE sip:bob@example.com SIP/2.0");
    assert_eq!(e, ParseError::Unterminated);
}

#[test]
fn empty_datagram_is_empty() {
    assert_eq!(parse_err(b""), ParseError::Empty);
    assert_eq!(parse_err(b"\r\n\r\n"), ParseError::Empty);
}

#[test]
fn too_large_is_513() {
    let mut b = request(&["Content-Length: 0"]);
    b.resize(MAX_MESSAGE + 1, b'x');
    let e = parse_err(&b);
    assert_eq!((e, e.status()), (ParseError::TooLarge, 513));
    // The largest datagram is fine.
    b.truncate(MAX_MESSAGE);
    parse_ok(&b);
}

#[test]
fn too_many_headers_is_400() {
    let fill: Vec<String> = (BASE.len() - 1..=MAX_HEADERS)
        .map(|k| format!("X-H{k}: v"))
        .collect();
    let refs: Vec<&str> = fill.iter().map(String::as_str).collect();
    let b = request(&refs[..refs.len() - 1]);
    assert_eq!(parse_ok(&b).headers().len(), MAX_HEADERS);
    let e = parse_err(&request(&refs));
    assert_eq!((e, e.status()), (ParseError::TooManyHeaders, 400));
}

// ---------------------------------------------------------------------------------------------
// Start line

#[test]
fn sip_version_7_is_505() {
    let e = parse_err(&request_with(
        "INVITE",
        "INVITE sip:bob@example.com SIP/7.0",
    ));
    assert_eq!((e, e.status()), (ParseError::Version, 505));
    let e = parse_err(&request_with(
        "INVITE",
        "INVITE sip:bob@example.com SIP/2.1",
    ));
    assert_eq!(e, ParseError::Version);
}

#[test]
fn garbled_version_is_400() {
    for v in ["SIP/2.0x", "SIP/", "HTTP/1.1", "SIP/2.0 "] {
        let e = parse_err(&request_with(
            "INVITE",
            &format!("INVITE sip:bob@example.com {v}"),
        ));
        assert_eq!(e.status(), 400, "{v}");
    }
}

#[test]
fn unknown_request_uri_scheme_is_416() {
    for uri in [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "http://www.example.com/",
        "soap.beep://192.0.2.103:3002",
    ] {
        let e = parse_err(&request_with("INVITE", &format!("INVITE {uri} SIP/2.0")));
        assert_eq!((e, e.status()), (ParseError::UriScheme, 416), "{uri}");
    }
}

#[test]
fn tel_and_sips_request_uris_accepted() {
    for uri in [
        "tel:+1-201-555-0123",
        "sips:bob@example.com",
        "SIP:bob@example.com",
    ] {
        let b = request_with("INVITE", &format!("INVITE {uri} SIP/2.0"));
        let m = parse_ok(&b);
        assert_eq!(m.span(m.request_uri().unwrap()), uri.as_bytes());
    }
}

#[test]
fn request_uri_with_headers_is_400() {
    let e = parse_err(&request_with(
        "INVITE",
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
    ));
    assert_eq!((e, e.status()), (ParseError::RequestUri, 400));
}

#[test]
fn request_uri_user_part_may_hold_semicolon_and_question_mark() {
    let b = request_with(
        "INVITE",
        "INVITE sip:user;par=u%40example.net@example.com SIP/2.0",
    );
    let m = parse_ok(&b);
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.user.unwrap()), b"user;par=u%40example.net");
    assert_eq!(m.span(u.host), b"example.com");
    let b = request_with("INVITE", "INVITE sip:a?b;c@example.com;lr SIP/2.0");
    let m = parse_ok(&b);
    let u = SipUri::parse(m.buf, m.request_uri().unwrap()).unwrap();
    assert_eq!(m.span(u.user.unwrap()), b"a?b;c");
    assert_eq!(m.span(u.params), b";lr");
}

#[test]
fn request_line_spacing_is_strict() {
    for line in [
        "INVITE  sip:bob@example.com SIP/2.0",
        "INVITE sip:bob@example.com  SIP/2.0",
        "INVITE sip:bob@example.com SIP/2.0 ",
        "INVITE sip:bob@example.com; lr SIP/2.0",
        "INVITE\tsip:bob@example.com\tSIP/2.0",
        "INVITE <sip:bob@example.com> SIP/2.0",
        " INVITE sip:bob@example.com SIP/2.0",
    ] {
        let e = parse_err(&request_with("INVITE", line));
        assert_eq!(e.status(), 400, "{line:?}: {e:?}");
    }
}

#[test]
fn extension_method_parses() {
    let b = request_with("INVITE", "RE%47IST%45R sip:registrar.example.com SIP/2.0");
    let b = String::from_utf8(b)
        .unwrap()
        .replace("CSeq: 314159 INVITE", "CSeq: 314159 RE%47IST%45R");
    let m = parse_ok(b.as_bytes());
    assert_eq!(m.method(), Some(Method::Other));
    assert_eq!(m.cseq_method, Method::Other);
    assert_eq!(m.span(m.cseq_method_span), b"RE%47IST%45R");
}

#[test]
fn cseq_method_mismatch_is_400() {
    let e = parse_err(&request_with("CSeq:", "CSeq: 8 OPTIONS"));
    assert_eq!((e, e.status()), (ParseError::CSeqMethod, 400));
    // Methods are case-sensitive.
    let e = parse_err(&request_with("CSeq:", "CSeq: 8 invite"));
    assert_eq!(e, ParseError::CSeqMethod);
}

#[test]
fn cseq_and_max_forwards_out_of_range_are_400() {
    for (prefix, line, name) in [
        ("CSeq:", "CSeq: 2147483648 INVITE", "CSeq"),
        ("CSeq:", "CSeq: 36893488147419103232 INVITE", "CSeq"),
        ("CSeq:", "CSeq: -1 INVITE", "CSeq"),
        ("CSeq:", "CSeq: INVITE", "CSeq"),
        ("CSeq:", "CSeq: 1", "CSeq"),
        ("CSeq:", "CSeq: 1INVITE", "CSeq"),
        ("CSeq:", "CSeq: 1 INVITE x", "CSeq"),
        ("Max-Forwards:", "Max-Forwards: 256", "Max-Forwards"),
        ("Max-Forwards:", "Max-Forwards: -1", "Max-Forwards"),
        (
            "Max-Forwards:",
            "Max-Forwards: 1000000000000",
            "Max-Forwards",
        ),
    ] {
        let e = parse_err(&request_with(prefix, line));
        assert_eq!(
            (e, e.status()),
            (ParseError::BadHeader(name), 400),
            "{line}"
        );
    }
    let m = parse_ok(&request_with("CSeq:", "CSeq: 2147483647 INVITE")).cseq;
    assert_eq!(m, 2147483647);
}

#[test]
fn leading_zeros_in_numbers_accepted() {
    let b = request(&["Content-Length: 0000"]);
    let b = String::from_utf8(b)
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0068")
        .replace("CSeq: 314159", "CSeq: 0009");
    let m = parse_ok(b.as_bytes());
    assert_eq!(m.max_forwards.map(|m| m.0), Some(68));
    assert_eq!(m.cseq, 9);
    assert_eq!(m.content_length.map(|c| c.0), Some(0));
}

#[test]
fn max_forwards_zero_parses() {
    let m = parse_ok(&request_with("Max-Forwards:", "Max-Forwards: 0")).max_forwards;
    assert_eq!(m, Some((0, 1)));
}

#[test]
fn missing_mandatory_header_is_400() {
    for (prefix, name) in [
        ("Via:", "Via"),
        ("Call-ID:", "Call-ID"),
        ("From:", "From"),
        ("To:", "To"),
        ("CSeq:", "CSeq"),
    ] {
        let e = parse_err(&request_with(prefix, ""));
        assert_eq!((e, e.status()), (ParseError::Missing(name), 400), "{name}");
    }
    // Max-Forwards is optional for parsing (RFC 2543 requests lack it).
    assert_eq!(
        parse_ok(&request_with("Max-Forwards:", "")).max_forwards,
        None
    );
}

#[test]
fn empty_or_spaced_call_id_is_400() {
    for line in ["Call-ID:", "Call-ID: a b"] {
        let e = parse_err(&request_with("Call-ID:", line));
        assert_eq!(e, ParseError::BadHeader("Call-ID"), "{line}");
    }
}

#[test]
fn response_parses() {
    let b = build(
        &[
            "SIP/2.0 180 Ringing",
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKr",
            "From: <sip:alice@example.com>;tag=ft",
            "To: <sip:bob@example.com>;tag=tt",
            "Call-ID: resp",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        ],
        b"",
    );
    let m = parse_ok(&b);
    assert!(!m.is_request());
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.method(), None);
    assert_eq!(m.request_uri(), None);
    let StartLine::Response { reason, .. } = m.start else {
        unreachable!()
    };
    assert_eq!(m.span(reason), b"Ringing");
    assert_eq!(m.cseq_method, Method::Invite);
}

#[test]
fn response_with_empty_reason_parses() {
    for line in ["SIP/2.0 100 ", "SIP/2.0 100"] {
        let b = build(
            &[
                line,
                "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKr",
                "From: <sip:alice@example.com>;tag=ft",
                "To: <sip:bob@example.com>",
                "Call-ID: resp",
                "CSeq: 1 INVITE",
            ],
            b"",
        );
        let m = parse_ok(&b);
        let StartLine::Response { code, reason } = m.start else {
            unreachable!()
        };
        assert_eq!((code, reason.is_empty()), (100, true), "{line:?}");
    }
}

#[test]
fn bad_status_code_is_rejected() {
    for line in [
        "SIP/2.0 4294967301 better not break the receiver",
        "SIP/2.0 99 Too Small",
        "SIP/2.0 700 Too Big",
        "SIP/2.0 2x0 Nope",
        "SIP/2.0",
    ] {
        let lines = [
            line,
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKr",
            "From: <sip:alice@example.com>;tag=ft",
            "To: <sip:bob@example.com>",
            "Call-ID: resp",
            "CSeq: 1 INVITE",
        ];
        assert_eq!(
            parse_err(&build(&lines, b"")),
            ParseError::StartLine,
            "{line}"
        );
    }
}

#[test]
fn response_cseq_method_not_checked_against_start_line() {
    let b = build(
        &[
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKr",
            "From: <sip:alice@example.com>;tag=ft",
            "To: <sip:bob@example.com>;tag=tt",
            "Call-ID: resp",
            "CSeq: 1 BYE",
        ],
        b"",
    );
    assert_eq!(parse_ok(&b).cseq_method, Method::Bye);
}

#[test]
fn parse_error_statuses() {
    assert_eq!(ParseError::Version.status(), 505);
    assert_eq!(ParseError::UriScheme.status(), 416);
    assert_eq!(ParseError::TooLarge.status(), 513);
    for e in [
        ParseError::Empty,
        ParseError::StartLine,
        ParseError::RequestUri,
        ParseError::HeaderLine,
        ParseError::Unterminated,
        ParseError::TooManyHeaders,
        ParseError::Missing("Via"),
        ParseError::Repeated("To"),
        ParseError::BadHeader("Contact"),
        ParseError::ContentLength,
        ParseError::CSeqMethod,
    ] {
        assert_eq!(e.status(), 400, "{e:?}");
        assert!(e.reason().starts_with("Bad Request"), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// To and From strictness (RFC 4475 badaspec, baddn); Contact is not read

#[test]
fn spaces_inside_angle_brackets_are_400() {
    let e = parse_err(&request_with(
        "To:",
        r#"To: "Watson, Thomas" < sip:t.watson@example.org >"#,
    ));
    assert_eq!(e, ParseError::BadHeader("To"));
}

#[test]
fn unquoted_display_name_with_separators_is_400() {
    let e = parse_err(&request_with(
        "From:",
        "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
    ));
    assert_eq!(e, ParseError::BadHeader("From"));
    // Tokens separated by white space are a valid display name.
    let b = request_with(
        "From:",
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=1",
    );
    assert_eq!(parse_ok(&b).from_tag(), Some(&b"1"[..]));
}

#[test]
fn addr_spec_with_uri_headers_is_400() {
    let e = parse_err(&request_with(
        "To:",
        "To: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
    ));
    assert_eq!((e, e.status()), (ParseError::BadHeader("To"), 400));
    // In angle brackets the same URI is fine.
    parse_ok(&request_with(
        "To:",
        "To: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
    ));
}

#[test]
fn contact_forms_accepted() {
    for c in [
        "Contact: *",
        "m: <sip:a@192.0.2.1>;expires=60;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
        "Contact: sip:+19725552222@gw1.example.net;unknownparam",
        "Contact: <name:John_Smith>",
        "Contact: \"A, B\" <sip:a@h>, C <sip:c@h>;q=0.1",
    ] {
        parse_ok(&request(&[c]));
    }
}

#[test]
fn contact_is_forwarded_unread() {
    // RFC 3261 §16.3: a proxy ignores what it does not route by; the Contact bytes stay as
    // they were (a registrar or the UA at the other end judges them).
    for c in [
        "Contact:",
        "Contact: <sip:a@h>,",
        "Contact: <sip:a@h",
        "Contact: \"unbalanced <sip:a@h>",
        "Contact: no-scheme-here",
        "Contact: <sip:a@h> trailing",
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
    ] {
        let b = request(&[c]);
        let m = parse_ok(&b);
        let v = m
            .headers_named(HeaderName::Contact)
            .next()
            .unwrap()
            .1
            .value();
        assert_eq!(m.span(v), c["Contact:".len()..].trim().as_bytes(), "{c}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rewrite round trip

#[track_caller]
fn assert_round_trip(b: &[u8]) {
    let m = parse_ok(b);
    let mut r = Rewrite::new();
    let mut out = Vec::new();
    r.apply(m.buf, m.end(), &mut out);
    assert_eq!(out, &b[..m.end()]);
}

#[test]
fn rewrite_without_edits_reproduces_framed_bytes() {
    assert_round_trip(INVITE);
    let mut lead = b"\r\n\r\n".to_vec();
    lead.extend_from_slice(INVITE);
    assert_round_trip(&lead);
    let lines: Vec<&str> = BASE.iter().copied().chain(["Content-Length: 5"]).collect();
    assert_round_trip(&build(&lines, b"hello, plus bytes past the frame"));
    for f in TORTURE.iter().filter(|f| f.expect == Outcome::Parse) {
        assert_round_trip(f.bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 and RFC 5118 torture messages (tests/torture/*.sip)

/// What the parser must do with a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Parses: the proxy goes on with it (it may still answer it itself, e.g. 420 or 483).
    Parse,
    /// A request answered with this status, failing this way.
    Reject(u16, ParseError),
    /// A malformed response, failing this way: dropped (no answer to a response).
    DropResponse(ParseError),
}

struct Fixture {
    name: &'static str,
    bytes: &'static [u8],
    expect: Outcome,
}

macro_rules! fixtures {
    ($($name:literal => $expect:expr,)*) => {
        &[$(Fixture {
            name: $name,
            bytes: include_bytes!(concat!("../../../tests/torture/", $name, ".sip")),
            expect: $expect,
        },)*]
    };
}

use Outcome::{DropResponse, Parse, Reject};
use ParseError as E;

const TORTURE: &[Fixture] = fixtures! {
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
