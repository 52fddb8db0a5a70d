//! The start line, the mandatory headers, To and From strictness, the rewrite round trip.

use super::torture::{Outcome, TORTURE};
use super::*;

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
fn a_call_id_with_bytes_outside_ascii_is_400() {
    for id in [
        &b"\xff\xfe-55218d"[..],
        b"latin1-\xe9",
        "caf\u{e9}@h".as_bytes(),
        b"a\x7f",
    ] {
        let mut b = request_with("Call-ID:", "Call-ID: PLACEHOLDER");
        let at = b.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
        b.splice(at..at + 11, id.iter().copied());
        assert_eq!(parse_err(&b), ParseError::BadHeader("Call-ID"), "{id:?}");
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
