//! What an operator meets on day one, through the real binary: one instance per address,
//! signals, packaging.

use siplb_tests::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// Runs siplb with `config` until it exits (at most 10 s): its status and what it printed.
fn run_to_exit(config: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siplb");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the second siplb kept running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// A second siplb on the same address (its config differs only in its control socket) stops
/// with "address already in use", as it does when sipp holds the port; the first keeps its
/// traffic and its control socket.
#[test]
fn a_second_instance_on_the_same_address_is_refused() {
    let _g = serial();
    let net = Net::new(75);
    let dir = TempDir::new("second-instance");
    let mut first = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let other = dir.0.join("second.toml");
    std::fs::write(
        &other,
        config(net, 2, "").replace("socket = \"siplb.ctl\"", "socket = \"second.ctl\""),
    )
    .expect("write");
    let (status, out) = run_to_exit(&other);
    assert!(!status.success(), "{out}");
    assert!(out.contains("address already in use"), "{out}");
    assert!(
        !dir.0.join("second.ctl").exists(),
        "nothing of the second one stays"
    );

    let caller = udp(&format!("{}:5070", net.ip()));
    let options = format!(
        "OPTIONS sip:ping@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-op1\r\n\
         From: <sip:c@{c}>;tag=o1\r\nTo: <sip:ping@{s}>\r\nCall-ID: op1@x\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        s = net.siplb(),
        c = caller.local_addr().unwrap()
    );
    caller.send_to(options.as_bytes(), net.siplb()).unwrap();
    let replies = drain(&caller, Duration::from_millis(300));
    assert_eq!(replies.len(), 1, "the first siplb still answers");
    assert_eq!(first.stat("core:rcv_requests"), 1);
    first.assert_alive();
}

/// The lock files of `net`'s address in the lock folder.
fn lock_files(net: Net) -> Vec<std::path::PathBuf> {
    let prefix = format!("siplb-udp-{}-5060-net", net.ip());
    std::fs::read_dir("/run/lock")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A siplb that stops takes its lock file with it. One run by root and killed (-9) leaves it
/// behind; a siplb started next on the same address as another user (`nobody`) takes it over
/// instead of stopping at "Permission denied".
#[test]
fn a_lock_file_left_by_root_does_not_stop_a_start_as_another_user() {
    use std::os::unix::fs::PermissionsExt;
    let _g = serial();
    let net = Net::new(94);
    let dir = TempDir::new("lock-left");
    let mut root = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    assert_eq!(lock_files(net).len(), 1, "siplb holds a lock file");
    root.stop();
    assert!(lock_files(net).is_empty(), "the lock file goes with siplb");

    let mut root = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    root.child.kill().expect("kill -9");
    root.child.wait().expect("reap");
    assert_eq!(lock_files(net).len(), 1, "a kill -9 leaves it");

    // nobody's own folder and copy of the binary, wherever the checkout is.
    let own = TempDir::new("lock-left-nobody");
    std::fs::set_permissions(&own.0, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = own.0.join("siplb");
    std::fs::copy(BIN, &bin).expect("copy siplb");
    let wrapper = own.0.join("as-nobody");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups {} \"$@\"\n",
            bin.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut nobody = Siplb::start(
        wrapper.to_str().expect("utf-8 path"),
        &own.0,
        &config(net, 2, ""),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", nobody.pid())).expect("status");
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "siplb runs as nobody: {status}"
    );
    nobody.stop();
    assert!(
        nobody.log().contains("shutting down"),
        "stopped in order: {}",
        nobody.log()
    );
    // (root's file stays: in the sticky lock folder only its owner may remove it.)
    for f in lock_files(net) {
        let _ = std::fs::remove_file(f);
    }
}

/// `--check` tries the folders the configuration writes into: a folder siplb cannot make
/// stops the check with its key, and a folder that does not exist yet is tried and left as it
/// was.
#[test]
fn check_tries_the_folders_the_configuration_writes_into() {
    let net = Net::new(95);
    let dir = TempDir::new("check-folders");
    std::fs::write(dir.0.join("blocker"), b"a file, not a folder").expect("write");
    let check = |acc_dir: &str| {
        let file = dir.0.join("check.toml");
        let acc =
            format!("[acc]\nflags = [\"INVITE\"]\nsinks = [\"files\"]\ndir = \"{acc_dir}\"\n");
        std::fs::write(&file, config(net, 1, &acc)).expect("write");
        Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .arg("--check")
            .output()
            .expect("siplb --check")
    };
    let out = check("blocker/acc");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "acc.dir: {}/blocker/acc: cannot be made",
            dir.0.display()
        )),
        "{err}"
    );
    let out = check("new/acc");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !dir.0.join("new").exists(),
        "the folder it tried is gone again"
    );
    // A restart journal whose file cannot be written (made immutable).
    let journal = dir.0.join("j");
    std::fs::create_dir_all(&journal).expect("mkdir");
    let file = journal.join("dialogs.jsonl");
    std::fs::write(&file, b"").expect("write");
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&file)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        chattr("+i"),
        "chattr +i {} (needs root and ext4)",
        file.display()
    );
    let toml = dir.0.join("journal.toml");
    std::fs::write(&toml, config(net, 1, "[dialog]\njournal_dir = \"j\"\n")).expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&toml)
        .arg("--check")
        .output()
        .expect("siplb --check");
    assert!(chattr("-i"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "dialog.journal_dir: {}: cannot be written",
            file.display()
        )),
        "{err}"
    );
}

/// The README's shell blocks, in order.
fn readme_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// Runs the README as written, in a network namespace of its own (its own loopback): the
/// first set-up command in the background, as if in another terminal, then every block after
/// the set-up, with `cargo run --release -p siplb --` standing for this build of siplb. Each
/// block shows what the text around it says.
#[test]
fn the_readme_runs_as_written() {
    let _g = serial();
    require_sipp();
    let blocks = readme_blocks();
    let setup: Vec<&str> = blocks[0].lines().collect();
    assert_eq!(setup.len(), 2, "two set-up commands: {setup:?}");
    assert_eq!(setup[1], "cargo xtask ci");
    let siplb = |b: &str| b.replace("cargo run --release -p siplb --", BIN);
    let mut script = String::from("cd \"$REPO\"\nexport SIPLB_LOG=warn\n");
    script += &format!("{} > \"$OUT/first.log\" 2>&1 &\n", siplb(setup[0]));
    script += &format!(
        "for i in $(seq 100); do {BIN} ctl --config examples/siplb.toml core.version \
         >/dev/null 2>&1 && break; sleep 0.1; done\n"
    );
    for (i, b) in blocks.iter().enumerate().skip(1) {
        script += &format!("echo '=== block {i}'\n{}echo \"=== exit $?\"\n", siplb(b));
    }
    let dir = TempDir::new("readme");
    let ns = format!("siplb-readme-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    // Into files, not pipes: what the blocks leave running keeps its output open.
    let (out_path, err_path) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let status = Command::new("ip")
        .args(["netns", "exec", &ns, "bash", "-c", &script])
        .env("REPO", repo())
        .env("OUT", &dir.0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .status()
        .expect("bash");
    // Everything the blocks left running (siplb, the sipp gateways) is in the namespace.
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .expect("ip netns pids");
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }
    std::thread::sleep(Duration::from_millis(500));
    ip(&["netns", "delete", &ns]);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "{text}\n{err}");
    // What block `i` printed, and its exit status.
    let block = |i: usize| -> (String, String) {
        let start = text
            .find(&format!("=== block {i}\n"))
            .unwrap_or_else(|| panic!("block {i} did not run: {text}\n{err}"));
        let rest = &text[start..];
        let end = rest.find("=== exit ").unwrap_or(rest.len());
        let status = rest[end..]
            .lines()
            .next()
            .unwrap_or("")
            .replace("=== exit ", "");
        (rest[..end].to_string(), status)
    };
    let stat = |out: &str, name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    for i in 1..blocks.len() {
        let (out, status) = block(i);
        assert_eq!(status, "0", "block {i} failed: {out}\n{err}");
    }
    // Try it: 2,000 calls through, each INVITE, ACK and BYE forwarded once.
    let (stats, _) = block(2);
    let forwarded = stat(&stats, "core:fwd_requests");
    assert!((6000..6100).contains(&forwarded), "{stats}");
    assert_eq!(stat(&stats, "tmx:timeouts"), 0, "{stats}");
    // Per-account limits, while the calls are up.
    let (limits, _) = block(3);
    // The first line that is a number alone is what dlg.profile_get_size printed.
    let size = limits
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        size,
        Some("5"),
        "dlg.profile_get_size account acct001: {limits}"
    );
    assert_eq!(stat(&limits, "limits:rejected"), 20, "{limits}");
    assert_eq!(stat(&limits, "dialog:active_dialogs"), 50, "{limits}");
    // Accounting: per call its INVITE, its BYE and its CDR.
    let (acc, _) = block(4);
    assert_eq!(stat(&acc, "acc:records"), 300, "{acc}");
    assert!(acc.contains("\"disposition\":\"answered\""), "{acc}");
    // Trunks: every call challenged once and completed, both trunks probed and up.
    let (trunks, _) = block(5);
    assert_eq!(stat(&trunks, "uac:auth_resends"), 200, "{trunks}");
    assert_eq!(trunks.matches("FLAGS: AP").count(), 2, "{trunks}");
}

/// Packaging: a LICENSE matching Cargo.toml's licence field.
#[test]
fn the_license_file_matches_cargo_toml() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("license = \"Apache-2.0\""),
        "the licence field"
    );
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
}

/// Packaging: a systemd unit that restarts on failure, reloads with SIGHUP, and gives siplb
/// the capabilities BPF and AF_XDP need instead of running it as root.
#[test]
fn the_systemd_unit_runs_siplb_with_capabilities_not_root() {
    let unit = std::fs::read_to_string(repo().join("examples/systemd/siplb.service"))
        .expect("examples/systemd/siplb.service");
    let value = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_string()
    };
    assert!(["simple", "notify"].contains(&value("Type").as_str()));
    assert_eq!(value("Restart"), "on-failure");
    assert!(value("ExecReload").contains("-HUP"));
    assert_ne!(value("User"), "root");
    let caps = value("AmbientCapabilities");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_PERFMON"] {
        assert!(caps.contains(cap), "{cap} in {caps}");
        assert!(
            value("CapabilityBoundingSet").contains(cap),
            "{cap} bounded"
        );
    }
    assert!(value("ExecStart").contains("siplb --config"));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        // Syntax only: the binary and user need not exist here.
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(repo().join("examples/systemd/siplb.service"))
            .output()
            .expect("systemd-analyze");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("Unknown key") && !err.contains("Invalid"),
            "{err}"
        );
    }
}

/// `siplb help <topic>` is the text of `<topic> --help`.
#[test]
fn help_topics_are_the_help_text() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().expect("siplb");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let topic = run(&["help", "ctl"]);
    assert!(topic.contains("Usage: siplb ctl"), "{topic}");
    assert_eq!(topic, run(&["ctl", "--help"]));
    assert!(run(&["help"]).contains("ctl"));
}

fn signal(siplb: &Siplb, sig: i32) {
    // SAFETY: signalling a child this test started, by its PID.
    unsafe { libc::kill(siplb.pid() as i32, sig) };
}

/// Waits (at most 5 s) until siplb's log contains `text`.
#[track_caller]
fn wait_log(siplb: &Siplb, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !siplb.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no `{text}` in the log: {}",
            siplb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP re-reads and checks the configuration instead of killing siplb; a file that
/// changes what cannot change live is refused, naming the key, and siplb runs on.
#[test]
fn sighup_reloads_instead_of_stopping() {
    let _g = serial();
    let net = Net::new(76);
    let dir = TempDir::new("sighup");
    let text = config(net, 2, "");
    let mut siplb = Siplb::start(BIN, &dir.0, &text);
    signal(&siplb, libc::SIGHUP);
    wait_log(&siplb, "SIGHUP: reloading");
    siplb.assert_alive();
    std::fs::write(
        dir.0.join("siplb.toml"),
        text.replace(&net.siplb(), &format!("{}:5099", net.ip())),
    )
    .expect("write");
    signal(&siplb, libc::SIGHUP);
    wait_log(&siplb, "`listen.sip` cannot change without a restart");
    std::fs::write(dir.0.join("siplb.toml"), "[listen\n").expect("write");
    signal(&siplb, libc::SIGHUP);
    wait_log(&siplb, "the running configuration is kept");
    siplb.assert_alive();
    // `siplb ctl` finds the socket through the file: give it back.
    std::fs::write(dir.0.join("siplb.toml"), &text).expect("write");
    assert!(siplb.ctl(&["core.version"]).is_ok(), "still answering");
    // SIGTERM stops it, said by name.
    signal(&siplb, libc::SIGTERM);
    wait_log(&siplb, "SIGTERM: shutting down");
}

/// Calls held up while siplb stops: `[shutdown] dialogs` decides whether the gateways get a
/// BYE; the log says how many dialogs were up either way.
fn stop_with_calls_up(net: Net, shutdown: &str) -> (String, u64) {
    require_sipp();
    let dir = TempDir::new(&format!("shutdown-{shutdown}"));
    let extra = format!("[shutdown]\ndialogs = \"{shutdown}\"\nbye_wait_ms = 500\n");
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, &extra));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let caller = std::thread::scope(|s| {
        let uac = s.spawn(|| Sipp::caller(&dir.0, net, "uac.xml", 3, 10, &["-d", "4000"], 20));
        siplb.wait_stat("dialog:active_dialogs", 3, "calls did not come up");
        // Answered, not only begun: a call still ringing at the stop gets a CANCEL, no BYE.
        let deadline = Instant::now() + Duration::from_secs(10);
        while siplb.stat("dialog:early_dialogs") > 0 {
            assert!(Instant::now() < deadline, "calls not answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        siplb.stop();
        uac.join()
    });
    drop(caller);
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    (siplb.log(), c1.get("5_BYE_Recv") + c2.get("5_BYE_Recv"))
}

#[test]
fn shutdown_leaves_dialogs_by_default_and_says_how_many() {
    let _g = serial();
    let (log, byes) = stop_with_calls_up(Net::new(77), "leave");
    assert!(log.contains("3 dialogs up at shutdown"), "{log}");
    assert_eq!(byes, 0, "no BYE from siplb");
}

#[test]
fn shutdown_with_bye_ends_every_dialog_on_both_sides() {
    let _g = serial();
    let (log, byes) = stop_with_calls_up(Net::new(78), "bye");
    assert!(log.contains("3 dialogs up at shutdown"), "{log}");
    assert_eq!(byes, 3, "each gateway got its calls' BYE: {log}");
}

/// Calls still ringing at SIGTERM are CANCELled with `dialogs = "leave"` too: their answer
/// would come back to no siplb. The gateways get the CANCEL and the callers their 487.
#[test]
fn shutdown_cancels_the_calls_still_ringing_even_when_leaving_dialogs() {
    let _g = serial();
    require_sipp();
    let net = Net::new(21);
    let dir = TempDir::new("shutdown-ringing");
    let extra = "[shutdown]\ndialogs = \"leave\"\nbye_wait_ms = 1000\n";
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, extra));
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_cancel.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_cancel.xml", &[]);
    let caller = std::thread::scope(|s| {
        let uac = s.spawn(|| Sipp::caller(&dir.0, net, "uac_487.xml", 3, 10, &[], 20));
        siplb.wait_stat("dialog:early_dialogs", 3, "calls did not ring");
        siplb.stop();
        uac.join().expect("caller")
    });
    let log = siplb.log();
    assert!(log.contains("3 not answered yet CANCELled"), "{log}");
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    assert_eq!(
        c1.get("2_CANCEL_Recv") + c2.get("2_CANCEL_Recv"),
        3,
        "each gateway got its calls' CANCEL: {log}"
    );
    assert_eq!(caller.ok(), 3, "each caller got its 487: {log}");
}

/// `siplb ctl cfg.reload`: customers and limits change live, the calls up stay counted, and
/// a file that changes what cannot change live is refused, naming the key.
#[test]
fn cfg_reload_applies_customers_and_limits_live_and_keeps_the_counts() {
    let _g = serial();
    let net = Net::new(79);
    let dir = TempDir::new("reload");
    let base = config(net, 2, "[timers]\nt1_ms = 2000\n");
    let stranger = base.replace(
        &format!("sources = [\"{}/32\"]", net.ip()),
        "sources = [\"127.0.99.1/32\"]",
    );
    let limited =
        |max: u32| format!("{base}\n[[limits.profile]]\nprofile = \"account\"\nmax = {max}\n");
    let mut siplb = Siplb::start(BIN, &dir.0, &stranger);
    let me = format!("{}:5070", net.ip());
    let caller = udp(&me);
    let (gw1, gw2) = (udp(&net.gw(1)), udp(&net.gw(2)));
    let call = |id: &str| -> Vec<u16> {
        caller
            .send_to(&invite(&me, &net.siplb(), id, id), net.siplb())
            .unwrap();
        // This call's answers only: an earlier call's 503 is resent (no ACK here) meanwhile.
        let own = format!("Call-ID: {id}\r\n");
        drain(&caller, Duration::from_millis(300))
            .iter()
            .filter(|(_, m)| String::from_utf8_lossy(m).contains(&own))
            .filter_map(|(_, m)| status_of(m))
            .collect()
    };
    assert_eq!(call("r0"), [403], "not a customer yet");

    std::fs::write(&siplb.config, limited(1)).expect("write");
    let out = siplb.ctl(&["cfg.reload"]).expect("cfg.reload");
    assert!(
        out.contains("reloaded: changed: customer (~local), limits.profile;"),
        "{out}"
    );
    assert_eq!(call("r1"), [100], "a customer now");
    assert_eq!(call("r2"), [503], "over the new limit of 1");
    let gateways = drain(&gw1, Duration::from_millis(100)).len()
        + drain(&gw2, Duration::from_millis(100)).len();
    assert!(gateways >= 1, "r1 was forwarded");

    std::fs::write(&siplb.config, limited(2)).expect("write");
    let out = siplb.ctl(&["cfg.reload"]).expect("cfg.reload");
    assert!(out.contains("reloaded: changed: limits.profile;"), "{out}");
    assert_eq!(call("r3"), [100], "the raised limit");
    assert_eq!(call("r4"), [503], "r1 and r3 still count");
    let size = siplb
        .ctl(&["dlg.profile_get_size", "account", "local"])
        .expect("size");
    assert_eq!(size.trim(), "2");

    // A customer put before `local`: customers are known by name, `local`'s calls still count.
    let front = limited(2).replacen(
        "[[customer]]",
        "[[customer]]\nname = \"first\"\nsources = [\"127.0.99.2/32\"]\n\n[[customer]]",
        1,
    );
    std::fs::write(&siplb.config, &front).expect("write");
    let out = siplb.ctl(&["cfg.reload"]).expect("cfg.reload");
    assert!(out.contains("customer (+first)"), "{out}");
    assert_eq!(call("r5"), [503], "r1 and r3 still count for `local`");
    // And taken out again.
    std::fs::write(&siplb.config, limited(2)).expect("write");
    let out = siplb.ctl(&["cfg.reload"]).expect("cfg.reload");
    assert!(out.contains("customer (-first)"), "{out}");
    assert_eq!(call("r6"), [503], "still");
    // In JSON, the parts of the line.
    let out = siplb.ctl(&["cfg.reload", "--json"]).expect("cfg.reload");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["what"], "reloaded", "{out}");
    assert_eq!(v["changed"], serde_json::json!([]), "{out}");
    assert_eq!(v["customers"], 1, "{out}");

    std::fs::write(
        &siplb.config,
        limited(2).replace(&net.siplb(), &format!("{}:5099", net.ip())),
    )
    .expect("write");
    let e = siplb.ctl(&["cfg.reload"]).unwrap_err();
    assert!(
        e.contains("`listen.sip` cannot change without a restart"),
        "{e}"
    );
    // The refusal is in siplb's own log too, not only on the asker's side.
    wait_log(&siplb, "the running configuration is kept");
    siplb.assert_alive();
}

/// A panic in a worker (made on purpose here, `debug.panic_on_call_id`) is logged and stops
/// siplb in order, with a failed exit for the service manager to restart it: not a process
/// that stays up with a shard gone and its share of every datagram lost.
#[test]
fn a_panicking_worker_stops_siplb_in_order_with_a_failed_exit() {
    let _g = serial();
    let net = Net::new(58);
    let dir = TempDir::new("panic");
    let extra = "[debug]\npanic_on_call_id = \"boom@x\"\n";
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net, 2, extra));
    let me = format!("{}:{}", net.ip(), net.caller_port());
    let caller = udp(&me);
    let fine = invite(&me, &net.siplb(), "fine@x", "f1");
    caller.send_to(&fine, net.siplb()).unwrap();
    siplb.wait_stat("core:rcv_requests", 1, "the first INVITE");
    siplb.assert_alive();
    let boom = invite(&me, &net.siplb(), "boom@x", "b1");
    caller.send_to(&boom, net.siplb()).unwrap();
    let status = siplb
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("siplb kept running: {}", siplb.log()));
    let log = siplb.log();
    assert!(!status.success(), "{status}: {log}");
    assert!(
        log.contains("panic:") && log.contains("debug.panic_on_call_id"),
        "{log}"
    );
    assert!(log.contains("cannot go on: siplb stops"), "{log}");
    assert!(
        log.contains("dialogs up at shutdown"),
        "an orderly stop: {log}"
    );
}
