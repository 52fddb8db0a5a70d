//! Header names, folding, repeated and comma-separated headers, quoted strings and
//! name-addr, IPv6 references.

use super::*;

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

#[test]
fn a_from_whose_sip_uri_does_not_parse_is_400_and_other_schemes_pass() {
    for bad in [
        r#"From: <sip:u@dom,ain"x>;tag=1"#,
        "From: <sip:u@>;tag=1",
        "From: <sip:u@host:99999>;tag=1",
    ] {
        let e = parse_err(&request_with("From:", bad));
        assert_eq!(e, ParseError::BadHeader("From"), "{bad}");
    }
    for good in [
        "From: <sip:u@edge_1.example>;tag=1",
        "From: <tel:+15551234>;tag=1",
        "From: <urn:service:sos>;tag=1",
        "From: \"A\" <sips:u@[2001:db8::1]:5061>;tag=1",
    ] {
        parse_ok(&request_with("From:", good));
    }
    // In a dialog (a To tag) the tags match the request: a peer's sloppy From passes.
    let in_dialog = String::from_utf8(request_with("From:", r#"From: <sip:u@dom,ain"x>;tag=1"#))
        .unwrap()
        .replace(
            "To: Bob <sip:bob@biloxi.example.com>",
            "To: Bob <sip:bob@biloxi.example.com>;tag=b1",
        );
    parse_ok(in_dialog.as_bytes());
}
