//! Header names: the ones the proxy reads, recognised in long and compact form, any case.

/// A header the proxy looks at, or `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    ProxyRequire,
    Require,
    Supported,
    Subject,
    #[default]
    Other,
}

impl HeaderName {
    /// Recognises a header name (RFC 3261 §7.3.3 compact forms included), case-insensitively.
    #[inline]
    pub fn parse(name: &[u8]) -> HeaderName {
        if name.is_empty() {
            return HeaderName::Other;
        }
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'm' => HeaderName::Contact,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                // e (Content-Encoding), o (Event), r (Refer-To), u (Allow-Events),
                // x (Session-Expires) and others: forwarded untouched.
                _ => HeaderName::Other,
            };
        }
        // Dispatch on length, then first letter; then one comparison of the whole name, with
        // the expected name a constant in each arm (so its words and case mask are too).
        macro_rules! known {
            ($want:literal, $h:expr) => {{
                const K: [u64; 4] = name_words($want);
                if matches_folded(name, K) {
                    $h
                } else {
                    HeaderName::Other
                }
            }};
        }
        let first = name[0] | 0x20;
        match (name.len(), first) {
            (2, b't') => known!(b"to", HeaderName::To),
            (3, b'v') => known!(b"via", HeaderName::Via),
            (4, b'f') => known!(b"from", HeaderName::From),
            (4, b'c') => known!(b"cseq", HeaderName::CSeq),
            (5, b'r') => known!(b"route", HeaderName::Route),
            (7, b'c') if name[1] | 0x20 == b'a' => known!(b"call-id", HeaderName::CallId),
            (7, b'c') => known!(b"contact", HeaderName::Contact),
            (7, b'r') => known!(b"require", HeaderName::Require),
            (7, b's') => known!(b"subject", HeaderName::Subject),
            (9, b's') => known!(b"supported", HeaderName::Supported),
            (12, b'm') => known!(b"max-forwards", HeaderName::MaxForwards),
            (12, b'c') => known!(b"content-type", HeaderName::ContentType),
            (12, b'r') => known!(b"record-route", HeaderName::RecordRoute),
            (13, b'p') => known!(b"proxy-require", HeaderName::ProxyRequire),
            (14, b'c') => known!(b"content-length", HeaderName::ContentLength),
            _ => HeaderName::Other,
        }
    }

    /// The canonical long name, for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Contact => "Contact",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Require => "Require",
            HeaderName::Supported => "Supported",
            HeaderName::Subject => "Subject",
            HeaderName::Other => "header",
        }
    }
}

/// `name` equals the known name whose [`name_words`] are `k`, letters compared without case:
/// two overlapping little-endian words cover any length from 2 to 16, so the comparison is a
/// few instructions instead of a loop. A byte only folds to a letter if it is that letter in
/// upper or lower case; a '-' must be a '-'.
#[inline]
fn matches_folded(name: &[u8], k: [u64; 4]) -> bool {
    let (lo, hi) = words(name);
    (lo | k[2]) == k[0] && (hi | k[3]) == k[1]
}

/// The first and the last (up to) eight bytes of `b` as little-endian words.
#[inline]
fn words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if n >= 8 {
        let lo = u64::from_le_bytes(b[..8].try_into().expect("eight bytes"));
        let hi = u64::from_le_bytes(b[n - 8..].try_into().expect("eight bytes"));
        (lo, hi)
    } else {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(b);
        let v = u64::from_le_bytes(w);
        (v, v)
    }
}

/// For a known name (lower case letters and '-', 2 to 16 bytes): its first and last words as
/// [`words`] reads them, and for each a mask with 0x20 in the bytes that are letters.
const fn name_words(w: &[u8]) -> [u64; 4] {
    let n = w.len();
    assert!(n >= 2 && n <= 16);
    let (lo_start, hi_start, len) = if n >= 8 { (0, n - 8, 8) } else { (0, 0, n) };
    let mut k = [0u64; 4];
    let mut i = 0;
    while i < len {
        let (a, b) = (w[lo_start + i], w[hi_start + i]);
        k[0] |= (a as u64) << (8 * i);
        k[1] |= (b as u64) << (8 * i);
        if a.is_ascii_lowercase() {
            k[2] |= 0x20 << (8 * i);
        }
        if b.is_ascii_lowercase() {
            k[3] |= 0x20 << (8 * i);
        }
        i += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_names_any_case() {
        assert_eq!(HeaderName::parse(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::parse(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::parse(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::parse(b"cAll-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::parse(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse(b"m"), HeaderName::Contact);
        assert_eq!(HeaderName::parse(b"Record-Route"), HeaderName::RecordRoute);
        assert_eq!(HeaderName::parse(b"e"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"X-Custom"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b""), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"CONTACT"), HeaderName::Contact);
        assert_eq!(HeaderName::parse(b"Content-Type"), HeaderName::ContentType);
        assert_eq!(HeaderName::parse(b"Max-Forwards"), HeaderName::MaxForwards);
        assert_eq!(
            HeaderName::parse(b"Proxy-Require"),
            HeaderName::ProxyRequire
        );
        assert_eq!(HeaderName::parse(b"Requires"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"Call\rid"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"Call\x0did"), HeaderName::Other);
        assert_eq!(
            HeaderName::parse(b"CONTENT-LENGTH"),
            HeaderName::ContentLength
        );
        assert_eq!(HeaderName::parse(b"content_length"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"Record-Routf"), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"tO"), HeaderName::To);
        assert_eq!(HeaderName::parse(b"t@"), HeaderName::Other);
    }
}
