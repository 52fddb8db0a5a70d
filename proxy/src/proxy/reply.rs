//! Replies siplb answers itself: 100 Trying, errors, overload 503.

use super::via::{Received, add_received};
use crate::sip::{HeaderName, ParseError, Rewrite, SipMsg, reason_phrase};
use std::io::Write;
use std::net::SocketAddr;

/// Extra lines of a local reply, written after the copied headers (each ends with CRLF).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    pub reason: Option<&'a str>,
    pub retry_after: Option<u32>,
    /// Raw header lines, CRLF-terminated.
    pub headers: &'a [u8],
}

impl Extra<'static> {
    /// The overload answer: `503` with `Retry-After`, so the sender backs off this node.
    pub fn overload(retry_after: u32) -> Extra<'static> {
        Extra {
            retry_after: Some(retry_after),
            reason: Some("Service Unavailable - Overload"),
            headers: b"",
        }
    }

    /// A 503 while siplb drains (`core.drain`): come back later, or elsewhere.
    pub fn draining(retry_after: u32) -> Extra<'static> {
        Extra {
            retry_after: Some(retry_after),
            reason: Some("Service Unavailable - Draining"),
            headers: b"",
        }
    }
}

/// Writes a reply to `req` into `out`: status line, the request's Via headers (top one with
/// `received`/`rport` for `src`), From, To (with `to_tag` added when the request has none and
/// the code is above 100), Call-ID and CSeq, then `extra`, and an empty body.
pub fn build(
    req: &SipMsg<'_>,
    src: SocketAddr,
    code: u16,
    to_tag: &[u8],
    extra: Extra<'_>,
    scratch: &mut Rewrite,
    out: &mut Vec<u8>,
) {
    let buf = req.buf;
    let reason = extra.reason.unwrap_or_else(|| reason_phrase(code));
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for (idx, h) in req.headers().iter().enumerate() {
        match h.name {
            HeaderName::Via if idx == req.top_via_header => {
                scratch.clear();
                add_received(req, src, Received::Always, scratch);
                scratch.apply_range(buf, h.line().start as usize, h.line().end as usize, out);
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.extend_from_slice(h.line().of(buf));
            }
            HeaderName::To => {
                if code > 100 && req.to_tag().is_none() && !to_tag.is_empty() {
                    let line = h.line().of(buf);
                    let value_end = (h.value().end - h.line().start) as usize;
                    out.extend_from_slice(&line[..value_end]);
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(to_tag);
                    out.extend_from_slice(&line[value_end..]);
                } else {
                    out.extend_from_slice(h.line().of(buf));
                }
            }
            _ => {}
        }
        if !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(secs) = extra.retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    out.extend_from_slice(extra.headers);
    out.extend_from_slice(b"Server: siplb\r\nContent-Length: 0\r\n\r\n");
}

/// Answers a request that failed to parse, from whatever lines of it can be read: the request
/// line must look like one and a Via line must be there (else nobody could match the reply,
/// and it is dropped). The Via, From, To, Call-ID and CSeq lines are copied as they are.
/// Returns whether a reply was written.
pub fn build_unparsable(data: &[u8], src: SocketAddr, e: ParseError, out: &mut Vec<u8>) -> bool {
    let _ = src;
    build_from_lines(data, e, false, out)
}

/// Answers `513 Message Too Large` to the first part of a datagram too long for a receive
/// buffer: from its complete lines, when they hold a Via and a Call-ID (without them nobody
/// could match the reply). Returns whether a reply was written.
pub fn build_too_large(part: &[u8], out: &mut Vec<u8>) -> bool {
    // The last line may be cut short: only complete lines count.
    let end = part.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    build_from_lines(&part[..end], ParseError::TooLarge, true, out)
}

fn build_from_lines(data: &[u8], e: ParseError, need_call_id: bool, out: &mut Vec<u8>) -> bool {
    // Empty lines before the start line are skipped, as the parser does (RFC 3261 §7.5).
    let data = skip_empty_lines(data);
    let first_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let first = &data[..first_end];
    let is_request = first.iter().position(|&b| b == b' ').is_some_and(|sp| {
        sp > 0
            && first[..sp].iter().all(|&b| siplb_common::head::is_token(b))
            && !first[..4.min(first.len())].eq_ignore_ascii_case(b"SIP/")
    });
    if !is_request || first.starts_with(b"ACK ") {
        return false;
    }
    let code = e.status();
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", e.reason());
    let (mut has_via, mut has_call_id) = (false, false);
    let mut pos = first_end + 1;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| pos + p + 1);
        let line = &data[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        if let Some(colon) = content.iter().position(|&b| b == b':') {
            let name = HeaderName::parse(crate::sip::value::trim_bytes(&content[..colon]));
            if matches!(
                name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) && content.len() <= 1024
                && content.iter().all(|&b| b >= 0x20 || b == b'\t')
            {
                has_via |= name == HeaderName::Via;
                has_call_id |= name == HeaderName::CallId;
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
        }
        pos = end;
    }
    if !has_via || (need_call_id && !has_call_id) {
        out.clear();
        return false;
    }
    out.extend_from_slice(b"Server: siplb\r\nContent-Length: 0\r\n\r\n");
    true
}

fn skip_empty_lines(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    &data[start..]
}

/// Whether a datagram that failed to parse starts like a response (a status line), so that
/// dropping it is counted as a dropped reply.
pub fn looks_like_response(data: &[u8]) -> bool {
    skip_empty_lines(data)
        .get(..4)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"SIP/"))
}
