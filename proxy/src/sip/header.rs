//! Header names: the ones the proxy reads, recognised in long and compact form, any case.

/// A header the proxy looks at, or `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    Other,
}

impl HeaderName {
    /// Recognises a header name (RFC 3261 §7.3.3 compact forms included), case-insensitively.
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
        // Dispatch on length, then first letter: one comparison for the names we know.
        let first = name[0] | 0x20;
        let (want, h): (&[u8], HeaderName) = match (name.len(), first) {
            (2, b't') => (b"to", HeaderName::To),
            (3, b'v') => (b"via", HeaderName::Via),
            (4, b'f') => (b"from", HeaderName::From),
            (4, b'c') => (b"cseq", HeaderName::CSeq),
            (5, b'r') => (b"route", HeaderName::Route),
            (7, b'c') if name[1] | 0x20 == b'a' => (b"call-id", HeaderName::CallId),
            (7, b'c') => (b"contact", HeaderName::Contact),
            (7, b'r') => (b"require", HeaderName::Require),
            (7, b's') => (b"subject", HeaderName::Subject),
            (9, b's') => (b"supported", HeaderName::Supported),
            (12, b'm') => (b"max-forwards", HeaderName::MaxForwards),
            (12, b'c') => (b"content-type", HeaderName::ContentType),
            (12, b'r') => (b"record-route", HeaderName::RecordRoute),
            (13, b'p') => (b"proxy-require", HeaderName::ProxyRequire),
            (14, b'c') => (b"content-length", HeaderName::ContentLength),
            _ => return HeaderName::Other,
        };
        // Length and first letter matched: compare the rest, folding only letters ('-' is the
        // only other character of a known name and must match as is).
        for (&a, &b) in name[1..].iter().zip(&want[1..]) {
            if a != b && ((a | 0x20) != b || b == b'-') {
                return HeaderName::Other;
            }
        }
        h
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
    }
}
