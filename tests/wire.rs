//! Hand-made SIP over UDP: sockets, a minimal INVITE, status and reason of a response; and
//! the readers of siplb's ownership traces and owner hash.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// One line of an ownership trace (`debug.trace_ownership`).
#[derive(Debug, Clone)]
pub struct TraceLine {
    pub processed: u32,
    pub received: u32,
    /// Method, or status code.
    pub kind: String,
    pub cseq_method: String,
    pub call_id: String,
}

/// Every line of the ownership traces `<trace>.<w>` of `workers` workers (a missing file
/// counts as empty: that worker processed nothing).
pub fn read_trace(trace: &Path, workers: u32) -> Vec<TraceLine> {
    let mut out = Vec::new();
    for w in 0..workers {
        let text = std::fs::read_to_string(format!("{}.{w}", trace.display())).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [processed, received, kind, cseq_method, call_id] = f[..] else {
                panic!("trace line {line:?}")
            };
            out.push(TraceLine {
                processed: processed.parse().expect("worker id"),
                received: received.parse().expect("worker id"),
                kind: kind.into(),
                cseq_method: cseq_method.into(),
                call_id: call_id.into(),
            });
        }
    }
    out
}

/// The owner hash of a Call-ID, as siplb computes it.
pub fn owner(hash_key: u32, call_id: &[u8], workers: u32) -> u32 {
    siplb_common::owner_of(siplb_common::owner_hash(hash_key, call_id), workers)
}

/// A UDP socket for hand-made traffic, with a receive timeout.
pub fn udp(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    // Room for bursts of replies (SO_RCVBUFFORCE: the tests run as root).
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt reads an int from a valid pointer.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        );
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Receives everything that arrives within `quiet` of silence.
pub fn drain(s: &UdpSocket, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    s.set_read_timeout(Some(quiet)).expect("timeout");
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((from, buf[..n].to_vec()));
    }
    out
}

/// The status code of a response, if it is one.
pub fn status_of(msg: &[u8]) -> Option<u16> {
    let rest = msg.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The reason phrase of a response.
pub fn reason_of(msg: &[u8]) -> String {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    line.trim_end()
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or("")
        .to_string()
}

/// A minimal INVITE from `from` (ip:port) to siplb at `to`.
pub fn invite(from: &str, to: &str, call_id: &str, branch: &str) -> Vec<u8> {
    format!(
        "INVITE sip:15550001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\r\n\
         From: <sip:acct1@{from}>;tag=t{branch}\r\nTo: <sip:15550001@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:acct1@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A message as text (lossy).
pub fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// Every header line of `msg` named `name` (full name, any case), with its CRLF.
pub fn header_lines(msg: &[u8], name: &str) -> Vec<String> {
    text(msg)
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// A response to `req` as its recipient writes it: Vias (and for 1xx/2xx Record-Routes)
/// copied, From, To (tagged), Call-ID and CSeq, then `extra` lines.
pub fn respond(req: &[u8], code: u16, reason: &str, to_tag: &str, extra: &str) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for l in header_lines(req, "Via") {
        s += &l;
    }
    if code < 300 {
        for l in header_lines(req, "Record-Route") {
            s += &l;
        }
    }
    s += &header_lines(req, "From")[0];
    let to = header_lines(req, "To")[0].trim_end().to_string();
    if to.contains(";tag=") || code == 100 {
        s += &format!("{to}\r\n");
    } else {
        s += &format!("{to};tag={to_tag}\r\n");
    }
    s += &header_lines(req, "Call-ID")[0];
    s += &header_lines(req, "CSeq")[0];
    s += extra;
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}
