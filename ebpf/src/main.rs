//! siplb's BPF programs.
//!
//! `siplb_steer` (`sk_reuseport`): for each datagram that reaches the workers' `SO_REUSEPORT`
//! group, finds the Call-ID, hashes it with the same code as userspace
//! (`siplb_common::CallIdScanner`) and picks the socket of the worker that owns the call.
//! A datagram without a findable Call-ID is left to the kernel's choice; the worker that gets
//! it hands it on in software.
//!
//! `siplb_guard` (XDP, on the interface of the listen address): lets everything pass that is
//! not IPv4 UDP to the SIP port; of the rest, drops what comes from a blocklisted source, what
//! does not start like a SIP request or status line, and what passes a source's flood limit
//! (a token bucket per source, like Kamailio's `pike`; allow-listed sources are exempt). A
//! fragmented datagram is judged by its first fragment, which holds the UDP header and the
//! start line; its later fragments pass to the kernel's reassembly, but for a blocklisted
//! source's. What it lets through whole it can send on to the worker that owns the call: to
//! that worker's AF_XDP socket (the AF_XDP data path), or to its CPU through a cpumap.
//! Counts each outcome per CPU.
#![no_std]
#![no_main]

use aya_ebpf::bindings::sk_action::SK_PASS;
use aya_ebpf::bindings::sk_reuseport_md;
use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::bindings::xdp_md;
use aya_ebpf::cty::{c_long, c_void};
use aya_ebpf::helpers::generated::{
    bpf_ktime_get_ns, bpf_loop, bpf_skb_load_bytes, bpf_xdp_adjust_meta, bpf_xdp_load_bytes,
};
use aya_ebpf::macros::{map, sk_reuseport, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{
    Array, CpuMap, LpmTrie, LruHashMap, PerCpuArray, ReusePortSockArray, XskMap,
};
use aya_ebpf::programs::{SkReuseportContext, XdpContext};
use shared::Bucket;
use siplb_common::{CallIdScanner, ScanStep, bpf as shared, head};

/// The workers' sockets, by worker number (filled by siplb).
#[map(name = "SIPLB_SOCKETS")]
static SOCKETS: ReusePortSockArray = ReusePortSockArray::with_max_entries(shared::MAX_WORKERS, 0);

/// `[hash key, workers]` (set by siplb before it attaches the program).
#[map(name = "SIPLB_STEER")]
static STEER: Array<u32> = Array::with_max_entries(shared::STEER_LEN, 0);

/// Bytes read from the datagram at a time.
const CHUNK: usize = 64;
/// The UDP header before the payload, at the start of what the program sees.
const UDP_HEADER: u32 = 8;

/// A Call-ID scan's state, on the program's stack, shared with its `bpf_loop` callback: the
/// same for both programs but for `md`, the context the load helper reads from.
#[repr(C)]
struct Scan<M> {
    md: *mut M,
    /// Offset of the UDP payload in what the program sees.
    start: u32,
    /// Length of what the program sees.
    len: u32,
    /// Offset of `buf[0]` (0 = nothing loaded yet: the payload never starts at 0).
    base: u32,
    scanner: CallIdScanner,
    /// 1 when `hash` holds the Call-ID's hash.
    found: u32,
    hash: u32,
    buf: [u8; CHUNK],
}

impl<M> Scan<M> {
    fn new(md: *mut M, start: u32, len: u32, key: u32) -> Self {
        Scan {
            md,
            start,
            len,
            base: 0,
            scanner: CallIdScanner::new(key),
            found: 0,
            hash: 0,
            buf: [0; CHUNK],
        }
    }

    /// Feeds payload byte `i` to the scanner, loading the next CHUNK bytes with `load` when
    /// it needs them; 1 (stop `bpf_loop`) at a verdict or at the end.
    #[inline(always)]
    fn step(
        &mut self,
        i: u32,
        load: unsafe extern "C" fn(*mut M, u32, *mut c_void, u32) -> c_long,
    ) -> c_long {
        let pos = self.start + i;
        if pos >= self.len {
            return 1;
        }
        if self.base == 0 || pos >= self.base + CHUNK as u32 {
            // A whole chunk (the verifier wants a constant length): from here, or the last
            // CHUNK bytes near the end.
            let at = if pos + CHUNK as u32 <= self.len {
                pos
            } else if self.len >= self.start + CHUNK as u32 {
                self.len - CHUNK as u32
            } else {
                return 1; // shorter than any SIP message with a Call-ID
            };
            // SAFETY: `buf` has room for CHUNK bytes; the helper checks `at` against the packet.
            if unsafe {
                load(
                    self.md,
                    at,
                    self.buf.as_mut_ptr() as *mut c_void,
                    CHUNK as u32,
                )
            } != 0
            {
                return 1;
            }
            self.base = at;
        }
        let b = self.buf[(pos.wrapping_sub(self.base) as usize) & (CHUNK - 1)];
        match self.scanner.step(b) {
            ScanStep::More => 0,
            ScanStep::Found(h) => {
                self.hash = h;
                self.found = 1;
                1
            }
            ScanStep::NotFound => 1,
        }
    }
}

/// The skb load helper with the signature [`Scan::step`] takes.
unsafe extern "C" fn skb_load(
    md: *mut sk_reuseport_md,
    off: u32,
    to: *mut c_void,
    len: u32,
) -> c_long {
    // SAFETY: the caller's contract, passed on.
    unsafe { bpf_skb_load_bytes(md as *const c_void, off, to, len) }
}

/// The XDP load helper with the signature [`Scan::step`] takes.
unsafe extern "C" fn xdp_load(md: *mut xdp_md, off: u32, to: *mut c_void, len: u32) -> c_long {
    // SAFETY: the caller's contract, passed on.
    unsafe { bpf_xdp_load_bytes(md, off, to, len) }
}

#[sk_reuseport]
pub fn siplb_steer(ctx: SkReuseportContext) -> u32 {
    let _ = try_steer(&ctx);
    SK_PASS
}

fn try_steer(ctx: &SkReuseportContext) -> Result<(), c_long> {
    let key = *STEER.get(shared::STEER_HASH_KEY).ok_or(0)?;
    let workers = *STEER.get(shared::STEER_WORKERS).ok_or(0)?;
    if workers == 0 {
        return Ok(());
    }
    let mut scan = Scan::new(ctx.md, UDP_HEADER, ctx.len() as u32, key);
    // One callback per payload byte: each verifies once, whatever the datagram's length
    // (a loop over a chunk inside the callback makes the verifier walk every byte position).
    // SAFETY: `scan_byte` has the callback signature bpf_loop expects, and `scan` outlives
    // the call.
    unsafe {
        bpf_loop(
            shared::MAX_SCAN_BYTES,
            scan_byte as *mut c_void,
            &mut scan as *mut Scan<sk_reuseport_md> as *mut c_void,
            0,
        );
    }
    if scan.found == 1 {
        SOCKETS.select_reuseport(ctx, scan.hash % workers)?;
    }
    Ok(())
}

/// One `bpf_loop` step of the steering program's scan.
extern "C" fn scan_byte(i: u32, data: *mut c_void) -> c_long {
    // SAFETY: `data` is the `Scan` that `try_steer` passed to bpf_loop.
    let scan = unsafe { &mut *(data as *mut Scan<sk_reuseport_md>) };
    scan.step(i, skb_load)
}

// ------------------------------------------------------------------------------ XDP guard

#[map(name = "SIPLB_XDP_CONFIG")]
static XDP_CONFIG: Array<u32> = Array::with_max_entries(shared::XDP_CONFIG_LEN, 0);

#[map(name = "SIPLB_XDP_STATS")]
static XDP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(shared::XDP_STATS_LEN, 0);

/// Blocked source networks (IPv4, network order), and those exempt from the flood limit.
#[map(name = "SIPLB_BLOCKLIST")]
static BLOCKLIST: LpmTrie<u32, u8> = LpmTrie::with_max_entries(shared::SOURCES_MAX, 0);

#[map(name = "SIPLB_ALLOW")]
static ALLOW: LpmTrie<u32, u8> = LpmTrie::with_max_entries(shared::SOURCES_MAX, 0);

/// The CPU of each worker, and the cpumap (queues to those CPUs) the guard redirects through.
#[map(name = "SIPLB_WORKER_CPU")]
static WORKER_CPU: Array<u32> = Array::with_max_entries(shared::MAX_WORKERS, 0);

#[map(name = "SIPLB_CPUS")]
static CPUS: CpuMap = CpuMap::with_max_entries(shared::MAX_WORKERS, 0);

#[map(name = "SIPLB_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(2 * shared::MAX_WORKERS, 0);

#[map(name = "SIPLB_PIKE")]
static PIKE: LruHashMap<u32, Bucket> = LruHashMap::with_max_entries(shared::SOURCES_MAX, 0);

/// Whether frames redirected to AF_XDP sockets get their receive time in front
/// (`shared::XDP_STAMP_GLOBAL`): a read-only global, so that with 0 the verifier sees the
/// branch that stamps as dead and never checks its helper.
#[unsafe(no_mangle)]
static SIPLB_XDP_STAMP: u32 = 1;

const ETH_HEADER: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
/// The IPv4 header's fragment offset, and its "more fragments" flag.
const FRAG_OFFSET: u16 = 0x1fff;
const FRAG_MORE: u16 = 0x2000;

#[xdp]
pub fn siplb_guard(ctx: XdpContext) -> u32 {
    try_guard(&ctx).unwrap_or(XDP_PASS)
}

/// A `T` at `off` in the packet, if the packet is that long.
#[inline(always)]
fn at<T: Copy>(ctx: &XdpContext, off: usize) -> Result<T, ()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + off + size_of::<T>() > end {
        return Err(());
    }
    // SAFETY: the bytes are inside the packet (checked just above); unaligned read.
    Ok(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
}

/// A `T` at a variable offset `off`, copied out with the load helper (direct access at an
/// offset the verifier cannot bound fails verification depending on code generation).
#[inline(always)]
fn load<T: Copy + Default>(ctx: &XdpContext, off: usize) -> Result<T, ()> {
    let mut v = T::default();
    // SAFETY: `v` has room for size_of::<T>() bytes; the helper checks the range.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            off as u32,
            &mut v as *mut T as *mut c_void,
            size_of::<T>() as u32,
        )
    };
    if r == 0 { Ok(v) } else { Err(()) }
}

#[inline(always)]
fn count(stat: u32) {
    if let Some(c) = XDP_STATS.get_ptr_mut(stat) {
        // SAFETY: a per-CPU value of this CPU; nothing else writes it meanwhile.
        unsafe { *c += 1 };
    }
}

fn try_guard(ctx: &XdpContext) -> Result<u32, ()> {
    if u16::from_be(at::<u16>(ctx, 12)?) != ETH_P_IP {
        return Ok(XDP_PASS);
    }
    let ihl = ((at::<u8>(ctx, ETH_HEADER)? & 0x0f) as usize) * 4;
    if !(20..=60).contains(&ihl) || at::<u8>(ctx, ETH_HEADER + 9)? != IPPROTO_UDP {
        return Ok(XDP_PASS);
    }
    let src: u32 = at(ctx, ETH_HEADER + 12)?;
    let key = Key::new(32, src);
    let frag = u16::from_be(at::<u16>(ctx, ETH_HEADER + 6)?);
    if frag & FRAG_OFFSET != 0 {
        // A later fragment has no UDP header to read. A blocklisted source's is dropped (its
        // first fragment is, below, so it could only wait in the kernel's reassembly queue,
        // taking room from others' fragments); the rest is the kernel's to reassemble.
        if BLOCKLIST.get(&key).is_some() {
            count(shared::XDP_SEEN);
            count(shared::XDP_DROP_BLOCKED);
            return Ok(XDP_DROP);
        }
        return Ok(XDP_PASS);
    }
    // A whole datagram, or the first fragment of one: its UDP header and the head of its
    // payload are here, and dropping the first fragment drops the datagram.
    let first_fragment = frag & FRAG_MORE != 0;
    let udp = ETH_HEADER + ihl;
    let Ok(header) = load::<[u8; UDP_HEADER as usize]>(ctx, udp) else {
        return Ok(XDP_PASS); // cut short: the kernel drops it
    };
    let port = *XDP_CONFIG.get(shared::XDP_SIP_PORT).ok_or(())?;
    if u16::from_be_bytes([header[2], header[3]]) as u32 != port {
        return Ok(XDP_PASS);
    }
    count(shared::XDP_SEEN);
    if BLOCKLIST.get(&key).is_some() {
        count(shared::XDP_DROP_BLOCKED);
        return Ok(XDP_DROP);
    }
    let payload = udp + UDP_HEADER as usize;
    let len = (u16::from_be_bytes([header[4], header[5]]) as usize).saturating_sub(8);
    if !is_sip(ctx, payload, len) {
        count(shared::XDP_DROP_NOT_SIP);
        return Ok(XDP_DROP);
    }
    let rate = *XDP_CONFIG.get(shared::XDP_FLOOD_RATE).ok_or(())?;
    if rate > 0 && ALLOW.get(&key).is_none() && over_limit(src, rate) {
        count(shared::XDP_DROP_FLOOD);
        return Ok(XDP_DROP);
    }
    count(shared::XDP_PASSED);
    if first_fragment {
        // The kernel reassembles it; steering then places the whole datagram.
        return Ok(XDP_PASS);
    }
    // On to the worker that owns the call: its AF_XDP socket, or its CPU (where the kernel
    // then delivers it and steering picks the same worker's socket).
    let xsks = *XDP_CONFIG.get(shared::XDP_XSK_WORKERS).ok_or(())?;
    let workers = *XDP_CONFIG.get(shared::XDP_REDIRECT_WORKERS).ok_or(())?;
    if xsks == 0 && workers == 0 {
        return Ok(XDP_PASS);
    }
    let key = *XDP_CONFIG.get(shared::XDP_HASH_KEY).ok_or(())?;
    let len = (ctx.data_end() - ctx.data()) as u32;
    let mut scan = Scan::new(ctx.ctx, payload as u32, len, key);
    // SAFETY: as in `try_steer`.
    unsafe {
        bpf_loop(
            shared::MAX_SCAN_BYTES,
            xdp_scan_byte as *mut c_void,
            &mut scan as *mut Scan<xdp_md> as *mut c_void,
            0,
        );
    }
    if scan.found != 1 {
        // No Call-ID to place it by: the kernel path serves it.
        return Ok(XDP_PASS);
    }
    if xsks > 0 {
        let addr = *XDP_CONFIG.get(shared::XDP_XSK_ADDR).ok_or(())?;
        let max = *XDP_CONFIG.get(shared::XDP_XSK_MAX_FRAME).ok_or(())?;
        let dst: u32 = at(ctx, ETH_HEADER + 16)?;
        if dst != addr || len > max {
            // Another address of this host, or a frame too long for a socket's frame.
            return Ok(XDP_PASS);
        }
        let owner = scan.hash.checked_rem(xsks).unwrap_or(0);
        let queue = ctx.rx_queue_index();
        // A redirect to a socket bound to another queue is dropped by the kernel: then the
        // socket of this queue takes it and its worker hands it on.
        // The receive time, in front of the frame, for siplb's latency figures; a frame
        // without it is taken all the same.
        stamp(ctx);
        if XSKS.get(owner) == Some(queue) {
            if let Ok(action) = XSKS.redirect(owner, 0) {
                count(shared::XDP_TO_OWNER_XSK);
                return Ok(action);
            }
        } else if let Ok(action) = XSKS.redirect(shared::XSK_QUEUE_BASE + queue, 0) {
            count(shared::XDP_TO_QUEUE_XSK);
            return Ok(action);
        }
        return Ok(XDP_PASS);
    }
    let cpu = *WORKER_CPU
        .get(scan.hash.checked_rem(workers).ok_or(())?)
        .ok_or(())?;
    if let Ok(action) = CPUS.redirect(cpu, 0) {
        count(shared::XDP_REDIRECTED);
        return Ok(action);
    }
    Ok(XDP_PASS)
}

/// Puts `[XSK_META_MAGIC, now]` in the frame's XDP metadata.
#[inline(always)]
fn stamp(ctx: &XdpContext) {
    // SAFETY: a read of a static; volatile so that the value set at load time is read.
    if unsafe { core::ptr::read_volatile(&SIPLB_XDP_STAMP) } == 0 {
        return;
    }
    // SAFETY: grows the metadata area in front of the packet; checked below.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(shared::XSK_META_LEN as i32)) } != 0 {
        return;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + shared::XSK_META_LEN > data {
        return;
    }
    // SAFETY: the 16 bytes lie in the metadata area (checked just above).
    unsafe {
        core::ptr::write_unaligned(meta as *mut u64, shared::XSK_META_MAGIC);
        core::ptr::write_unaligned((meta + 8) as *mut u64, bpf_ktime_get_ns());
    }
}

/// One `bpf_loop` step of the XDP guard's scan.
extern "C" fn xdp_scan_byte(i: u32, data: *mut c_void) -> c_long {
    // SAFETY: `data` is the `Scan` that `try_guard` passed to bpf_loop.
    let scan = unsafe { &mut *(data as *mut Scan<xdp_md>) };
    scan.step(i, xdp_load)
}

/// Whether the `len`-byte payload at `payload` can be SIP (`siplb_common::head`): only empty
/// lines (a keep-alive), or at most `MAX_LEADING` empty-line bytes and then a start line.
#[inline(always)]
fn is_sip(ctx: &XdpContext, payload: usize, len: usize) -> bool {
    if len == 0 {
        return false;
    }
    let mut lead = 0;
    while lead <= head::MAX_LEADING && lead < len {
        match load::<u8>(ctx, payload + lead) {
            Ok(b'\r') | Ok(b'\n') => lead += 1,
            _ => break,
        }
    }
    if lead == len {
        return true;
    }
    if lead > head::MAX_LEADING {
        // Too many empty lines for a start line: a keep-alive if nothing else follows.
        return only_empty_lines(ctx, payload + lead, payload + len);
    }
    load::<[u8; head::HEAD]>(ctx, payload + lead).is_ok_and(|h| head::looks_like_start_line(&h))
}

/// A keep-alive's check of the bytes from `at` to `end`, on the program's stack.
#[repr(C)]
struct EmptyLines {
    md: *mut xdp_md,
    at: u32,
    end: u32,
    /// 1 while every byte read was CR or LF.
    ok: u32,
}

/// Whether the packet's bytes from `at` to `end` are all CR or LF (and in the packet).
#[inline(always)]
fn only_empty_lines(ctx: &XdpContext, at: usize, end: usize) -> bool {
    let mut c = EmptyLines {
        md: ctx.ctx,
        at: at as u32,
        end: end as u32,
        ok: 1,
    };
    // SAFETY: `empty_line_byte` has the callback signature bpf_loop expects, and `c`
    // outlives the call.
    unsafe {
        bpf_loop(
            shared::MAX_SCAN_BYTES,
            empty_line_byte as *mut c_void,
            &mut c as *mut EmptyLines as *mut c_void,
            0,
        );
    }
    c.ok == 1 && end - at <= shared::MAX_SCAN_BYTES as usize
}

/// One `bpf_loop` step of [`only_empty_lines`].
extern "C" fn empty_line_byte(i: u32, data: *mut c_void) -> c_long {
    // SAFETY: `data` is the `EmptyLines` that `only_empty_lines` passed to bpf_loop.
    let c = unsafe { &mut *(data as *mut EmptyLines) };
    let pos = c.at + i;
    if pos >= c.end {
        return 1;
    }
    let mut b = 0u8;
    // SAFETY: one byte into `b`; the helper checks `pos` against the packet.
    let r = unsafe { bpf_xdp_load_bytes(c.md, pos, &mut b as *mut u8 as *mut c_void, 1) };
    if r != 0 || (b != b'\r' && b != b'\n') {
        c.ok = 0;
        return 1;
    }
    0
}

/// Takes one token from `src`'s bucket (`rate` per second, at most the configured burst);
/// whether there was none.
fn over_limit(src: u32, rate: u32) -> bool {
    let burst = XDP_CONFIG
        .get(shared::XDP_FLOOD_BURST)
        .copied()
        .unwrap_or(rate);
    // SAFETY: reads the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    match PIKE.get_ptr_mut(&src) {
        Some(b) => {
            // SAFETY: a value of the map; another CPU may update it at the same time, which
            // only makes the limit approximate.
            let b = unsafe { &mut *b };
            let tokens = b.milli_tokens_at(now, rate, burst);
            b.last_ns = now;
            if tokens < 1000 {
                b.milli_tokens = tokens;
                true
            } else {
                b.milli_tokens = tokens - 1000;
                false
            }
        }
        None => {
            let fresh = Bucket {
                milli_tokens: burst.max(1) as u64 * 1000 - 1000,
                last_ns: now,
            };
            let _ = PIKE.insert(&src, &fresh, 0);
            false
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
