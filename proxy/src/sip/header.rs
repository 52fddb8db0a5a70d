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
        const NAMES: &[(&[u8], HeaderName)] = &[
            (b"via", HeaderName::Via),
            (b"from", HeaderName::From),
            (b"to", HeaderName::To),
            (b"call-id", HeaderName::CallId),
            (b"cseq", HeaderName::CSeq),
            (b"max-forwards", HeaderName::MaxForwards),
            (b"content-length", HeaderName::ContentLength),
            (b"content-type", HeaderName::ContentType),
            (b"contact", HeaderName::Contact),
            (b"route", HeaderName::Route),
            (b"record-route", HeaderName::RecordRoute),
            (b"proxy-require", HeaderName::ProxyRequire),
            (b"require", HeaderName::Require),
            (b"supported", HeaderName::Supported),
            (b"subject", HeaderName::Subject),
        ];
        for (n, h) in NAMES {
            if n.eq_ignore_ascii_case(name) {
                return *h;
            }
        }
        HeaderName::Other
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
    }
}
