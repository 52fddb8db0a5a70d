//! Why a message could not be parsed, and what a proxy answers to it.

use thiserror::Error;

/// A parse failure. Each variant knows the status code a proxy answers a request with
/// ([`ParseError::status`]); a malformed response is dropped instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty datagram")]
    Empty,
    #[error("bad start line")]
    StartLine,
    #[error("unsupported SIP version")]
    Version,
    #[error("unsupported URI scheme")]
    UriScheme,
    #[error("bad Request-URI")]
    RequestUri,
    #[error("bad header line")]
    HeaderLine,
    #[error("missing empty line after headers")]
    Unterminated,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("repeated {0} header")]
    Repeated(&'static str),
    #[error("bad {0} header")]
    BadHeader(&'static str),
    #[error("Content-Length does not match the body")]
    ContentLength,
    #[error("CSeq method does not match the request")]
    CSeqMethod,
    #[error("message too large")]
    TooLarge,
}

impl ParseError {
    /// The status code a proxy answers a request that fails this way with (RFC 3261 §16.3,
    /// RFC 4475).
    pub fn status(self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::UriScheme => 416,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }

    /// The reason phrase sent with [`status`](Self::status): says what was wrong.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "Bad Request - Empty Message",
            ParseError::StartLine => "Bad Request - Bad Start Line",
            ParseError::Version => "Version Not Supported",
            ParseError::UriScheme => "Unsupported URI Scheme",
            ParseError::RequestUri => "Bad Request - Bad Request-URI",
            ParseError::HeaderLine => "Bad Request - Bad Header Line",
            ParseError::Unterminated => "Bad Request - Headers Not Terminated",
            ParseError::TooManyHeaders => "Bad Request - Too Many Headers",
            ParseError::Missing("Via") => "Bad Request - Missing Via",
            ParseError::Missing("Call-ID") => "Bad Request - Missing Call-ID",
            ParseError::Missing("From") => "Bad Request - Missing From",
            ParseError::Missing("To") => "Bad Request - Missing To",
            ParseError::Missing("CSeq") => "Bad Request - Missing CSeq",
            ParseError::Missing(_) => "Bad Request - Missing Header",
            ParseError::Repeated(_) => "Bad Request - Repeated Header",
            ParseError::BadHeader("Via") => "Bad Request - Bad Via",
            ParseError::BadHeader("Call-ID") => "Bad Request - Bad Call-ID",
            ParseError::BadHeader("From") => "Bad Request - Bad From",
            ParseError::BadHeader("To") => "Bad Request - Bad To",
            ParseError::BadHeader("CSeq") => "Bad Request - Bad CSeq",
            ParseError::BadHeader("Max-Forwards") => "Bad Request - Bad Max-Forwards",
            ParseError::BadHeader("Content-Length") => "Bad Request - Bad Content-Length",
            ParseError::BadHeader("Contact") => "Bad Request - Bad Contact",
            ParseError::BadHeader(_) => "Bad Request - Bad Header",
            ParseError::ContentLength => "Bad Request - Content-Length Mismatch",
            ParseError::CSeqMethod => "Bad Request - CSeq Method Mismatch",
            ParseError::TooLarge => "Message Too Large",
        }
    }
}
