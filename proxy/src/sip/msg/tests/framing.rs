//! Content-Length framing and bodies; line ends and the header block's framing.

use super::*;

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
