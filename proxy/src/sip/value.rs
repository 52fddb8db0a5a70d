//! Header value grammar: comma lists, quoted strings, name-addr, URI host and port, Via, params.
//!
//! Everything works on byte ranges ([`Span`]) into the message buffer and never copies.

// The grammar helpers answer "malformed" with `Err(())`: the caller knows which header it was
// reading and turns that into the `ParseError` that names it.
#![allow(clippy::result_unit_err)]

use super::Span;
use std::net::IpAddr;

#[inline]
pub fn is_ws(b: u8) -> bool {
    CLASS[b as usize] & WS != 0
}

const TOKEN_CHAR: u8 = 1;
const WS: u8 = 2;
/// Characters of a URI scheme: alphanumerics and `+-.`.
const SCHEME: u8 = 4;
/// Characters of a host name or IPv4 address: alphanumerics and `-.`.
const HOST: u8 = 8;

/// Character classes, one table lookup per byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            c |= TOKEN_CHAR;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            c |= WS;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') {
            c |= SCHEME;
        }
        // `_` is no hostname's (RFC 1123), but hosts of SIP peers have it, and Kamailio
        // takes it.
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            c |= HOST;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A `token` character (RFC 3261 §25.1).
#[inline]
pub fn is_token(b: u8) -> bool {
    CLASS[b as usize] & TOKEN_CHAR != 0
}

/// `span` without surrounding white space (folding included).
pub fn trim(buf: &[u8], mut span: Span) -> Span {
    while span.start < span.end && is_ws(buf[span.start as usize]) {
        span.start += 1;
    }
    while span.end > span.start && is_ws(buf[span.end as usize - 1]) {
        span.end -= 1;
    }
    span
}

/// `b` without surrounding white space.
pub fn trim_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b
        && is_ws(*first)
    {
        b = rest;
    }
    while let [rest @ .., last] = b
        && is_ws(*last)
    {
        b = rest;
    }
    b
}

/// Index just past the closing quote of a quoted string whose opening quote is at `i`, honouring
/// backslash escapes; `None` when it never closes.
pub fn skip_quoted(buf: &[u8], mut i: usize, end: usize) -> Option<usize> {
    debug_assert_eq!(buf[i], b'"');
    i += 1;
    while i < end {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits a comma-separated header value into its elements, skipping commas inside quoted
/// strings and `<...>`. Yields trimmed spans; `Err` on an unbalanced quote or angle bracket.
pub struct CommaList<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    done: bool,
}

impl<'a> CommaList<'a> {
    pub fn new(buf: &'a [u8], span: Span) -> Self {
        Self {
            buf,
            pos: span.start as usize,
            end: span.end as usize,
            done: false,
        }
    }
}

impl Iterator for CommaList<'_> {
    type Item = Result<Span, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = self.pos;
        while i < self.end {
            // Jump to the next byte that matters.
            match memchr::memchr3(b'"', b'<', b',', &self.buf[i..self.end]) {
                None => i = self.end,
                Some(p) => i += p,
            }
            if i >= self.end {
                break;
            }
            match self.buf[i] {
                b'"' => match skip_quoted(self.buf, i, self.end) {
                    Some(j) => i = j,
                    None => {
                        self.done = true;
                        return Some(Err(()));
                    }
                },
                b'<' => match memchr::memchr(b'>', &self.buf[i..self.end]) {
                    Some(j) => i += j + 1,
                    None => {
                        self.done = true;
                        return Some(Err(()));
                    }
                },
                _ => break, // ','
            }
        }
        if i >= self.end {
            self.done = true;
        }
        self.pos = i + 1;
        Some(Ok(trim(self.buf, Span::new(start, i))))
    }
}

/// The end of an unquoted parameter value starting at `v`: the next `;`, or `end`. `None` when
/// a quote comes first (then the general parser handles it). Values are short: a plain loop
/// beats a vectorised search here.
#[inline]
fn plain_value_end(buf: &[u8], v: usize, end: usize) -> Option<usize> {
    let mut j = v;
    while j < end {
        match buf[j] {
            b';' => return Some(j),
            b'"' => return None,
            _ => j += 1,
        }
    }
    Some(end)
}

/// `;name=value` parameters in `span` (which starts at or before the first `;`). Yields
/// `(name, value)` with an empty value span for a flag parameter. Quoted values are kept quoted.
pub struct Params<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Params<'a> {
    pub fn new(buf: &'a [u8], span: Span) -> Self {
        Self {
            buf,
            pos: span.start as usize,
            end: span.end as usize,
        }
    }
}

impl Iterator for Params<'_> {
    type Item = (Span, Span);

    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.buf;
        // find next ';'
        self.pos += memchr::memchr(b';', &buf[self.pos.min(self.end)..self.end])?;
        let name_start = self.pos + 1;
        let i = memchr::memchr2(b'=', b';', &buf[name_start..self.end])
            .map_or(self.end, |p| name_start + p);
        let name = trim(buf, Span::new(name_start, i));
        if i < self.end && buf[i] == b'=' {
            let vstart = i + 1;
            let mut j = vstart;
            loop {
                match memchr::memchr2(b';', b'"', &buf[j..self.end]) {
                    None => {
                        j = self.end;
                        break;
                    }
                    Some(p) if buf[j + p] == b';' => {
                        j += p;
                        break;
                    }
                    Some(p) => j = skip_quoted(buf, j + p, self.end).unwrap_or(self.end),
                }
            }
            self.pos = j;
            Some((name, trim(buf, Span::new(vstart, j))))
        } else {
            self.pos = i;
            Some((name, Span::new(i, i)))
        }
    }
}

/// The value of parameter `name` (case-insensitive) within `span`.
pub fn param(buf: &[u8], span: Span, name: &[u8]) -> Option<Span> {
    Params::new(buf, span)
        .find(|(n, _)| n.of(buf).eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A `name-addr` or `addr-spec` (From, To, Contact, Route, Record-Route element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr {
    /// The URI, without angle brackets.
    pub uri: Span,
    /// The header parameters after the URI (starting at the first `;`), possibly empty.
    pub params: Span,
}

impl NameAddr {
    /// Parses `[display-name] <URI> *(;param)` or `URI *(;param)`. Rejects what RFC 4475 calls
    /// invalid in these forms: an unbalanced quote, an unquoted display name with non-token
    /// characters (`baddn`), white space inside the angle brackets (`badaspec`), and a bare
    /// URI with `?headers` that must have been in angle brackets (`regbadct`, RFC 3261 §20).
    pub fn parse(buf: &[u8], span: Span) -> Result<NameAddr, ()> {
        let span = trim(buf, span);
        let (s, e) = (span.start as usize, span.end as usize);
        if s == e {
            return Err(());
        }
        // name-addr: [display-name] <uri> params
        let mut i = s;
        let mut lt = None;
        while i < e {
            match memchr::memchr3(b'"', b'<', b';', &buf[i..e]) {
                None => break,
                Some(p) => i += p,
            }
            match buf[i] {
                b'"' => i = skip_quoted(buf, i, e).ok_or(())?,
                b'<' => {
                    lt = Some(i);
                    break;
                }
                _ => break, // ';'
            }
        }
        if let Some(lt) = lt {
            // display-name = *(token LWS) / quoted-string; UTF-8 outside quotes is tolerated.
            let mut i = s;
            while i < lt {
                match buf[i] {
                    b'"' => i = skip_quoted(buf, i, lt).ok_or(())?,
                    b if CLASS[b as usize] & (TOKEN_CHAR | WS) != 0 || b >= 0x80 => i += 1,
                    _ => return Err(()),
                }
            }
            let gt = lt + memchr::memchr(b'>', &buf[lt..e]).ok_or(())?;
            let uri = Span::new(lt + 1, gt);
            if !is_uri(uri.of(buf)) {
                return Err(());
            }
            let params = trim(buf, Span::new(gt + 1, e));
            if !params.is_empty() && buf[params.start as usize] != b';' {
                return Err(());
            }
            return Ok(NameAddr {
                uri,
                params: Span::new(gt + 1, e),
            });
        }
        // addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10).
        let semi = buf[s..e]
            .iter()
            .position(|&b| b == b';')
            .map_or(e, |p| s + p);
        let uri = trim(buf, Span::new(s, semi));
        if !is_uri(uri.of(buf)) || uri.of(buf).contains(&b'?') {
            return Err(());
        }
        Ok(NameAddr {
            uri,
            params: Span::new(semi, e),
        })
    }

    /// Where the URI and the parameters are, without judging the display name or the URI
    /// (for headers siplb reads but does not vouch for, as the To of a response).
    pub fn locate(buf: &[u8], span: Span) -> Option<NameAddr> {
        let (s, e) = (span.start as usize, span.end as usize);
        let mut i = s;
        loop {
            let Some(p) = memchr::memchr3(b'"', b'<', b';', &buf[i..e]) else {
                return Some(NameAddr {
                    uri: trim(buf, span),
                    params: Span::new(e, e),
                });
            };
            i += p;
            match buf[i] {
                b'"' => i = skip_quoted(buf, i, e)?,
                b'<' => {
                    let gt = i + memchr::memchr(b'>', &buf[i..e])?;
                    return Some(NameAddr {
                        uri: Span::new(i + 1, gt),
                        params: Span::new(gt + 1, e),
                    });
                }
                _ => {
                    return Some(NameAddr {
                        uri: trim(buf, Span::new(s, i)),
                        params: Span::new(i, e),
                    });
                }
            }
        }
    }

    pub fn tag(&self, buf: &[u8]) -> Option<Span> {
        // Fast path: `;tag=` is usually the first parameter.
        let (s, e) = (self.params.start as usize, self.params.end as usize);
        if e - s > 5
            && buf[s..s + 5].eq_ignore_ascii_case(b";tag=")
            && let Some(end) = plain_value_end(buf, s + 5, e)
        {
            return Some(trim(buf, Span::new(s + 5, end))).filter(|t| !t.is_empty());
        }
        param(buf, self.params, b"tag").filter(|t| !t.is_empty())
    }
}

/// `scheme ":" rest` without white space: the shape of any URI a name-addr may hold.
fn is_uri(u: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', u) else {
        return false;
    };
    colon > 0
        && u[0].is_ascii_alphabetic()
        && u[..colon].iter().all(|&b| CLASS[b as usize] & SCHEME != 0)
        && u.iter().all(|&b| CLASS[b as usize] & WS == 0)
}

/// The parts of a SIP URI the proxy needs: scheme, host and port, and the URI parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Span,
    pub user: Option<Span>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: Span,
    pub port: Option<u16>,
    /// URI parameters (starting at the first `;` after host/port), possibly empty.
    pub params: Span,
}

impl SipUri {
    /// Parses `sip:`/`sips:` URIs. Other schemes give `Err(true)`, malformed ones `Err(false)`.
    pub fn parse(buf: &[u8], span: Span) -> Result<SipUri, bool> {
        let (s, e) = (span.start as usize, span.end as usize);
        // Fast path for the schemes siplb routes.
        let b = &buf[s..e];
        let colon = if b.len() > 4 && b[..4].eq_ignore_ascii_case(b"sip:") {
            s + 3
        } else if b.len() > 5 && b[..5].eq_ignore_ascii_case(b"sips:") {
            s + 4
        } else {
            let colon = memchr::memchr(b':', b).ok_or(false)? + s;
            let sch = &buf[s..colon];
            if sch.is_empty() || !sch.iter().all(|&b| CLASS[b as usize] & SCHEME != 0) {
                return Err(false);
            }
            return Err(true);
        };
        let scheme = Span::new(s, colon);
        let rest = colon + 1;
        let (at, hp_end) = user_and_host_ends(&buf[rest..e]);
        let (user, host_start) = match at {
            Some(p) => (Some(Span::new(rest, rest + p)), rest + p + 1),
            None => (None, rest),
        };
        let hp_end = rest + hp_end;
        let (host, port) =
            parse_host_port(buf, Span::new(host_start, hp_end)).map_err(|_| false)?;
        let params_end = buf[hp_end..e]
            .iter()
            .position(|&c| c == b'?')
            .map_or(e, |p| hp_end + p);
        Ok(SipUri {
            scheme,
            user,
            host,
            port,
            params: Span::new(hp_end, params_end),
        })
    }

    /// The user and host of the URI at `span`, as accounts and records name them: a SIP
    /// URI's user (empty when it has none) and host; a `tel:` URI's number as written, up to
    /// its parameters, and no host (RFC 3966); both empty for any other URI, or a malformed one.
    pub fn user_and_host(buf: &[u8], span: Span) -> (&[u8], &[u8]) {
        SipUri::user_and_host_of(buf, span, SipUri::parse(buf, span))
    }

    /// [`user_and_host`](Self::user_and_host) of the URI at `span` parsed already
    /// (`parsed`, what [`SipUri::parse`] gave).
    pub fn user_and_host_of(
        buf: &[u8],
        span: Span,
        parsed: Result<SipUri, bool>,
    ) -> (&[u8], &[u8]) {
        match parsed {
            Ok(u) => (u.user.map_or(&b""[..], |s| s.of(buf)), u.host.of(buf)),
            Err(true) => match span.of(buf) {
                [t, e, l, b':', rest @ ..] if [*t, *e, *l].eq_ignore_ascii_case(b"tel") => {
                    (rest.split(|&b| b == b';').next().unwrap_or(b""), b"")
                }
                _ => (b"", b""),
            },
            Err(false) => (b"", b""),
        }
    }
}

/// Where the user and the host part end in the text of a SIP URI after its scheme's colon:
/// the index of the `@` that ends the user, if there is one, and the index where host and
/// port end (the first `;` or `?` after them, or the end). The user ends at the last `@`
/// before the first `;` or `?` (an `@` in the user is escaped, `%40`) or, when there is
/// none, at the first `@` further on: a user may hold a `;` (`sip:a;b=c@host`). One pass
/// over bytes that are nearly always few: three library searches of a few bytes each cost
/// more than it (`SipUri::user_and_host`, ten a call in `acc/shard`).
fn user_and_host_ends(b: &[u8]) -> (Option<usize>, usize) {
    let mut at = None;
    let mut sep = b.len();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'@' => at = Some(i),
            b';' | b'?' => {
                sep = i;
                break;
            }
            _ => {}
        }
    }
    if at.is_some() || sep == b.len() {
        return (at, sep);
    }
    match b[sep..].iter().position(|&c| c == b'@') {
        Some(p) => {
            let at = sep + p;
            let end = b[at + 1..]
                .iter()
                .position(|&c| c == b';' || c == b'?')
                .map_or(b.len(), |q| at + 1 + q);
            (Some(at), end)
        }
        None => (None, sep),
    }
}

/// `host[:port]` with IPv6 references in brackets.
pub fn parse_host_port(buf: &[u8], span: Span) -> Result<(Span, Option<u16>), ()> {
    let span = trim(buf, span);
    let (s, e) = (span.start as usize, span.end as usize);
    if s >= e {
        return Err(());
    }
    let host_end = if buf[s] == b'[' {
        let close = memchr::memchr(b']', &buf[s..e]).ok_or(())? + s;
        let inner = std::str::from_utf8(&buf[s + 1..close]).map_err(|_| ())?;
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| ())?;
        close + 1
    } else {
        let mut i = s;
        while i < e && CLASS[buf[i] as usize] & HOST != 0 {
            i += 1;
        }
        if i == s {
            return Err(());
        }
        i
    };
    let host = Span::new(s, host_end);
    if host_end == e {
        return Ok((host, None));
    }
    if buf[host_end] != b':' {
        return Err(());
    }
    let port = trim_bytes(&buf[host_end + 1..e]);
    if port.is_empty() || port.len() > 5 {
        return Err(());
    }
    let mut v = 0u32;
    for &d in port {
        if !d.is_ascii_digit() {
            return Err(());
        }
        v = v * 10 + (d - b'0') as u32;
    }
    if v > 65535 {
        return Err(());
    }
    Ok((host, Some(v as u16)))
}

/// The host of a URI or Via as an IP address (brackets of IPv6 references removed).
pub fn host_ip(host: &[u8]) -> Option<IpAddr> {
    let h = if host.first() == Some(&b'[') && host.last() == Some(&b']') {
        &host[1..host.len() - 1]
    } else {
        host
    };
    std::str::from_utf8(h).ok()?.parse().ok()
}

/// A decimal number of at most 10 digits that fits in u32.
pub fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u64 = b.iter().fold(0, |a, d| a * 10 + (d - b'0') as u64);
    u32::try_from(v).ok()
}

/// One Via element: `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// The whole element (trimmed).
    pub span: Span,
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    /// Parameters, starting at the first `;`.
    pub params: Span,
}

impl Via {
    pub fn parse(buf: &[u8], span: Span) -> Result<Via, ()> {
        let span = trim(buf, span);
        let (s, e) = (span.start as usize, span.end as usize);
        // Fast path for the form everybody sends: `SIP/2.0/UDP host…`.
        if e - s > 8 && buf[s..s + 8].eq_ignore_ascii_case(b"SIP/2.0/") {
            let mut i = s + 8;
            while i < e && is_token(buf[i]) {
                i += 1;
            }
            let transport = Span::new(s + 8, i);
            if !transport.is_empty() && i < e && is_ws(buf[i]) {
                while i < e && is_ws(buf[i]) {
                    i += 1;
                }
                let sb_end = memchr::memchr(b';', &buf[i..e]).map_or(e, |p| i + p);
                let (host, port) = parse_host_port(buf, Span::new(i, sb_end))?;
                return Ok(Via {
                    span,
                    transport,
                    host,
                    port,
                    params: Span::new(sb_end, e),
                });
            }
        }
        // sent-protocol: name / version / transport, white space allowed around '/'.
        let mut i = s;
        let mut parts = [Span::new(0, 0); 3];
        for (k, part) in parts.iter_mut().enumerate() {
            while i < e && is_ws(buf[i]) {
                i += 1;
            }
            let ps = i;
            while i < e && !is_ws(buf[i]) && buf[i] != b'/' {
                i += 1;
            }
            *part = Span::new(ps, i);
            if part.is_empty() {
                return Err(());
            }
            while i < e && is_ws(buf[i]) {
                i += 1;
            }
            if k < 2 {
                if i >= e || buf[i] != b'/' {
                    return Err(());
                }
                i += 1;
            }
        }
        if !parts[0].of(buf).eq_ignore_ascii_case(b"SIP") || parts[1].of(buf) != b"2.0" {
            return Err(());
        }
        let sb_end = buf[i..e]
            .iter()
            .position(|&b| b == b';')
            .map_or(e, |p| i + p);
        let (host, port) = parse_host_port(buf, Span::new(i, sb_end))?;
        Ok(Via {
            span,
            transport: parts[2],
            host,
            port,
            params: Span::new(sb_end, e),
        })
    }

    pub fn branch(&self, buf: &[u8]) -> Option<Span> {
        // Fast path: nearly every Via has `;branch=` first.
        let (s, e) = (self.params.start as usize, self.params.end as usize);
        if e - s > 8 && buf[s..s + 8].eq_ignore_ascii_case(b";branch=") {
            let v = s + 8;
            let end = memchr::memchr2(b';', b'"', &buf[v..e]).map_or(e, |p| v + p);
            if end == e || buf[end] == b';' {
                return Some(trim(buf, Span::new(v, end)));
            }
        }
        param(buf, self.params, b"branch")
    }
}

#[cfg(test)]
mod tests;
