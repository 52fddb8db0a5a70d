//! `cargo xtask bench`: sipp through siplb and through Kamailio, same scenario and rate, the
//! proxies taking turns; CPU per call of each.

use crate::ci::install_deps;
use crate::outcome::Outcome;
use crate::procfs::{
    clk_tck, cpu_ticks, disk_requests, kernel_worker_ns, per_call_by_thread, thread_cpu_between,
    thread_cpu_ns,
};
use crate::rounds;
use crate::{build_release_siplb, root};
use anyhow::{Context, Result, bail};
use siplb_tests::{SIPP_BASE_ARGS, read_sipp_csv, stop_child, try_wait_bound};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo xtask bench` options.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Calls per second (1..20000)
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Calls per round (1..1000000)
    #[arg(long, default_value_t = 20_000)]
    calls: u32,
    /// Rounds (1..9, clamped); each figure is the median round
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Overrides `workers.batch_wait_us` of the example config.
    #[arg(long)]
    batch_wait_us: Option<u32>,
    /// Which proxies take turns (steering: siplb with BPF steering against software hand-off)
    #[arg(long = "proxy", value_enum, default_value_t = ProxyChoice::Both)]
    proxy: ProxyChoice,
    /// siplb's configuration, relative to the repository (moved to the bench address).
    #[arg(long, default_value = "examples/siplb.toml")]
    config: String,
    /// Another siplb binary (e.g. an older commit's release build) to run in the same rounds
    /// as the freshly built one, under the label `siplb[PATH]` (repeatable); with every
    /// `--config-b` too (`siplb[PATH]{FILE}`, compared with that binary's `--config` round)
    #[arg(long = "siplb-bin", value_name = "PATH")]
    siplb_bins: Vec<PathBuf>,
    /// Another configuration (e.g. examples/acc.toml) for siplb to run in the same rounds,
    /// right after `--config`, under the label `siplb{FILE}` (repeatable); its listening
    /// address and control socket are moved like the first's, and an `[acc]` folder goes into
    /// the round's folder (deleted after the run)
    #[arg(long = "config-b", value_name = "PATH")]
    configs_b: Vec<String>,
    /// The gateways' sipp scenario for the `--config-b` entries, relative to the repository
    /// (e.g. tests/scenarios/uas_auth.xml, a trunk that challenges every INVITE); the others
    /// use examples/sipp/uas.xml
    #[arg(
        long = "uas-b",
        value_name = "PATH",
        default_value = "examples/sipp/uas.xml"
    )]
    uas_b: String,
    /// Seconds of each run left out of the CPU figures: CPU per call is measured from then
    /// to the end (CPU time over the calls sipp completed meanwhile), once siplb's tables
    /// have grown to their steady size (a call lingers 32 s after its end), so that the
    /// cost of first touching new memory is not counted. 0: the whole run.
    #[arg(long, default_value_t = 0)]
    warmup_s: u64,
    /// Also a null UDP relay of the project's own in each round (`cargo xtask relay`: no SIP
    /// work, one thread, recvmmsg/sendmmsg), under the label `relay`: the socket path's limit
    #[arg(long)]
    relay: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProxyChoice {
    Siplb,
    Kamailio,
    Both,
    Steering,
}

impl BenchArgs {
    /// Checks the ranges; clamps `repeat`.
    fn validate(mut self) -> Result<BenchArgs> {
        self.repeat = self.repeat.clamp(1, 9);
        if self.rate == 0 || self.rate > 20_000 || self.calls == 0 || self.calls > 1_000_000 {
            bail!("--rate 1..20000, --calls 1..1000000");
        }
        if self.warmup_s > 0 && self.warmup_s + 5 > u64::from(self.calls / self.rate) {
            bail!(
                "--warmup-s {} leaves less than 5 s of a {} s run to measure",
                self.warmup_s,
                self.calls / self.rate
            );
        }
        Ok(self)
    }

    /// The proxies that take turns in each round: those of `--proxy`, each siplb one followed
    /// by the same for every `--siplb-bin`.
    fn entries(&self, root: &Path) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        if self.relay {
            entries.push(Entry {
                label: "relay".into(),
                dir: "relay".into(),
                siplb: None,
                relay: true,
                steering_off: false,
                base: None,
                config: String::new(),
                uas: UAS.into(),
            });
        }
        for name in self.proxies() {
            if name == "kamailio" {
                entries.push(Entry {
                    label: name.into(),
                    dir: name.into(),
                    siplb: None,
                    relay: false,
                    steering_off: false,
                    base: None,
                    config: String::new(),
                    uas: UAS.into(),
                });
                continue;
            }
            let base = entries.len();
            let fresh = target_dir(root).join("release/siplb");
            entries.push(Entry {
                label: name.into(),
                dir: name.into(),
                siplb: Some(fresh.clone()),
                relay: false,
                steering_off: name == "siplb-off",
                base: None,
                config: self.config.clone(),
                uas: UAS.into(),
            });
            self.push_configs_b(&mut entries, name, name, &fresh, base);
            for (n, bin) in self.siplb_bins.iter().enumerate() {
                let path = bin
                    .canonicalize()
                    .with_context(|| format!("--siplb-bin {}", bin.display()))?;
                let bin_base = entries.len();
                let label = format!("{name}[{}]", bin.display());
                let dir = format!("{name}-bin{}", n + 1);
                entries.push(Entry {
                    label: label.clone(),
                    dir: dir.clone(),
                    siplb: Some(path.clone()),
                    relay: false,
                    steering_off: name == "siplb-off",
                    base: Some(base),
                    config: self.config.clone(),
                    uas: UAS.into(),
                });
                // The binary with each `--config-b` too, against its own `--config` round.
                self.push_configs_b(&mut entries, &label, &dir, &path, bin_base);
            }
        }
        if (!self.siplb_bins.is_empty() || !self.configs_b.is_empty())
            && entries.iter().all(|e| e.base.is_none())
        {
            bail!(
                "--siplb-bin and --config-b need siplb among the proxies (--proxy siplb, both or \
                 steering)"
            );
        }
        Ok(entries)
    }

    /// One entry per `--config-b` for the siplb `entries[base]` runs (`siplb`, its label;
    /// `dir`, its folder), compared with that entry.
    fn push_configs_b(
        &self,
        entries: &mut Vec<Entry>,
        label: &str,
        dir: &str,
        siplb: &Path,
        base: usize,
    ) {
        let steering_off = entries[base].steering_off;
        for (n, config_b) in self.configs_b.iter().enumerate() {
            entries.push(Entry {
                label: format!("{label}{{{}}}", file_name(config_b)),
                dir: format!("{dir}-config-b{}", n + 1),
                siplb: Some(siplb.to_path_buf()),
                relay: false,
                steering_off,
                base: Some(base),
                config: config_b.clone(),
                uas: self.uas_b.clone(),
            });
        }
    }

    fn proxies(&self) -> Vec<&'static str> {
        match self.proxy {
            ProxyChoice::Siplb => vec!["siplb"],
            ProxyChoice::Kamailio => vec!["kamailio"],
            ProxyChoice::Both => vec!["siplb", "kamailio"],
            // siplb with BPF steering against siplb with software hand-off.
            ProxyChoice::Steering => vec!["siplb", "siplb-off"],
        }
    }
}

/// One proxy that takes its turn in each round.
struct Entry {
    /// Its name in the results: `siplb`, `siplb-off`, `kamailio` or `siplb[PATH]`.
    label: String,
    /// Its folder in each round's.
    dir: String,
    /// The siplb binary (`None`: Kamailio, or the relay).
    siplb: Option<PathBuf>,
    /// The null UDP relay (`cargo xtask relay`).
    relay: bool,
    /// siplb with software hand-off (`steering.mode = "off"`).
    steering_off: bool,
    /// For a `--siplb-bin` or `--config-b` entry: the entry it is compared with (for a
    /// binary's `--config-b` entry, that binary's `--config` one; otherwise the freshly built
    /// siplb with `--config`).
    base: Option<usize>,
    /// siplb's configuration, relative to the repository (empty for Kamailio).
    config: String,
    /// The gateways' sipp scenario, relative to the repository.
    uas: String,
}

/// A config's file name, for labels.
fn file_name(config: &str) -> String {
    Path::new(config)
        .file_name()
        .map_or(config.to_string(), |f| f.to_string_lossy().into_owned())
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or the repository's `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("target"),
    }
}

/// The address both proxies listen on in turn (loopback only), and their gateways.
const BENCH_IP: &str = "127.0.50.1";
/// The gateways' scenario unless `--uas-b` says otherwise.
const UAS: &str = "examples/sipp/uas.xml";

/// Fails unless something listens on UDP `addr` within 10 s.
fn wait_udp(addr: &str) -> Result<()> {
    if !try_wait_bound(addr, Duration::from_secs(10)) {
        bail!("nothing listens on {addr}")
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let b = args.validate()?;
    let root = root();
    let entries = b.entries(&root)?;
    install_deps(&["sip-tester", "kamailio", "procps"])?;
    build_release_siplb(&root)?;
    let work = root.join("target/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Proxies take turns, `repeat` rounds; each figure below is the median round (by CPU per
    // call), so a burst of noise from the rest of the machine does not decide the comparison.
    let mut rounds: Vec<Vec<Outcome>> = entries.iter().map(|_| Vec::new()).collect();
    for round in 0..b.repeat {
        // Every other round runs the entries in reverse, so that a machine slowing down (or
        // speeding up) through a run does not always favour the entry that runs first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..entries.len()).collect()
        } else {
            (0..entries.len()).rev().collect()
        };
        for i in order {
            let entry = &entries[i];
            let o = bench_one(&root, &work.join(format!("round{round}")), entry, &b)?;
            eprintln!(
                "xtask: round {round} {}: ok {} failed {} cpu {:.2} s ({:.3} per 1000 calls)",
                entry.label,
                o.ok,
                o.failed,
                o.cpu_s,
                o.per_k()
            );
            rounds[i].push(o);
        }
    }
    // Each entry's rounds in the order they ran, in CPU ms per call (= CPU-s per 1000 calls).
    let per_round: Vec<Vec<f64>> = rounds
        .iter()
        .map(|r| r.iter().map(Outcome::per_k).collect())
        .collect();
    let outcomes: Vec<Outcome> = rounds
        .into_iter()
        .map(|mut r| {
            r.sort_by(|a, b| a.per_k().total_cmp(&b.per_k()));
            r.swap_remove(r.len() / 2)
        })
        .collect();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "\nsipp uac.xml/uas.xml (one UAC, two UAS gateways), {} calls at {} calls/s, hold 0, median of {} rounds, {} ({} cores)\n",
        b.calls,
        b.rate,
        b.repeat,
        cpu_model,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| proxy | calls ok | failed | calls/s | retransmissions | proxy CPU-s | CPU-s per 1000 calls | proxy CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let per_k = o.per_k();
        println!(
            "| {} | {} | {} | {:.1} | {} | {:.2} | {:.3} | {:.1} |",
            o.proxy,
            o.ok,
            o.failed,
            o.achieved_cps,
            o.retrans,
            o.cpu_s,
            per_k,
            o.cpu_s / o.wall_s * 100.0
        );
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for o in &outcomes {
        if let Some((msgs, hand_offs, bpf)) = o.messages {
            println!(
                "\n{}: steering {}, {msgs} messages received, {:.0} messages/s per worker ({workers} workers), {hand_offs} hand-offs",
                o.proxy,
                if bpf == 1 { "BPF" } else { "software" },
                msgs as f64 / o.wall_s / workers as f64,
            );
        }
    }
    for o in &outcomes {
        if let Some((p50, p99, max)) = o.latency_us {
            println!(
                "\n{}: kernel receive to processed, per datagram: p50 {p50} µs, p99 {p99} µs, max {max} µs",
                o.proxy
            );
        }
    }
    for o in outcomes.iter().filter(|o| o.messages.is_some() && o.ok > 0) {
        let per_1000 = |n: u64| n as f64 * 1000.0 / o.ok as f64;
        println!(
            "\n{}: CPU per call by thread, µs, and runs on a CPU per call (the median round): {}\n\
             {0}: the machine's disks meanwhile, per 1000 calls: {:.0} writes, {:.0} flushes\n\
             {0}: the kernel's worker threads meanwhile (kworker/*, machine-wide): {:.1} µs per call",
            o.proxy,
            per_call_by_thread(&o.threads, o.ok),
            per_1000(o.disk.writes),
            per_1000(o.disk.flushes),
            o.kworkers_s / o.ok as f64 * 1e6,
        );
    }
    for o in &outcomes {
        if let Some(n) = o.acc_written {
            println!(
                "\n{}: acc:written {n} records ({:.2} per successful call)",
                o.proxy,
                n as f64 / o.ok_total.max(1) as f64
            );
        }
    }
    for o in &outcomes {
        if let Some(n) = o.lease_round_trips {
            println!(
                "\n{}: cluster:lease_round_trips {n} ({:.4} per successful call)",
                o.proxy,
                n as f64 / o.ok_total.max(1) as f64
            );
        }
    }
    if entries.iter().any(|e| e.base.is_some()) {
        println!(
            "\n| siplb | CPU ms per call (median) | rounds | vs its base (the fresh build, or the same binary, with `--config`) | vs its base round by round (median) |"
        );
        println!("|---|---|---|---|---|");
        for (i, (e, o)) in entries.iter().zip(&outcomes).enumerate() {
            if e.siplb.is_none() {
                continue;
            }
            let base = e
                .base
                .map(|b| (outcomes[b].per_k(), per_round[b].as_slice()));
            println!(
                "{}",
                rounds::comparison_row(&e.label, o.per_k(), &per_round[i], base)
            );
        }
    }
    if let [s, k] = &outcomes[..]
        && k.proxy == "kamailio"
    {
        let ratio = (s.cpu_s / s.ok.max(1) as f64) / (k.cpu_s / k.ok.max(1) as f64);
        println!(
            "\nsiplb uses {:.3} of Kamailio's CPU per call ({:.1}x less)",
            ratio,
            1.0 / ratio
        );
    }
    println!("\nraw sipp output: {}", work.display());
    Ok(())
}

fn bench_one(root: &Path, work: &Path, entry: &Entry, b: &BenchArgs) -> Result<Outcome> {
    let dir = work.join(&entry.dir);
    std::fs::create_dir_all(&dir)?;
    let target = format!("{BENCH_IP}:5060");
    // A fleet member (`[cluster] redis`): a redis-server of the run's own, on a Unix socket.
    let mut redis = None;
    let mut child = match &entry.siplb {
        None if entry.relay => {
            let max_s = u64::from(b.calls / b.rate) + 60;
            Command::new(std::env::current_exe()?)
                .arg("relay")
                .arg(&target)
                .arg(format!("{BENCH_IP}:5081"))
                .arg(max_s.to_string())
                .stdout(std::fs::File::create(dir.join("proxy.log"))?)
                .stderr(std::fs::File::create(dir.join("proxy.err"))?)
                .spawn()?
        }
        Some(bin) => {
            let ctl = dir.join("siplb.ctl").display().to_string();
            let text = std::fs::read_to_string(root.join(&entry.config))?;
            let redis_url = if text.lines().any(|l| l.starts_with("redis = ")) {
                let sock = dir.join("redis.sock");
                redis = Some(start_redis(&dir, &sock)?);
                Some(format!("redis+unix://{}", sock.display()))
            } else {
                None
            };
            let acc = dir.join("acc").display().to_string();
            let cfg = text
                .replace("127.0.0.1", BENCH_IP)
                .lines()
                .map(|l| {
                    if let (true, Some(url)) = (l.starts_with("redis = "), &redis_url) {
                        format!("redis = [\"{url}\"]")
                    } else if l.starts_with("socket = ") {
                        format!("socket = \"{ctl}\"")
                    } else if l.starts_with("sip = ") {
                        // The bench address, whatever port the example listens on.
                        format!("sip = [\"{target}\"]")
                    } else if l.starts_with("dir = ") {
                        // `[acc]`'s folder: the round's, deleted after the run.
                        format!("dir = \"{acc}\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let cfg = match b.batch_wait_us {
                Some(us) => cfg.replacen(
                    "[workers]\n",
                    &format!("[workers]\nbatch_wait_us = {us}\n"),
                    1,
                ),
                None => cfg,
            };
            let cfg = if entry.steering_off {
                cfg.replacen("mode = \"auto\"", "mode = \"off\"", 1)
            } else {
                cfg
            };
            let cfg_path = dir.join("siplb.toml");
            std::fs::write(&cfg_path, cfg)?;
            Command::new(bin)
                .arg("--config")
                .arg(&cfg_path)
                .stdout(std::fs::File::create(dir.join("proxy.log"))?)
                .stderr(std::fs::File::create(dir.join("proxy.err"))?)
                .spawn()?
        }
        None => kamailio_args(
            &mut Command::new("kamailio"),
            root,
            &dir,
            BENCH_IP,
            BENCH_IP,
        )?
        .stdout(std::fs::File::create(dir.join("proxy.log"))?)
        .stderr(std::fs::File::create(dir.join("proxy.err"))?)
        .spawn()?,
    };
    let result = drive(root, &dir, entry, &target, &child, b);
    stop_child(&mut child);
    if let Some(mut r) = redis {
        stop_child(&mut r);
    }
    if entry.siplb.is_some() {
        let _ = std::fs::remove_dir_all(dir.join("acc"));
    }
    result
}

/// Kamailio's arguments for `benches/kamailio/kamailio.cfg`, listening on `listen`:5060 with
/// the gateways `gateways`:5081 and :5082, its files (dispatcher list, accounting, PID,
/// control socket) in `dir`.
pub(crate) fn kamailio_args<'c>(
    cmd: &'c mut Command,
    root: &Path,
    dir: &Path,
    listen: &str,
    gateways: &str,
) -> Result<&'c mut Command> {
    let acc = dir.join("acc");
    std::fs::create_dir_all(&acc)?;
    let ds = dir.join("dispatcher.list");
    std::fs::write(
        &ds,
        format!("1 sip:{gateways}:5081 0 0\n1 sip:{gateways}:5082 0 0\n"),
    )?;
    Ok(cmd
        .arg("-f")
        .arg(root.join("benches/kamailio/kamailio.cfg"))
        .args(["-DD", "-E", "-m", "1024", "-M", "16"])
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-Y")
        .arg(dir)
        .arg("-w")
        .arg(dir)
        .arg("-A")
        .arg(format!("LISTEN=udp:{listen}:5060"))
        .arg("-A")
        .arg(format!("DS_LIST=\"{}\"", ds.display()))
        .arg("-A")
        .arg(format!("ACC_DB_URL=\"flatstore:{}\"", acc.display()))
        .arg("-A")
        .arg(format!(
            "CTL_SOCK=\"unix:{}\"",
            dir.join("kamailio_ctl").display()
        )))
}

/// A redis-server listening on `sock` only, no persistence, its files in `dir`.
fn start_redis(dir: &Path, sock: &Path) -> Result<Child> {
    install_deps(&["redis-server"])?;
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(sock)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("redis-server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > deadline {
            bail!("redis-server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The statistics (`core:`, `acc:` …) of the siplb `bin` run in `dir`, by name.
fn siplb_stats(bin: &Path, dir: &Path) -> Option<std::collections::HashMap<String, u64>> {
    let out = Command::new(bin)
        .arg("ctl")
        .arg("--config")
        .arg(dir.join("siplb.toml"))
        .arg("stats.get_statistics")
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect(),
    )
}

fn drive(
    root: &Path,
    dir: &Path,
    entry: &Entry,
    target: &str,
    child: &Child,
    b: &BenchArgs,
) -> Result<Outcome> {
    wait_udp(target)?;
    if let Some(bin) = &entry.siplb {
        // siplb's control socket answers once it is fully up (BPF programs attached).
        let up = Command::new(bin)
            .args(["ctl", "--config"])
            .arg(dir.join("siplb.toml"))
            .arg("core.version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !up {
            bail!("siplb does not answer on its control socket");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let max_s = (b.calls / b.rate) as u64 + 40;
    let mut uas = Vec::new();
    for (i, port) in ["5081", "5082"].iter().enumerate() {
        uas.push(
            Command::new("sipp")
                .current_dir(dir)
                .args(["-sf", &root.join(&entry.uas).display().to_string()])
                // -aa: OPTIONS (a config's gateway probing) get 200.
                .args(["-i", BENCH_IP, "-p", port, "-aa"])
                .args(SIPP_BASE_ARGS)
                .args([
                    "-stf",
                    &format!("uas{}.csv", i + 1),
                    "-timeout",
                    &format!("{}s", max_s + 20),
                ])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(
                    dir.join(format!("uas{}.out", i + 1)),
                )?)
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_udp(&format!("{BENCH_IP}:{port}"))?;
    }
    let mut ticks0 = cpu_ticks(child.id());
    let mut threads0 = thread_cpu_ns(child.id());
    let mut disk0 = disk_requests();
    let mut kworkers0 = kernel_worker_ns();
    let t0 = Instant::now();
    let mut sipp = Command::new("timeout")
        .current_dir(dir)
        .args(["-k", "5", &format!("{}", max_s + 10), "sipp", target])
        .args([
            "-sf",
            &root.join("examples/sipp/uac.xml").display().to_string(),
        ])
        .args([
            "-inf",
            &root
                .join("examples/sipp/accounts.csv")
                .display()
                .to_string(),
        ])
        .args(["-i", BENCH_IP, "-p", "5070"])
        .args(SIPP_BASE_ARGS)
        .args([
            "-stf",
            "uac.csv",
            "-r",
            &b.rate.to_string(),
            "-rp",
            "1000",
            "-m",
            &b.calls.to_string(),
        ])
        .args([
            "-l",
            "100000",
            "-recv_timeout",
            "10000",
            "-timeout",
            &format!("{max_s}s"),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("uac.out"))?)
        .stderr(Stdio::null())
        .spawn()?;
    // With --warmup-s: the CPU ticks and completed calls at the end of the warm-up.
    let mut warm: Option<u64> = None;
    let status = loop {
        if let Some(status) = sipp.try_wait()? {
            break status;
        }
        if b.warmup_s > 0 && warm.is_none() && t0.elapsed().as_secs() >= b.warmup_s {
            let done = read_sipp_csv(&dir.join("uac.csv")).get("SuccessfulCall(C)");
            if done > 0 {
                ticks0 = cpu_ticks(child.id());
                threads0 = thread_cpu_ns(child.id());
                disk0 = disk_requests();
                kworkers0 = kernel_worker_ns();
                warm = Some(done);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall_s = t0.elapsed().as_secs_f64();
    let ticks1 = cpu_ticks(child.id());
    let threads = thread_cpu_between(&threads0, &thread_cpu_ns(child.id()));
    let disk = disk0.until(disk_requests());
    let kworkers_s = kernel_worker_ns().saturating_sub(kworkers0) as f64 / 1e9;
    let stats = if let Some(bin) = &entry.siplb {
        // The workers publish their latency figures every second.
        std::thread::sleep(Duration::from_millis(1200));
        siplb_stats(bin, dir).unwrap_or_default()
    } else {
        Default::default()
    };
    let get = |k: &str| stats.get(k).copied();
    let get_stat = get;
    let latency_us = (|| {
        Some((
            get("core:latency_p50_us")?,
            get("core:latency_p99_us")?,
            get("core:latency_max_us")?,
        ))
    })();
    let messages = (|| {
        Some((
            get("core:rcv_requests")? + get("core:rcv_replies")?,
            get("core:hand_offs")?,
            get("core:steering_bpf")?,
        ))
    })();
    for mut u in uas {
        let _ = Command::new("kill")
            .arg("-USR1")
            .arg(u.id().to_string())
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = u.kill();
        let _ = u.wait();
    }
    let uac = read_sipp_csv(&dir.join("uac.csv"));
    let get = |k: &str| uac.get(k) as f64;
    eprintln!("xtask: {}: sipp exited with {status}", entry.label);
    if let Some(done) = warm {
        eprintln!(
            "xtask: {}: CPU measured after {} s of warm-up, over the last {} calls",
            entry.label,
            b.warmup_s,
            (get("SuccessfulCall(C)") as u64).saturating_sub(done)
        );
    } else if b.warmup_s > 0 {
        bail!(
            "{}: sipp had completed no call after the warm-up",
            entry.label
        );
    }
    Ok(Outcome {
        proxy: entry.label.clone(),
        ok: (get("SuccessfulCall(C)") as u64).saturating_sub(warm.unwrap_or(0)),
        ok_total: get("SuccessfulCall(C)") as u64,
        failed: get("FailedCall(C)") as u64,
        achieved_cps: get("SuccessfulCall(C)") / wall_s,
        cpu_s: (ticks1 - ticks0) as f64 / clk_tck(),
        threads,
        disk,
        kworkers_s,
        messages,
        wall_s,
        retrans: get("Retransmissions(C)") as u64,
        latency_us,
        acc_written: get_stat("acc:written"),
        lease_round_trips: get_stat("cluster:lease_round_trips"),
    })
}
