//! Memory per live dialog: one shard, driven without sockets, holds N answered and acknowledged
//! calls (INVITE with SDP, 200 OK, ACK through the Record-Route; their transactions over), and
//! a counting allocator says how many heap bytes they take.
//!
//! `cargo bench -p siplb-benches --bench dialog_memory [-- N [RATE]]` (N = 100,000 dialogs,
//! RATE = 1,000 calls/s by default).
//!
//! Calls arrive at RATE (virtual time), so about 32·RATE INVITE transactions are open at the
//! peak (a 2xx keeps its INVITE transaction 32 s, RFC 6026 Timer L), as in a real run at that
//! rate; the transaction table keeps its high-water size, and that is counted. The process's
//! resident memory is reported too: it includes mimalloc's overhead and the buffers of those
//! transactions that the allocator keeps after they ended.

use siplb_benches::{Counting, DialogDriver};

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(100_000) as usize;
    let rate = nums.get(1).copied().unwrap_or(1_000).max(1);
    let mut d = DialogDriver::new(n);
    let before = ALLOC.live();
    let rss_before = rss_bytes();
    d.establish(n, std::time::Duration::from_micros(1_000_000 / rate));
    d.settle();
    let after = ALLOC.live();
    let rss_after = rss_bytes();
    assert_eq!(d.shard.active_dialogs(), n, "every call is a live dialog");
    assert_eq!(d.shard.transactions(), 0, "their transactions are over");
    let per = (after - before) as f64 / n as f64;
    println!(
        "{n} live dialogs, established at {rate} calls/s: {:.1} MiB of heap, {per:.0} bytes per dialog (target < 2048)",
        (after - before) as f64 / (1 << 20) as f64
    );
    println!(
        "resident memory grew by {:.1} MiB: {:.0} bytes per dialog",
        (rss_after - rss_before) as f64 / (1 << 20) as f64,
        (rss_after - rss_before) as f64 / n as f64
    );
    d.end_all();
    assert_eq!(d.shard.active_dialogs(), 0);
}

/// Resident set size of this process, from `/proc/self/statm`.
fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}
