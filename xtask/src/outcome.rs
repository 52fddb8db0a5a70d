//! What one run of `cargo xtask bench` measured of one proxy: calls, CPU (in all and by
//! thread), the disks' and the kernel workers' work meanwhile, and siplb's own figures.

use crate::procfs::DiskRequests;

pub(crate) struct Outcome {
    pub proxy: String,
    pub ok: u64,
    pub failed: u64,
    pub achieved_cps: f64,
    pub cpu_s: f64,
    /// The proxy's CPU-s and runs (times put on a CPU) by kind of thread (the main process's
    /// threads only).
    pub threads: Vec<(String, f64, u64)>,
    /// The machine's disks' requests over the same span.
    pub disk: DiskRequests,
    /// The kernel's worker threads' CPU-s over the same span (machine-wide).
    pub kworkers_s: f64,
    pub wall_s: f64,
    pub retrans: u64,
    /// siplb only: (p50, p99, max) µs from kernel receive to processed.
    pub latency_us: Option<(u64, u64, u64)>,
    /// siplb only: messages received (requests + replies), hand-offs, BPF steering on.
    pub messages: Option<(u64, u64, u64)>,
    /// siplb with `[acc]` only: `acc:written` (records written and synced).
    pub acc_written: Option<u64>,
    /// siplb with `[cluster]` only: `cluster:lease_round_trips`.
    pub lease_round_trips: Option<u64>,
    /// Calls sipp completed in the whole run (`ok` counts those after the warm-up).
    pub ok_total: u64,
}

impl Outcome {
    /// Proxy CPU-seconds per 1,000 successful calls.
    pub fn per_k(&self) -> f64 {
        if self.ok > 0 {
            self.cpu_s / self.ok as f64 * 1000.0
        } else {
            f64::NAN
        }
    }
}
