//! Shared inputs of siplb's micro benchmarks, and the rsip oracle tests: rsip (the chosen
//! crate for messages siplb builds) must read the same headers out of the benchmark messages
//! as siplb's own parser does, so the speed comparison is between parsers that agree.

/// A typical carrier INVITE with SDP, as a customer's SBC sends it.
pub const INVITE: &[u8] = b"INVITE sip:15550001234@198.18.0.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.20:5060;branch=z9hG4bK-524287-1---8a0bb3a2f1e3c2d0;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:acct001@198.18.1.20:5060>\r\n\
To: <sip:15550001234@198.18.0.10>\r\n\
From: \"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21\r\n\
Call-ID: 3c26700863d4-1a2b3c4d5e6f@198.18.1.20\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-sbc 4.2\r\n\
P-Asserted-Identity: <sip:+15550009999@198.18.1.20>\r\n\
Content-Length: 233\r\n\
\r\n\
v=0\r\n\
o=- 3847562910 3847562910 IN IP4 198.18.1.20\r\n\
s=-\r\n\
c=IN IP4 198.18.1.20\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

/// The gateway's 200 OK to it with the SDP answer, as it reaches siplb.
pub const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.18.0.10:5060;branch=z9hG4bK-5f3a.0.1c\r\n\
Via: SIP/2.0/UDP 198.18.1.20:5060;branch=z9hG4bK-524287-1---8a0bb3a2f1e3c2d0;received=198.18.1.20;rport=5060\r\n\
Record-Route: <sip:198.18.0.10:5060;lr;did=1c>\r\n\
Contact: <sip:15550001234@198.18.2.30:5060>\r\n\
To: <sip:15550001234@198.18.0.10>;tag=as58f4201b\r\n\
From: \"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21\r\n\
Call-ID: 3c26700863d4-1a2b3c4d5e6f@198.18.1.20\r\n\
CSeq: 1 INVITE\r\n\
Server: gateway 1.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 178\r\n\
\r\n\
v=0\r\n\
o=gw 1234567 1234567 IN IP4 198.18.2.30\r\n\
s=-\r\n\
c=IN IP4 198.18.2.30\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

/// A global allocator that counts the bytes live on the heap (for the memory benchmarks):
/// mimalloc, siplb's own allocator, with a counter.
pub struct Counting;

static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

impl Counting {
    /// Bytes allocated and not freed.
    pub fn live(&self) -> isize {
        LIVE.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// SAFETY: every call is passed on to mimalloc unchanged; only the counter is added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_add(
                new as isize - layout.size() as isize,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        p
    }
}

/// Drives one shard without sockets through whole calls: the benchmark INVITE from a customer,
/// the gateway's 200 OK, the caller's ACK through siplb's Record-Route.
pub struct DialogDriver {
    pub shard: siplb::proxy::Shard,
    now: std::time::Instant,
    next: usize,
}

const CALLER: &str = "198.18.1.20:5060";

impl DialogDriver {
    /// A shard with room for `calls` calls, its customer's account being the customer itself.
    pub fn new(calls: usize) -> DialogDriver {
        DialogDriver::with_events(calls, Default::default())
    }

    /// The same, with the shard's events as `emit` says (accounting's, for instance).
    pub fn with_events(calls: usize, emit: siplb::proxy::event::Emit) -> DialogDriver {
        use siplb::proxy::{AccountKey, Customer, ProxyConfig, Routing, Shard};
        let routing = Routing {
            customers: vec![Customer {
                slot: 0,
                name: "bench".into(),
                sources: vec!["198.18.1.0/24".parse().expect("cidr")],
                domains: vec![],
                account_key: AccountKey::Customer,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: vec![
                "198.18.2.30:5060".parse().expect("addr"),
                "198.18.2.31:5060".parse().expect("addr"),
            ]
            .into(),
        };
        let mut cfg = ProxyConfig::new("198.18.0.10:5060".parse().expect("addr"), routing);
        cfg.max_dialogs = calls + 1;
        cfg.max_transactions = calls + 1;
        cfg.emit = emit;
        let now = std::time::Instant::now();
        let mut shard = Shard::new(std::sync::Arc::new(cfg), 0, Default::default());
        shard.set_epoch(now, 1_700_000_000_000);
        DialogDriver {
            shard,
            now,
            next: 0,
        }
    }

    fn take(&mut self) -> Vec<siplb::proxy::Transmit> {
        std::iter::from_fn(|| self.shard.poll_transmit()).collect()
    }

    /// `n` more calls, each answered and acknowledged, one every `every` (the INVITE
    /// transactions of the last 32 s are still open, as in a real run at that rate).
    pub fn establish(&mut self, n: usize, every: std::time::Duration) {
        for _ in 0..n {
            self.call(every, false);
            while self.shard.poll_event().is_some() {}
        }
    }

    /// The messages that went out, handed back to the shard's pool.
    fn recycle_all(&mut self) {
        for t in self.take() {
            self.shard.recycle(t.data);
        }
    }

    /// One more call, `every` after the last: answered and acknowledged, then (with
    /// `hang_up`) ended by the caller's BYE, which the gateway answers.
    /// Gives back the shard's output `out` and hands it `reply` from `from`.
    fn answer(
        &mut self,
        out: Vec<siplb::proxy::Transmit>,
        from: std::net::SocketAddr,
        reply: &str,
    ) {
        for t in out {
            self.shard.recycle(t.data);
        }
        self.shard.handle(self.now, from, reply.as_bytes());
        self.recycle_all();
    }

    pub fn call(&mut self, every: std::time::Duration, hang_up: bool) {
        use siplb::sip::{HeaderName, SipMsg};
        let invite = std::str::from_utf8(INVITE).expect("utf-8");
        let caller = CALLER.parse().expect("addr");
        let i = self.next;
        self.next += 1;
        self.now += every;
        self.shard.handle_timeout(self.now);
        let inv = invite
            .replace(
                "3c26700863d4-1a2b3c4d5e6f@198.18.1.20",
                &format!("call-{i}@198.18.1.20"),
            )
            .replace("8a0bb3a2f1e3c2d0", &format!("{i:016x}"));
        self.shard.handle(self.now, caller, inv.as_bytes());
        let out = self.take();
        let fwd = out
            .iter()
            .find(|t| t.dst.addr != caller)
            .expect("INVITE forwarded");
        let m = SipMsg::parse(&fwd.data).expect("forwarded INVITE parses");
        let line = |name| header_lines(&m, name);
        let to = line(HeaderName::To);
        let to = format!("{};tag=gw{i}\r\n", to.trim_end());
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}{}{}{to}{}{}Contact: <sip:15550001234@{}>\r\nContent-Length: 0\r\n\r\n",
            line(HeaderName::Via),
            line(HeaderName::RecordRoute),
            line(HeaderName::From),
            line(HeaderName::CallId),
            line(HeaderName::CSeq),
            fwd.dst.addr,
        );
        let rr = line(HeaderName::RecordRoute);
        let route = rr.trim_end().replacen("Record-Route", "Route", 1);
        let gw = fwd.dst.addr;
        self.answer(out, gw, &ok);
        // The caller's requests within the call, through siplb's Record-Route.
        let request = |method: &str, cseq: u32| {
            format!(
                "{method} sip:15550001234@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{}-{i}\r\n{route}\r\nMax-Forwards: 70\r\nFrom: \"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21\r\n{to}Call-ID: call-{i}@198.18.1.20\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
                method.to_lowercase()
            )
        };
        self.shard
            .handle(self.now, caller, request("ACK", 1).as_bytes());
        self.recycle_all();
        if !hang_up {
            return;
        }
        self.shard
            .handle(self.now, caller, request("BYE", 2).as_bytes());
        let out = self.take();
        let fwd = out
            .iter()
            .find(|t| t.dst.addr == gw)
            .expect("BYE forwarded");
        let m = SipMsg::parse(&fwd.data).expect("forwarded BYE parses");
        let line = |name| header_lines(&m, name);
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
            line(HeaderName::Via),
            line(HeaderName::From),
            line(HeaderName::To),
            line(HeaderName::CallId),
            line(HeaderName::CSeq),
        );
        self.answer(out, gw, &ok);
    }

    /// Lets the transactions of those calls end (Timers L and M, 32 s).
    pub fn settle(&mut self) {
        for _ in 0..8 {
            self.now += std::time::Duration::from_secs(5);
            self.shard.handle_timeout(self.now);
            for t in self.take() {
                self.shard.recycle(t.data);
            }
        }
    }

    /// Ends every call by the dialog timeout (BYE to both sides).
    pub fn end_all(&mut self) {
        self.now += std::time::Duration::from_secs(43_200 + 61);
        self.shard.handle_timeout(self.now);
        for t in self.take() {
            self.shard.recycle(t.data);
        }
    }
}

/// Every line of header `name` in `m`, with its CRLF (none: empty).
fn header_lines(m: &siplb::sip::SipMsg<'_>, name: siplb::sip::HeaderName) -> String {
    m.headers_named(name)
        .map(|(_, h)| String::from_utf8_lossy(h.line().of(m.buf)).into_owned())
        .collect()
}

/// What a proxy reads of every message it handles, as lengths (so that neither side has to
/// copy): Call-ID, CSeq number, top-Via branch, To tag.
pub type Seen = (usize, u32, Option<usize>, Option<usize>);

/// siplb: parse, then read what the proxy reads.
pub fn siplb_read(bytes: &[u8]) -> Seen {
    let m = siplb::sip::SipMsg::parse(bytes).expect("valid");
    (
        m.call_id().len(),
        m.cseq,
        m.branch().map(<[u8]>::len),
        m.to_tag().map(<[u8]>::len),
    )
}

/// rsip: parse, then read the same through its typed headers.
pub fn rsip_read(bytes: &[u8]) -> Seen {
    use rsip::headers::UntypedHeader;
    use rsip::prelude::{HeadersExt, ToTypedHeader};
    let m = rsip::SipMessage::try_from(bytes).expect("valid");
    let call_id = m.call_id_header().expect("Call-ID").value().len();
    let cseq = m.cseq_header().expect("CSeq").typed().expect("CSeq").seq;
    let via = m.via_header().expect("Via").typed().expect("Via");
    let branch = via.branch().map(|b| b.to_string().len());
    let to_tag = m
        .to_header()
        .expect("To")
        .tag()
        .expect("To")
        .map(|t| t.value().len());
    (call_id, cseq, branch, to_tag)
}

#[cfg(test)]
#[global_allocator]
static ALLOC: Counting = Counting;

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory benchmark's driver at a smaller size: every call becomes a live dialog
    /// without a transaction left, well under 2 KiB each, and all of it ends.
    #[test]
    fn dialogs_take_under_2_kib_each() {
        // 15 calls/s: about 500 INVITE transactions open at a time, so that the transaction
        // table's high-water mark is not most of what is measured (the benchmark reports it).
        let n = 5_000;
        let mut d = DialogDriver::new(n);
        let before = ALLOC.live();
        d.establish(n, std::time::Duration::from_millis(66));
        d.settle();
        let per = (ALLOC.live() - before) / n as isize;
        assert_eq!(d.shard.active_dialogs(), n);
        assert_eq!(d.shard.transactions(), 0);
        assert!(per < 2048, "{per} bytes per dialog");
        d.end_all();
        assert_eq!(d.shard.active_dialogs(), 0);
    }
    use rsip::headers::UntypedHeader;
    use rsip::message::HasHeaders;
    use siplb::sip::SipMsg;

    fn rsip_header<'a>(m: &'a rsip::SipMessage, name: &str) -> Option<&'a str> {
        m.headers().iter().find_map(|h| match (h, name) {
            (rsip::Header::CallId(v), "Call-ID") => Some(v.value()),
            (rsip::Header::CSeq(v), "CSeq") => Some(v.value()),
            (rsip::Header::From(v), "From") => Some(v.value()),
            (rsip::Header::To(v), "To") => Some(v.value()),
            _ => None,
        })
    }

    #[test]
    fn siplb_and_rsip_agree_on_the_benchmark_messages() {
        for bytes in [INVITE, OK] {
            let ours = SipMsg::parse(bytes).expect("siplb parses it");
            let theirs = rsip::SipMessage::try_from(bytes).expect("rsip parses it");
            assert_eq!(
                ours.call_id(),
                rsip_header(&theirs, "Call-ID").unwrap().as_bytes()
            );
            assert_eq!(
                ours.span(ours.from().unwrap().uri),
                b"sip:acct001@198.18.1.20"
            );
            assert!(
                rsip_header(&theirs, "From")
                    .unwrap()
                    .contains("tag=6f7a3c21")
            );
            assert_eq!(ours.from_tag(), Some(&b"6f7a3c21"[..]));
            let cseq = rsip_header(&theirs, "CSeq").unwrap();
            assert_eq!(cseq, format!("{} INVITE", ours.cseq));
            assert_eq!(ours.body.len(), theirs.body().len());
            assert_eq!(siplb_read(bytes), rsip_read(bytes));
        }
        assert_eq!(siplb_read(OK).3, Some(b"as58f4201b".len()));
        assert_eq!(
            siplb_read(INVITE).2,
            Some(b"z9hG4bK-524287-1---8a0bb3a2f1e3c2d0".len())
        );
    }
}
