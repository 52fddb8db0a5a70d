//! The fuzz test's randomness and its mutations: ways of mangling a SIP message.

/// xorshift64*: small, seeded, the same everywhere.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(super) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Pieces that parsers trip over, inserted or swapped in by the mutations.
const PIECES: &[&[u8]] = &[
    b"\0",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"%",
    b"%zz",
    b"=",
    b"@",
    b":",
    b"[",
    b"]",
    b"[::1]",
    b"sip:",
    b"sips:",
    b"tel:",
    b";tag=",
    b";branch=",
    b";branch=z9hG4bK",
    b";lr",
    b";rport",
    b";received=",
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xe2\x82",
    b"SIP/2.0",
    b"SIP/3.0",
    b"INVITE",
    b"ACK",
    b"BYE",
    b"CANCEL",
];

/// Header lines added by the mutations.
const HEADERS: &[&str] = &[
    "Content-Length: 99999\r\n",
    "Content-Length: -1\r\n",
    "Content-Length: 0\r\n",
    "l: 4\r\n",
    "Max-Forwards: 0\r\n",
    "Max-Forwards: 1\r\n",
    "Max-Forwards: 4294967296\r\n",
    "Route: <sip:127.0.0.1:5060;lr>\r\n",
    "Route: <sip:192.0.2.9;lr>, <sip:127.0.0.1:5060;lr>\r\n",
    "Route: <sip:[::1]:5060;lr>\r\n",
    "Record-Route: <sip:192.0.2.9;lr>\r\n",
    "Require: 100rel\r\n",
    "Proxy-Require: foo\r\n",
    "Supported: timer\r\n",
    "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-x\r\n",
    "Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK-v6;rport\r\n",
    "Via: SIP/2.0/TCP 127.0.0.1\r\n",
    "Via: SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bK-port\r\n",
    "v: SIP/2.0/UDP 127.0.0.1:5070;branch=1\r\n",
    "Reason: Q.850;cause=99999999999;text=\"x\"\r\n",
    "Reason: Q.850;cause=16\r\n",
    "Reason: SIP;cause=200\r\n",
    "CSeq: 4294967296 INVITE\r\n",
    "CSeq: 2 BYE\r\n",
    "CSeq: 1\r\n",
    "Call-ID: second\r\n",
    "i: \r\n",
    "From: <sip:mallory@192.0.2.9>;tag=m\r\n",
    "To: <sip:bob@carrier.example>;tag=a;tag=b\r\n",
    "t: sip:x@y\r\n",
    "Contact: *\r\n",
    "Contact: <sip:alice@[::1]:5070>\r\n",
    "m: <sip:a@b>;expires=0, <sip:c@d>\r\n",
    "Expires: forever\r\n",
    "Authorization: Digest username=\"alice\", realm=\"x\", nonce=\"n\", uri=\"sip:x\", response=\"0\"\r\n",
    "Proxy-Authorization: Digest username=\"\", nonce=\"\", response=\"\"\r\n",
    "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"\r\n",
    "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", algorithm=SHA-256\r\n",
    "Retry-After: 99999999999\r\n",
    "Content-Type: application/sdp\r\n",
    "X-Empty:\r\n",
    "Folded: a\r\n  b\r\n\tc\r\n",
];

/// Compact and odd-case spellings of header names, swapped for the usual ones.
const NAMES: &[(&str, &str)] = &[
    ("Via:", "v:"),
    ("Via:", "VIA :"),
    ("Call-ID:", "i:"),
    ("Call-ID:", "call-id:"),
    ("From:", "f:"),
    ("To:", "t:"),
    ("Contact:", "m:"),
    ("Content-Length:", "l:"),
    ("CSeq:", "cseq:"),
    ("Max-Forwards:", "max-forwards:"),
];

/// Mangles `data` one way.
pub(super) fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    match rng.below(13) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        1 => {
            let i = rng.below(len + 1);
            let piece = rng.pick(PIECES);
            data.splice(i..i, piece.iter().copied());
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(16.min(len - i));
            data.drain(i..i + n);
        }
        3 => data.truncate(rng.below(len + 1)),
        4 | 5 => {
            // A line repeated, dropped, or two lines swapped.
            let mut lines = split_lines(data);
            if lines.len() > 1 {
                let i = 1 + rng.below(lines.len() - 1);
                match rng.below(3) {
                    0 => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    1 => {
                        lines.remove(i);
                    }
                    _ => {
                        let j = 1 + rng.below(lines.len() - 1);
                        lines.swap(i, j);
                    }
                }
                *data = lines.concat();
            }
        }
        6 | 7 => {
            // A header line added after the start line.
            let at = data
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(len, |p| p + 2);
            let h = rng.pick(HEADERS);
            data.splice(at..at, h.bytes());
        }
        8 => {
            // A number replaced by another.
            let digits: Vec<usize> = (0..len).filter(|&i| data[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let start = *rng.pick(&digits);
                let end = (start..len)
                    .find(|&i| !data[i].is_ascii_digit())
                    .unwrap_or(len);
                let n = *rng.pick(&[
                    &b"0"[..],
                    b"1",
                    b"65535",
                    b"65536",
                    b"4294967295",
                    b"4294967296",
                    b"99999999999999999999",
                    b"-5",
                    b"007",
                ]);
                data.splice(start..end, n.iter().copied());
            }
        }
        9 => {
            let (from, to) = *rng.pick(NAMES);
            replace_first(data, from.as_bytes(), to.as_bytes());
        }
        10 => {
            // Line ends as bare LF, or the blank line gone.
            if rng.chance(50) {
                let text = data.clone();
                data.clear();
                let mut i = 0;
                while i < text.len() {
                    if text[i..].starts_with(b"\r\n") {
                        data.push(b'\n');
                        i += 2;
                    } else {
                        data.push(text[i]);
                        i += 1;
                    }
                }
            } else {
                replace_first(data, b"\r\n\r\n", b"\r\n");
            }
        }
        11 => {
            // Random bytes appended (a body longer or shorter than Content-Length says).
            let n = rng.below(64);
            data.extend((0..n).map(|_| rng.next() as u8));
        }
        _ => {
            // A tag or branch made the same as another message's (or empty).
            let value = *rng.pick(&[&b"tag=gw-tag"[..], b"tag=", b"branch=", b"tag=alice-tag"]);
            let key = &value[..value.iter().position(|&b| b == b'=').unwrap() + 1];
            if let Some(p) = find(data, key) {
                let end = (p + key.len()..data.len())
                    .find(|&i| matches!(data[i], b';' | b'\r' | b'\n' | b',' | b'>' | b' '))
                    .unwrap_or(data.len());
                data.splice(p..end, value.iter().copied());
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_first(data: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    if let Some(p) = find(data, from) {
        data.splice(p..p + from.len(), to.iter().copied());
    }
}

/// Lines with their ends, the rest (a body) as one last piece.
fn split_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for i in 0..data.len() {
        if data[i] == b'\n' {
            lines.push(data[start..=i].to_vec());
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(data[start..].to_vec());
    }
    lines
}
