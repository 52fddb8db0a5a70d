//! BPF steering: siplb's `sk_reuseport` program picks, for every datagram that
//! reaches the workers' `SO_REUSEPORT` group, the socket of the worker that owns its Call-ID,
//! with the same hash as the workers (`siplb_common`). Then no datagram needs a hand-off.
//! The XDP guard of the same object drops what is not SIP before the kernel's UDP stack
//! ([`XdpGuard`]).
//!
//! The BPF object is built from `ebpf/` (`cargo xtask build-ebpf`) and committed at
//! `proxy/bpf/siplb.bpf.o`, so that siplb builds and runs without the BPF toolchain;
//! `proxy/bpf/BUILD.md` records what it was built from.

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, CpuMap, HashMap, MapData, PerCpuArray, ReusePortSockArray, XskMap};
use aya::programs::{SkReuseport, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};
use ipnet::Ipv4Net;
use siplb_common::bpf as shared;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// The committed BPF object.
pub static OBJECT: &[u8] = include_bytes_aligned!("../bpf/siplb.bpf.o");

/// Why BPF cannot be used without privilege, said instead of the first failing map.
pub const NEEDS_PRIVILEGE: &str =
    "it needs root or CAP_BPF + CAP_NET_ADMIN, which this process does not have";

/// Capability bits (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capabilities of this process (`CapEff` of `/proc/self/status`).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether capabilities `eff` allow loading and attaching siplb's programs: CAP_BPF (or
/// CAP_SYS_ADMIN, which covers it on kernels before 5.8) and CAP_NET_ADMIN.
pub fn privileged(eff: u64) -> bool {
    let has = |bit: u32| eff & (1 << bit) != 0;
    (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN)
}

/// Loads the committed object; without the privilege for it, says so rather than which of
/// its maps the kernel refused first.
fn load_object() -> Result<Ebpf, String> {
    load_object_stamping(true)
}

/// [`load_object`], with the XDP guard's receive-time stamp on or off
/// (`siplb_common::bpf::XDP_STAMP_GLOBAL`).
fn load_object_stamping(stamp: bool) -> Result<Ebpf, String> {
    if effective_capabilities().is_some_and(|c| !privileged(c)) {
        return Err(NEEDS_PRIVILEGE.into());
    }
    let stamp = u32::from(stamp);
    let loaded = EbpfLoader::new()
        .override_global(shared::XDP_STAMP_GLOBAL, &stamp, true)
        .load(OBJECT);
    loaded.map_err(|e| {
        let e = chain(&e);
        if e.contains("Operation not permitted") || e.contains("Permission denied") {
            format!("it needs root or CAP_BPF + CAP_NET_ADMIN; the kernel refused: {e}")
        } else {
            format!("loading the BPF object: {e}")
        }
    })
}

/// The XDP guard's program in `ebpf`.
fn guard_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, String> {
    ebpf.program_mut(shared::GUARD_PROGRAM)
        .ok_or("no XDP program in the BPF object")?
        .try_into()
        .map_err(|e| format!("{e}"))
}

/// Loads the XDP guard's program into the kernel (the verifier's words when it refuses).
fn load_guard(ebpf: &mut Ebpf) -> Result<(), String> {
    guard_program(ebpf)?
        .load()
        .map_err(|e| format!("loading {}: {}", shared::GUARD_PROGRAM, chain(&e)))
}

/// A socket fd owned by a worker, borrowed while the map takes its own reference to it.
struct Socket(RawFd);

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The steering program, loaded and attached to the workers' socket group.
pub struct BpfSteering {
    _ebpf: Ebpf,
    group: RawFd,
}

impl BpfSteering {
    /// Loads the program, puts the workers' sockets (`sockets[k]` = worker k's) and the hash
    /// key into its maps and attaches it to their group. The error says what failed, for the
    /// log line of `steering = "auto"`.
    pub fn attach(sockets: &[RawFd], hash_key: u32) -> Result<BpfSteering, String> {
        if sockets.is_empty() || sockets.len() > shared::MAX_WORKERS as usize {
            return Err(format!(
                "{} workers (1 to {})",
                sockets.len(),
                shared::MAX_WORKERS
            ));
        }
        let mut ebpf = load_object()?;
        {
            let map = ebpf
                .map_mut(shared::SOCKETS_MAP)
                .ok_or("no socket map in the BPF object")?;
            let mut socks = ReusePortSockArray::try_from(map).map_err(|e| e.to_string())?;
            for (k, fd) in sockets.iter().enumerate() {
                socks
                    .set(k as u32, &Socket(*fd), 0)
                    .map_err(|e| format!("socket map entry {k}: {e}"))?;
            }
        }
        {
            let map = ebpf
                .map_mut(shared::STEER_MAP)
                .ok_or("no steering map in the BPF object")?;
            let mut steer: Array<_, u32> = Array::try_from(map).map_err(|e| e.to_string())?;
            steer
                .set(shared::STEER_HASH_KEY, hash_key, 0)
                .map_err(|e| e.to_string())?;
            steer
                .set(shared::STEER_WORKERS, sockets.len() as u32, 0)
                .map_err(|e| e.to_string())?;
        }
        let prog: &mut SkReuseport = ebpf
            .program_mut(shared::STEER_PROGRAM)
            .ok_or("no steering program in the BPF object")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load()
            .map_err(|e| format!("loading {}: {}", shared::STEER_PROGRAM, chain(&e)))?;
        // SAFETY: the fd is a worker's socket, open for the life of the proxy.
        let group = unsafe { BorrowedFd::borrow_raw(sockets[0]) };
        prog.attach(group)
            .map_err(|e| format!("attaching to the SO_REUSEPORT group: {}", chain(&e)))?;
        Ok(BpfSteering {
            _ebpf: ebpf,
            group: sockets[0],
        })
    }

    /// Detaches the program from the group (the sockets stay open).
    pub fn detach(self) {
        // SAFETY: as in `attach`; called before the workers close their sockets.
        let group = unsafe { BorrowedFd::borrow_raw(self.group) };
        if let Err(e) = SkReuseport::detach(group) {
            tracing::warn!("detaching the steering program: {e}");
        }
    }
}

/// The XDP guard, attached to the interface of the listen address; detached on drop (its link
/// belongs to the loaded object).
pub struct XdpGuard {
    _ebpf: Ebpf,
    stats: std::sync::Mutex<PerCpuArray<MapData, u64>>,
    blocklist: std::sync::Mutex<LpmTrie<MapData, u32, u8>>,
    allow: std::sync::Mutex<LpmTrie<MapData, u32, u8>>,
    /// Source → [milli-tokens, last fill ns] (`siplb_common::bpf::Bucket`).
    pike: std::sync::Mutex<HashMap<MapData, u32, [u64; 2]>>,
    /// The workers' AF_XDP sockets (`siplb_common::bpf::XSKS_MAP`).
    xsks: std::sync::Mutex<XskMap<MapData>>,
    pub interface: String,
    pub mode: &'static str,
    /// The flood limit it was given: per second, and the burst.
    flood: (u32, u32),
}

/// Where the guard sends what it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect<'a> {
    /// On up the kernel's stack (`XDP_PASS`).
    Pass,
    /// To the CPU of the worker that owns the call (`cpus[k]`: worker k's CPU), through a
    /// cpumap; `key` is the owner hash key.
    Cpus { key: u32, cpus: &'a [u32] },
    /// To the AF_XDP socket of the worker that owns the call, of `workers` (placed with
    /// [`XdpGuard::place_xsk`]), when it is for `addr` and no longer than `max_frame`; what
    /// it cannot place passes.
    Xsk {
        key: u32,
        workers: u32,
        addr: std::net::Ipv4Addr,
        max_frame: u32,
    },
}

/// Which XDP mode to attach in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// Native where the driver has it, generic otherwise.
    Auto,
    Native,
    Generic,
}

impl GuardMode {
    /// As `steering.xdp_mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            GuardMode::Auto => "auto",
            GuardMode::Native => "native",
            GuardMode::Generic => "generic",
        }
    }
}

impl XdpGuard {
    /// Loads the guard, tells it the SIP port and the flood limit (datagrams per second per
    /// source, 0 = none) and attaches it to `interface`; what it lets through goes where
    /// `redirect` says.
    pub fn attach(
        interface: &str,
        port: u16,
        flood_rate: u32,
        flood_burst: u32,
        mode: GuardMode,
        redirect: Redirect<'_>,
    ) -> Result<XdpGuard, String> {
        let mut ebpf = load_object()?;
        if let Err(e) = load_guard(&mut ebpf) {
            if !e.contains("bpf_xdp_adjust_meta") {
                return Err(e);
            }
            // Some kernels refuse XDP programs that helper (seen on a Firecracker guest's
            // 6.18): the guard works without it, only AF_XDP frames lack their stamp.
            tracing::info!(
                "XDP guard: this kernel refuses it bpf_xdp_adjust_meta; frames it gives to \
                 AF_XDP sockets go without their receive time (latency is then measured from \
                 when a worker reads them)"
            );
            ebpf = load_object_stamping(false)?;
            load_guard(&mut ebpf)?;
        }
        {
            let map = ebpf
                .map_mut(shared::XDP_CONFIG_MAP)
                .ok_or("no XDP config map in the BPF object")?;
            let mut cfg: Array<_, u32> = Array::try_from(map).map_err(|e| e.to_string())?;
            let (key, cpu_workers, xsk_workers, addr, max_frame) = match redirect {
                Redirect::Pass => (0, 0, 0, 0, 0),
                Redirect::Cpus { key, cpus } => (key, cpus.len() as u32, 0, 0, 0),
                Redirect::Xsk {
                    key,
                    workers,
                    addr,
                    max_frame,
                } => (
                    key,
                    0,
                    workers,
                    u32::from_ne_bytes(addr.octets()),
                    max_frame,
                ),
            };
            for (k, v) in [
                (shared::XDP_SIP_PORT, port as u32),
                (shared::XDP_FLOOD_RATE, flood_rate),
                (shared::XDP_FLOOD_BURST, flood_burst),
                (shared::XDP_REDIRECT_WORKERS, cpu_workers),
                (shared::XDP_HASH_KEY, key),
                (shared::XDP_XSK_WORKERS, xsk_workers),
                (shared::XDP_XSK_ADDR, addr),
                (shared::XDP_XSK_MAX_FRAME, max_frame),
            ] {
                cfg.set(k, v, 0).map_err(|e| e.to_string())?;
            }
        }
        if let Redirect::Cpus { cpus, .. } = redirect {
            {
                let map = ebpf
                    .map_mut(shared::WORKER_CPU_MAP)
                    .ok_or("no worker CPU map in the BPF object")?;
                let mut wc: Array<_, u32> = Array::try_from(map).map_err(|e| e.to_string())?;
                for (k, cpu) in cpus.iter().enumerate() {
                    wc.set(k as u32, *cpu, 0).map_err(|e| e.to_string())?;
                }
            }
            let map = ebpf
                .map_mut(shared::CPUS_MAP)
                .ok_or("no cpumap in the BPF object")?;
            let mut cpumap = CpuMap::try_from(map).map_err(|e| e.to_string())?;
            for cpu in cpus {
                cpumap
                    .set(*cpu, 2048, None, 0)
                    .map_err(|e| format!("cpumap entry for CPU {cpu}: {e}"))?;
            }
        }
        let stats = ebpf
            .take_map(shared::XDP_STATS_MAP)
            .ok_or("no XDP statistics map in the BPF object")?;
        let stats: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(stats).map_err(|e| e.to_string())?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or(format!("no map {name} in the BPF object"))
        };
        let blocklist =
            LpmTrie::try_from(take(shared::BLOCKLIST_MAP)?).map_err(|e| e.to_string())?;
        let allow = LpmTrie::try_from(take(shared::ALLOW_MAP)?).map_err(|e| e.to_string())?;
        let pike = HashMap::try_from(take(shared::PIKE_MAP)?).map_err(|e| e.to_string())?;
        let xsks = XskMap::try_from(take(shared::XSKS_MAP)?).map_err(|e| e.to_string())?;
        let prog = guard_program(&mut ebpf)?;
        let tries: &[(XdpMode, &'static str)] = match mode {
            GuardMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            GuardMode::Native => &[(XdpMode::Driver, "native")],
            GuardMode::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last = String::new();
        for (m, name) in tries {
            match prog.attach(interface, *m) {
                Ok(_) => {
                    return Ok(XdpGuard {
                        _ebpf: ebpf,
                        stats: std::sync::Mutex::new(stats),
                        blocklist: std::sync::Mutex::new(blocklist),
                        allow: std::sync::Mutex::new(allow),
                        pike: std::sync::Mutex::new(pike),
                        xsks: std::sync::Mutex::new(xsks),
                        interface: interface.into(),
                        mode: name,
                        flood: (flood_rate, flood_burst),
                    });
                }
                Err(e) => last = format!("attaching to {interface} ({name}): {}", chain(&e)),
            }
        }
        Err(last)
    }

    /// Puts AF_XDP socket `fd` at `index` of the socket map: a worker number, or
    /// `siplb_common::bpf::XSK_QUEUE_BASE + q` for the socket that takes queue `q`'s
    /// datagrams for owners bound elsewhere.
    pub fn place_xsk(&self, index: u32, fd: RawFd) -> Result<(), String> {
        let mut m = self.xsks.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the caller's socket, open while it is in the map (closing it removes it).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        m.set(index, fd, 0)
            .map_err(|e| format!("AF_XDP socket map entry {index}: {e}"))
    }

    /// Exempts `net` from the flood limit.
    pub fn allow(&self, net: Ipv4Net) -> Result<(), String> {
        let mut m = self.allow.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(&key(net), 1, 0).map_err(|e| e.to_string())
    }

    /// Takes `net` off the allow list (a reload that removed it); whether it was on it.
    pub fn disallow(&self, net: Ipv4Net) -> bool {
        let mut m = self.allow.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&key(net)).is_ok()
    }

    /// Drops everything `net` sends to the SIP port.
    pub fn block(&self, net: Ipv4Net) -> Result<(), String> {
        let mut m = self.blocklist.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(&key(net), 1, 0).map_err(|e| e.to_string())
    }

    /// Takes `net` off the blocklist; whether it was on it.
    pub fn unblock(&self, net: Ipv4Net) -> bool {
        let mut m = self.blocklist.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&key(net)).is_ok()
    }

    /// The blocklist, sorted.
    pub fn blocked(&self) -> Vec<Ipv4Net> {
        let m = self.blocklist.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Ipv4Net> = m
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| {
                Ipv4Net::new(
                    std::net::Ipv4Addr::from(u32::from_be(k.data())),
                    k.prefix_len() as u8,
                )
                .ok()
            })
            .collect();
        out.sort();
        out
    }

    /// The sources the flood limit tracks, the busiest first: (source, tokens it has now,
    /// its bucket filled since its last datagram).
    pub fn pike_top(&self, n: usize) -> Vec<(std::net::Ipv4Addr, f64)> {
        let m = self.pike.lock().unwrap_or_else(|e| e.into_inner());
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        let (rate, burst) = self.flood;
        let mut out: Vec<(std::net::Ipv4Addr, f64)> = m
            .iter()
            .filter_map(Result::ok)
            .map(|(src, [milli_tokens, last_ns])| {
                let b = shared::Bucket {
                    milli_tokens,
                    last_ns,
                };
                (
                    std::net::Ipv4Addr::from(u32::from_be(src)),
                    b.milli_tokens_at(now, rate, burst) as f64 / 1000.0,
                )
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out.truncate(n);
        out
    }

    /// The guard's counters, summed over CPUs, by `siplb_common::bpf::XDP_*` index.
    pub fn counters(&self) -> [u64; shared::XDP_STATS_LEN as usize] {
        let mut out = [0; shared::XDP_STATS_LEN as usize];
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = stats.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

/// An error and its sources, "a: b: c" (aya's errors keep the kernel's errno in a source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// `clock` in ns (CLOCK_MONOTONIC is the clock of the guard's `bpf_ktime_get_ns`).
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The interface that holds IPv4 address `ip` (`lo` for 127.0.0.1).
pub fn interface_of(ip: std::net::IpAddr) -> Option<String> {
    let std::net::IpAddr::V4(v4) = ip else {
        return None;
    };
    if v4.is_loopback() {
        return Some("lo".into());
    }
    let mut found = None;
    // SAFETY: getifaddrs fills a list we walk read-only and free with freeifaddrs.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let a = (*cur).ifa_addr;
            if !a.is_null() && (*a).sa_family as i32 == libc::AF_INET {
                let sin = &*(a as *const libc::sockaddr_in);
                if u32::from_be(sin.sin_addr.s_addr) == u32::from(v4) {
                    found = Some(
                        std::ffi::CStr::from_ptr((*cur).ifa_name)
                            .to_string_lossy()
                            .into_owned(),
                    );
                    break;
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// The guard's lists' key for `net`: the prefix length and the network address (host bits
/// cleared), big endian.
fn key(net: Ipv4Net) -> Key<u32> {
    Key::new(net.prefix_len() as u32, u32::from(net.network()).to_be())
}

/// An IPv4 network as `blocklist` takes it: `198.18.0.0/15`, or a bare address = /32.
pub fn parse_ipv4_net(s: &str) -> Result<Ipv4Net, String> {
    let (a, p) = s.split_once('/').unwrap_or((s, "32"));
    let addr: std::net::Ipv4Addr = a
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 address or network"))?;
    p.parse()
        .ok()
        .and_then(|p| Ipv4Net::new(addr, p).ok())
        .ok_or(format!("bad prefix length in `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_networks() {
        let n = parse_ipv4_net("198.18.7.9/15").unwrap();
        assert_eq!(n.to_string(), "198.18.7.9/15");
        let k = key(n);
        assert_eq!((k.prefix_len(), u32::from_be(k.data())), (15, 0xc612_0000));
        assert_eq!(
            parse_ipv4_net("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            parse_ipv4_net("10.0.0.1/33").unwrap_err(),
            "bad prefix length in `10.0.0.1/33`"
        );
        assert_eq!(
            parse_ipv4_net("::1").unwrap_err(),
            "`::1` is not an IPv4 address or network"
        );
    }

    #[test]
    fn bpf_needs_cap_bpf_or_sys_admin_and_net_admin() {
        let caps = |bits: &[u32]| bits.iter().fold(0u64, |a, b| a | 1 << b);
        assert!(privileged(u64::MAX), "root");
        assert!(privileged(caps(&[CAP_BPF, CAP_NET_ADMIN])));
        assert!(privileged(caps(&[CAP_SYS_ADMIN, CAP_NET_ADMIN])));
        assert!(!privileged(caps(&[CAP_BPF])));
        assert!(!privileged(caps(&[CAP_NET_ADMIN])));
        assert!(!privileged(0));
    }
}
