//! The log, end to end: the real siplb binary, its stderr in a file as an operator's service
//! manager would keep it. One line per refused, failed or operator-ended call, rate limited;
//! no colour codes in a file; JSON lines; the level from the file and changed at run time;
//! configuration errors said once and at their line; the reason BPF is not used.
//! Nets 69..74.

use siplb_tests::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");
const QUIET: Duration = Duration::from_millis(300);

/// The lines of `log` about calls (`siplb::call`), for one Call-ID.
fn call_lines<'a>(log: &'a str, call_id: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("siplb::call") && l.contains(&format!(" call_id={call_id} ")))
        .collect()
}

/// Waits until `log()` holds `needle` (at most 5 s); the log.
fn wait_for(log: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = log();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response to `req` (a request siplb sent): its Vias, From, To (with `to_tag`), Call-ID
/// and CSeq, as a gateway would answer.
fn answer(req: &[u8], code: u16, reason: &str, to_tag: &str, contact: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(req);
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in text.split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out += &format!("{line}\r\n"),
            "to" if line.contains(";tag=") => out += &format!("{line}\r\n"),
            "to" => out += &format!("{line};tag={to_tag}\r\n"),
            _ => {}
        }
    }
    out += &format!("Contact: <sip:gw@{contact}>\r\nContent-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The first request of `method` among datagrams.
fn request<'a>(got: &'a [(std::net::SocketAddr, Vec<u8>)], method: &str) -> Option<&'a [u8]> {
    got.iter()
        .map(|(_, m)| m.as_slice())
        .find(|m| m.starts_with(format!("{method} ").as_bytes()))
}

fn statuses(got: &[(std::net::SocketAddr, Vec<u8>)]) -> Vec<u16> {
    got.iter().filter_map(|(_, m)| status_of(m)).collect()
}

#[test]
fn each_refused_failed_or_operator_ended_call_gets_one_line() {
    let net = Net::new(69);
    let dir = TempDir::new("log-calls");
    let extra = "[timers]\ntimer_b_ms = 1000\n\n\
                 [[limits.profile]]\nprofile = \"account\"\nmax = 1\n";
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 1, extra));
    let me = format!("{}:5070", net.ip());
    let caller = udp(&me);
    let gws = [udp(&net.gw(1)), udp(&net.gw(2))];
    let both = |quiet| -> Vec<(usize, std::net::SocketAddr, Vec<u8>)> {
        let mut all = Vec::new();
        for (i, g) in gws.iter().enumerate() {
            all.extend(drain(g, quiet).into_iter().map(|(a, m)| (i, a, m)));
        }
        all
    };

    // 1. A stranger (not a customer's source), its INVITE resent twice: 403, one line.
    let stranger_addr = format!("{}.2:5070", net.ip().rsplit_once('.').unwrap().0);
    let stranger = udp(&stranger_addr);
    let inv = invite(&stranger_addr, &net.siplb(), "stranger-1@x", "s1");
    for _ in 0..3 {
        stranger.send_to(&inv, net.siplb()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(statuses(&drain(&stranger, QUIET)), [403, 403, 403]);

    // 2. A gateway that never answers: siplb's 408 after Timer B.
    caller
        .send_to(&invite(&me, &net.siplb(), "dead-gw-1@x", "d1"), net.siplb())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    both(QUIET);
    let got = drain(&caller, QUIET);
    assert!(statuses(&got).contains(&408), "{:?}", statuses(&got));

    // 3. A call answered, holding the account's one place.
    caller
        .send_to(
            &invite(&me, &net.siplb(), "answered-1@x", "a1"),
            net.siplb(),
        )
        .unwrap();
    let at_gw = both(QUIET);
    let (i, from, fwd) = at_gw
        .iter()
        .find(|(_, _, m)| m.starts_with(b"INVITE "))
        .expect("INVITE forwarded");
    let ok = answer(fwd, 200, "OK", "gwtag1", &net.gw(*i as u16 + 1));
    gws[*i].send_to(&ok, from).unwrap();
    let got = drain(&caller, QUIET);
    assert!(statuses(&got).contains(&200), "{:?}", statuses(&got));

    // 4. The account's second call: the limit reply.
    caller
        .send_to(&invite(&me, &net.siplb(), "limited-1@x", "l1"), net.siplb())
        .unwrap();
    let got = drain(&caller, QUIET);
    assert!(statuses(&got).contains(&503), "{:?}", statuses(&got));

    // 5. The operator ends the answered call: BYE to both sides.
    siplb
        .ctl(&["dlg.terminate_dlg", "answered-1@x", "ta1", "gwtag1"])
        .expect("dlg.terminate_dlg");
    let got = drain(&caller, QUIET);
    assert!(request(&got, "BYE").is_some(), "BYE to the caller");

    let log = wait_for(|| siplb.log(), "call_id=answered-1@x ");
    let one = |call_id: &str, what: &[&str]| {
        let lines = call_lines(&log, call_id);
        assert_eq!(lines.len(), 1, "one line for {call_id}:\n{log}");
        for w in what {
            assert!(lines[0].contains(w), "`{w}` in {}", lines[0]);
        }
    };
    one(
        "stranger-1@x",
        &[
            "call refused",
            &format!("source={stranger_addr}"),
            "account=-",
            "code=403",
            "reason=\"Forbidden",
        ],
    );
    one(
        "dead-gw-1@x",
        &[
            "call failed",
            &format!("source={me}"),
            "account=local",
            "code=408",
            "reason=\"Request Timeout\"",
        ],
    );
    one(
        "limited-1@x",
        &[
            "call refused",
            "account=local",
            "code=503",
            "reason=\"Account call limit\"",
        ],
    );
    one(
        "answered-1@x",
        &["call ended", "account=local", "ended_by=operator"],
    );
    assert_eq!(siplb.stat("log:dropped_lines"), 0);
}

#[test]
fn a_flood_of_refusals_is_rate_limited_and_counted() {
    let net = Net::new(70);
    let dir = TempDir::new("log-flood");
    let siplb = Siplb::start(
        BIN,
        &dir.0,
        &config(net, 1, "[log]\ncalls_per_second = 5\n"),
    );
    let stranger_addr = format!("{}.2:5070", net.ip().rsplit_once('.').unwrap().0);
    let stranger = udp(&stranger_addr);
    let n = 60;
    for k in 0..n {
        let inv = invite(&stranger_addr, &net.siplb(), &format!("flood-{k}@x"), "f");
        stranger.send_to(&inv, net.siplb()).unwrap();
    }
    let got = drain(&stranger, QUIET);
    assert_eq!(statuses(&got).len(), n, "every INVITE answered");
    let dropped = siplb.stat("log:dropped_lines");
    let log = siplb.log();
    let written = log.lines().filter(|l| l.contains("call refused")).count();
    assert!(
        (5..=8).contains(&written),
        "about a burst of 5 lines written, {written}:\n{log}"
    );
    assert_eq!(
        written as u64 + dropped,
        n as u64,
        "each line written or counted"
    );
    // The next line written says how many were left out before it.
    std::thread::sleep(Duration::from_millis(1100));
    let inv = invite(&stranger_addr, &net.siplb(), "after-the-flood@x", "f");
    stranger.send_to(&inv, net.siplb()).unwrap();
    drain(&stranger, QUIET);
    let log = siplb.log();
    assert!(
        log.contains(&format!(
            "{dropped} call lines left out over [log] calls_per_second"
        )),
        "{log}"
    );
}

#[test]
fn a_log_file_gets_no_colour_codes() {
    let net = Net::new(71);
    let dir = TempDir::new("log-colour");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 1, ""));
    let stranger_addr = format!("{}.2:5070", net.ip().rsplit_once('.').unwrap().0);
    let stranger = udp(&stranger_addr);
    stranger
        .send_to(
            &invite(&stranger_addr, &net.siplb(), "colour-1@x", "c1"),
            net.siplb(),
        )
        .unwrap();
    drain(&stranger, QUIET);
    let log = wait_for(|| siplb.log(), "colour-1@x");
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escape in the log file:\n{log:?}"
    );
}

#[test]
fn on_a_terminal_the_log_has_colour() {
    // `script` gives siplb a terminal; its transcript keeps what siplb wrote to it.
    let net = Net::new(71);
    let dir = TempDir::new("log-tty");
    let cfg = dir.0.join("siplb.toml");
    std::fs::write(
        &cfg,
        config(net, 1, "")
            .replace("5060", "5062")
            .replace("siplb.ctl", "tty.ctl"),
    )
    .unwrap();
    let transcript = dir.0.join("tty.log");
    let cmd = format!("exec {BIN} --config {}", cfg.display());
    let mut child = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &cmd])
        .arg(&transcript)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    let text = wait_for(
        || std::fs::read_to_string(&transcript).unwrap_or_default(),
        "listening on",
    );
    stop_siplb_under(&mut child);
    assert!(text.contains("listening on"), "{text}");
    assert!(text.contains("\x1b["), "no colour on a terminal:\n{text:?}");
}

/// Stops the siplb that `child` (a wrapper that runs it) started, then the wrapper.
fn stop_siplb_under(child: &mut Child) {
    // The wrapper's children: siplb. By PID, never by name.
    let pid = child.id();
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids
        .split_whitespace()
        .filter_map(|k| k.parse::<i32>().ok())
    {
        // SAFETY: signalling a process this test started, by its PID.
        unsafe { libc::kill(k, libc::SIGTERM) };
    }
    stop_child(child);
}

/// siplb started directly, without the kit's `SIPLB_LOG` (nor `RUST_LOG`), so that `[log]
/// level` decides; stopped on drop.
struct Bare {
    child: Child,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Bare {
    fn start(dir: &Path, config_text: &str) -> Bare {
        let config = dir.join("siplb.toml");
        std::fs::write(&config, config_text).unwrap();
        let log = dir.join("siplb.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env_remove("SIPLB_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start siplb");
        let b = Bare { child, config, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.ctl(&["core.version"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "siplb did not come up: {}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(BIN)
            .arg("ctl")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into())
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

#[test]
fn json_format_writes_one_object_per_line() {
    let net = Net::new(72);
    let dir = TempDir::new("log-json");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 1, "[log]\nformat = \"json\"\n"));
    let stranger_addr = format!("{}.2:5070", net.ip().rsplit_once('.').unwrap().0);
    let stranger = udp(&stranger_addr);
    stranger
        .send_to(
            &invite(&stranger_addr, &net.siplb(), "json-1@x", "j1"),
            net.siplb(),
        )
        .unwrap();
    drain(&stranger, QUIET);
    let log = wait_for(|| siplb.log(), "json-1@x");
    let objects: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(objects.iter().all(|o| o.is_object()));
    let call = objects
        .iter()
        .find(|o| o["call_id"] == "json-1@x")
        .unwrap_or_else(|| panic!("no call line:\n{log}"));
    assert_eq!(call["message"], "call refused");
    assert_eq!(call["code"], 403);
    assert_eq!(call["level"], "INFO");
    assert_eq!(call["target"], "siplb::call");
    assert_eq!(call["source"], stranger_addr);
}

#[test]
fn the_level_comes_from_the_file_and_changes_at_run_time() {
    let net = Net::new(73);
    let dir = TempDir::new("log-level");
    let siplb = Bare::start(&dir.0, &config(net, 1, "[log]\nlevel = \"warn\"\n"));
    let stranger_addr = format!("{}.2:5070", net.ip().rsplit_once('.').unwrap().0);
    let stranger = udp(&stranger_addr);
    let refuse = |call_id: &str| {
        let inv = invite(&stranger_addr, &net.siplb(), call_id, "v");
        stranger.send_to(&inv, net.siplb()).unwrap();
        assert_eq!(statuses(&drain(&stranger, QUIET)), [403]);
    };
    assert_eq!(siplb.ctl(&["log.level"]).unwrap().trim(), "warn");
    refuse("quiet-1@x");
    let log = siplb.log();
    assert!(
        !log.contains("listening on") && !log.contains("quiet-1@x"),
        "info lines at level warn:\n{log}"
    );

    assert_eq!(siplb.ctl(&["log.level", "info"]).unwrap().trim(), "info");
    refuse("loud-1@x");
    let log = wait_for(|| siplb.log(), "loud-1@x");
    assert_eq!(call_lines(&log, "loud-1@x").len(), 1, "{log}");

    // Kamailio's `corex.debug` numbers: 0 is warn.
    assert_eq!(siplb.ctl(&["log.level", "0"]).unwrap().trim(), "warn");
    refuse("quiet-2@x");
    assert!(!siplb.log().contains("quiet-2@x"));
    let e = siplb.ctl(&["log.level", "loud"]).unwrap_err();
    assert!(e.contains("`loud` is not a level"), "{e}");
    assert_eq!(siplb.ctl(&["log.level"]).unwrap().trim(), "warn");
}

/// `siplb --check` on `text`: (exit ok, stderr).
fn check(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    check_path(&path)
}

fn check_path(path: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("--check")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_missing_config_file_is_said_once() {
    let (ok, err) = check_path(Path::new("/nonexistent/siplb.toml"));
    assert!(!ok);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the OS error once: {err}"
    );
    assert!(
        err.contains("/nonexistent/siplb.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn a_zero_t1_is_reported_at_its_line() {
    let dir = TempDir::new("log-check-t1");
    let text = config(Net::new(74), 1, "[timers]\nt1_ms = 0\n");
    let line = text.lines().position(|l| l == "t1_ms = 0").unwrap() + 1;
    let (ok, err) = check(&dir.0, &text);
    assert!(!ok);
    assert!(
        err.contains(&format!("check.toml:{line}: `timers.t1_ms`: must be > 0")),
        "{err}"
    );
}

#[test]
fn a_gateway_listed_twice_in_a_set_is_refused_at_its_line() {
    let dir = TempDir::new("log-check-gw");
    let net = Net::new(74);
    let text = config(net, 1, "").replace(
        &format!("gateways = [\"{}\", \"{}\"]", net.gw(1), net.gw(2)),
        &format!(
            "gateways = [\n  \"{0}\",\n  \"{1}\",\n  \"{0}\",\n]",
            net.gw(1),
            net.gw(2)
        ),
    );
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.iter().rposition(|l| l.contains(&net.gw(1))).unwrap() + 1;
    let (ok, err) = check(&dir.0, &text);
    assert!(!ok, "accepted: {text}");
    assert!(
        err.contains(&format!(
            "check.toml:{line}: `gateway_set.gateways`: `{}` is listed twice",
            net.gw(1)
        )),
        "{err}"
    );
}

#[test]
fn without_bpf_capabilities_the_log_says_what_is_needed() {
    let net = Net::new(74);
    let dir = TempDir::new("log-caps");
    let text = config(net, 1, "").replace("mode = \"off\"", "mode = \"auto\"");
    let config_path = dir.0.join("siplb.toml");
    std::fs::write(&config_path, &text).unwrap();
    let log_path = dir.0.join("siplb.log");
    let file = std::fs::File::create(&log_path).unwrap();
    // capsh drops the capabilities from the bounding set, then execs the shell, which execs
    // siplb: the same PID, root without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.
    let mut child = Command::new("capsh")
        .args([
            "--drop=cap_bpf,cap_net_admin,cap_sys_admin",
            "--",
            "-c",
            "exec \"$0\" \"$@\"",
            BIN,
            "--config",
        ])
        .arg(&config_path)
        .env("SIPLB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("capsh (libcap2-bin)");
    let log = wait_for(
        || std::fs::read_to_string(&log_path).unwrap_or_default(),
        "listening on",
    );
    let caps = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    stop_child(&mut child);
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .expect("CapEff of siplb");
    assert_eq!(
        eff & (1 << 39 | 1 << 12 | 1 << 21),
        0,
        "capabilities dropped"
    );
    let line = log
        .lines()
        .find(|l| l.contains("steering:"))
        .unwrap_or_else(|| panic!("no steering line:\n{log}"));
    assert!(
        line.contains("needs root or CAP_BPF + CAP_NET_ADMIN")
            && line.contains("software hand-off"),
        "{line}"
    );
    assert!(!line.contains("map"), "{line}");
    assert!(log.contains("listening on"), "{log}");
}
