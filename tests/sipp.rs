//! sipp for the tests (and for `cargo xtask bench`): start a UAS or run a UAC, read the
//! statistics CSV it writes, wait until something listens on a UDP address, stop a child.

use crate::{Net, repo, scenario};
use std::collections::HashMap;
use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Arguments every sipp gets (the tests' and `cargo xtask bench`'s): bound to its address, no
/// keyboard, a large socket buffer, final statistics (`-trace_stat`) every second.
pub const SIPP_BASE_ARGS: [&str; 7] = [
    "-bind_local",
    "-nostdin",
    "-buff_size",
    "1048576",
    "-trace_stat",
    "-fd",
    "1",
];

/// Arguments every sipp of the tests gets: [`SIPP_BASE_ARGS`], final statistics in
/// `<name>.csv` and errors in `<name>_errors.log`.
fn sipp_common(name: &str) -> Vec<String> {
    SIPP_BASE_ARGS
        .iter()
        .chain(&["-trace_err"])
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

    /// [`uac`](Self::uac) as the caller of `net` (its address, towards its siplb), named
    /// `uac` in `dir`: what most tests run.
    pub fn caller(
        dir: &Path,
        net: Net,
        scenario_name: &str,
        calls: u32,
        rate: u32,
        extra: &[&str],
        max_s: u64,
    ) -> SippStats {
        Sipp::uac(
            dir,
            "uac",
            &net.siplb(),
            &net.ip(),
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

/// Waits until something listens on UDP `addr` (at most 5 s).
pub fn wait_bound(addr: &str) {
    assert!(
        try_wait_bound(addr, Duration::from_secs(5)),
        "nothing bound {addr}"
    );
}

/// Waits until something listens on UDP `addr` (binding it fails), at most `within`; false
/// if nothing does.
pub fn try_wait_bound(addr: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if UdpSocket::bind(addr).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
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
