//! What the accounting writer's disk work costs in CPU on this machine, outside siplb: the
//! ways of making a 10 ms round of records durable, and of writing the record files.
//! `cargo bench -p siplb-benches --bench commit_io` (about 25 s; `-- ROUNDS` sets the rounds
//! per case, 300 by default). Every case sleeps 10 ms between rounds, as the writer does, and
//! prints the process's CPU per round (`CLOCK_PROCESS_CPUTIME_ID`, io_uring's threads
//! included); `sleep only` is what the wake-up alone costs. Files go to a folder under the
//! system's temporary folder, deleted at the end.

use io_uring::{IoUring, opcode, types};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

const ROUND: usize = 64 << 10;
const JOURNAL: u64 = 64 << 20;

fn cpu_us() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// Runs `round` `rounds` times, 10 ms apart; CPU µs per round.
fn measure(rounds: usize, mut round: impl FnMut(usize)) -> f64 {
    let start = cpu_us();
    for i in 0..rounds {
        std::thread::sleep(Duration::from_millis(10));
        round(i);
    }
    (cpu_us() - start) / rounds as f64
}

/// A journal of zeros, written once (so that overwrites change no metadata).
fn journal(dir: &Path, direct: bool) -> File {
    let path = dir.join("journal");
    let f = File::create(&path).expect("journal");
    let zeros = vec![0u8; 1 << 20];
    for i in 0..JOURNAL >> 20 {
        f.write_all_at(&zeros, i << 20).expect("zeros");
    }
    f.sync_all().expect("sync");
    let mut o = OpenOptions::new();
    o.write(true);
    if direct {
        o.custom_flags(libc::O_DIRECT | libc::O_DSYNC);
    }
    o.open(&path).expect("journal")
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("siplb-commit-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("folder");
    let raw = vec![7u8; ROUND + 4096];
    let off = raw.as_ptr().align_offset(4096);
    let buf = &raw[off..off + ROUND];
    let at = |i: usize| (i * ROUND) as u64 % JOURNAL;
    let report = |name: &str, us: f64| println!("commit_io: {name:<48} {us:7.1} µs CPU per round");

    report("sleep only", measure(rounds, |_| {}));

    let f = journal(&dir, false);
    report(
        "journal: buffered pwrite 64 KiB + fdatasync",
        measure(rounds, |i| {
            f.write_all_at(buf, at(i)).expect("write");
            f.sync_data().expect("sync");
        }),
    );

    let f = journal(&dir, true);
    report(
        "journal: O_DIRECT|O_DSYNC pwrite 64 KiB",
        measure(rounds, |i| f.write_all_at(buf, at(i)).expect("write")),
    );

    for (deferred, name) in [
        (false, "journal: O_DIRECT|O_DSYNC 64 KiB via io_uring"),
        (true, "journal: the same, completions deferred"),
    ] {
        // Deferred: the completion's work waits for the thread's next look at the ring
        // instead of waking it from its sleep (what siplb's journal does).
        let mut ring = if deferred {
            IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(4)
                .expect("io_uring with deferred task running")
        } else {
            IoUring::new(4).expect("io_uring")
        };
        let mut in_flight = false;
        let us = measure(rounds, |i| {
            if in_flight {
                if ring.completion().is_empty() {
                    ring.submit_and_wait(1).expect("wait");
                }
                let c = ring.completion().next().expect("completion");
                assert_eq!(c.result(), ROUND as i32, "the round's write");
            }
            let w = opcode::Write::new(types::Fd(f.as_raw_fd()), buf.as_ptr(), ROUND as u32)
                .offset(at(i))
                .build();
            // SAFETY: `raw` outlives the ring's use of it (reaped below before it is dropped).
            unsafe { ring.submission().push(&w).expect("room") };
            ring.submit().expect("submit");
            in_flight = true;
        });
        if in_flight {
            ring.submit_and_wait(1).expect("wait");
        }
        report(name, us);
    }

    for (every, name) in [
        (1, "files: 4 appends of 12 KB every round"),
        (10, "files: 4 appends of 120 KB every 10th round"),
    ] {
        let files: Vec<File> = (0..4)
            .map(|k| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("f{k}")))
                    .expect("file")
            })
            .collect();
        let chunk = vec![b'x'; 12_000 * every];
        report(
            name,
            measure(rounds, |i| {
                if (i + 1) % every == 0 {
                    for mut f in &files {
                        std::io::Write::write_all(&mut f, &chunk).expect("append");
                    }
                }
            }),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
