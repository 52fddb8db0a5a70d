//! The little SIP the load generator needs: a message's start line and headers (full and
//! compact names), and the requests and replies of the sipp scenarios' call flow.

use memchr::memmem;
use std::sync::LazyLock;

/// A received message, as byte ranges of its datagram.
pub struct Msg<'a> {
    /// The status code of a response; `None` for a request.
    pub status: Option<u16>,
    /// The method of a request (its first word).
    pub method: &'a [u8],
    headers: [(&'a [u8], &'a [u8]); MAX_HEADERS],
    count: usize,
}

/// Headers read at most; the generator's and siplb's messages have about a dozen.
const MAX_HEADERS: usize = 40;

/// Compact header names (RFC 3261 §7.3.3) the generator reads.
fn full_name(name: &[u8]) -> &[u8] {
    match name {
        b"v" | b"V" => b"via",
        b"f" | b"F" => b"from",
        b"t" | b"T" => b"to",
        b"i" | b"I" => b"call-id",
        b"m" | b"M" => b"contact",
        other => other,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

impl<'a> Msg<'a> {
    /// Parses the start line and headers (no folding: siplb and the generator never fold).
    pub fn parse(buf: &'a [u8]) -> Option<Msg<'a>> {
        static END: LazyLock<memmem::Finder<'static>> =
            LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
        let head = &buf[..END.find(buf)?];
        let mut lines = memchr::memchr_iter(b'\n', head)
            .chain([head.len()])
            .scan(0, |from, nl| {
                let line = trim(&head[*from..nl]);
                *from = nl + 1;
                Some(line)
            });
        let start = lines.next()?;
        let (status, method) = if let Some(rest) = start.strip_prefix(b"SIP/2.0 ") {
            let code = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
            (Some(code), &b""[..])
        } else {
            let sp = start.iter().position(|&b| b == b' ')?;
            (None, &start[..sp])
        };
        let mut headers: [(&[u8], &[u8]); MAX_HEADERS] = [(b"", b""); MAX_HEADERS];
        let mut count = 0;
        for l in lines.take(MAX_HEADERS) {
            if let Some(colon) = memchr::memchr(b':', l) {
                headers[count] = (trim(&l[..colon]), trim(&l[colon + 1..]));
                count += 1;
            }
        }
        Some(Msg {
            status,
            method,
            headers,
            count,
        })
    }

    /// Every value of header `name` (lower-case full name), in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers[..self.count]
            .iter()
            .filter(move |(n, _)| full_name(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// The method named in CSeq (which transaction a response answers).
    pub fn cseq_method(&self) -> &'a [u8] {
        self.get("cseq")
            .and_then(|v| v.split(|&b| b == b' ').nth(1))
            .unwrap_or(b"")
    }

    /// The call number the generator put at the start of the Call-ID (`<n>-load-<run>@…`).
    pub fn call(&self) -> Option<usize> {
        let id = self.get("call-id")?;
        let dash = id.iter().position(|&b| b == b'-')?;
        std::str::from_utf8(&id[..dash]).ok()?.parse().ok()
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        let to = self.get("to")?;
        let at = to
            .windows(5)
            .position(|w| w.eq_ignore_ascii_case(b";tag="))?;
        let tag = &to[at + 5..];
        Some(&tag[..tag.iter().position(|&b| b == b';').unwrap_or(tag.len())])
    }

    /// The URI inside Contact's angle brackets (or the whole value).
    pub fn contact_uri(&self) -> Option<&'a [u8]> {
        let c = self.get("contact")?;
        match (
            c.iter().position(|&b| b == b'<'),
            c.iter().position(|&b| b == b'>'),
        ) {
            (Some(a), Some(b)) if a < b => Some(&c[a + 1..b]),
            _ => Some(c),
        }
    }
}

/// What the caller of call `n` sends, and how it names itself. The addresses are text
/// (`ip:port`), written once for the run.
pub struct Party<'a> {
    pub local: &'a str,
    /// The IP part of `local`.
    pub local_ip: &'a str,
    /// The run's mark, after the call number in the Call-ID, the From tag and the branches.
    pub run: &'a str,
    pub target: &'a str,
    pub account: &'a str,
    pub number: &'a str,
}

fn push(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Appends `n` in decimal.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The INVITE of call `n`.
pub fn invite(p: &Party<'_>, n: usize) -> Vec<u8> {
    let (n, mut out) = (n as u64, Vec::with_capacity(512));
    let (l, lip, t) = (
        p.local.as_bytes(),
        p.local_ip.as_bytes(),
        p.target.as_bytes(),
    );
    let (acct, num, run) = (p.account.as_bytes(), p.number.as_bytes(), p.run.as_bytes());
    push(&mut out, &[b"INVITE sip:", num, b"@", t, b" SIP/2.0\r\n"]);
    push(&mut out, &[b"Via: SIP/2.0/UDP ", l, b";branch=z9hG4bK-"]);
    decimal(&mut out, n);
    push(
        &mut out,
        &[
            b"-",
            run,
            b"-i;rport\r\nFrom: <sip:",
            acct,
            b"@",
            lip,
            b">;tag=",
        ],
    );
    decimal(&mut out, n);
    push(
        &mut out,
        &[b"-", run, b"\r\nTo: <sip:", num, b"@", t, b">\r\nCall-ID: "],
    );
    decimal(&mut out, n);
    push(
        &mut out,
        &[b"-load-", run, b"@", lip, b"\r\nCSeq: 1 INVITE\r\n"],
    );
    push(
        &mut out,
        &[
            b"Contact: <sip:",
            acct,
            b"@",
            l,
            b">\r\nMax-Forwards: 70\r\n",
        ],
    );
    out.extend_from_slice(b"Subject: load\r\nContent-Length: 0\r\n\r\n");
    out
}

/// An in-dialog request of call `n` (ACK of the 2xx, BYE) to `uri` through `routes` (the
/// 2xx's Record-Route, reversed), or the ACK of a failure (`routes` empty, the INVITE's
/// branch and Request-URI).
#[allow(clippy::too_many_arguments)]
pub fn in_dialog(
    p: &Party<'_>,
    n: usize,
    method: &str,
    cseq: u32,
    branch: &str,
    uri: &[u8],
    to_tag: &[u8],
    routes: &[Vec<u8>],
) -> Vec<u8> {
    let (n, mut out) = (n as u64, Vec::with_capacity(512));
    let (l, lip, t) = (
        p.local.as_bytes(),
        p.local_ip.as_bytes(),
        p.target.as_bytes(),
    );
    let (acct, num, method) = (p.account.as_bytes(), p.number.as_bytes(), method.as_bytes());
    let run = p.run.as_bytes();
    push(&mut out, &[method, b" ", uri, b" SIP/2.0\r\n"]);
    push(&mut out, &[b"Via: SIP/2.0/UDP ", l, b";branch=z9hG4bK-"]);
    decimal(&mut out, n);
    push(
        &mut out,
        &[
            b"-",
            run,
            b"-",
            branch.as_bytes(),
            b";rport\r\nFrom: <sip:",
            acct,
            b"@",
            lip,
        ],
    );
    out.extend_from_slice(b">;tag=");
    decimal(&mut out, n);
    push(
        &mut out,
        &[
            b"-",
            run,
            b"\r\nTo: <sip:",
            num,
            b"@",
            t,
            b">;tag=",
            to_tag,
            b"\r\n",
        ],
    );
    for r in routes {
        push(&mut out, &[b"Route: ", r, b"\r\n"]);
    }
    out.extend_from_slice(b"Call-ID: ");
    decimal(&mut out, n);
    push(&mut out, &[b"-load-", run, b"@", lip, b"\r\nCSeq: "]);
    decimal(&mut out, cseq.into());
    push(&mut out, &[b" ", method, b"\r\nMax-Forwards: 70\r\n"]);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

/// Appends to `out` a reply to `req` as the gateway at `local` writes it: Vias and
/// Record-Routes copied, To tagged (`to_tag`), a Contact on 1xx/2xx to an INVITE.
pub fn reply(req: &Msg<'_>, code: u16, reason: &str, to_tag: &str, local: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 ");
    decimal(out, code.into());
    push(out, &[b" ", reason.as_bytes(), b"\r\n"]);
    for v in req.all("via") {
        push(out, &[b"Via: ", v, b"\r\n"]);
    }
    let invite = req.method == b"INVITE";
    if invite && code < 300 {
        for r in req.all("record-route") {
            push(out, &[b"Record-Route: ", r, b"\r\n"]);
        }
    }
    for (name, h) in [("From", "from"), ("Call-ID", "call-id"), ("CSeq", "cseq")] {
        if let Some(v) = req.get(h) {
            push(out, &[name.as_bytes(), b": ", v, b"\r\n"]);
        }
    }
    if let Some(to) = req.get("to") {
        push(out, &[b"To: ", to]);
        if !to_tag.is_empty() && req.to_tag().is_none() {
            push(out, &[b";tag=", to_tag.as_bytes()]);
        }
        out.extend_from_slice(b"\r\n");
    }
    if invite && code < 300 {
        push(out, &[b"Contact: <sip:gw@", local.as_bytes(), b">\r\n"]);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_copies_what_rfc_3261_asks_and_parses_back() {
        let p = Party {
            local: "127.0.0.1:5070",
            local_ip: "127.0.0.1",
            run: "1f2e",
            target: "127.0.0.1:5060",
            account: "acct001",
            number: "15550000001",
        };
        let inv = invite(&p, 42);
        let m = Msg::parse(&inv).unwrap();
        assert_eq!(m.method, b"INVITE");
        assert_eq!(m.call(), Some(42));
        let mut r = Vec::new();
        reply(&m, 200, "OK", "u42", "127.0.0.1:5081", &mut r);
        let r = Msg::parse(&r).unwrap();
        assert_eq!(r.status, Some(200));
        assert_eq!(r.to_tag(), Some(&b"u42"[..]));
        assert_eq!(r.cseq_method(), b"INVITE");
        assert_eq!(r.contact_uri(), Some(&b"sip:gw@127.0.0.1:5081"[..]));
        assert_eq!(r.call(), Some(42));
    }
}
