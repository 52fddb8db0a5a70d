//! Types shared by siplb's userspace and its BPF programs.
//!
//! The one thing both sides must agree on byte for byte is which worker owns a call. That is
//! decided here, once: [`owner_hash`] over the Call-ID value, computed by [`CallIdScanner`] one
//! byte at a time so the same code runs inside `bpf_loop` and in a worker.
//!
//! This crate is `no_std`, allocates nothing and has no dependencies.
#![no_std]

pub mod head;

/// Names and layouts of the maps siplb's BPF programs share with userspace.
pub mod bpf {
    /// Most workers (sockets) the steering program can choose from.
    pub const MAX_WORKERS: u32 = 256;
    /// `SIPLB_STEER` is an array of `u32`: the owner hash key, then the number of workers.
    pub const STEER_LEN: u32 = 2;
    pub const STEER_HASH_KEY: u32 = 0;
    pub const STEER_WORKERS: u32 = 1;
    /// Bytes of a datagram scanned for the Call-ID at most.
    pub const MAX_SCAN_BYTES: u32 = 16_384;
    /// Map names.
    pub const SOCKETS_MAP: &str = "SIPLB_SOCKETS";
    pub const STEER_MAP: &str = "SIPLB_STEER";
    /// Program names.
    pub const STEER_PROGRAM: &str = "siplb_steer";
    pub const GUARD_PROGRAM: &str = "siplb_guard";

    /// `SIPLB_XDP_CONFIG` is an array of `u32`: the SIP port (host order), the flood limit in
    /// datagrams per second per source (0 = none) and its burst.
    pub const XDP_CONFIG_MAP: &str = "SIPLB_XDP_CONFIG";
    pub const XDP_CONFIG_LEN: u32 = 8;
    pub const XDP_SIP_PORT: u32 = 0;
    pub const XDP_FLOOD_RATE: u32 = 1;
    pub const XDP_FLOOD_BURST: u32 = 2;
    /// Workers to redirect to through the cpumap (0 = no redirect), and the owner hash key.
    pub const XDP_REDIRECT_WORKERS: u32 = 3;
    pub const XDP_HASH_KEY: u32 = 4;
    /// Workers with an AF_XDP socket in `SIPLB_XSKS` (0 = no AF_XDP path).
    pub const XDP_XSK_WORKERS: u32 = 5;
    /// `SIPLB_XSKS`: the AF_XDP socket of each worker at its worker number, and at
    /// `XSK_QUEUE_BASE + q` the one that takes what arrives on queue `q` for a worker whose
    /// socket is bound to another queue (the kernel drops a redirect across queues).
    pub const XSKS_MAP: &str = "SIPLB_XSKS";
    /// The listen address (IPv4, network order as a `u32` read from the packet): only
    /// datagrams to it go to an AF_XDP socket.
    pub const XDP_XSK_ADDR: u32 = 6;
    /// The longest frame an AF_XDP socket takes (its UMEM frame less the kernel's headroom);
    /// longer ones take the kernel's path.
    pub const XDP_XSK_MAX_FRAME: u32 = 7;
    /// What the XDP program puts in front of a frame it redirects to an AF_XDP socket (XDP
    /// metadata, copied into the socket's frame just before the packet): this magic, then
    /// the receive time (`bpf_ktime_get_ns`, CLOCK_MONOTONIC), both native-endian `u64`s.
    pub const XSK_META_MAGIC: u64 = 0x7369_706c_6272_7874;
    pub const XSK_META_LEN: usize = 16;
    /// The guard's read-only global (`u32`) saying whether it puts that stamp in front of
    /// the frames (1, as built). Loaded with 0 where the kernel refuses the guard the helper
    /// that makes room for it (`bpf_xdp_adjust_meta`): the verifier then never reaches the
    /// call, and the frames go without a stamp.
    pub const XDP_STAMP_GLOBAL: &str = "SIPLB_XDP_STAMP";
    pub const XSK_QUEUE_BASE: u32 = MAX_WORKERS;
    /// `SIPLB_WORKER_CPU`: the CPU of each worker (`u32` by worker number), and the cpumap.
    pub const WORKER_CPU_MAP: &str = "SIPLB_WORKER_CPU";
    pub const CPUS_MAP: &str = "SIPLB_CPUS";
    /// Per-CPU counters of the XDP guard (`u64` each), by index.
    pub const XDP_STATS_MAP: &str = "SIPLB_XDP_STATS";
    pub const XDP_SEEN: u32 = 0;
    pub const XDP_PASSED: u32 = 1;
    pub const XDP_DROP_NOT_SIP: u32 = 2;
    pub const XDP_DROP_FLOOD: u32 = 3;
    pub const XDP_DROP_BLOCKED: u32 = 4;
    pub const XDP_REDIRECTED: u32 = 5;
    /// Redirected to an AF_XDP socket: the owner's, or the one of the queue it came in on.
    pub const XDP_TO_OWNER_XSK: u32 = 6;
    pub const XDP_TO_QUEUE_XSK: u32 = 7;
    pub const XDP_STATS_LEN: u32 = 8;
    /// Sources whose datagrams to the SIP port are dropped (IPv4 address in network order →
    /// 1), and sources the flood limit does not apply to (same layout).
    pub const BLOCKLIST_MAP: &str = "SIPLB_BLOCKLIST";
    pub const ALLOW_MAP: &str = "SIPLB_ALLOW";
    pub const SOURCES_MAX: u32 = 65_536;
    /// The flood limit's token bucket per source (an LRU map: the least recent sources go).
    pub const PIKE_MAP: &str = "SIPLB_PIKE";

    /// One source's token bucket: tokens in thousandths, and when it was last filled.
    #[derive(Clone, Copy, Debug, Default)]
    #[repr(C)]
    pub struct Bucket {
        pub milli_tokens: u64,
        pub last_ns: u64,
    }

    impl Bucket {
        /// Its tokens in thousandths at `now_ns` (CLOCK_MONOTONIC), filled at `rate` per
        /// second up to `burst` tokens since it was last filled (at most 1,000 s of filling
        /// is counted: with `rate` at most 10 million the product cannot overflow).
        #[inline(always)]
        pub fn milli_tokens_at(&self, now_ns: u64, rate: u32, burst: u32) -> u64 {
            let idle_us = (now_ns.saturating_sub(self.last_ns) / 1000).min(1_000_000_000);
            let refill = idle_us * rate as u64 / 1000;
            (self.milli_tokens + refill).min(burst.max(1) as u64 * 1000)
        }
    }
}

/// FNV-1a 32-bit offset basis.
pub const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime.
pub const FNV_PRIME: u32 = 0x0100_0193;

/// Hash of a Call-ID value under `key`.
///
/// FNV-1a (32 bit) over the bytes of the value, with `key` XORed into the offset basis, then the
/// high half folded into the low half so that `hash % workers` depends on every byte. Space and
/// tab bytes are skipped: the Call-ID grammar (RFC 3261 §25.1, `word ["@" word]`) has none, so
/// this is the same as trimming the value, and it lets a streaming scanner hash without
/// buffering trailing white space.
pub fn owner_hash(key: u32, call_id: &[u8]) -> u32 {
    let mut h = HashState::new(key);
    for &b in call_id {
        h.push(b);
    }
    h.finish()
}

/// The worker (0-based) that owns `hash` among `workers` workers.
#[inline]
pub fn owner_of(hash: u32, workers: u32) -> u32 {
    if workers == 0 { 0 } else { hash % workers }
}

/// Running FNV-1a state, one byte at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct HashState {
    h: u32,
}

impl HashState {
    #[inline]
    pub const fn new(key: u32) -> Self {
        Self {
            h: FNV_OFFSET_BASIS ^ key,
        }
    }

    /// Adds one byte of the value; space and tab are skipped.
    #[inline]
    pub fn push(&mut self, b: u8) {
        if b != b' ' && b != b'\t' {
            self.h = (self.h ^ b as u32).wrapping_mul(FNV_PRIME);
        }
    }

    #[inline]
    pub const fn finish(self) -> u32 {
        self.h ^ (self.h >> 16)
    }
}

/// What [`CallIdScanner::step`] says after a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStep {
    /// Keep feeding bytes.
    More,
    /// The Call-ID value ended; this is its hash.
    Found(u32),
    /// The header section ended (empty line) without a Call-ID.
    NotFound,
}

/// Where the scanner is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Inside the start line; header names are only looked for after it.
    StartLine = 0,
    /// Just after a line feed: the next byte starts a line.
    LineStart = 1,
    /// Matching a header name; `matched` bytes of `call-id` (or `i`) so far.
    Name = 2,
    /// Name matched, white space before the colon allowed.
    BeforeColon = 3,
    /// Inside the Call-ID value.
    Value = 4,
    /// Inside some other line: wait for its line feed.
    SkipLine = 5,
    /// A line start held a carriage return: an empty line if a line feed follows.
    EmptyLineCr = 6,
}

/// Finds the first `Call-ID` (or compact `i`) header of a SIP message and hashes its value,
/// one byte at a time. Header names are matched case-insensitively, white space is allowed
/// before the colon, and the value ends at CR or LF. Lines are ended by LF (CR before it is
/// ignored), so bare-LF messages scan the same as CRLF ones. Folded continuation lines never
/// start a header (they begin with white space).
///
/// The state is a plain `#[repr(C)]` value so a BPF program can keep it in a map while it
/// runs [`step`](Self::step) from `bpf_loop`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct CallIdScanner {
    hash: HashState,
    phase: Phase,
    /// Bytes of the header name matched so far.
    matched: u8,
    /// Set while the name could still be the compact form `i`.
    compact: bool,
    _pad: u8,
}

const CALL_ID: &[u8; 7] = b"call-id";

impl CallIdScanner {
    pub const fn new(key: u32) -> Self {
        Self {
            hash: HashState::new(key),
            phase: Phase::StartLine,
            matched: 0,
            compact: false,
            _pad: 0,
        }
    }

    /// Feeds one byte.
    #[inline]
    pub fn step(&mut self, b: u8) -> ScanStep {
        match self.phase {
            Phase::StartLine | Phase::SkipLine => {
                if b == b'\n' {
                    self.phase = Phase::LineStart;
                }
            }
            Phase::LineStart => match b {
                b'\r' => self.phase = Phase::EmptyLineCr,
                b'\n' => return ScanStep::NotFound,
                _ => {
                    let l = b.to_ascii_lowercase();
                    if l == CALL_ID[0] {
                        self.phase = Phase::Name;
                        self.matched = 1;
                        self.compact = false;
                    } else if l == b'i' {
                        self.phase = Phase::Name;
                        self.matched = 0;
                        self.compact = true;
                    } else {
                        self.phase = Phase::SkipLine;
                    }
                }
            },
            Phase::EmptyLineCr => {
                if b == b'\n' {
                    return ScanStep::NotFound;
                }
                self.phase = Phase::SkipLine;
            }
            Phase::Name => {
                let l = b.to_ascii_lowercase();
                if self.compact {
                    self.phase = match b {
                        b':' => Phase::Value,
                        b' ' | b'\t' => Phase::BeforeColon,
                        b'\n' => Phase::LineStart,
                        _ => Phase::SkipLine,
                    };
                } else if (self.matched as usize) < CALL_ID.len() {
                    if l == CALL_ID[self.matched as usize] {
                        self.matched += 1;
                    } else {
                        self.phase = if b == b'\n' {
                            Phase::LineStart
                        } else {
                            Phase::SkipLine
                        };
                    }
                } else {
                    self.phase = match b {
                        b':' => Phase::Value,
                        b' ' | b'\t' => Phase::BeforeColon,
                        b'\n' => Phase::LineStart,
                        _ => Phase::SkipLine,
                    };
                }
            }
            Phase::BeforeColon => {
                self.phase = match b {
                    b':' => Phase::Value,
                    b' ' | b'\t' => Phase::BeforeColon,
                    b'\n' => Phase::LineStart,
                    _ => Phase::SkipLine,
                };
            }
            Phase::Value => {
                if b == b'\r' || b == b'\n' {
                    return ScanStep::Found(self.hash.finish());
                }
                self.hash.push(b);
            }
        }
        ScanStep::More
    }

    /// Feeds bytes until a verdict; `None` when the bytes ran out first.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<ScanStep> {
        for &b in bytes {
            match self.step(b) {
                ScanStep::More => {}
                verdict => return Some(verdict),
            }
        }
        None
    }
}

/// The owner hash of the first Call-ID header in `msg`, or `None` when it has none (or the
/// value does not end within `msg`, which a SIP message always has it do).
pub fn call_id_hash(key: u32, msg: &[u8]) -> Option<u32> {
    match CallIdScanner::new(key).feed(msg) {
        Some(ScanStep::Found(h)) => Some(h),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors (computed independently with a few lines of Python): if one of these changes, kernel and userspace objects built at different
    /// times would disagree on ownership.
    #[test]
    fn owner_hash_vectors() {
        assert_eq!(owner_hash(0, b""), 0x811c_9dc5 ^ (0x811c_9dc5 >> 16));
        let vectors: &[(u32, &[u8], u32)] = &[
            (0, b"a84b4c76e66710@pc33.atlanta.com", 0xb93d_6db1),
            (0, b"1-12345@127.0.0.1", 0x0816_e9b5),
            (0xdead_beef, b"1-12345@127.0.0.1", 0x1e01_1f6f),
            (
                7,
                b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com",
                0x78ef_17d5,
            ),
        ];
        for (key, id, want) in vectors {
            assert_eq!(
                owner_hash(*key, id),
                *want,
                "key {key:#x} id {:?}",
                core::str::from_utf8(id)
            );
        }
    }

    #[test]
    fn white_space_is_not_hashed() {
        assert_eq!(owner_hash(3, b" abc@d \t"), owner_hash(3, b"abc@d"));
    }

    #[test]
    fn key_changes_hash() {
        assert_ne!(owner_hash(1, b"x@y"), owner_hash(2, b"x@y"));
    }

    fn scan(msg: &[u8]) -> Option<u32> {
        call_id_hash(9, msg)
    }

    #[test]
    fn scanner_long_and_compact_forms_agree() {
        let want = Some(owner_hash(9, b"abc@host"));
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\r\nVia: x\r\nCall-ID: abc@host\r\n\r\n"),
            want
        );
        assert_eq!(scan(b"INVITE sip:x SIP/2.0\r\ni:abc@host\r\n\r\n"), want);
        assert_eq!(
            scan(b"SIP/2.0 200 OK\r\nCALL-id \t :  abc@host  \r\n\r\n"),
            want
        );
        assert_eq!(scan(b"SIP/2.0 200 OK\ncall-ID: abc@host\n\n"), want);
        assert_eq!(scan(b"SIP/2.0 200 OK\r\nI : abc@host\r\n\r\n"), want);
    }

    #[test]
    fn scanner_ignores_look_alike_headers() {
        let want = Some(owner_hash(9, b"real"));
        let msg = b"INVITE sip:i:x SIP/2.0\r\nCall-Info: <x>\r\nIn-Reply-To: a\r\n i: folded\r\n\
                    Call-IDx: no\r\nCall-ID: real\r\n\r\n";
        assert_eq!(scan(msg), want);
    }

    #[test]
    fn scanner_stops_at_empty_line() {
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n"),
            None
        );
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\nVia: x\n\nCall-ID: body\n"),
            None
        );
        assert_eq!(scan(b"INVITE sip:x SIP/2.0\r\nCall-ID: cut"), None);
    }

    #[test]
    fn scanner_finds_call_id_deep_in_large_message() {
        let mut buf = [b'a'; 1400];
        let head = b"INVITE sip:x SIP/2.0\r\nSubject: ";
        buf[..head.len()].copy_from_slice(head);
        let tail = b"\r\nCall-ID: deep@x\r\n\r\n";
        buf[1400 - tail.len()..].copy_from_slice(tail);
        assert_eq!(scan(&buf), Some(owner_hash(9, b"deep@x")));
    }
}
