//! A bound on what a Redis server may make siplb hold. The redis crate keeps a reply's bytes
//! until the reply is whole, and makes a value for each of its elements, so a peer that is
//! not Redis (a wrong address, a server in the way) announcing an endless bulk string or an
//! array of millions of elements would have siplb's memory grow as long as it sends.
//! [`Limited`] sits under the redis crate, follows the replies' framing (RESP2 and RESP3) as
//! the bytes go by, and fails the connection with a clear error at the first reply longer than
//! [`MAX_REPLY`] bytes or [`MAX_ELEMENTS`] elements, or nested deeper than [`MAX_DEPTH`].

use crate::peer::{Framing, Watched};
use std::io;

/// The longest reply siplb takes: its replies (the lease scripts', GET, SET, EXISTS) are a few
/// dozen bytes.
pub const MAX_REPLY: u64 = 16 << 20;
/// The most elements in one reply, nested ones included.
pub const MAX_ELEMENTS: u64 = 1 << 16;
/// The deepest nesting of aggregates (the redis crate itself stops at 100).
pub const MAX_DEPTH: usize = 64;
/// The longest line (a simple string, an error, a number).
const MAX_LINE: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The type byte of the next value.
    Type,
    /// A line of `kind`, `len` bytes read, its carriage return seen or not.
    Line { kind: u8, len: u64, cr: bool },
    /// `left` bytes of a bulk value and its CRLF.
    Bulk { left: u64 },
}

/// A stream whose incoming replies are checked against the bounds.
pub type Limited<S> = Watched<S, Replies>;

/// The stream to a server, before anything is sent on it.
pub fn limited<S>(inner: S) -> Limited<S> {
    Watched {
        inner,
        framing: Replies::default(),
    }
}

/// RESP's framing as it goes by.
pub struct Replies {
    at: At,
    /// Elements still to come at each level of nesting, the innermost last.
    open: Vec<u64>,
    /// The number a length line carries, as read so far (none once it is not a number).
    number: Option<i64>,
    negative: bool,
    /// Bytes and elements of the reply being read.
    bytes: u64,
    elements: u64,
}

fn too_much(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}, more than siplb takes: is this a Redis server?"),
    )
}

impl Default for Replies {
    fn default() -> Replies {
        Replies {
            at: At::Type,
            open: Vec::new(),
            number: Some(0),
            negative: false,
            bytes: 0,
            elements: 0,
        }
    }
}

impl Replies {
    /// A value is whole: it counts in the aggregates around it, and a reply ends with its
    /// outermost value.
    fn value_done(&mut self) {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        self.bytes = 0;
        self.elements = 0;
    }

    /// A length or count line is whole: what follows it.
    fn header_done(&mut self, kind: u8) -> io::Result<()> {
        let n = match (self.number, self.negative) {
            (Some(n), false) => n,
            // A null (`$-1`, `*-1`) or an empty aggregate is a whole value.
            (Some(_), true) => -1,
            (None, _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a reply of type {:?} without a length: is this a Redis server?",
                        char::from(kind)
                    ),
                ));
            }
        };
        match kind {
            b'$' | b'!' | b'=' if n >= 0 => {
                let n = n as u64;
                if self.bytes + n > MAX_REPLY {
                    return Err(too_much(format!("a reply of {} bytes", self.bytes + n)));
                }
                self.at = At::Bulk { left: n + 2 };
                return Ok(());
            }
            b'*' | b'%' | b'~' | b'>' | b'|' if n > 0 => {
                let n = n as u64 * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                self.elements += n;
                if self.elements > MAX_ELEMENTS {
                    return Err(too_much(format!("a reply of {} elements", self.elements)));
                }
                if self.open.len() >= MAX_DEPTH {
                    return Err(too_much(format!(
                        "a reply nested {} deep",
                        self.open.len() + 1
                    )));
                }
                self.open.push(n);
            }
            _ => self.value_done(),
        }
        self.at = At::Type;
        Ok(())
    }

    /// Follows the bytes just read; an error at a reply past a bound.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.bytes += bytes.len() as u64;
        if self.bytes > MAX_REPLY {
            return Err(too_much(format!("a reply of over {} bytes", self.bytes)));
        }
        while let Some((&b, rest)) = bytes.split_first() {
            match self.at {
                At::Type => {
                    self.at = At::Line {
                        kind: b,
                        len: 0,
                        cr: false,
                    };
                    self.number = Some(0);
                    self.negative = false;
                    bytes = rest;
                }
                At::Bulk { left } => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    bytes = &bytes[n..];
                    if left == n as u64 {
                        self.at = At::Type;
                        // The reply's bytes restart from what follows, if this ends it.
                        let after = bytes.len() as u64;
                        self.value_done();
                        if self.open.is_empty() {
                            self.bytes = after;
                        }
                    } else {
                        self.at = At::Bulk {
                            left: left - n as u64,
                        };
                    }
                }
                At::Line { kind, len, cr } => {
                    bytes = rest;
                    if cr && b == b'\n' {
                        let after = bytes.len() as u64;
                        if matches!(kind, b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|') {
                            self.header_done(kind)?;
                        } else {
                            self.at = At::Type;
                            self.value_done();
                        }
                        if self.open.is_empty() && self.at == At::Type {
                            self.bytes = after;
                        }
                        continue;
                    }
                    if len + 1 > MAX_LINE {
                        return Err(too_much(format!("a line of over {MAX_LINE} bytes")));
                    }
                    self.number = match (self.number, b) {
                        (Some(0), b'-') if len == 0 => {
                            self.negative = true;
                            Some(0)
                        }
                        (Some(n), b'0'..=b'9') => n
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(i64::from(b - b'0'))),
                        (n, b'\r') => n,
                        _ => None,
                    };
                    self.at = At::Line {
                        kind,
                        len: len + 1,
                        cr: b == b'\r',
                    };
                }
            }
        }
        Ok(())
    }
}

impl Framing for Replies {
    fn read(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.follow(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(bytes: &[u8], cut: usize) -> io::Result<Replies> {
        let mut l = Replies::default();
        for chunk in bytes.chunks(cut) {
            l.read(chunk)?;
        }
        Ok(l)
    }

    #[test]
    fn replies_of_every_type_pass_split_anywhere_and_each_ends_where_it_ends() {
        let replies: &[u8] = b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*0\r\n*-1\r\n\
            *2\r\n$1\r\na\r\n*1\r\n:1\r\n%1\r\n+k\r\n+v\r\n_\r\n#t\r\n,1.5\r\n(12345\r\n\
            =7\r\ntxt:abc\r\n~2\r\n:1\r\n:2\r\n>2\r\n+m\r\n+x\r\n|1\r\n+a\r\n+b\r\n+after\r\n";
        for cut in [1, 2, 3, 5, 7, 64] {
            let l = fed(replies, cut).unwrap();
            assert_eq!(l.at, At::Type, "cut {cut}");
            assert!(l.open.is_empty(), "cut {cut}: {:?}", l.open);
            assert_eq!((l.bytes, l.elements), (0, 0), "cut {cut}");
        }
    }

    #[test]
    fn a_huge_bulk_a_huge_array_or_a_deep_one_fails_at_its_header() {
        for (bytes, what) in [
            (b"$2147483647\r\n".to_vec(), "bytes"),
            (b"*100000000\r\n".to_vec(), "elements"),
            (b"%40000\r\n".to_vec(), "elements"),
            (b"*1\r\n".repeat(MAX_DEPTH + 1), "deep"),
        ] {
            let e = fed(&bytes, 3).err().expect(what);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains(what), "{e}");
            assert!(e.to_string().contains("is this a Redis server?"), "{e}");
        }
    }

    #[test]
    fn an_endless_line_or_a_reply_of_many_small_parts_fails_once_past_the_bound() {
        let mut l = Replies::default();
        let mut line = b"+".to_vec();
        line.extend(std::iter::repeat_n(b'x', 70_000));
        assert!(l.read(&line).is_err());
        // Many elements of an array, each small: the reply's bytes add up.
        let mut l = Replies::default();
        l.read(b"*60000\r\n").unwrap();
        let chunk = b"$10000\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'y', 10_000));
        let element: Vec<u8> = chunk.chain(*b"\r\n").collect();
        let mut failed = false;
        for _ in 0..2000 {
            if l.read(&element).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "over 16 MiB in one reply");
        // Lengths that are not numbers are not a length.
        assert!(Replies::default().read(b"$abc\r\n").is_err());
    }
}
