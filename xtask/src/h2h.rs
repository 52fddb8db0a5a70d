//! `cargo xtask head-to-head`: the project's load generator against the null UDP relay,
//! Kamailio (`benches/kamailio/`), siplb on io_uring and siplb on AF_XDP, taking turns, at
//! fixed offered rates and (with `--max`) at each one's highest clean rate. The proxies run
//! in one network namespace, the generator in another, joined by a veth pair
//! (198.18.200.0/24); both are made here and deleted at the end. Writes a Markdown table and
//! an SVG chart (calls/s against proxy CPU per call, one line per system).

use crate::bench::kamailio_args;
use crate::procfs::{clk_tck, cpu_ticks};
use crate::{build_release_siplb, output, root, run};
use anyhow::{Context, Result, bail};
use siplb_tests::stop_child;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo xtask head-to-head` options.
#[derive(clap::Args)]
pub struct H2hArgs {
    /// Offered rates, calls per second, comma-separated
    #[arg(long, default_value = "1000,2000,8000", value_delimiter = ',')]
    rates: Vec<u32>,
    /// Seconds of calls per run (1..60)
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Rounds (1..9); each figure is the median round
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Systems, comma-separated, in the order they take turns
    #[arg(
        long,
        default_value = "relay,kamailio,siplb,siplb-xdp",
        value_delimiter = ','
    )]
    systems: Vec<String>,
    /// Also find each system's maximum: the highest rate with fewer than 0.1 % failed calls
    /// and no retransmission (steps of ×1.5 up from its highest clean fixed rate, then one
    /// halfway)
    #[arg(long)]
    max: bool,
    /// Where to write `head-to-head.md` and `head-to-head.svg`
    #[arg(long, default_value = "target/head-to-head")]
    out: PathBuf,
    /// Profile each run with `perf record -g` (the proxy's process, over the middle of the
    /// run) into target/head-to-head-runs/<system>-<rate>/perf.data
    #[arg(long)]
    perf: bool,
    /// Also put the table into docs/BENCHMARKS.md (between its `head-to-head` markers) and
    /// the chart into docs/benchmarks/head-to-head.svg
    #[arg(long)]
    write_docs: bool,
}

/// The markers of the table's place in docs/BENCHMARKS.md.
const BEGIN: &str =
    "<!-- head-to-head: begin (written by cargo xtask head-to-head --write-docs) -->";
const END: &str = "<!-- head-to-head: end -->";

pub(crate) const NS_PROXY: &str = "siplb-h2h-p";
pub(crate) const NS_GEN: &str = "siplb-h2h-g";
pub(crate) const PROXY_IP: &str = "198.18.200.2";
pub(crate) const GEN_IP: &str = "198.18.200.1";

/// One run's figures.
#[derive(Debug, Clone)]
struct Run {
    offered: u32,
    ok: u64,
    failed: u64,
    retrans: u64,
    wall_s: f64,
    cpu_s: f64,
    /// siplb only: datagrams through AF_XDP sockets (received, sent).
    xsk: Option<(u64, u64)>,
    /// siplb only: its own latency, kernel (or XDP) receive to processed, p50 and p99 µs.
    latency: Option<(u64, u64)>,
}

impl Run {
    fn us_per_call(&self) -> f64 {
        us_per_call(self.cpu_s, self.ok)
    }

    fn achieved(&self) -> f64 {
        self.ok as f64 / self.wall_s.max(1e-9)
    }

    fn clean(&self) -> bool {
        let total = self.ok + self.failed;
        total > 0 && self.failed * 1000 < total && self.retrans == 0
    }
}

pub(crate) struct Netns;

impl Netns {
    pub(crate) fn up() -> Result<Netns> {
        Netns::down();
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", NS_PROXY])?;
        ip(&["netns", "add", NS_GEN])?;
        ip(&[
            "link", "add", "h2hp", "type", "veth", "peer", "name", "h2hg",
        ])?;
        ip(&["link", "set", "h2hp", "netns", NS_PROXY])?;
        ip(&["link", "set", "h2hg", "netns", NS_GEN])?;
        ip(&[
            "-n",
            NS_PROXY,
            "addr",
            "add",
            &format!("{PROXY_IP}/24"),
            "dev",
            "h2hp",
        ])?;
        ip(&[
            "-n",
            NS_GEN,
            "addr",
            "add",
            &format!("{GEN_IP}/24"),
            "dev",
            "h2hg",
        ])?;
        for (ns, dev) in [(NS_PROXY, "h2hp"), (NS_GEN, "h2hg")] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // A real NIC sends UDP checksums computed; veth leaves them to the receiver, and the
        // AF_XDP path checks them.
        run(Command::new("ip").args([
            "netns", "exec", NS_GEN, "ethtool", "-K", "h2hg", "tx", "off",
        ]))?;
        Ok(Netns)
    }

    fn down() {
        for ns in [NS_PROXY, NS_GEN] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Netns::down();
    }
}

pub fn head_to_head(a: H2hArgs) -> Result<()> {
    if a.rates.is_empty() || a.rates.iter().any(|r| *r == 0 || *r > 100_000) {
        bail!("--rates: each 1..100000");
    }
    let seconds = a.seconds.clamp(1, 60);
    let repeat = a.repeat.clamp(1, 9);
    for s in &a.systems {
        if !["relay", "kamailio", "siplb", "siplb-xdp"].contains(&s.as_str()) {
            bail!("--systems: `{s}` is not one of relay, kamailio, siplb, siplb-xdp");
        }
    }
    let root = root();
    let (work, _ns) = prepare(
        &root,
        &["kamailio", "procps", "ethtool", "iproute2"],
        "target/head-to-head-runs",
    )?;
    if a.perf {
        crate::ci::install_deps(&["linux-perf"])?;
    }
    let h = H2h {
        root: root.clone(),
        work,
        seconds,
        perf: a.perf,
    };
    // results[system][rate index] = rounds
    let mut fixed: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); a.rates.len()]; a.systems.len()];
    for round in 0..repeat {
        for (ri, rate) in a.rates.iter().enumerate() {
            for (si, system) in a.systems.iter().enumerate() {
                let r = h.run(system, *rate)?;
                eprintln!(
                    "round {} {system} at {rate}/s: {} ok, {} failed, {} retransmissions, {:.1} µs CPU per call",
                    round + 1,
                    r.ok,
                    r.failed,
                    r.retrans,
                    r.us_per_call()
                );
                fixed[si][ri].push(r);
            }
        }
    }
    let medians: Vec<Vec<Run>> = fixed
        .iter()
        .map(|by_rate| {
            by_rate
                .iter()
                .map(|rounds| median_by(rounds, Run::us_per_call))
                .collect()
        })
        .collect();
    let mut maxima: Vec<Option<Run>> = vec![None; a.systems.len()];
    if a.max {
        let lowest = *a.rates.iter().min().expect("a rate");
        for (si, system) in a.systems.iter().enumerate() {
            // The highest fixed rate whose every round was clean.
            let clean = a
                .rates
                .iter()
                .zip(&fixed[si])
                .filter(|(_, rounds)| rounds.iter().all(Run::clean))
                .map(|(r, _)| *r)
                .max();
            let found = h.maximum(system, clean, lowest)?;
            // A fixed rate's median stands when no probe above it was clean.
            maxima[si] = found.or_else(|| {
                let ri = a.rates.iter().position(|r| Some(*r) == clean)?;
                Some(medians[si][ri].clone())
            });
        }
    }
    let out = if a.out.is_absolute() {
        a.out.clone()
    } else {
        root.join(&a.out)
    };
    std::fs::create_dir_all(&out)?;
    let commit =
        output(
            Command::new("git")
                .current_dir(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let md = table(&a, &medians, &maxima, repeat, seconds, commit.trim());
    std::fs::write(out.join("head-to-head.md"), &md)?;
    std::fs::write(
        out.join("head-to-head.svg"),
        chart(&a.systems, &medians, &maxima, commit.trim()),
    )?;
    println!("{md}");
    println!("written: {}", out.display());
    if a.write_docs {
        let content =
            format!("{md}\n![calls/s against proxy CPU per call](benchmarks/head-to-head.svg)\n");
        write_docs_block(&root, BEGIN, END, "Head to head", &content)?;
        std::fs::create_dir_all(root.join("docs/benchmarks"))?;
        std::fs::copy(
            out.join("head-to-head.svg"),
            root.join("docs/benchmarks/head-to-head.svg"),
        )?;
        println!("written: docs/BENCHMARKS.md, docs/benchmarks/head-to-head.svg");
    }
    Ok(())
}

/// What each benchmark in the network namespaces does first: the Debian `packages`, release
/// builds of siplb and xtask, a fresh `runs` folder (relative to `root`), and the two
/// namespaces (deleted when the guard drops).
pub(crate) fn prepare(root: &Path, packages: &[&str], runs: &str) -> Result<(PathBuf, Netns)> {
    crate::ci::install_deps(packages)?;
    build_release_siplb(root)?;
    run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "xtask",
    ]))?;
    let work = root.join(runs);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    Ok((work, Netns::up()?))
}

/// Puts `content` between the markers `begin` and `end` of docs/BENCHMARKS.md, after the
/// command line that made it and the machine; at the end under `heading` when the markers
/// are not there yet.
pub(crate) fn write_docs_block(
    root: &Path,
    begin: &str,
    end: &str,
    heading: &str,
    content: &str,
) -> Result<()> {
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let block = format!(
        "{begin}\n\nCommand: `cargo xtask {command}` (machine: {}, {} cores; {}).\n\n{content}\n{end}",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        output(Command::new("date").args(["-u", "+%Y-%m-%d"])).trim()
    );
    let path = root.join("docs/BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    let text = match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{text}\n## {heading}\n\n{block}\n"),
    };
    std::fs::write(&path, text)?;
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The median round by CPU per call.
/// CPU µs per call (NaN with no call).
pub(crate) fn us_per_call(cpu_s: f64, calls: u64) -> f64 {
    if calls == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / calls as f64
    }
}

/// The median round by `key` (CPU per call).
pub(crate) fn median_by<T: Clone>(rounds: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut v = rounds.to_vec();
    v.sort_by(|x, y| key(x).total_cmp(&key(y)));
    v[v.len() / 2].clone()
}

pub(crate) struct H2h {
    pub(crate) root: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) seconds: u32,
    pub(crate) perf: bool,
}

impl H2h {
    /// The highest clean rate: from `clean` (a clean rate, or None: halving down from
    /// `lowest` until one is), up in steps of ×1.5, then once halfway between the last clean
    /// rate and the first that was not (one run each).
    fn maximum(&self, system: &str, clean: Option<u32>, lowest: u32) -> Result<Option<Run>> {
        let probe = |rate: u32| -> Result<Run> {
            let r = self.run(system, rate)?;
            eprintln!(
                "max {system} at {rate}/s: {} ok, {} failed, {} retransmissions",
                r.ok, r.failed, r.retrans
            );
            Ok(r)
        };
        let mut best: Option<Run> = None;
        let mut rate = match clean {
            Some(r) => r,
            None => {
                let mut r = lowest / 2;
                loop {
                    if r < 50 {
                        return Ok(None);
                    }
                    let run = probe(r)?;
                    if run.clean() {
                        best = Some(run);
                        break r;
                    }
                    r /= 2;
                }
            }
        };
        let failed = loop {
            let next = rate + rate / 2;
            if next > 100_000 {
                return Ok(best);
            }
            let run = probe(next)?;
            if !run.clean() {
                break next;
            }
            best = Some(run);
            rate = next;
        };
        let mid = (rate + failed) / 2;
        let run = probe(mid)?;
        if run.clean() {
            best = Some(run);
        }
        Ok(best)
    }

    /// One run of `system` at `rate` calls/s for `seconds`.
    fn run(&self, system: &str, rate: u32) -> Result<Run> {
        let dir = self.work.join(format!("{system}-{rate}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut child = self.start(system, &dir)?;
        let result = self.drive(system, rate, &dir, &child);
        stop_child(&mut child);
        result
    }

    pub(crate) fn start(&self, system: &str, dir: &Path) -> Result<Child> {
        let log = |name: &str| std::fs::File::create(dir.join(name));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", NS_PROXY]);
        match system {
            "relay" => {
                cmd.arg(self.root.join("target/release/xtask"))
                    .arg("relay")
                    .arg(format!("{PROXY_IP}:5060"))
                    .arg(format!("{GEN_IP}:5081"))
                    .arg((u64::from(self.seconds) * 4 + 60).to_string());
            }
            "kamailio" => {
                kamailio_args(cmd.arg("kamailio"), &self.root, dir, PROXY_IP, GEN_IP)?;
            }
            siplb => {
                let text = std::fs::read_to_string(self.root.join("examples/siplb.toml"))?;
                let ctl = dir.join("siplb.ctl");
                let mut cfg = text
                    .replace("127.0.0.1:5060", &format!("{PROXY_IP}:5060"))
                    .replace("127.0.0.1/32", &format!("{GEN_IP}/32"))
                    .replace("127.0.0.1:508", &format!("{GEN_IP}:508"))
                    .lines()
                    .map(|l| {
                        if l.starts_with("socket = ") {
                            format!("socket = \"{}\"", ctl.display())
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                if siplb == "siplb-xdp" {
                    cfg = cfg.replacen("[workers]\n", "[workers]\nio = \"af_xdp\"\n", 1);
                }
                let path = dir.join("siplb.toml");
                std::fs::write(&path, cfg)?;
                cmd.arg(self.root.join("target/release/siplb"))
                    .arg("--config")
                    .arg(&path);
            }
        }
        let child = cmd
            .stdout(log("proxy.log")?)
            .stderr(log("proxy.err")?)
            .spawn()
            .with_context(|| format!("starting {system}"))?;
        // Listening within 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ss = output(Command::new("ss").args(["-N", NS_PROXY, "-uln"]));
            if ss.contains(&format!("{PROXY_IP}:5060")) {
                if system.starts_with("siplb") {
                    // siplb attaches its XDP program (and places its AF_XDP sockets) after
                    // it binds: until then datagrams take the kernel's path.
                    self.wait_attached(dir, deadline)?;
                }
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{system} does not listen on {PROXY_IP}:5060 (see {})",
            dir.display()
        )
    }

    /// `siplb ctl stats.get_statistics <which>` of the siplb whose config is in `dir`.
    fn siplb_stats(&self, dir: &Path, which: &str) -> String {
        output(
            Command::new(self.root.join("target/release/siplb"))
                .arg("ctl")
                .arg("--config")
                .arg(dir.join("siplb.toml"))
                .args(["stats.get_statistics", which]),
        )
    }

    /// Waits for `xdp:attached = 1`.
    fn wait_attached(&self, dir: &Path, deadline: Instant) -> Result<()> {
        while Instant::now() < deadline {
            let stats = self.siplb_stats(dir, "xdp:attached");
            if stats.contains("xdp:attached = 1") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "siplb's XDP program is not attached (see {})",
            dir.display()
        )
    }

    fn drive(&self, system: &str, rate: u32, dir: &Path, child: &Child) -> Result<Run> {
        let calls = u64::from(rate) * u64::from(self.seconds);
        let cpu0 = cpu_ticks(child.id());
        let t0 = Instant::now();
        // The middle half of the run: after the start, before the end.
        let mut perf = if self.perf {
            Some(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "sleep {} && exec perf record -g -p {} -o {} -- sleep {}",
                        f64::from(self.seconds) / 4.0,
                        child.id(),
                        dir.join("perf.data").display(),
                        f64::from(self.seconds) / 2.0
                    ))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("perf")?,
            )
        } else {
            None
        };
        let out = Command::new("ip")
            .args(["netns", "exec", NS_GEN])
            .arg(self.root.join("target/release/xtask"))
            .arg("load")
            .arg("--target")
            .arg(format!("{PROXY_IP}:5060"))
            .arg("--caller")
            .arg(format!("{GEN_IP}:5070"))
            .args(["--gateway", &format!("{GEN_IP}:5081")])
            .args(["--gateway", &format!("{GEN_IP}:5082")])
            .arg("--accounts")
            .arg(self.root.join("examples/sipp/accounts.csv"))
            .args(["--rate", &rate.to_string()])
            .args(["--calls", &calls.to_string()])
            .args(["--max-s", &(u64::from(self.seconds) + 40).to_string()])
            .output()
            .context("the load generator")?;
        let elapsed = t0.elapsed().as_secs_f64();
        if let Some(p) = perf.as_mut() {
            let _ = p.wait();
        }
        let cpu_s = (cpu_ticks(child.id()) - cpu0) as f64 / clk_tck();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        std::fs::write(
            dir.join("load.txt"),
            format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        )?;
        let field = |name: &str| -> u64 {
            text.split_whitespace()
                .skip_while(|w| *w != name)
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let ok = field("ok");
        // The generator's own wall time ("… in 5.0 s;"), else the command's.
        let wall_s = text
            .split_whitespace()
            .skip_while(|w| *w != "in")
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(elapsed);
        let (xsk, latency) = if system.starts_with("siplb") {
            let stats = self.siplb_stats(dir, "all");
            std::fs::write(dir.join("stats.txt"), &stats)?;
            let get = |name: &str| -> u64 {
                stats
                    .lines()
                    .filter_map(|l| l.split_once(" = "))
                    .find(|(k, _)| k.trim() == name)
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            let xsk = (system == "siplb-xdp").then(|| (get("xdp:xsk_rx"), get("xdp:xsk_tx")));
            (
                xsk,
                Some((get("core:latency_p50_us"), get("core:latency_p99_us"))),
            )
        } else {
            (None, None)
        };
        Ok(Run {
            offered: rate,
            ok,
            failed: calls.saturating_sub(ok),
            retrans: field("retransmissions"),
            wall_s,
            cpu_s,
            xsk,
            latency,
        })
    }
}

fn table(
    a: &H2hArgs,
    medians: &[Vec<Run>],
    maxima: &[Option<Run>],
    repeat: u32,
    seconds: u32,
    commit: &str,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Proxy CPU per call (µs, utime+stime of the proxy's processes over the run, median of \
         {repeat} rounds of {seconds} s), commit `{commit}`, the project's load generator in \
         one network namespace and each system in another, joined by a veth pair:\n\n"
    ));
    s.push_str("| system |");
    for r in &a.rates {
        s.push_str(&format!(" {r}/s |"));
    }
    if a.max {
        s.push_str(" maximum (calls/s, µs per call) |");
    }
    s.push_str("\n|---|");
    for _ in &a.rates {
        s.push_str("---|");
    }
    if a.max {
        s.push_str("---|");
    }
    s.push('\n');
    for (si, system) in a.systems.iter().enumerate() {
        s.push_str(&format!("| {system} |"));
        for r in &medians[si] {
            let mut cell = format!(" {:.1}", r.us_per_call());
            if !r.clean() {
                cell.push_str(&format!(" ({} failed, {} retr.)", r.failed, r.retrans));
            }
            if let Some((rx, tx)) = r.xsk {
                cell.push_str(&format!(" [xsk {rx}/{tx}]"));
            }
            if let Some((p50, p99)) = r.latency {
                cell.push_str(&format!(" (latency p50 {p50} µs, p99 {p99} µs)"));
            }
            s.push_str(&cell);
            s.push_str(" |");
        }
        if a.max {
            match &maxima[si] {
                Some(m) => s.push_str(&format!(" {} ({:.1}) |", m.offered, m.us_per_call())),
                None => s.push_str(" none found |"),
            }
        }
        s.push('\n');
    }
    s
}

/// Calls/s (x) against proxy CPU µs per call (y), one polyline per system.
fn chart(systems: &[String], medians: &[Vec<Run>], maxima: &[Option<Run>], commit: &str) -> String {
    let colours = ["#888888", "#d62728", "#1f77b4", "#2ca02c"];
    let points: Vec<Vec<(f64, f64)>> = medians
        .iter()
        .zip(maxima)
        .map(|(runs, max)| {
            runs.iter()
                .chain(max.iter())
                .filter(|r| r.ok > 0)
                .map(|r| (r.achieved(), r.us_per_call()))
                .collect()
        })
        .collect();
    let xmax = points.iter().flatten().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let ymax = points.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let (w, h, left, bottom) = (640.0, 400.0, 60.0, 40.0);
    let px = |x: f64| left + x / xmax * (w - left - 20.0);
    let py = |y: f64| h - bottom - y / ymax * (h - bottom - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">calls/s (achieved)</text>\n\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">proxy CPU µs per call</text>\n\
         <text x=\"{}\" y=\"14\" text-anchor=\"end\">commit {commit}</text>\n",
        h - bottom,
        w - 20.0,
        h - bottom,
        h - bottom,
        (w + left) / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0,
        w - 20.0,
    );
    for i in 0..=4 {
        let (xv, yv) = (xmax * f64::from(i) / 4.0, ymax * f64::from(i) / 4.0);
        s.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n\
             <text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{:.0}</text>\n",
            px(xv),
            h - bottom + 15.0,
            xv,
            left - 4.0,
            py(yv) + 4.0,
            yv
        ));
    }
    for (i, (system, pts)) in systems.iter().zip(&points).enumerate() {
        let c = colours[i % colours.len()];
        let mut sorted = pts.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = sorted
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            line.join(" ")
        ));
        for (x, y) in &sorted {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>\n",
                px(*x),
                py(*y)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{system}</text>\n",
            w - 140.0,
            40.0 + 16.0 * i as f64
        ));
    }
    s.push_str("</svg>\n");
    s
}
