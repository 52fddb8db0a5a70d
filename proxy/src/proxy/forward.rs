//! Forwarding (RFC 3261 §16.6, §16.7): what siplb changes in a request it passes on (its Via
//! on top, `received`/`rport` on the sender's, Max-Forwards, its Record-Route, its own Route
//! removed, Content-Length) and in a response it passes back (its Via removed), and what it
//! reads out of them for the dialog (Contact, route sets).

use super::ids::DialogId;
use super::target::Target;
use super::via::{Received, add_received, write_via};
use crate::sip::value::{CommaList, NameAddr, SipUri, param};
use crate::sip::{HeaderName, Rewrite, SipMsg, Span};
use std::io::Write;
use std::net::SocketAddr;

/// How to forward a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward<'a> {
    /// Add siplb's Record-Route with this dialog id.
    pub record_route: Option<DialogId>,
    /// Remove this element (siplb's own Route) of the header at this index.
    pub strip_route: Option<(usize, Span)>,
    /// Write this CSeq number instead of the request's (a dialog whose CSeq towards the
    /// callee was shifted by an authenticated resend).
    pub cseq: Option<u32>,
    /// Add this to the CSeq number in a PRACK's `RAck` (RFC 3262 §7.2): it names the
    /// INVITE by the number the callee saw, shifted as the CSeq is.
    pub rack_shift: u32,
    /// Header lines (with their CRLFs) to add (`Proxy-Authorization`).
    pub headers: &'a [u8],
    /// Write this Request-URI instead of the request's.
    pub request_uri: Option<&'a [u8]>,
}

/// Writes `cseq` as the number of `msg`'s CSeq header, keeping its method.
pub(crate) fn rewrite_cseq(msg: &SipMsg<'_>, cseq: u32, rw: &mut Rewrite) {
    let buf = msg.buf;
    if let Some((_, h)) = msg.headers_named(HeaderName::CSeq).next() {
        let v = h.value();
        let (start, end) = (v.start as usize, v.end as usize);
        let digits_start = start
            + buf[start..end]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        let digits_end = digits_start
            + buf[digits_start..end]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        rw.replace(digits_start, digits_end, |o| {
            let _ = write!(o, "{cseq}");
        });
    }
}

/// Adds `shift` to the CSeq number of `msg`'s `RAck` (`RAck: <RSeq> <CSeq> <method>`),
/// never past 2^31 − 1.
fn shift_rack(msg: &SipMsg<'_>, shift: u32, rw: &mut Rewrite) {
    let buf = msg.buf;
    let Some(h) = msg
        .headers()
        .iter()
        .find(|h| h.name_bytes(buf).eq_ignore_ascii_case(b"RAck"))
    else {
        return;
    };
    let v = h.value();
    let value = &buf[v.start as usize..v.end as usize];
    let skip =
        |from: usize, f: fn(&u8) -> bool| from + value[from..].iter().take_while(|b| f(b)).count();
    let rseq_end = skip(0, u8::is_ascii_digit);
    let cseq_start = skip(rseq_end, u8::is_ascii_whitespace);
    let cseq_end = skip(cseq_start, u8::is_ascii_digit);
    if rseq_end == 0 || cseq_start == rseq_end || cseq_end == cseq_start {
        return;
    }
    let Some(n) = std::str::from_utf8(&value[cseq_start..cseq_end])
        .ok()
        .and_then(|t| t.parse::<u32>().ok())
    else {
        return;
    };
    let at = v.start as usize;
    rw.replace(at + cseq_start, at + cseq_end, |o| {
        let _ = write!(o, "{}", n.saturating_add(shift).min(i32::MAX as u32));
    });
}

/// Writes the forwarded copy of request `msg` from `src` into `out`, with siplb's Via
/// (`local`, `branch`) on top.
pub fn request(
    msg: &SipMsg<'_>,
    src: SocketAddr,
    local: Target,
    branch: &[u8],
    fwd: Forward<'_>,
    rw: &mut Rewrite,
    out: &mut Vec<u8>,
) {
    let buf = msg.buf;
    rw.clear();
    if let Some(n) = fwd.cseq {
        rewrite_cseq(msg, n, rw);
    }
    if fwd.rack_shift > 0 {
        shift_rack(msg, fwd.rack_shift, rw);
    }
    if let (Some(uri), Some(at)) = (fwd.request_uri, msg.request_uri()) {
        rw.replace(at.start as usize, at.end as usize, |o| {
            o.extend_from_slice(uri)
        });
    }
    if !fwd.headers.is_empty() {
        let at = msg.headers_end as usize;
        rw.insert(at, |o| o.extend_from_slice(fwd.headers));
    }
    let headers = msg.headers();
    let top = headers[msg.top_via_header];
    let headers_start = msg.start_line.end as usize;
    match msg.max_forwards {
        Some((mf, idx)) => {
            let v = headers[idx].value();
            rw.replace(v.start as usize, v.end as usize, |o| {
                let _ = write!(o, "{}", mf.saturating_sub(1));
            });
        }
        // RFC 3261 §16.6 step 3: added with the value 70.
        None => rw.insert(headers_start, |o| {
            o.extend_from_slice(b"Max-Forwards: 70\r\n")
        }),
    }
    if let Some(did) = fwd.record_route {
        let addr = local.addr;
        rw.insert_fmt(
            headers_start,
            format_args!("Record-Route: <sip:{addr};lr;did={did:x}>\r\n"),
        );
    }
    // After the insertions above: when the Via is the first header they share its position,
    // and edits at one position keep their order, so our Via stays next to the sender's.
    rw.insert(top.line().start as usize, |o| write_via(o, local, branch));
    add_received(msg, src, Received::Always, rw);
    if let Some((idx, elem)) = fwd.strip_route {
        remove_list_element(buf, headers[idx].line(), headers[idx].value(), elem, rw);
    }
    if msg.content_length.is_none() {
        rw.insert_fmt(
            msg.headers_end as usize,
            format_args!("Content-Length: {}\r\n", msg.body.len()),
        );
    }
    rw.apply(buf, msg.end(), out);
}

/// Writes response `msg` as passed back upstream into `out`: without siplb's Via, and with
/// CSeq number `cseq` when given (shifted back to the caller's). `vias`: the Via lines the
/// request came with, put in place of siplb's when the response has no other (see
/// [`remove_own_via`]).
pub fn response(
    msg: &SipMsg<'_>,
    cseq: Option<u32>,
    vias: Option<&[u8]>,
    rw: &mut Rewrite,
    out: &mut Vec<u8>,
) {
    let buf = msg.buf;
    rw.clear();
    if let Some(n) = cseq {
        rewrite_cseq(msg, n, rw);
    }
    remove_own_via(msg, vias, rw);
    if msg.content_length.is_none() {
        rw.insert_fmt(
            msg.headers_end as usize,
            format_args!("Content-Length: {}\r\n", msg.body.len()),
        );
    }
    rw.apply(buf, msg.end(), out);
}

/// siplb's Via taken off response `msg`. A response that carries no other Via (a UAS that
/// answered an INVITE with the Vias of the CANCEL that followed it, as many test scenarios
/// do) gets `vias`, those the request came with, in its place: what the server transaction
/// would have answered with (RFC 3261 §8.2.6.2), so that the caller can match it.
fn remove_own_via(msg: &SipMsg<'_>, vias: Option<&[u8]>, rw: &mut Rewrite) {
    let h = msg.headers()[msg.top_via_header];
    match vias {
        Some(v) => rw.replace(h.line().start as usize, h.line().end as usize, |o| {
            o.extend_from_slice(v)
        }),
        None => remove_list_element(msg.buf, h.line(), h.value(), msg.top_via.span, rw),
    }
}

/// A response passed upstream with another status line (`SIP/2.0 <code> <reason>`) and
/// without the headers called `drop`; otherwise as [`response`].
#[allow(clippy::too_many_arguments)]
pub fn response_as(
    msg: &SipMsg<'_>,
    code: u16,
    reason: &str,
    drop: &[u8],
    cseq: Option<u32>,
    vias: Option<&[u8]>,
    rw: &mut Rewrite,
    out: &mut Vec<u8>,
) {
    let buf = msg.buf;
    rw.clear();
    if let Some(n) = cseq {
        rewrite_cseq(msg, n, rw);
    }
    let line = msg.start_line;
    rw.replace(line.start as usize, line.end as usize, |o| {
        let _ = write!(o, "SIP/2.0 {code} {reason}\r\n");
    });
    remove_own_via(msg, vias, rw);
    for h in msg.headers() {
        if h.name_bytes(buf).eq_ignore_ascii_case(drop) {
            rw.delete(h.line().start as usize, h.line().end as usize);
        }
    }
    if msg.content_length.is_none() {
        rw.insert_fmt(
            msg.headers_end as usize,
            format_args!("Content-Length: {}\r\n", msg.body.len()),
        );
    }
    rw.apply(buf, msg.end(), out);
}

/// Removes one element of a comma-separated header: the whole line when it is the only one.
pub fn remove_list_element(buf: &[u8], line: Span, value: Span, elem: Span, rw: &mut Rewrite) {
    let mut elems = CommaList::new(buf, value);
    let first = elems.next();
    let second = elems.next();
    match (first, second) {
        (Some(Ok(f)), None) if f == elem => rw.delete(line.start as usize, line.end as usize),
        _ => {
            // Element and the comma (and white space) after it.
            let mut end = elem.end as usize;
            while end < value.end as usize && buf[end] != b',' {
                end += 1;
            }
            if end < value.end as usize {
                end += 1;
                while end < value.end as usize && (buf[end] == b' ' || buf[end] == b'\t') {
                    end += 1;
                }
                rw.delete(elem.start as usize, end);
            } else {
                // Last element: remove the comma before it instead.
                let mut start = elem.start as usize;
                while start > value.start as usize && buf[start - 1] != b',' {
                    start -= 1;
                }
                rw.delete(
                    start.saturating_sub(1).max(value.start as usize),
                    elem.end as usize,
                );
            }
        }
    }
}

/// The dialog id of siplb's Record-Route or Route entry `uri` (its `did` parameter).
pub fn did_param(buf: &[u8], uri: Span) -> Option<DialogId> {
    let u = SipUri::parse(buf, uri).ok()?;
    DialogId::from_param(param(buf, u.params, b"did")?.of(buf))
}

/// The URI of the first Contact of `msg`, when it can be a Request-URI: a `sip:`/`sips:` URI
/// without `?headers`, white space or control characters (empty otherwise: none, `*`,
/// another scheme). siplb's own in-dialog
/// requests (BYE) go to it.
pub fn first_contact<'a>(msg: &SipMsg<'a>) -> &'a [u8] {
    msg.headers_named(HeaderName::Contact)
        .find_map(|(_, h)| CommaList::new(msg.buf, h.value()).next()?.ok())
        .and_then(|el| NameAddr::locate(msg.buf, el))
        .filter(|na| {
            let uri = na.uri.of(msg.buf);
            !uri.iter().any(|&b| b <= b' ' || b == 0x7f)
                && SipUri::parse(msg.buf, na.uri).is_ok_and(|u| u.params.end == na.uri.end)
        })
        .map_or(&b""[..], |na| na.uri.of(msg.buf))
}

/// A route set from the Record-Route headers of `msg` (RFC 3261 §12.1), nearest hop first,
/// as the comma-separated values of a Route header. From an INVITE as received (`ours` none):
/// the proxies toward the caller, in order. From the 2xx (`ours` the dialog id siplb put in
/// its own entry): the entries above siplb's, which are the proxies toward the callee, in
/// reverse.
pub fn record_routes(msg: &SipMsg<'_>, ours: Option<DialogId>) -> Vec<u8> {
    let buf = msg.buf;
    let mut all: Vec<Span> = msg
        .headers_named(HeaderName::RecordRoute)
        .flat_map(|(_, h)| CommaList::new(buf, h.value()).filter_map(Result::ok))
        .collect();
    if let Some(did) = ours {
        let mine = all.iter().position(|el| {
            NameAddr::locate(buf, *el).and_then(|na| did_param(buf, na.uri)) == Some(did)
        });
        all.truncate(mine.unwrap_or(0));
        all.reverse();
    }
    let mut out = Vec::new();
    for (i, el) in all.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(el.of(buf));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(text: &str, name: HeaderName, nth: usize) -> String {
        let m = SipMsg::parse(text.as_bytes()).unwrap();
        let (_, h) = m.headers_named(name).next().unwrap();
        let elem = CommaList::new(m.buf, h.value()).nth(nth).unwrap().unwrap();
        let mut rw = Rewrite::new();
        remove_list_element(m.buf, h.line(), h.value(), elem, &mut rw);
        let mut out = Vec::new();
        rw.apply(m.buf, m.end(), &mut out);
        String::from_utf8(out).unwrap()
    }

    const MSG: &str = "BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        Route: <sip:a;lr>, <sip:b;lr>, <sip:c;lr>\r\nFrom: <sip:a@x>;tag=1\r\n\
        To: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn removing_a_middle_element_keeps_the_others() {
        assert!(strip(MSG, HeaderName::Route, 1).contains("Route: <sip:a;lr>, <sip:c;lr>\r\n"));
    }

    #[test]
    fn removing_the_last_element_removes_the_comma_before_it() {
        assert!(strip(MSG, HeaderName::Route, 2).contains("Route: <sip:a;lr>, <sip:b;lr>\r\n"));
    }

    #[test]
    fn removing_the_only_element_removes_the_line() {
        let one = MSG.replace("<sip:a;lr>, <sip:b;lr>, <sip:c;lr>", "<sip:a;lr>");
        assert!(!strip(&one, HeaderName::Route, 0).contains("Route"));
    }

    #[test]
    fn the_2xx_route_set_is_what_lies_beyond_siplb_reversed() {
        let did = DialogId::new(0, 0x2a).unwrap();
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            Record-Route: <sip:p2;lr>, <sip:p1;lr>\r\n\
            Record-Route: <sip:127.0.0.1:5060;lr;did=2a>, <sip:c1;lr>\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let m = SipMsg::parse(ok.as_bytes()).unwrap();
        assert_eq!(record_routes(&m, Some(did)), b"<sip:p1;lr>, <sip:p2;lr>");
        assert_eq!(
            record_routes(&m, None),
            b"<sip:p2;lr>, <sip:p1;lr>, <sip:127.0.0.1:5060;lr;did=2a>, <sip:c1;lr>"
        );
    }
}
