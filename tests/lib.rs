//! Test kit for siplb's end-to-end tests: start the real binary on a config written for the
//! test, drive it with sipp over real sockets on loopback, read its statistics with
//! `siplb ctl`, and clean up (by PID) whatever the test started.
//!
//! Every test gets its own loopback address (`127.0.N.1`), so tests never collide with each
//! other or with a siplb running on the shipped example config. Heavy tests take [`serial`]
//! so that two sipp loads never share the machine's two cores.
//!
//! Tests panic instead of returning errors: a panic shows where and why.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The repository's top folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .into()
}

/// A sipp scenario of the repository: `examples/sipp/<name>` or `tests/scenarios/<name>`.
pub fn scenario(name: &str) -> PathBuf {
    for dir in ["examples/sipp", "tests/scenarios"] {
        let p = repo().join(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("no scenario {name} in examples/sipp or tests/scenarios");
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the machine for one load test at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test with the install hint when sipp is missing.
pub fn require_sipp() {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "sipp is not installed: `apt-get install sip-tester` (`cargo xtask ci` installs it)"
    );
}

/// A scratch folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("siplb-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SIPLB_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The addresses of one test: siplb, two gateways and the caller, on `127.0.<net>.1`.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    pub ip: [u8; 4],
}

impl Net {
    pub fn new(net: u8) -> Net {
        Net {
            ip: [127, 0, net, 1],
        }
    }

    pub fn ip(&self) -> String {
        let [a, b, c, d] = self.ip;
        format!("{a}.{b}.{c}.{d}")
    }

    pub fn siplb(&self) -> String {
        format!("{}:5060", self.ip())
    }

    pub fn gw(&self, n: u16) -> String {
        format!("{}:{}", self.ip(), 5080 + n)
    }

    pub fn caller_port(&self) -> u16 {
        5070
    }
}

/// A running siplb, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Siplb {
    pub child: Child,
    pub config: PathBuf,
    pub dir: PathBuf,
    bin: PathBuf,
}

/// A config for `net` with the given extra TOML appended (sections not already present).
pub fn config(net: Net, workers: usize, extra: &str) -> String {
    format!(
        r#"[listen]
sip = ["{siplb}"]

[workers]
count = {workers}
pin = false

[steering]
mode = "off"
hash_key = 12345

[control]
socket = "siplb.ctl"

{extra}

[[customer]]
name = "local"
sources = ["{ip}/32"]

[[gateway_set]]
name = "trunk"
gateways = ["{gw1}", "{gw2}"]
"#,
        siplb = net.siplb(),
        ip = net.ip(),
        gw1 = net.gw(1),
        gw2 = net.gw(2),
    )
}

impl Siplb {
    /// Starts `bin` with `config_text` written to `<dir>/siplb.toml`, and waits until its
    /// control socket answers.
    pub fn start(bin: &str, dir: &Path, config_text: &str) -> Siplb {
        Siplb::start_in(None, bin, dir, config_text)
    }

    /// [`start`](Self::start) inside network namespace `netns` (when given).
    pub fn start_in(netns: Option<&str>, bin: &str, dir: &Path, config_text: &str) -> Siplb {
        let config = dir.join("siplb.toml");
        std::fs::write(&config, config_text).expect("write config");
        let log = std::fs::File::create(dir.join("siplb.log")).expect("log file");
        let child = in_netns(netns, bin)
            .arg("--config")
            .arg(&config)
            .env("SIPLB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start siplb");
        let mut s = Siplb {
            child,
            config,
            dir: dir.into(),
            bin: bin.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if s.ctl(&["core.version"]).is_ok() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("siplb exited at start ({status}): {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "siplb did not come up: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("siplb.log")).unwrap_or_default()
    }

    /// `siplb ctl --config <config> <args>`: stdout on success, stderr on failure.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("ctl")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run siplb ctl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into())
        }
    }

    /// All statistics by `group:name`.
    pub fn stats(&self) -> HashMap<String, u64> {
        let text = self
            .ctl(&["stats.get_statistics", "all"])
            .expect("stats.get_statistics");
        text.lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| {
                (
                    k.trim().to_string(),
                    v.trim().parse().expect("numeric statistic"),
                )
            })
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        *self
            .stats()
            .get(name)
            .unwrap_or_else(|| panic!("no statistic {name}"))
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Asserts the process is still running.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("siplb died ({status}): {}", self.log());
        }
    }

    /// Stops it with SIGTERM and waits (at most 10 s).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for Siplb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, wait up to 10 s, then SIGKILL.
pub fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: signalling a child we started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A sipp process started by a test; killed on drop if still running.
pub struct Sipp {
    pub child: Child,
    pub name: String,
    pub dir: PathBuf,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The final counters of a sipp run (its `-trace_stat` CSV).
#[derive(Debug, Default, Clone)]
pub struct SippStats {
    pub fields: HashMap<String, String>,
}

impl SippStats {
    pub fn get(&self, name: &str) -> u64 {
        self.fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn ok(&self) -> u64 {
        self.get("SuccessfulCall(C)")
    }

    pub fn failed(&self) -> u64 {
        self.get("FailedCall(C)")
    }
}

/// Arguments every sipp of the tests gets: bound to its address, no keyboard, a large socket
/// buffer, final statistics in `<name>.csv` and errors in `<name>_errors.log`.
fn sipp_common(name: &str) -> Vec<String> {
    [
        "-bind_local",
        "-nostdin",
        "-buff_size",
        "1048576",
        "-trace_stat",
        "-fd",
        "1",
        "-trace_err",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-stf".into(),
        format!("{name}.csv"),
        "-error_file".into(),
        format!("{name}_errors.log"),
    ])
    .collect()
}

impl Sipp {
    /// Starts a sipp UAS (gateway) on `addr` with `scenario`; `extra` arguments appended.
    pub fn uas(dir: &Path, name: &str, addr: &str, scenario_name: &str, extra: &[&str]) -> Sipp {
        Sipp::uas_in(None, dir, name, addr, scenario_name, extra)
    }

    /// [`uas`](Self::uas) inside network namespace `netns` (when given).
    pub fn uas_in(
        netns: Option<&str>,
        dir: &Path,
        name: &str,
        addr: &str,
        scenario_name: &str,
        extra: &[&str],
    ) -> Sipp {
        let (ip, port) = addr.rsplit_once(':').expect("ip:port");
        let child = in_netns(netns, "sipp")
            .current_dir(dir)
            .args(["-sf", scenario(scenario_name).to_str().expect("utf-8 path")])
            .args(["-i", ip, "-p", port])
            .args(sipp_common(name))
            .arg("-trace_counts")
            .args(["-timeout", "240s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("sipp out"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp (apt-get install sip-tester)");
        let s = Sipp {
            child,
            name: name.into(),
            dir: dir.into(),
        };
        match netns {
            None => wait_bound(addr),
            Some(ns) => wait_bound_in(ns, addr),
        }
        s
    }

    /// Runs a sipp UAC to completion (bounded by `max_s` seconds) and returns its counters.
    #[allow(clippy::too_many_arguments)]
    pub fn uac(
        dir: &Path,
        name: &str,
        target: &str,
        local_ip: &str,
        scenario_name: &str,
        calls: u32,
        rate: u32,
        extra: &[&str],
        max_s: u64,
    ) -> SippStats {
        Sipp::uac_in(
            None,
            dir,
            name,
            target,
            local_ip,
            scenario_name,
            calls,
            rate,
            extra,
            max_s,
        )
    }

    /// [`uac`](Self::uac) inside network namespace `netns` (when given).
    #[allow(clippy::too_many_arguments)]
    pub fn uac_in(
        netns: Option<&str>,
        dir: &Path,
        name: &str,
        target: &str,
        local_ip: &str,
        scenario_name: &str,
        calls: u32,
        rate: u32,
        extra: &[&str],
        max_s: u64,
    ) -> SippStats {
        let mut cmd = in_netns(netns, "timeout");
        cmd.current_dir(dir)
            .args(["-k", "5", &format!("{}", max_s + 10), "sipp", target])
            .args(["-sf", scenario(scenario_name).to_str().expect("utf-8 path")])
            .args(if extra.contains(&"-inf") {
                vec![]
            } else {
                vec![
                    "-inf".to_string(),
                    repo()
                        .join("examples/sipp/accounts.csv")
                        .to_str()
                        .expect("utf-8")
                        .to_string(),
                ]
            })
            .args(["-i", local_ip, "-p", "5070"])
            .args(sipp_common(name))
            .args([
                "-m",
                &calls.to_string(),
                "-r",
                &rate.to_string(),
                "-l",
                "100000",
            ])
            .arg("-trace_error_codes")
            .args(["-recv_timeout", "20000", "-timeout", &format!("{max_s}s")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("sipp out"))
            .stderr(Stdio::null());
        let status = cmd.status().expect("run sipp");
        let stats = read_sipp_csv(&dir.join(format!("{name}.csv")));
        if stats.fields.is_empty() {
            let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
            panic!("sipp {name} produced no statistics ({status}): {out}");
        }
        stats
    }

    /// Stops a UAS (SIGUSR1 = soft exit, then kill) and returns its counters and per-message
    /// counts (`-trace_counts`).
    pub fn finish(mut self) -> (SippStats, SippStats) {
        // SAFETY: signalling a child we started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stats = read_sipp_csv(&self.dir.join(format!("{}.csv", self.name)));
        // -trace_counts writes <scenario>_<pid>_counts.csv
        let suffix = format!("_{}_counts.csv", self.child.id());
        let counts = std::fs::read_dir(&self.dir)
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&suffix))
            })
            .map(|p| read_sipp_csv(&p))
            .unwrap_or_default();
        (stats, counts)
    }
}

/// `program` as a command, run inside network namespace `netns` when one is given.
pub fn in_netns(netns: Option<&str>, program: &str) -> Command {
    match netns {
        None => Command::new(program),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
    }
}

/// Waits until something listens on UDP `addr` in namespace `ns` (at most 5 s).
pub fn wait_bound_in(ns: &str, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hlun"])
            .output()
            .expect("ss");
        if String::from_utf8_lossy(&out.stdout).contains(addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing bound {addr} in {ns}");
}

/// Two network namespaces joined by a veth pair, made by the test and deleted on drop:
/// `a` (callers, `198.18.<n>.1`) and `b` (siplb and the gateways, `198.18.<n>.2`).
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub ip_a: String,
    pub ip_b: String,
    /// The veth ends in `a` and in `b`.
    pub dev_a: String,
    pub dev_b: String,
}

impl NetnsPair {
    pub fn new(n: u8) -> NetnsPair {
        let (a, b) = (format!("siplb-t{n}-a"), format!("siplb-t{n}-b"));
        let (va, vb) = (format!("sl{n}a"), format!("sl{n}b"));
        // Left over from an earlier run that was killed: start clean.
        for ns in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?} failed");
        };
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &a]);
        ip(&["link", "set", &vb, "netns", &b]);
        let (ip_a, ip_b) = (format!("198.18.{n}.1"), format!("198.18.{n}.2"));
        ip(&["-n", &a, "addr", "add", &format!("{ip_a}/24"), "dev", &va]);
        ip(&["-n", &b, "addr", "add", &format!("{ip_b}/24"), "dev", &vb]);
        for (ns, dev) in [(&a, &va), (&b, &vb)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        NetnsPair {
            a,
            b,
            ip_a,
            ip_b,
            dev_a: va,
            dev_b: vb,
        }
    }
}

impl NetnsPair {
    /// Sets the MTU of both ends of the veth pair (to force IP fragmentation).
    pub fn set_mtu(&self, mtu: u32) {
        for (ns, dev) in [(&self.a, &self.dev_a), (&self.b, &self.dev_b)] {
            let st = Command::new("ip")
                .args(["-n", ns, "link", "set", dev, "mtu", &mtu.to_string()])
                .status()
                .expect("ip");
            assert!(st.success(), "mtu {mtu} on {dev}");
        }
    }

    /// Turns TX checksum offload off on the `a` side of the veth pair: with native XDP and a
    /// cpumap redirect on the `b` side, offloaded (not yet computed) UDP checksums would be
    /// found bad and the datagrams dropped.
    pub fn tx_checksum_off_a(&self) {
        let dev = &self.dev_a;
        let st = Command::new("ip")
            .args(["netns", "exec", &self.a, "ethtool", "-K", dev, "tx", "off"])
            .stdout(Stdio::null())
            .status()
            .expect("ethtool");
        assert!(st.success(), "ethtool -K {dev} tx off");
    }

    /// Adds another address to the `a` side (`198.18.<n>.<host>`), e.g. a second source.
    pub fn add_a(&self, host: u8) -> String {
        let net = self.ip_a.rsplit_once('.').expect("dotted").0;
        let ip = format!("{net}.{host}");
        let dev = &self.dev_a;
        let st = Command::new("ip")
            .args([
                "-n",
                &self.a,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ])
            .status()
            .expect("ip");
        assert!(st.success(), "add {ip} to {dev}");
        ip
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Waits until something listens on UDP `addr` (at most 5 s).
pub fn wait_bound(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if UdpSocket::bind(addr).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing bound {addr}");
}

/// The last line of a sipp `;`-separated CSV as a map by column name.
pub fn read_sipp_csv(path: &Path) -> SippStats {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else {
        return SippStats::default();
    };
    let Some(last) = lines.next_back() else {
        return SippStats::default();
    };
    let fields = head
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SippStats { fields }
}

/// One line of an ownership trace (`debug.trace_ownership`).
#[derive(Debug, Clone)]
pub struct TraceLine {
    pub processed: u32,
    pub received: u32,
    /// Method, or status code.
    pub kind: String,
    pub cseq_method: String,
    pub call_id: String,
}

/// Every line of the ownership traces `<trace>.<w>` of `workers` workers (a missing file
/// counts as empty: that worker processed nothing).
pub fn read_trace(trace: &Path, workers: u32) -> Vec<TraceLine> {
    let mut out = Vec::new();
    for w in 0..workers {
        let text = std::fs::read_to_string(format!("{}.{w}", trace.display())).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [processed, received, kind, cseq_method, call_id] = f[..] else {
                panic!("trace line {line:?}")
            };
            out.push(TraceLine {
                processed: processed.parse().expect("worker id"),
                received: received.parse().expect("worker id"),
                kind: kind.into(),
                cseq_method: cseq_method.into(),
                call_id: call_id.into(),
            });
        }
    }
    out
}

/// The owner hash of a Call-ID, as siplb computes it.
pub fn owner(hash_key: u32, call_id: &[u8], workers: u32) -> u32 {
    siplb_common::owner_of(siplb_common::owner_hash(hash_key, call_id), workers)
}

/// A UDP socket for hand-made traffic, with a receive timeout.
pub fn udp(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    // Room for bursts of replies (SO_RCVBUFFORCE: the tests run as root).
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt reads an int from a valid pointer.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        );
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Receives everything that arrives within `quiet` of silence.
pub fn drain(s: &UdpSocket, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    s.set_read_timeout(Some(quiet)).expect("timeout");
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((from, buf[..n].to_vec()));
    }
    out
}

/// The status code of a response, if it is one.
pub fn status_of(msg: &[u8]) -> Option<u16> {
    let rest = msg.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The reason phrase of a response.
pub fn reason_of(msg: &[u8]) -> String {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    line.trim_end()
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or("")
        .to_string()
}

/// A minimal INVITE from `from` (ip:port) to siplb at `to`.
pub fn invite(from: &str, to: &str, call_id: &str, branch: &str) -> Vec<u8> {
    format!(
        "INVITE sip:15550001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\r\n\
         From: <sip:acct1@{from}>;tag=t{branch}\r\nTo: <sip:15550001@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:acct1@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A real HTTP server for the tests: accepts POSTs on `addr` (one request per connection or
/// kept alive), answers `200 OK` and keeps every request body.
pub struct HttpSink {
    pub bodies: std::sync::Arc<Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    pub fn start(addr: &str) -> HttpSink {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener =
            std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let bodies: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
        let stop: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (b, st) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut writer = conn;
                // Requests on this connection until the client closes it.
                loop {
                    let mut len = 0usize;
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    b.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into());
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        HttpSink {
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
