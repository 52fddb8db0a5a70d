//! What the XDP guard reads of a UDP payload to the SIP port: whether its head can be SIP.
//!
//! A SIP datagram is a keep-alive (only CR and LF bytes, any number), or at most
//! [`MAX_LEADING`] bytes of empty lines (RFC 3261 §7.5 allows them before a start line)
//! followed by a start line: a status line `SIP/2.0 NNN `, or a request line
//! `Method SP Request-URI`, where the method is a `token` (letters of either case, digits and
//! `-.!%*_+`'~`) and the Request-URI starts with a URI scheme and a colon. The guard runs these
//! functions on the first [`HEAD`] bytes after the empty lines; userspace and the tests run the
//! same ones.

/// Bytes of the payload read for the start line.
pub const HEAD: usize = 32;
/// Empty-line bytes (CR, LF) allowed before a start line.
pub const MAX_LEADING: usize = 32;

/// Whether `b` may be in a SIP `token` (RFC 3261 §25.1).
#[inline(always)]
pub fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Whether `b` may continue a URI scheme after its first letter (RFC 3986 §3.1).
#[inline(always)]
fn is_scheme(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Whether `h`, the first [`HEAD`] bytes after any empty lines, starts a SIP start line.
#[inline(always)]
pub fn looks_like_start_line(h: &[u8; HEAD]) -> bool {
    if h[0] | 0x20 == b's' && h[1] | 0x20 == b'i' && h[2] | 0x20 == b'p' && h[3] == b'/' {
        // Status line: `SIP/2.0 NNN` (the version is case-insensitive, RFC 3261 §7.1).
        return h[4] == b'2'
            && h[5] == b'.'
            && h[6] == b'0'
            && h[7] == b' '
            && h[8].is_ascii_digit()
            && h[9].is_ascii_digit()
            && h[10].is_ascii_digit();
    }
    // Request line: a method token, one space, a URI scheme and its colon.
    let mut i = 0;
    while i < HEAD && is_token(h[i]) {
        i += 1;
    }
    if i == 0 || i >= HEAD - 2 || h[i] != b' ' {
        return false;
    }
    i += 1;
    if !h[i].is_ascii_alphabetic() {
        return false;
    }
    i += 1;
    while i < HEAD && is_scheme(h[i]) {
        i += 1;
    }
    i < HEAD && h[i] == b':'
}

/// What a payload's head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Only CR and LF bytes: a keep-alive.
    KeepAlive,
    /// A start line, after this many empty-line bytes.
    StartLine(usize),
    /// Anything else.
    NotSip,
}

/// Classifies a whole payload (userspace and tests; the guard does the same in steps).
pub fn classify(payload: &[u8]) -> Head {
    let empty = |b: &u8| *b == b'\r' || *b == b'\n';
    let lead = payload.iter().take_while(|b| empty(b)).count();
    if lead == payload.len() {
        return Head::KeepAlive;
    }
    if lead > MAX_LEADING {
        return Head::NotSip;
    }
    let mut h = [0u8; HEAD];
    let rest = &payload[lead..];
    let n = rest.len().min(HEAD);
    h[..n].copy_from_slice(&rest[..n]);
    if looks_like_start_line(&h) {
        Head::StartLine(lead)
    } else {
        Head::NotSip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_sip() {
        for m in [
            &b"INVITE sip:+15551234@198.18.0.1 SIP/2.0\r\n"[..],
            b"OPTIONS sips:gw.example SIP/2.0\r\n",
            b"SIP/2.0 200 OK\r\nVia: x\r\n",
            b"SIP/2.0 486 Busy Here\r\n",
            b"sip/2.0 180 Ringing\r\n",
            b"x-Custom.Method!%*_+`'~ sip:a@b SIP/2.0\r\n",
            b"invite sip:a@b SIP/2.0\r\n",
            b"MESSAGE tel:+15551234 SIP/2.0\r\n",
            b"\r\n\r\nBYE sip:a@b SIP/2.0\r\n",
        ] {
            assert!(
                matches!(classify(m), Head::StartLine(_)),
                "{:?}",
                core::str::from_utf8(m)
            );
        }
    }

    #[test]
    fn empty_lines_alone_are_a_keep_alive() {
        assert_eq!(classify(b"\r\n\r\n"), Head::KeepAlive);
        assert_eq!(classify(b"\n"), Head::KeepAlive);
        assert_eq!(classify(b"\r\nBYE sip:a@b SIP/2.0\r\n"), Head::StartLine(2));
        assert_eq!(classify(&[b'\n'; 700]), Head::KeepAlive, "of any length");
    }

    #[test]
    fn at_most_max_leading_empty_line_bytes_before_a_start_line() {
        let line = b"BYE sip:a@b SIP/2.0\r\n";
        let with = |n: usize| [&b"\r\n".repeat(n / 2)[..], line].concat();
        assert_eq!(classify(&with(MAX_LEADING)), Head::StartLine(MAX_LEADING));
        assert_eq!(classify(&with(MAX_LEADING + 2)), Head::NotSip);
    }

    #[test]
    fn junk_after_empty_lines_is_not_sip() {
        assert_eq!(classify(b"\r\n\x00\x01garbage here"), Head::NotSip);
        assert_eq!(classify(b"\n\xff\xfe INVITE sip:a@b"), Head::NotSip);
        let mut long = [b'\n'; 40];
        long[39] = b'X';
        assert_eq!(
            classify(&long),
            Head::NotSip,
            "too many empty lines before it"
        );
    }

    #[test]
    fn junk_is_not_sip() {
        for m in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"SIP/x.y 200 OK",
            b"SIP/2.0 OK\r\n",
            b"INVITE  sip:a@b",
            b"INVITE 1sip:a@b",
            b" INVITE sip:a@b",
            b"INV\x00TE sip:a@b",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"A_very_long_method_name_of_thirty sip:a",
        ] {
            assert_eq!(classify(m), Head::NotSip, "{:?}", m);
        }
    }
}
