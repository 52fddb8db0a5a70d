//! Test kit for siplb's end-to-end tests: start the real binary on a config written for the
//! test, drive it with sipp over real sockets on loopback, read its statistics with
//! `siplb ctl`, and clean up (by PID) whatever the test started.
//!
//! Every test gets its own loopback address (`127.0.N.1`), so tests never collide with each
//! other or with a siplb running on the shipped example config. Heavy tests take [`serial`]
//! so that two sipp loads never share the machine's two cores.
//!
//! Tests panic instead of returning errors: a panic shows where and why.

mod http_sink;
pub mod load;
mod netns;
mod redis_server;
mod sipp;
mod wire;

pub use http_sink::*;
pub use netns::*;
pub use redis_server::*;
pub use sipp::*;
pub use wire::*;

use std::collections::HashMap;
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

/// A scratch folder removed on drop, unless the test is failing (kept, and its path said, so
/// that siplb's log and sipp's files can be read) or `SIPLB_KEEP_TEST_DIRS` is set.
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
        if std::thread::panicking() {
            eprintln!("the failed test's files are kept in {}", self.0.display());
        } else if std::env::var_os("SIPLB_KEEP_TEST_DIRS").is_none() {
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
        r#"{head}
{extra}

[[customer]]
name = "local"
sources = ["{ip}/32"]

[[gateway_set]]
name = "trunk"
gateways = ["{gw1}", "{gw2}"]
"#,
        head = config_head(net, workers),
        ip = net.ip(),
        gw1 = net.gw(1),
        gw2 = net.gw(2),
    )
}

/// What every test config starts with: `net`'s siplb address, `workers` unpinned workers,
/// software steering with a fixed hash key, the control socket in the test's folder.
pub fn config_head(net: Net, workers: usize) -> String {
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
"#,
        siplb = net.siplb(),
    )
}

/// Spawns `command`, whose program a test may have just written (a wrapper script): while
/// another test thread forks, its child holds that file open for writing until it execs, and
/// running the file fails with "Text file busy" (ETXTBSY) meanwhile; it is tried again then,
/// for up to a second.
pub fn spawn_written(command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
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
        let mut command = in_netns(netns, bin);
        command
            .arg("--config")
            .arg(&config)
            .env("SIPLB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = spawn_written(&mut command).expect("start siplb");
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

    /// Waits (at most 10 s) until statistic `name` is at least `n`; panics with `what` else.
    #[track_caller]
    pub fn wait_stat(&self, name: &str, n: u64, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.stat(name) < n {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits (at most `within`) for the process to exit by itself: its status, or none if it
    /// still runs.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
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
