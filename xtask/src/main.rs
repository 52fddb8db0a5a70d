//! Project tasks: `cargo xtask ci` (install what the tests need, run them all),
//! `cargo xtask bench` (sipp through siplb and through Kamailio, same scenario and rate) and
//! `cargo xtask build-ebpf` (the BPF object, from `ebpf/`, with Debian's Rust).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("install-deps") => install_deps(TEST_PACKAGES),
        Some("bench") => bench(&args[1..]),
        Some("install-bpf-toolchain") => install_bpf_toolchain(),
        Some("bench-xdp") => bench_xdp(),
        Some("flood-send") => flood_send(&args[1..]),
        Some("build-ebpf") => build_ebpf(args.get(1).map(String::as_str) == Some("--check")),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 ci            install the test dependencies (apt), check formatting, run every test\n\
                 install-deps  install the test dependencies only\n\
                 bench [--rate N] [--calls N] [--repeat N] [--proxy siplb|kamailio|both] [--batch-wait-us N] [--config examples/limits.toml]\n\
                 \x20             sipp through siplb and Kamailio at one fixed rate; CPU per 1000 calls"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the repository")
        .into()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Installs Debian packages that are not installed yet (`apt-get update` first).
fn install_deps(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian packages the tests need: sipp, `ip` and `ss` (network namespaces), `ps`, `ethtool`
/// (checksum offload on veth for the cpumap test).
const TEST_PACKAGES: &[&str] = &["sip-tester", "iproute2", "procps", "ethtool"];

fn ci() -> Result<()> {
    install_deps(TEST_PACKAGES)?;
    install_bpf_toolchain()?;
    build_ebpf(true)?;
    let root = root();
    if Command::new("cargo")
        .args(["fmt", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]))?;
    }
    if Command::new("cargo")
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(Command::new("cargo").current_dir(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // Every test binary's output passes through; their "test result" lines are added up into
    // one closing line, so a reader of the log sees the whole suite's count last.
    let mut child = Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--workspace", "--locked", "--color", "never"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cargo test")?;
    let out = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in …"
            for part in rest
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .split(';')
            {
                let mut w = part.split_whitespace();
                let (Some(n), Some(what)) = (w.next(), w.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("\nsiplb: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

// ------------------------------------------------------------------------------ bench

struct BenchArgs {
    rate: u32,
    calls: u32,
    repeat: u32,
    /// Overrides `workers.batch_wait_us` of the example config.
    batch_wait_us: Option<u32>,
    proxies: Vec<&'static str>,
    /// siplb's configuration, relative to the repository (moved to the bench address).
    config: String,
}

fn bench_args(args: &[String]) -> Result<BenchArgs> {
    let mut b = BenchArgs {
        rate: 1000,
        calls: 20_000,
        repeat: 3,
        batch_wait_us: None,
        proxies: vec!["siplb", "kamailio"],
        config: "examples/siplb.toml".into(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context("missing value");
        match a.as_str() {
            "--rate" => b.rate = val()?.parse()?,
            "--calls" => b.calls = val()?.parse()?,
            "--repeat" => b.repeat = val()?.parse::<u32>()?.clamp(1, 9),
            "--batch-wait-us" => b.batch_wait_us = Some(val()?.parse()?),
            "--config" => b.config = val()?.clone(),
            "--proxy" => {
                b.proxies = match val()?.as_str() {
                    "siplb" => vec!["siplb"],
                    "kamailio" => vec!["kamailio"],
                    "both" => vec!["siplb", "kamailio"],
                    // siplb with BPF steering against siplb with software hand-off.
                    "steering" => vec!["siplb", "siplb-off"],
                    other => bail!("--proxy {other}: siplb, kamailio, both or steering"),
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if b.rate == 0 || b.rate > 20_000 || b.calls == 0 || b.calls > 1_000_000 {
        bail!("--rate 1..20000, --calls 1..1000000");
    }
    Ok(b)
}

/// The address both proxies listen on in turn (loopback only), and their gateways.
const BENCH_IP: &str = "127.0.50.1";

/// utime + stime in clock ticks of a process and all its descendants.
fn cpu_ticks(pid: u32) -> u64 {
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

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn stop(child: &mut Child) {
    // SIGTERM by PID, then SIGKILL after 10 s.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_udp(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::UdpSocket::bind(addr).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr}")
}

fn last_csv(path: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head = lines.next().unwrap_or("");
    let last = lines.next_back().unwrap_or("");
    head.split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

struct Outcome {
    proxy: &'static str,
    ok: u64,
    failed: u64,
    achieved_cps: f64,
    cpu_s: f64,
    wall_s: f64,
    retrans: u64,
    /// siplb only: (p50, p99, max) µs from kernel receive to processed.
    latency_us: Option<(u64, u64, u64)>,
    /// siplb only: messages received (requests + replies), hand-offs, BPF steering on.
    messages: Option<(u64, u64, u64)>,
}

impl Outcome {
    /// Proxy CPU-seconds per 1,000 successful calls.
    fn per_k(&self) -> f64 {
        if self.ok > 0 {
            self.cpu_s / self.ok as f64 * 1000.0
        } else {
            f64::NAN
        }
    }
}

fn bench(args: &[String]) -> Result<()> {
    let b = bench_args(args)?;
    install_deps(&["sip-tester", "kamailio", "procps"])?;
    let root = root();
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "siplb",
    ]))?;
    let work = root.join("target/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Proxies take turns, `repeat` rounds; each figure below is the median round (by CPU per
    // call), so a burst of noise from the rest of the machine does not decide the comparison.
    let mut rounds: Vec<Vec<Outcome>> = b.proxies.iter().map(|_| Vec::new()).collect();
    for round in 0..b.repeat {
        for (i, proxy) in b.proxies.iter().enumerate() {
            let o = bench_one(&root, &work.join(format!("round{round}")), proxy, &b)?;
            eprintln!(
                "xtask: round {round} {proxy}: ok {} failed {} cpu {:.2} s ({:.3} per 1000 calls)",
                o.ok,
                o.failed,
                o.cpu_s,
                o.per_k()
            );
            rounds[i].push(o);
        }
    }
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

fn bench_one(root: &Path, work: &Path, proxy: &'static str, b: &BenchArgs) -> Result<Outcome> {
    let dir = work.join(proxy);
    std::fs::create_dir_all(&dir)?;
    let target = format!("{BENCH_IP}:5060");
    let mut child = match proxy {
        "siplb" | "siplb-off" => {
            let ctl = dir.join("siplb.ctl").display().to_string();
            let cfg = std::fs::read_to_string(root.join(&b.config))?
                .replace("127.0.0.1", BENCH_IP)
                .lines()
                .map(|l| {
                    if l.starts_with("socket = ") {
                        format!("socket = \"{ctl}\"")
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
            let cfg = if proxy == "siplb-off" {
                cfg.replacen("mode = \"auto\"", "mode = \"off\"", 1)
            } else {
                cfg
            };
            let cfg_path = dir.join("siplb.toml");
            std::fs::write(&cfg_path, cfg)?;
            Command::new(root.join("target/release/siplb"))
                .arg("--config")
                .arg(&cfg_path)
                .stdout(std::fs::File::create(dir.join("proxy.log"))?)
                .stderr(std::fs::File::create(dir.join("proxy.err"))?)
                .spawn()?
        }
        _ => {
            let acc = dir.join("acc");
            std::fs::create_dir_all(&acc)?;
            let ds = dir.join("dispatcher.list");
            std::fs::write(
                &ds,
                format!("1 sip:{BENCH_IP}:5081 0 0\n1 sip:{BENCH_IP}:5082 0 0\n"),
            )?;
            Command::new("kamailio")
                .arg("-f")
                .arg(root.join("benches/kamailio/kamailio.cfg"))
                .args(["-DD", "-E", "-m", "1024", "-M", "16"])
                .arg("-P")
                .arg(dir.join("kamailio.pid"))
                .arg("-Y")
                .arg(&dir)
                .arg("-w")
                .arg(&dir)
                .arg("-A")
                .arg(format!("LISTEN=udp:{BENCH_IP}:5060"))
                .arg("-A")
                .arg(format!("DS_LIST=\"{}\"", ds.display()))
                .arg("-A")
                .arg(format!("ACC_DB_URL=\"flatstore:{}\"", acc.display()))
                .arg("-A")
                .arg(format!(
                    "CTL_SOCK=\"unix:{}\"",
                    dir.join("kamailio_ctl").display()
                ))
                .stdout(std::fs::File::create(dir.join("proxy.log"))?)
                .stderr(std::fs::File::create(dir.join("proxy.err"))?)
                .spawn()?
        }
    };
    let result = drive(root, &dir, proxy, &target, &child, b);
    stop(&mut child);
    result
}

/// The `core:` statistics of the siplb run in `dir`, by name.
fn siplb_core_stats(root: &Path, dir: &Path) -> Option<std::collections::HashMap<String, u64>> {
    let out = Command::new(root.join("target/release/siplb"))
        .arg("ctl")
        .arg("--config")
        .arg(dir.join("siplb.toml"))
        .args(["stats.get_statistics", "core:"])
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
    proxy: &'static str,
    target: &str,
    child: &Child,
    b: &BenchArgs,
) -> Result<Outcome> {
    wait_udp(target)?;
    if proxy.starts_with("siplb") {
        // siplb's control socket answers once it is fully up (BPF programs attached).
        let up = Command::new(root.join("target/release/siplb"))
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
    let sipp_common = [
        "-bind_local",
        "-nostdin",
        "-buff_size",
        "1048576",
        "-trace_stat",
        "-fd",
        "1",
    ];
    let max_s = (b.calls / b.rate) as u64 + 40;
    let mut uas = Vec::new();
    for (i, port) in ["5081", "5082"].iter().enumerate() {
        uas.push(
            Command::new("sipp")
                .current_dir(dir)
                .args([
                    "-sf",
                    &root.join("examples/sipp/uas.xml").display().to_string(),
                ])
                .args(["-i", BENCH_IP, "-p", port])
                .args(sipp_common)
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
    let ticks0 = cpu_ticks(child.id());
    let t0 = Instant::now();
    let status = Command::new("timeout")
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
        .args(sipp_common)
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
        .status()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let ticks1 = cpu_ticks(child.id());
    let stats = if proxy.starts_with("siplb") {
        // The workers publish their latency figures every second.
        std::thread::sleep(Duration::from_millis(1200));
        siplb_core_stats(root, dir).unwrap_or_default()
    } else {
        Default::default()
    };
    let get = |k: &str| stats.get(k).copied();
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
    let uac = last_csv(&dir.join("uac.csv"));
    let get = |k: &str| {
        uac.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eprintln!("xtask: {proxy}: sipp exited with {status}");
    Ok(Outcome {
        proxy,
        ok: get("SuccessfulCall(C)") as u64,
        failed: get("FailedCall(C)") as u64,
        achieved_cps: get("SuccessfulCall(C)") / wall_s,
        cpu_s: (ticks1 - ticks0) as f64 / clk_tck(),
        messages,
        wall_s,
        retrans: get("Retransmissions(C)") as u64,
        latency_us,
    })
}

// ------------------------------------------------------------------------------ BPF object

/// Debian packages of the BPF build (DESIGN §1): Rust 1.96 on LLVM 22 with a prebuilt `core`
/// for bpfel, and LLVM 22 for bpf-linker.
const BPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
];
const BPF_LINKER: &str = "bpf-linker@0.13.0";
const LLVM: &str = "/usr/lib/llvm-22";
/// Where the object and its record are committed.
const BPF_OBJECT: &str = "proxy/bpf/siplb.bpf.o";
const BPF_RECORD: &str = "proxy/bpf/BUILD.md";

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn install_bpf_toolchain() -> Result<()> {
    install_deps(BPF_PACKAGES)?;
    let linker = cargo_home().join("bin/bpf-linker");
    if !linker.exists() {
        // Both variables: without LLVM_PREFIX the build script takes the first llvm-config on
        // PATH (LLVM 14) and fails to link.
        run(Command::new("cargo")
            .args(["install", BPF_LINKER, "--locked", "--no-default-features"])
            .args(["--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM)
            .env("LLVM_SYS_221_PREFIX", LLVM))?;
    }
    Ok(())
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn package_version(p: &str) -> String {
    output(Command::new("dpkg-query").args(["-W", "-f=${Version}", p]))
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("sha256sum")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The sources the object is built from, each with its hash.
fn bpf_sources(root: &Path) -> Result<Vec<(String, String)>> {
    let mut files = vec![
        "ebpf/Cargo.toml".to_string(),
        "ebpf/Cargo.lock".to_string(),
        "common/Cargo.toml".to_string(),
        "common/src/lib.rs".to_string(),
    ];
    for e in std::fs::read_dir(root.join("ebpf/src"))? {
        files.push(format!("ebpf/src/{}", e?.file_name().to_string_lossy()));
    }
    files.sort();
    files
        .into_iter()
        .map(|f| Ok((sha256(&root.join(&f))?, f)))
        .collect()
}

/// The record of what the committed object was built from (everything that decides its bytes).
fn bpf_record(root: &Path, object: &Path) -> Result<String> {
    let mut r = String::from(
        "# proxy/bpf/siplb.bpf.o\n\n\
         Built by `cargo xtask build-ebpf` from `ebpf/` and `common/`, copied to\n\
         /tmp/siplb-bpf-build (release, bpfel-unknown-none, BTF kept, debug info stripped, paths\n\
         remapped to /siplb and /cargo). CI rebuilds it with `cargo xtask build-ebpf --check`:\n\
         with these package versions the bytes must match.\n\n",
    );
    r += &format!("object sha256: {}\n\n", sha256(object)?);
    r += "toolchain:\n";
    for p in BPF_PACKAGES {
        r += &format!("- {p} {}\n", package_version(p));
    }
    r += &format!(
        "- {}\n",
        output(Command::new(cargo_home().join("bin/bpf-linker")).arg("--version"))
    );
    r += "\nsources (sha256):\n";
    for (h, f) in bpf_sources(root)? {
        r += &format!("- {h}  {f}\n");
    }
    Ok(r)
}

/// Where the BPF crate is built: always the same folder, because the symbol names of a Rust
/// object carry a hash of each crate's path, and the object must not depend on where the
/// repository is checked out.
const BPF_BUILD_DIR: &str = "/tmp/siplb-bpf-build";

/// Copies the BPF crate and `common/` to [`BPF_BUILD_DIR`] and builds the object into `out`.
fn build_bpf_object(root: &Path, out: &Path) -> Result<()> {
    let dir = Path::new(BPF_BUILD_DIR);
    for sub in ["ebpf/src", "common/src"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
        std::fs::create_dir_all(dir.join(sub))?;
        for e in std::fs::read_dir(root.join(sub))? {
            let e = e?;
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name()))?;
        }
    }
    for f in ["ebpf/Cargo.toml", "ebpf/Cargo.lock"] {
        std::fs::copy(root.join(f), dir.join(f))?;
    }
    // common/ inherits its package fields from the main workspace, which is not copied.
    std::fs::write(
        dir.join("common/Cargo.toml"),
        "[package]\nname = \"siplb-common\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         license = \"Apache-2.0\"\npublish = false\n",
    )?;
    let path = format!(
        "{}:{}",
        cargo_home().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let flags = format!(
        "-C debuginfo=2 -C link-arg=--btf --remap-path-prefix={BPF_BUILD_DIR}=/siplb --remap-path-prefix={}=/cargo",
        cargo_home().display()
    );
    run(Command::new("/usr/bin/cargo")
        .current_dir(dir.join("ebpf"))
        .args([
            "build",
            "--locked",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .env("PATH", path)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", flags)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR"))?;
    run(Command::new(format!("{LLVM}/bin/llvm-strip"))
        .arg("-g")
        .arg(dir.join("ebpf/target/bpfel-unknown-none/release/siplb"))
        .arg("-o")
        .arg(out))
}

/// Builds the object and its record (or, with `check`, rebuilds and compares with the
/// committed ones: a mismatch is an error when the recorded toolchain is the installed one,
/// and a warning when Debian has moved on).
fn build_ebpf(check: bool) -> Result<()> {
    let root = root();
    let object = root.join(BPF_OBJECT);
    if !check {
        build_bpf_object(&root, &object)?;
        std::fs::write(root.join(BPF_RECORD), bpf_record(&root, &object)?)?;
        eprintln!("xtask: wrote {BPF_OBJECT} and {BPF_RECORD}");
        return Ok(());
    }
    let fresh = Path::new(BPF_BUILD_DIR).join("siplb.bpf.o");
    build_bpf_object(&root, &fresh)?;
    let recorded = std::fs::read_to_string(root.join(BPF_RECORD))?;
    let now = bpf_record(&root, &fresh)?;
    let toolchain = |r: &str| -> String {
        r.lines()
            .skip_while(|l| *l != "toolchain:")
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let same_bytes = std::fs::read(&fresh)? == std::fs::read(&object)?;
    if same_bytes && now == recorded {
        eprintln!("xtask: {BPF_OBJECT} rebuilt from source: identical");
        return Ok(());
    }
    if toolchain(&now) == toolchain(&recorded) {
        bail!(
            "{BPF_OBJECT} does not match its sources (run `cargo xtask build-ebpf` and commit):\n\
             --- recorded\n{recorded}\n--- now\n{now}"
        );
    }
    eprintln!(
        "xtask: WARNING: the BPF toolchain differs from the recorded one; {BPF_OBJECT} {} its \
         rebuild. The tests run with the committed object.\n--- recorded\n{recorded}\n--- now\n{now}",
        if same_bytes {
            "still equals"
        } else {
            "differs from"
        }
    );
    Ok(())
}

// ------------------------------------------------------------------------- XDP drop rate

/// Sends 64-byte junk datagrams to `dst` for `secs` seconds, as fast as one thread can; prints
/// how many. Run inside a network namespace by `bench-xdp`.
fn flood_send(args: &[String]) -> Result<()> {
    let dst: std::net::SocketAddr = args
        .first()
        .context("flood-send <ip:port> <secs>")?
        .parse()?;
    let secs: f64 = args
        .get(1)
        .context("flood-send <ip:port> <secs>")?
        .parse()?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(dst)?;
    let junk = [0x16u8; 64];
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            if sock.send(&junk).is_ok() {
                sent += 1;
            }
        }
    }
    println!("{sent}");
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// The XDP guard's drop rate for a junk flood: siplb in one namespace, the sender in another,
/// over a veth pair (198.18.60.0/24), native mode then generic.
fn bench_xdp() -> Result<()> {
    let root = root();
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "siplb",
    ]))?;
    let (a, b) = ("siplb-bx-a", "siplb-bx-b");
    let work = root.join("target/bench-xdp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let cleanup = || {
        for ns in [a, b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    };
    cleanup();
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for mode in ["native", "generic"] {
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&[
            "link", "add", "sbxa", "type", "veth", "peer", "name", "sbxb",
        ])?;
        ip(&["link", "set", "sbxa", "netns", a])?;
        ip(&["link", "set", "sbxb", "netns", b])?;
        ip(&["-n", a, "addr", "add", "198.18.60.1/24", "dev", "sbxa"])?;
        ip(&["-n", b, "addr", "add", "198.18.60.2/24", "dev", "sbxb"])?;
        for (ns, dev) in [(a, "sbxa"), (b, "sbxb")] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        let cfg = work.join(format!("{mode}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[listen]\nsip = [\"198.18.60.2:5060\"]\n[workers]\ncount = 2\npin = false\n\
                 [steering]\nmode = \"bpf\"\nxdp_mode = \"{mode}\"\n[control]\nsocket = \"{mode}.ctl\"\n\
                 [[customer]]\nname = \"c\"\nsources = [\"198.18.60.1/32\"]\n\
                 [[gateway_set]]\nname = \"t\"\ngateways = [\"198.18.60.2:5081\"]\n"
            ),
        )?;
        let mut siplb = Command::new("ip")
            .args(["netns", "exec", b])
            .arg(root.join("target/release/siplb"))
            .arg("--config")
            .arg(&cfg)
            .stderr(std::fs::File::create(work.join(format!("{mode}.log")))?)
            .spawn()?;
        let ctl = |verb: &str| -> u64 {
            output(
                Command::new(root.join("target/release/siplb"))
                    .args(["ctl", "--config"])
                    .arg(&cfg)
                    .args(["stats.get_statistics", verb]),
            )
            .rsplit(" = ")
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
        };
        std::thread::sleep(Duration::from_secs(2));
        let secs = 5.0;
        let before = ctl("xdp:drop_not_sip");
        let sent: u64 = output(
            Command::new("ip")
                .args(["netns", "exec", a])
                .arg(&me)
                .args(["flood-send", "198.18.60.2:5060", &secs.to_string()]),
        )
        .parse()
        .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(500));
        let dropped = ctl("xdp:drop_not_sip") - before;
        let attached = ctl("xdp:attached");
        let bad = ctl("core:bad_msg_hdr");
        let _ = Command::new("kill").arg(siplb.id().to_string()).status();
        let _ = siplb.wait();
        cleanup();
        rows.push((mode, attached, sent, dropped, bad, secs));
    }
    println!(
        "\n64-byte junk datagrams to the SIP port, one sender thread, 5 s, veth pair, 2 cores\n"
    );
    println!(
        "| XDP mode | attached | sent | dropped in XDP | dropped per second | reached siplb |"
    );
    println!("|---|---|---|---|---|---|");
    for (mode, attached, sent, dropped, bad, secs) in rows {
        println!(
            "| {mode} | {attached} | {sent} | {dropped} | {:.0} | {bad} |",
            dropped as f64 / secs
        );
    }
    Ok(())
}
