//! What the disk's completion interrupts cost a thread they land on: a thread spinning on one
//! CPU times the gaps in its own run (every gap over 2 µs is time taken from it: interrupts,
//! other tasks), first alone and then while another thread, on the other CPU, makes 100
//! `O_DIRECT | O_DSYNC` writes of 64 KiB a second (a group commit's write every 10 ms) to a
//! file in the system's temporary folder. The difference, over the difference in the
//! machine's interrupt count (`/proc/stat`), is the cost of one interrupt to the thread it
//! lands on. `cargo bench -p siplb-benches --bench irq_cost` (about 20 s; `-- SECS CPU` sets
//! the seconds per phase, 8, and the spinning CPU, 1; the writer takes the one below it).

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WRITE: usize = 64 << 10;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The machine's interrupts so far (`intr` of `/proc/stat`).
fn interrupts() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("intr "))
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Spins on `cpu` for `secs`: the gaps over 2 µs, and their total.
fn spin(cpu: usize, secs: f64) -> (u64, Duration) {
    pin(cpu);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut prev, mut gaps, mut lost) = (start, 0, Duration::ZERO);
    loop {
        let now = Instant::now();
        let gap = now - prev;
        if gap > Duration::from_micros(2) {
            gaps += 1;
            lost += gap;
        }
        prev = now;
        if now >= end {
            return (gaps, lost);
        }
    }
}

fn main() {
    let mut nums = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let secs = nums.next().unwrap_or(8.0);
    let cpu = nums.next().map_or(1, |c| c as usize);
    let writer_cpu = cpu.saturating_sub(1);
    let i0 = interrupts();
    let (alone_gaps, alone_lost) = spin(cpu, secs);
    let i1 = interrupts();

    let path = std::env::temp_dir().join(format!("siplb-irq-cost-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temporary file");
    // Written once, so that the timed writes overwrite allocated blocks, as the journal's do.
    file.write_all_at(&vec![b'x'; 16 * WRITE], 0)
        .expect("write");
    file.sync_all().expect("sync");
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .expect("O_DIRECT | O_DSYNC (a filesystem that takes direct I/O)");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(writer_cpu);
            // A buffer at a 4 KiB boundary, as direct I/O needs.
            let mut raw = vec![b'y'; WRITE + 4096];
            let at = raw.as_ptr().align_offset(4096);
            let buf = &mut raw[at..at + WRITE];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = direct.write_at(buf, (n % 16) * WRITE as u64);
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let i2 = interrupts();
    let (busy_gaps, busy_lost) = spin(cpu, secs);
    let i3 = interrupts();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer");
    let _ = std::fs::remove_file(&path);

    let per_s = |n: u64| n as f64 / secs;
    let more_irqs = per_s(i3 - i2) - per_s(i1 - i0);
    let more_lost_us = (busy_lost.as_secs_f64() - alone_lost.as_secs_f64()) * 1e6 / secs;
    println!(
        "irq_cost: spinning on CPU {cpu} for {secs} s: alone {alone_gaps} gaps, {:.2} ms lost; \
         beside {writes} durable writes from CPU {writer_cpu}: {busy_gaps} gaps, {:.2} ms lost",
        alone_lost.as_secs_f64() * 1e3,
        busy_lost.as_secs_f64() * 1e3,
    );
    let more_gaps = per_s(busy_gaps) - per_s(alone_gaps);
    println!(
        "irq_cost: the machine's interrupts {:.0}/s alone, {:.0}/s beside the writes ({:.0}/s \
         more); on CPU {cpu} {more_gaps:.0} gaps/s and {:.2} ms/s lost more: {:.1} µs per gap",
        per_s(i1 - i0),
        per_s(i3 - i2),
        more_irqs,
        more_lost_us / 1e3,
        if more_gaps > 0.0 {
            more_lost_us / more_gaps
        } else {
            f64::NAN
        },
    );
}
