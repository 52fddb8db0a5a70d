//! Memory after ended calls: rounds of 100,000 whole calls (INVITE, 200 OK, ACK, BYE and its
//! 200 OK, driven through one shard without sockets) arriving at RATE in virtual time, each
//! round followed by 80 s with no traffic so that every dialog and transaction is gone. After
//! each round it prints the heap and, by power-of-two size class, how many allocations more
//! or fewer are live than after the round before: memory kept per ended call shows as the
//! same growth round after round in some class; a pool whose buffers grow to the largest
//! message they carried shows as allocations moving from one class to the next, their number
//! unchanged.
//!
//! `cargo bench -p siplb-benches --bench churn_memory [-- RATE [ROUNDS]]` (RATE = 2,000
//! calls/s, ROUNDS = 10 by default).

use siplb_benches::DialogDriver;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

const CALLS: usize = 100_000;

/// mimalloc (siplb's allocator), counting live bytes and live allocations per size class
/// (class `k`: sizes from 2^(k-1) + 1 to 2^k).
struct Classes;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE: [AtomicIsize; 64] = [const { AtomicIsize::new(0) }; 64];

fn count(size: usize, n: isize) {
    BYTES.fetch_add(n * size as isize, Relaxed);
    LIVE[size.next_power_of_two().trailing_zeros() as usize].fetch_add(n, Relaxed);
}

// SAFETY: every call is passed on to mimalloc unchanged; only the counters are added.
unsafe impl GlobalAlloc for Classes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Classes = Classes;

fn live() -> [isize; 64] {
    std::array::from_fn(|k| LIVE[k].load(Relaxed))
}

fn main() {
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = nums.first().copied().unwrap_or(2_000).max(1);
    let rounds = nums.get(1).copied().unwrap_or(10);
    let every = Duration::from_micros(1_000_000 / rate);
    let mut d = DialogDriver::new(2 * CALLS);
    let (mut bytes, mut classes) = (BYTES.load(Relaxed), live());
    println!("{CALLS} calls a round at {rate} calls/s, then 80 s without traffic:");
    for round in 1..=rounds {
        for _ in 0..CALLS {
            d.call(every, true);
            while d.shard.poll_event().is_some() {}
        }
        d.settle();
        d.settle();
        assert_eq!(d.shard.active_dialogs(), 0, "every call ended");
        assert_eq!(d.shard.transactions(), 0, "every transaction ended");
        let (now, now_classes) = (BYTES.load(Relaxed), live());
        let moved: Vec<String> = (0..64)
            .filter(|&k| now_classes[k] != classes[k])
            .map(|k| format!("{}: {:+}", 1u64 << k, now_classes[k] - classes[k]))
            .collect();
        println!(
            "round {round:2}: heap {:7.2} MiB, {:+10} bytes since the round before ({:+.2} per \
             call); live allocations by size class (up to bytes): {}",
            now as f64 / (1 << 20) as f64,
            now - bytes,
            (now - bytes) as f64 / CALLS as f64,
            if moved.is_empty() {
                "unchanged".to_string()
            } else {
                moved.join(", ")
            }
        );
        (bytes, classes) = (now, now_classes);
    }
}
