//! The proxy's own Via: `received`/`rport` on the sender's Via, our Via on what we forward,
//! branch generation.

use super::target::Target;
use crate::sip::value::{Params, host_ip};
use crate::sip::{HeaderName, Rewrite, SipMsg};
use std::net::{IpAddr, SocketAddr};

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Always add `received` and `rport` (Kamailio's `force_rport()`): replies go back to the
    /// source address and port whatever the Via says.
    Always,
}

/// Adds `;received=<ip>;rport=<port>` to the top Via element of `msg` for source `src`
/// (replacing an empty `rport` flag and an existing `received`), as edits in `rw`.
pub fn add_received(msg: &SipMsg<'_>, src: SocketAddr, _mode: Received, rw: &mut Rewrite) {
    let buf = msg.buf;
    let via = msg.top_via;
    for (name, value) in Params::new(buf, via.params) {
        let n = name.of(buf);
        if n.eq_ignore_ascii_case(b"rport") || n.eq_ignore_ascii_case(b"received") {
            // from the ';' before the name to the end of the value
            let start = buf[..name.start as usize]
                .iter()
                .rposition(|&b| b == b';')
                .unwrap_or(name.start as usize);
            rw.delete(start, value.end.max(name.end) as usize);
        }
    }
    let ip = src.ip();
    rw.insert(via.span.end as usize, |out| {
        use std::io::Write;
        let _ = match ip {
            IpAddr::V4(v4) => write!(out, ";received={v4};rport={}", src.port()),
            IpAddr::V6(v6) => write!(out, ";received=[{v6}];rport={}", src.port()),
        };
    });
}

/// Writes `Via: SIP/2.0/<transport> <local>;branch=<branch>\r\n`.
pub fn write_via(out: &mut Vec<u8>, local: Target, branch: &[u8]) {
    use std::io::Write;
    let (t, addr) = (local.transport.via_name(), local.addr);
    let _ = write!(out, "Via: SIP/2.0/{t} {addr};branch=");
    out.extend_from_slice(branch);
    out.extend_from_slice(b"\r\n");
}

/// Whether a response carries a Via value below the top one. Without one it was meant for
/// this element and is not passed on (RFC 3261 §16.7 step 3): a gateway that drops the
/// caller's Via answers nobody siplb could forward to.
pub fn has_via_below_top(msg: &SipMsg<'_>) -> bool {
    let buf = msg.buf;
    msg.headers_named(HeaderName::Via).any(|(i, h)| {
        let v = h.value();
        let start = if i == msg.top_via_header {
            msg.top_via.span.end
        } else {
            v.start
        };
        buf[start as usize..v.end as usize]
            .iter()
            .any(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b','))
    })
}

/// Whether the top Via of a response names us (sent-by equals our address).
pub fn top_via_is_ours(msg: &SipMsg<'_>, local: SocketAddr) -> bool {
    let buf = msg.buf;
    let via = msg.top_via;
    via.port.unwrap_or(5060) == local.port() && host_ip(via.host.of(buf)) == Some(local.ip())
}
