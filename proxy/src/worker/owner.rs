//! The owner hash of a datagram, found fast.
//!
//! [`siplb_common::CallIdScanner`] defines which bytes are hashed, one byte at a time, so that
//! the BPF programs can run it. In userspace the same answer comes much cheaper by jumping from
//! line to line with `memchr` and looking only at line starts; a test checks the two agree on
//! every input it tries, valid or not.

use siplb_common::HashState;

/// The owner hash of the first Call-ID header of `msg`, exactly as
/// [`siplb_common::call_id_hash`] computes it.
pub fn call_id_hash(key: u32, msg: &[u8]) -> Option<u32> {
    // Header names are looked for only after the start line.
    let mut pos = memchr::memchr(b'\n', msg)? + 1;
    loop {
        let line = &msg[pos..];
        match line.first()? {
            b'\n' => return None,
            b'\r' if line.get(1) == Some(&b'\n') => return None,
            _ => {}
        }
        if let Some(value) = call_id_value_start(line) {
            let mut h = HashState::new(key);
            for &b in &line[value..] {
                if b == b'\r' || b == b'\n' {
                    return Some(h.finish());
                }
                h.push(b);
            }
            return None;
        }
        pos += memchr::memchr(b'\n', line)? + 1;
    }
}

/// Where the value starts when `line` is a `Call-ID` or `i` header: past the name, optional
/// space or tab, and the colon.
fn call_id_value_start(line: &[u8]) -> Option<usize> {
    let mut i = match line[0] | 0x20 {
        b'c' if line.len() >= 7 && line[..7].eq_ignore_ascii_case(b"call-id") => 7,
        b'i' => 1,
        _ => return None,
    };
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    (line.get(i) == Some(&b':')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msg: &[u8]) {
        assert_eq!(
            call_id_hash(77, msg),
            siplb_common::call_id_hash(77, msg),
            "disagree on {:?}",
            String::from_utf8_lossy(msg)
        );
    }

    #[test]
    fn agrees_with_the_scanner_on_the_usual_forms() {
        for m in [
            &b"INVITE sip:x SIP/2.0\r\nVia: x\r\nCall-ID: abc@host\r\n\r\n"[..],
            b"INVITE sip:x SIP/2.0\r\ni:abc@host\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCALL-id \t :  abc@host  \r\n\r\n",
            b"SIP/2.0 200 OK\ncall-ID: abc@host\n\n",
            b"SIP/2.0 200 OK\r\nI : abc@host\r\n\r\n",
            b"INVITE sip:i:x SIP/2.0\r\nCall-Info: <x>\r\nIn-Reply-To: a\r\n i: folded\r\nCall-IDx: no\r\nCall-ID: real\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n",
            b"INVITE sip:x SIP/2.0\r\nCall-ID: cut",
            b"no line feed at all",
            b"X\n",
            b"X\n\r",
            b"X\n\rCall-ID: a\r\n",
            b"X\ni\nCall-ID: b\n",
            b"X\ncall-i\ncall-id:c\n",
            b"X\nCall-ID\t:\t d e \r\n",
            b"X\n\n",
        ] {
            check(m);
        }
    }

    #[test]
    fn agrees_with_the_scanner_on_random_inputs() {
        // Random messages over a small alphabet rich in the bytes that matter.
        let alphabet = b"cCaAlLiI-dD: \t\r\n\r\nxyz@";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 60) as usize;
            let msg: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            check(&msg);
            let mut framed = b"INVITE sip:a SIP/2.0\r\n".to_vec();
            framed.extend_from_slice(&msg);
            check(&framed);
        }
    }
}
