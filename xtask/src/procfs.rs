//! What `/proc` and `/sys` say of a process's CPU (all of it, with its descendants, and each
//! of its threads'), and of the machine's disks.

use std::collections::BTreeMap;
use std::process::Command;

/// utime + stime in clock ticks of a process and all its descendants.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(") ")
        {
            let f: Vec<&str> = rest.split(' ').collect();
            total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    total
}

pub(crate) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What one kind of thread has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ThreadUse {
    /// Nanoseconds on CPU.
    pub ns: u64,
    /// Times it was put on a CPU (each wake-up or return from preemption).
    pub runs: u64,
}

/// What each kind of thread of `pid` has used (`/proc/<pid>/task/*/schedstat`: time on CPU,
/// and how many times it ran): the threads named the same but for a trailing number
/// (`siplb-w0`, `siplb-w1`) count together, as `siplb-w*`.
pub(crate) fn thread_cpu_ns(pid: u32) -> BTreeMap<String, ThreadUse> {
    let mut by_kind = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_kind;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
        let (Some(Some(ns)), Some(_waited), Some(Some(runs))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let comm = comm.trim();
        let stem = comm.trim_end_matches(|c: char| c.is_ascii_digit());
        let kind = if stem.len() < comm.len() {
            format!("{}*", stem.trim_end_matches('-'))
        } else {
            comm.to_string()
        };
        let used: &mut ThreadUse = by_kind.entry(kind).or_default();
        used.ns += ns;
        used.runs += runs;
    }
    by_kind
}

/// What each kind of thread used between two readings of [`thread_cpu_ns`]: CPU seconds and
/// runs (threads gone by the second reading are left out).
pub(crate) fn thread_cpu_between(
    before: &BTreeMap<String, ThreadUse>,
    after: &BTreeMap<String, ThreadUse>,
) -> Vec<(String, f64, u64)> {
    after
        .iter()
        .map(|(kind, used)| {
            let was = before.get(kind).copied().unwrap_or_default();
            (
                kind.clone(),
                used.ns.saturating_sub(was.ns) as f64 / 1e9,
                used.runs.saturating_sub(was.runs),
            )
        })
        .collect()
}

/// Each kind of thread's CPU per call, µs, and its runs per call (`kind 12.3 (0.41 runs), …`),
/// of those that used any.
pub(crate) fn per_call_by_thread(threads: &[(String, f64, u64)], calls: u64) -> String {
    let by_thread: Vec<String> = threads
        .iter()
        .filter(|(_, cpu_s, _)| *cpu_s > 0.0)
        .map(|(kind, cpu_s, runs)| {
            format!(
                "{kind} {:.1} ({:.2} runs)",
                cpu_s / calls as f64 * 1e6,
                *runs as f64 / calls as f64
            )
        })
        .collect();
    by_thread.join(", ")
}

/// Nanoseconds on CPU of all the kernel's worker threads so far (`kworker/…`, machine-wide):
/// work a process hands to the kernel (a data sync through AIO, the flush after an
/// `O_DSYNC` write, writeback) runs there and is not in the process's own figures.
pub(crate) fn kernel_worker_ns() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for p in procs.flatten() {
        let dir = p.path();
        let is_pid = p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid
            || !std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.starts_with("kworker"))
        {
            continue;
        }
        total += std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// Requests the machine's disks completed so far: writes and cache flushes, summed over the
/// whole devices of `/sys/block` (loop, RAM and zram devices left out: their requests end in
/// another device's or in memory). Machine-wide: what a run adds shows against a run without
/// the feature measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskRequests {
    pub writes: u64,
    pub flushes: u64,
}

pub(crate) fn disk_requests() -> DiskRequests {
    let mut total = DiskRequests::default();
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return total;
    };
    for dev in devices.flatten() {
        let name = dev.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(dev.path().join("stat")) {
            let d = parse_block_stat(&stat);
            total.writes += d.writes;
            total.flushes += d.flushes;
        }
    }
    total
}

/// A block device's `stat` (the kernel's Documentation/block/stat.rst): writes completed are
/// the 5th field, flushes completed the 16th (absent before Linux 5.5: none counted).
fn parse_block_stat(stat: &str) -> DiskRequests {
    let f: Vec<u64> = stat
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    DiskRequests {
        writes: f.get(4).copied().unwrap_or(0),
        flushes: f.get(15).copied().unwrap_or(0),
    }
}

impl DiskRequests {
    /// What was done between `self` and the later reading `after`.
    pub fn until(self, after: DiskRequests) -> DiskRequests {
        DiskRequests {
            writes: after.writes.saturating_sub(self.writes),
            flushes: after.flushes.saturating_sub(self.flushes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_numbered_alike_count_together() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin = |name: &str| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .unwrap()
        };
        let threads = [spin("probe-w0"), spin("probe-w1"), spin("probe-x")];
        std::thread::sleep(std::time::Duration::from_millis(200));
        let by_kind = thread_cpu_ns(std::process::id());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            by_kind
                .get("probe-w*")
                .is_some_and(|u| u.ns > 0 && u.runs > 0),
            "{by_kind:?}"
        );
        assert!(by_kind.contains_key("probe-x"), "{by_kind:?}");
        assert!(!by_kind.contains_key("probe-w0"), "{by_kind:?}");
        let was = by_kind["probe-w*"];
        let later = BTreeMap::from([(
            "probe-w*".to_string(),
            ThreadUse {
                ns: was.ns + 5,
                runs: was.runs + 2,
            },
        )]);
        assert_eq!(
            thread_cpu_between(&by_kind, &later),
            vec![("probe-w*".to_string(), 5e-9, 2)]
        );
    }

    #[test]
    fn a_block_devices_writes_and_flushes_are_its_5th_and_16th_fields() {
        // Linux 6.x: reads (4 fields), writes (4), in flight, io and queue time, discards
        // (4), flushes (2).
        let stat = "  339606 1 2 3   297470 5 6 7    0 9 10   11 12 13 14   88609 6124\n";
        let d = parse_block_stat(stat);
        assert_eq!(
            d,
            DiskRequests {
                writes: 297470,
                flushes: 88609
            }
        );
        // Before flushes were counted: none.
        assert_eq!(parse_block_stat("1 2 3 4 5 6 7 8 9 10 11").flushes, 0);
        let later = DiskRequests {
            writes: 297500,
            flushes: 88610,
        };
        assert_eq!(
            d.until(later),
            DiskRequests {
                writes: 30,
                flushes: 1
            }
        );
        // The machine's own counters read without error.
        let _ = disk_requests();
    }
}
