//! siplb's BPF programs.
//!
//! `siplb_steer` (`sk_reuseport`): for each datagram that reaches the workers' `SO_REUSEPORT`
//! group, finds the Call-ID, hashes it with the same code as userspace
//! (`siplb_common::CallIdScanner`) and picks the socket of the worker that owns the call.
//! A datagram without a findable Call-ID is left to the kernel's choice; the worker that gets
//! it hands it on in software.
#![no_std]
#![no_main]

use aya_ebpf::bindings::sk_reuseport_md;
use aya_ebpf::cty::{c_long, c_void};
use aya_ebpf::helpers::generated::{bpf_loop, bpf_skb_load_bytes};
use aya_ebpf::macros::{map, sk_reuseport};
use aya_ebpf::maps::{Array, ReusePortSockArray};
use aya_ebpf::bindings::sk_action::SK_PASS;
use aya_ebpf::programs::SkReuseportContext;
use siplb_common::{CallIdScanner, ScanStep, bpf as shared};

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

/// The scan's state, on the program's stack, shared with the `bpf_loop` callback.
#[repr(C)]
struct Scan {
    md: *mut sk_reuseport_md,
    /// Datagram length (UDP header included).
    len: u32,
    /// Offset of `buf[0]` in the datagram (0 = nothing loaded yet: the UDP header is never
    /// scanned).
    base: u32,
    scanner: CallIdScanner,
    /// 1 when `hash` holds the Call-ID's hash.
    found: u32,
    hash: u32,
    buf: [u8; CHUNK],
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
    let mut scan = Scan {
        md: ctx.md,
        len: ctx.len() as u32,
        base: 0,
        scanner: CallIdScanner::new(key),
        found: 0,
        hash: 0,
        buf: [0; CHUNK],
    };
    // One callback per payload byte: each verifies once, whatever the datagram's length
    // (a loop over a chunk inside the callback makes the verifier walk every byte position).
    // SAFETY: `scan_byte` has the callback signature bpf_loop expects, and `scan` outlives
    // the call.
    unsafe {
        bpf_loop(
            shared::MAX_SCAN_BYTES,
            scan_byte as *mut c_void,
            &mut scan as *mut Scan as *mut c_void,
            0,
        );
    }
    if scan.found == 1 {
        SOCKETS.select_reuseport(ctx, scan.hash % workers)?;
    }
    Ok(())
}

/// One `bpf_loop` step: feeds payload byte `i` to the scanner, loading the next CHUNK bytes
/// when it needs them. Returns 1 (stop) at a verdict or at the end of the datagram.
extern "C" fn scan_byte(i: u32, data: *mut c_void) -> c_long {
    // SAFETY: `data` is the `Scan` that `try_steer` passed to bpf_loop.
    let scan = unsafe { &mut *(data as *mut Scan) };
    let pos = UDP_HEADER + i;
    if pos >= scan.len {
        return 1;
    }
    if scan.base == 0 || pos >= scan.base + CHUNK as u32 {
        // A whole chunk (the verifier wants a constant length): from here, or the last
        // CHUNK bytes of the datagram near its end.
        let at = if pos + CHUNK as u32 <= scan.len {
            pos
        } else if scan.len >= UDP_HEADER + CHUNK as u32 {
            scan.len - CHUNK as u32
        } else {
            return 1; // shorter than any SIP message with a Call-ID
        };
        // SAFETY: `buf` has room for CHUNK bytes; the helper checks `at` against the packet.
        let r = unsafe {
            bpf_skb_load_bytes(
                scan.md as *const c_void,
                at,
                scan.buf.as_mut_ptr() as *mut c_void,
                CHUNK as u32,
            )
        };
        if r != 0 {
            return 1;
        }
        scan.base = at;
    }
    let b = scan.buf[(pos.wrapping_sub(scan.base) as usize) & (CHUNK - 1)];
    match scan.scanner.step(b) {
        ScanStep::More => 0,
        ScanStep::Found(h) => {
            scan.hash = h;
            scan.found = 1;
            1
        }
        ScanStep::NotFound => 1,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
