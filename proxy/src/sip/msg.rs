//! [`SipMsg`]: a checked, zero-copy view of one SIP message.
//!
//! Once [`SipMsg::parse`] has returned `Ok`, the headers a proxy relies on (Via, Call-ID, From,
//! To, CSeq, Max-Forwards, Content-Length) are present, single where they must be, and well
//! formed; every Via and Contact element parses; the accessors cannot fail or panic.

use super::scan::{self, LineFeeds};
use super::value::{self, CommaList, NameAddr, SipUri, Via, is_token};
use super::{HeaderName, Method, ParseError, Span};
use std::cell::OnceCell;

/// At most this many header lines; more is a 400.
pub const MAX_HEADERS: usize = 64;
/// The largest message accepted (the largest UDP payload).
pub const MAX_MESSAGE: usize = 65_535;

/// One header line. Offsets are kept as `u16` (a message is at most [`MAX_MESSAGE`] bytes): the
/// table of [`MAX_HEADERS`] is half the size, and so is every copy of a [`SipMsg`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    value: [u16; 2],
    line: [u16; 2],
}

impl Header {
    /// The value, trimmed; folded continuation lines included.
    #[inline]
    pub fn value(&self) -> Span {
        Span::new(self.value[0].into(), self.value[1].into())
    }

    /// The whole line(s), from the first byte of the name to just past the line feed.
    #[inline]
    pub fn line(&self) -> Span {
        Span::new(self.line[0].into(), self.line[1].into())
    }

    /// The header name as written (without the white space before the colon).
    pub fn name_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let line = self.line().of(buf);
        let colon = memchr::memchr(b':', line).unwrap_or(0);
        value::trim_bytes(&line[..colon])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

#[derive(Debug, Clone)]
pub struct SipMsg<'a> {
    pub buf: &'a [u8],
    pub start: StartLine,
    /// The start line including its line end.
    pub start_line: Span,
    headers: [Header; MAX_HEADERS],
    n_headers: usize,
    /// Offset of the empty line that ends the headers.
    pub headers_end: u32,
    /// The body as framed by Content-Length (bytes past it are not part of the message).
    pub body: Span,
    pub call_id: Span,
    /// The From value. A request's From is parsed and checked up front ([`from`](Self::from));
    /// a response's only when asked: siplb routes responses by Via, never by From.
    from_value: Span,
    from: Option<NameAddr>,
    /// The To value; parsed and checked up front in a request, when asked in a response
    /// ([`to`](Self::to), [`to_tag`](Self::to_tag)).
    to_value: Span,
    to: Option<NameAddr>,
    pub cseq: u32,
    pub cseq_method: Method,
    /// The CSeq method as written.
    pub cseq_method_span: Span,
    /// Max-Forwards and the index of its header.
    pub max_forwards: Option<(u32, usize)>,
    /// Content-Length and the index of its header.
    pub content_length: Option<(u32, usize)>,
    /// The first Via element and the index of its header.
    pub top_via: Via,
    pub top_via_header: usize,
    /// Index of the first Proxy-Require header, if any.
    pub proxy_require: Option<usize>,
    /// A request's Request-URI as [`SipUri::parse`] read it with the start line.
    request_uri_parsed: Option<Result<SipUri, bool>>,
    /// The From and To URIs [`SipUri::parse`]d when first asked: checks, classification,
    /// admission, routing and the call's records all read From's user and host.
    from_uri: OnceCell<Result<SipUri, bool>>,
    to_uri: OnceCell<Result<SipUri, bool>>,
    /// The From and To tags, found when first asked: a call's messages are asked for them
    /// by the transaction, the dialog and the records, a dozen times each.
    from_tag: OnceCell<Option<Span>>,
    to_tag: OnceCell<Option<Span>>,
}

/// Position of the first `b` in `buf[from..end]`, eight bytes at a time: cheaper than a
/// vectorised search for the short distance from a line's start to its colon.
#[inline]
fn find_byte(buf: &[u8], b: u8, from: usize, end: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= end {
        let w = u64::from_le_bytes(buf[i..i + 8].try_into().expect("eight bytes"));
        let x = w ^ (ONES * b as u64);
        // The lowest flagged byte is exact (only bytes above a match can be false flags).
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf[i..end].iter().position(|&c| c == b).map(|p| i + p)
}

#[inline]
fn is_sp_ht(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `start`, moved forward over spaces and tabs but not past `end`.
#[inline]
fn skip_ws(buf: &[u8], mut start: usize, end: usize) -> usize {
    while start < end && is_sp_ht(buf[start]) {
        start += 1;
    }
    start
}

/// `end`, moved back over spaces and tabs but not before `start`.
#[inline]
fn trim_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && is_sp_ht(buf[end - 1]) {
        end -= 1;
    }
    end
}

/// Whether every NUL of `h` (a start line and headers) is the second byte of a quoted pair:
/// after a `\` inside a quoted string of its header, folded lines included. One pass.
fn nuls_are_quoted_pairs(h: &[u8]) -> bool {
    let (mut quoted, mut i) = (false, 0);
    while i < h.len() {
        match h[i] {
            0 => return false,
            b'"' => quoted = !quoted,
            // The pair's second byte skipped, whatever it is but a line's end.
            b'\\' if quoted && !matches!(h.get(i + 1), Some(b'\r' | b'\n')) => i += 1,
            // A header ends where a line does not continue (folding).
            b'\n' if !matches!(h.get(i + 1), Some(b' ' | b'\t')) => quoted = false,
            _ => {}
        }
        i += 1;
    }
    true
}

/// The end of a line's content: before `\r\n` or `\n`.
fn content_end(buf: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    }
}

fn parse_version(v: &[u8]) -> Result<(), ParseError> {
    if v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"SIP/") {
        if &v[4..] == b"2.0" {
            return Ok(());
        }
        let rest = &v[4..];
        let looks_like_version =
            rest.iter().all(|b| b.is_ascii_digit() || *b == b'.') && rest.contains(&b'.');
        return Err(if looks_like_version {
            ParseError::Version
        } else {
            ParseError::StartLine
        });
    }
    Err(ParseError::StartLine)
}

fn parse_start_line(
    buf: &[u8],
    s: usize,
    e: usize,
) -> Result<(StartLine, Option<Result<SipUri, bool>>), ParseError> {
    let line = &buf[s..e];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp1 = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or(ParseError::StartLine)?;
        parse_version(&line[..sp1])?;
        let code = line.get(sp1 + 1..sp1 + 4).ok_or(ParseError::StartLine)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::StartLine);
        }
        let code = code.iter().fold(0u16, |a, d| a * 10 + (d - b'0') as u16);
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine);
        }
        let reason = match line.get(sp1 + 4) {
            None => Span::new(e, e),
            Some(b' ') => Span::new(s + sp1 + 5, e),
            Some(_) => return Err(ParseError::StartLine),
        };
        return Ok((StartLine::Response { code, reason }, None));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces.
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::StartLine)?;
    let sp2 = line
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::StartLine)?;
    if sp1 == 0 || sp2 <= sp1 + 1 {
        return Err(ParseError::StartLine);
    }
    let method = &line[..sp1];
    if !method.iter().all(|&b| is_token(b)) {
        return Err(ParseError::StartLine);
    }
    parse_version(&line[sp2 + 1..])?;
    let uri = &line[sp1 + 1..sp2];
    if uri.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(ParseError::RequestUri);
    }
    let uri_span = Span::new(s + sp1 + 1, s + sp2);
    let parsed = SipUri::parse(buf, uri_span);
    match parsed {
        // `?headers` are not allowed in a Request-URI (RFC 3261 §19.1.5; RFC 4475 escruri).
        Ok(u) if u.params.end != uri_span.end => return Err(ParseError::RequestUri),
        Ok(_) => {}
        Err(true) => {
            // Another scheme: tel: is fine for a trunk proxy, the rest is 416.
            let colon = uri.iter().position(|&b| b == b':').unwrap_or(0);
            if !uri[..colon].eq_ignore_ascii_case(b"tel") {
                return Err(ParseError::UriScheme);
            }
        }
        Err(false) => return Err(ParseError::RequestUri),
    }
    let start = StartLine::Request {
        method: Method::parse(method),
        method_span: Span::new(s, s + sp1),
        uri: uri_span,
    };
    Ok((start, Some(parsed)))
}

/// The header lines from `pos` (the line after the start line) to the empty line, into
/// `headers`. Returns their number, the offset of the empty line and that of the body.
fn header_lines(
    buf: &[u8],
    mut pos: usize,
    lfs: &mut LineFeeds<'_>,
    headers: &mut [Header; MAX_HEADERS],
) -> Result<(usize, usize, usize), ParseError> {
    let mut n = 0usize;
    let headers_end;
    loop {
        let lf = lfs.next(pos).ok_or(ParseError::Unterminated)?;
        // `buf[pos - 1]` is the previous line's feed, so a `\r` before `lf` is in this line.
        let ce = lf - usize::from(buf[lf - 1] == b'\r');
        if ce == pos {
            headers_end = pos;
            pos = lf + 1;
            break;
        }
        if is_sp_ht(buf[pos]) {
            // folded continuation of the previous header
            if n == 0 {
                return Err(ParseError::HeaderLine);
            }
            let h = &mut headers[n - 1];
            let end = trim_end(buf, pos, ce);
            if end > pos {
                if h.value[0] == h.value[1] {
                    // The value starts on this line.
                    h.value[0] = skip_ws(buf, pos, ce) as u16;
                }
                h.value[1] = end as u16;
            }
            h.line[1] = (lf + 1) as u16;
        } else {
            // name, optional white space, colon
            // The 16 bytes at the line's start usually hold the name, the colon and the
            // white space after it: one look finds all three.
            let head = scan::line_head(buf, pos).filter(|(colon, _)| *colon != 0);
            let colon = match head {
                Some((colon, _)) => pos + colon.trailing_zeros() as usize,
                None => find_byte(buf, b':', pos, ce).ok_or(ParseError::HeaderLine)?,
            };
            if colon >= ce {
                return Err(ParseError::HeaderLine);
            }
            let name_end = trim_end(buf, pos, colon);
            let name = HeaderName::parse(&buf[pos..name_end]);
            // A known name matched exactly; any other must be a token.
            if name_end == pos
                || (name == HeaderName::Other && !buf[pos..name_end].iter().all(|&b| is_token(b)))
            {
                return Err(ParseError::HeaderLine);
            }
            if n == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            let vs = match head {
                // Past the white space in view after the colon (and any beyond it).
                Some((_, ws)) if colon + 1 - pos < 16 => {
                    let not_ws = !ws >> (colon + 1 - pos);
                    let vs = colon + 1 + not_ws.trailing_zeros() as usize;
                    skip_ws(buf, vs.min(ce), ce)
                }
                _ => skip_ws(buf, colon + 1, ce),
            };
            headers[n] = Header {
                name,
                value: [vs as u16, trim_end(buf, vs, ce) as u16],
                line: [pos as u16, (lf + 1) as u16],
            };
            n += 1;
        }
        pos = lf + 1;
    }
    Ok((n, headers_end, pos))
}

impl<'a> SipMsg<'a> {
    /// Parses one datagram. Leading empty lines are skipped (RFC 3261 §7.5); bytes after the
    /// body that Content-Length frames are ignored (§18.3).
    pub fn parse(buf: &'a [u8]) -> Result<SipMsg<'a>, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        let mut s = 0;
        while s < buf.len() && (buf[s] == b'\r' || buf[s] == b'\n') {
            s += 1;
        }
        if s == buf.len() {
            return Err(ParseError::Empty);
        }
        let mut lfs = LineFeeds::new(buf, s);
        let lf = lfs.next(s).ok_or(ParseError::Unterminated)?;
        let (start, request_uri_parsed) = parse_start_line(buf, s, content_end(buf, s, lf))?;
        let start_line = Span::new(s, lf + 1);

        let mut headers = [Header::default(); MAX_HEADERS];
        let (n, headers_end, body_start) = header_lines(buf, lf + 1, &mut lfs, &mut headers)?;
        // RFC 3261 lets a NUL into a start line or a header only as a quoted pair (`\` NUL in
        // a quoted string, RFC 4475 intmeth); a raw one in a request would reach the records
        // and the logs. A response's is forwarded: refusing it would fail the call.
        if matches!(start, StartLine::Request { .. })
            && memchr::memchr(0, &buf[s..headers_end]).is_some()
            && !nuls_are_quoted_pairs(&buf[s..headers_end])
        {
            return Err(ParseError::HeaderLine);
        }

        let mut via = None;
        let mut call_id = None;
        let mut from = None;
        let mut to = None;
        let mut cseq = None;
        let mut max_forwards = None;
        let mut content_length = None;
        let mut proxy_require = None;
        fn once<T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), ParseError> {
            if slot.is_some() {
                return Err(ParseError::Repeated(name));
            }
            *slot = Some(v);
            Ok(())
        }
        let is_request = matches!(start, StartLine::Request { .. });
        for (idx, h) in headers[..n].iter().enumerate() {
            match h.name {
                // In a response only the top Via matters to siplb (it is its own); the rest
                // is the business of the hops behind it, and is forwarded unread.
                HeaderName::Via if !is_request && via.is_some() => {}
                HeaderName::Via if !is_request => {
                    let bad = ParseError::BadHeader("Via");
                    // One Via per header line is the common case: no comma list to walk.
                    let first = if memchr::memchr(b',', h.value().of(buf)).is_none() {
                        h.value()
                    } else {
                        CommaList::new(buf, h.value())
                            .next()
                            .ok_or(bad)?
                            .map_err(|_| bad)?
                    };
                    via = Some((Via::parse(buf, first).map_err(|_| bad)?, idx));
                }
                HeaderName::Via => {
                    // Every element must parse: responses travel back along them, and an
                    // empty one (`;,,` in RFC 4475 badinv01) makes the message invalid.
                    for el in CommaList::new(buf, h.value()) {
                        let bad = ParseError::BadHeader("Via");
                        let v = Via::parse(buf, el.map_err(|_| bad)?).map_err(|_| bad)?;
                        if via.is_none() {
                            via = Some((v, idx));
                        }
                    }
                }
                // Contact is not read: a proxy forwards it unchanged (RFC 3261 §16.3: components
                // not involved in validation or forwarding SHOULD be ignored), and siplb never
                // sends to an address taken from a message.
                HeaderName::CallId => {
                    let v = h.value().of(buf);
                    // A folded value has white space after its line break, so no line feed
                    // can be inside a value without a space or tab; no control character, and
                    // nothing outside ASCII, is a word's (RFC 3261 §25.1): two Call-IDs that
                    // differ only there would be one call in the records.
                    if v.is_empty() || v.iter().any(|&b| b <= b' ' || b >= 0x7f) {
                        return Err(ParseError::BadHeader("Call-ID"));
                    }
                    once(&mut call_id, h.value(), "Call-ID")?
                }
                HeaderName::From if !is_request => once(&mut from, (None, h.value()), "From")?,
                HeaderName::From => {
                    let na = NameAddr::parse(buf, h.value())
                        .map_err(|_| ParseError::BadHeader("From"))?;
                    once(&mut from, (Some(na), h.value()), "From")?
                }
                HeaderName::To if !is_request => once(&mut to, (None, h.value()), "To")?,
                HeaderName::To => {
                    let na =
                        NameAddr::parse(buf, h.value()).map_err(|_| ParseError::BadHeader("To"))?;
                    once(&mut to, (Some(na), h.value()), "To")?
                }
                HeaderName::CSeq => {
                    let v = h.value().of(buf);
                    let bad = ParseError::BadHeader("CSeq");
                    let digits = v
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .unwrap_or(v.len());
                    let num = value::parse_u32(&v[..digits])
                        .filter(|n| *n < 1 << 31)
                        .ok_or(bad)?;
                    let mut m = digits;
                    while m < v.len() && value::is_ws(v[m]) {
                        m += 1;
                    }
                    if m == digits || m == v.len() || !v[m..].iter().all(|&b| is_token(b)) {
                        return Err(bad);
                    }
                    let mspan = Span::new(h.value().start as usize + m, h.value().end as usize);
                    once(
                        &mut cseq,
                        (num, Method::parse(mspan.of(buf)), mspan),
                        "CSeq",
                    )?
                }
                HeaderName::MaxForwards => {
                    let mf = value::parse_u32(h.value().of(buf))
                        .filter(|v| *v <= 255)
                        .ok_or(ParseError::BadHeader("Max-Forwards"))?;
                    once(&mut max_forwards, (mf, idx), "Max-Forwards")?
                }
                HeaderName::ContentLength => {
                    let cl = value::parse_u32(h.value().of(buf))
                        .ok_or(ParseError::BadHeader("Content-Length"))?;
                    once(&mut content_length, (cl, idx), "Content-Length")?
                }
                HeaderName::ProxyRequire if proxy_require.is_none() => proxy_require = Some(idx),
                _ => {}
            }
        }
        let (top_via, top_via_header) = via.ok_or(ParseError::Missing("Via"))?;
        let call_id = call_id.ok_or(ParseError::Missing("Call-ID"))?;
        let from = from.ok_or(ParseError::Missing("From"))?;
        let to = to.ok_or(ParseError::Missing("To"))?;
        let (cseq, cseq_method, cseq_method_span) = cseq.ok_or(ParseError::Missing("CSeq"))?;
        if let StartLine::Request { method_span, .. } = start
            && cseq_method_span.of(buf) != method_span.of(buf)
        {
            return Err(ParseError::CSeqMethod);
        }
        let avail = buf.len() - body_start;
        let body = match content_length {
            Some((cl, _)) if cl as usize > avail => return Err(ParseError::ContentLength),
            Some((cl, _)) => Span::new(body_start, body_start + cl as usize),
            None => Span::new(body_start, buf.len()),
        };
        let msg = SipMsg {
            buf,
            start,
            start_line,
            headers,
            n_headers: n,
            headers_end: headers_end as u32,
            body,
            call_id,
            from_value: from.1,
            from: from.0,
            to_value: to.1,
            to: to.0,
            cseq,
            cseq_method,
            cseq_method_span,
            max_forwards,
            content_length,
            top_via,
            top_via_header,
            proxy_require,
            request_uri_parsed,
            from_uri: OnceCell::new(),
            to_uri: OnceCell::new(),
            from_tag: OnceCell::new(),
            to_tag: OnceCell::new(),
        };
        // A request outside a dialog (an INVITE making one) whose From has a SIP URI that
        // does not parse names no caller: its account and the records' src_user would be
        // empty (another account's limit). In a dialog the tags match it, and a peer's
        // sloppy From must not keep its BYE from ending the call.
        if is_request
            && msg.to_tag().is_none()
            && msg.from.is_some()
            && msg.from_sip_uri().is_some_and(|(_, u)| u == Err(false))
        {
            return Err(ParseError::BadHeader("From"));
        }
        Ok(msg)
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers[..self.n_headers]
    }

    /// Headers with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = (usize, &Header)> {
        self.headers()
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.name == name)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The branch of the top Via, if it has one.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.top_via.branch(self.buf).map(|s| s.of(self.buf))
    }

    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.of(self.buf)
    }

    /// The From header as name-addr (for a response located now, without judging it).
    pub fn from(&self) -> Option<NameAddr> {
        self.from
            .or_else(|| NameAddr::locate(self.buf, self.from_value))
    }

    pub fn from_tag(&self) -> Option<&'a [u8]> {
        let tag = self
            .from_tag
            .get_or_init(|| self.from().and_then(|f| f.tag(self.buf)));
        tag.map(|s| s.of(self.buf))
    }

    /// The To header as name-addr (for a response located now, without judging it).
    pub fn to(&self) -> Option<NameAddr> {
        self.to
            .or_else(|| NameAddr::locate(self.buf, self.to_value))
    }

    /// The To header as name-addr when it is one (for a response judged now, as a request's
    /// is: no NUL in it either).
    pub fn to_checked(&self) -> Option<NameAddr> {
        self.to.or_else(|| {
            let v = self.to_value;
            memchr::memchr(0, v.of(self.buf))
                .is_none()
                .then(|| NameAddr::parse(self.buf, v).ok())
                .flatten()
        })
    }

    /// The From URI and [`SipUri::parse`] of it, parsed once for all who ask.
    pub fn from_sip_uri(&self) -> Option<(Span, Result<SipUri, bool>)> {
        let f = self.from()?;
        Some((
            f.uri,
            *self.from_uri.get_or_init(|| SipUri::parse(self.buf, f.uri)),
        ))
    }

    /// The user and host of the From URI ([`SipUri::user_and_host`]).
    pub fn from_user_host(&self) -> (&'a [u8], &'a [u8]) {
        self.from_sip_uri().map_or((b"", b""), |(uri, parsed)| {
            SipUri::user_and_host_of(self.buf, uri, parsed)
        })
    }

    /// The user and host of the To URI ([`SipUri::user_and_host`]), parsed once.
    pub fn to_user_host(&self) -> (&'a [u8], &'a [u8]) {
        self.to().map_or((b"", b""), |t| {
            let parsed = *self.to_uri.get_or_init(|| SipUri::parse(self.buf, t.uri));
            SipUri::user_and_host_of(self.buf, t.uri, parsed)
        })
    }

    /// A request's Request-URI and [`SipUri::parse`] of it (made with the start line).
    pub fn request_sip_uri(&self) -> Option<(Span, Result<SipUri, bool>)> {
        Some((self.request_uri()?, self.request_uri_parsed?))
    }

    /// The user and host of a request's Request-URI ([`SipUri::user_and_host`]).
    pub fn request_user_host(&self) -> (&'a [u8], &'a [u8]) {
        self.request_sip_uri().map_or((b"", b""), |(uri, parsed)| {
            SipUri::user_and_host_of(self.buf, uri, parsed)
        })
    }

    pub fn to_tag(&self) -> Option<&'a [u8]> {
        let tag = self
            .to_tag
            .get_or_init(|| self.to().and_then(|t| t.tag(self.buf)));
        tag.map(|s| s.of(self.buf))
    }

    pub fn span(&self, s: Span) -> &'a [u8] {
        s.of(self.buf)
    }

    /// The first element of the first Route header.
    pub fn first_route(&self) -> Option<(usize, Span)> {
        let (idx, h) = self.headers_named(HeaderName::Route).next()?;
        let first = CommaList::new(self.buf, h.value()).next()?.ok()?;
        Some((idx, first))
    }

    /// Number of Via elements (comma lists counted element by element).
    pub fn via_count(&self) -> usize {
        self.headers_named(HeaderName::Via)
            .map(|(_, h)| CommaList::new(self.buf, h.value()).count())
            .sum()
    }

    /// The end of the message as framed (end of the body).
    pub fn end(&self) -> usize {
        self.body.end as usize
    }
}

#[cfg(test)]
mod tests;
