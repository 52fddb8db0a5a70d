//! `siplb ctl` through the real binary: what it says it can do (`--help`,
//! `system.listMethods`, close matches for an unknown verb), `--json` on either side of the
//! verb, `core.version`/`core.uptime`/`core.info`, JSON structured all the way down, and the
//! control socket's permissions whatever the umask, its folder made at start. Nets 61..64, 80, 25.

use siplb::control::table::VERBS;
use siplb_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// Profile `total` for every call, besides `account`.
const PROFILES: &str =
    "[dialog]\nprofiles_no_value = [\"total\"]\n\n[[dialog.rule]]\nprofile = \"total\"\n";

fn start(tag: &str, net: Net) -> (TempDir, Siplb) {
    let dir = TempDir::new(tag);
    let extra = format!("[timers]\nt1_ms = 2000\n\n{PROFILES}");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, &extra));
    (dir, siplb)
}

/// `siplb ctl --config <config> <args>`: exit code, stdout, stderr.
fn ctl_status(siplb: &Siplb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("ctl")
        .arg("--config")
        .arg(&siplb.config)
        .args(args)
        .output()
        .expect("run siplb ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `siplb ctl --help` lists every verb of the table with its one-line description; it needs
/// neither a config nor a running siplb.
#[test]
fn ctl_help_lists_every_verb_with_its_description() {
    let out = Command::new(BIN)
        .args(["ctl", "--help"])
        .output()
        .expect("siplb ctl --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--json"), "{help}");
    for v in VERBS {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", v.name)))
            .unwrap_or_else(|| panic!("{} not in --help:\n{help}", v.name));
        assert!(line.contains(v.args), "{line}");
        assert!(line.ends_with(v.help), "{line}");
    }
    for v in ["core.uptime", "core.info", "system.listMethods", "dlg.list"] {
        assert!(VERBS.iter().any(|x| x.name == v), "{v} in the table");
    }
    // A command line siplb cannot read: exit status 2 and the usage (docs/CLI.md).
    for args in [&["ctl"][..], &["ctl", "--bogus", "core.uptime"]] {
        let out = Command::new(BIN).args(args).output().expect("siplb ctl");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage: siplb ctl"),
            "{out:?}"
        );
    }
    // No configuration file named, to run or to reach siplb: the same.
    for args in [&[][..], &["--check"], &["ctl", "core.uptime"]] {
        let out = Command::new(BIN).args(args).output().expect("siplb");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--config <file> is required"), "{err}");
        assert!(err.contains("Usage: siplb"), "{err}");
    }
}

/// `system.listMethods` (kamcmd's) from the running siplb: every verb with its description,
/// and in JSON an array of `{name, arguments, description}`; an unknown verb is an error
/// naming the close matches, exit status 1.
#[test]
fn list_methods_and_close_matches_for_an_unknown_verb() {
    let net = Net::new(61);
    let (_dir, mut siplb) = start("ctl-methods", net);
    let text = siplb.ctl(&["system.listMethods"]).expect("listMethods");
    assert_eq!(text.lines().count(), VERBS.len(), "{text}");
    for v in VERBS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{} ", v.name)) && l.ends_with(v.help)),
            "{} in {text}",
            v.name
        );
    }
    let list = json(&siplb.ctl(&["--json", "system.listMethods"]).unwrap());
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), VERBS.len());
    assert_eq!(list[0]["name"], VERBS[0].name);
    assert_eq!(list[0]["description"], VERBS[0].help);
    assert!(list.iter().all(|v| v["arguments"].is_string()));
    assert_eq!(
        siplb
            .ctl(&["system.methodHelp", "core.uptime"])
            .unwrap()
            .trim(),
        VERBS.iter().find(|v| v.name == "core.uptime").unwrap().help
    );

    let (code, out, err) = ctl_status(&siplb, &["dlg.lst"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("unknown command `dlg.lst`; did you mean: dlg.list?"),
        "{err}"
    );
    let (code, _, err) = ctl_status(&siplb, &["profile_size"]);
    assert_eq!(code, 1);
    assert!(err.contains("dlg.profile_get_size"), "{err}");
    let (code, _, err) = ctl_status(&siplb, &["xyzzy"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown command `xyzzy` (`siplb ctl --help` lists the verbs)"),
        "{err}"
    );
    siplb.assert_alive();
}

/// `core.version`, `core.uptime` (Kamailio's shape), `core.info`; `--json` after the verb is
/// the same as before it.
#[test]
fn core_verbs_and_json_after_the_verb() {
    let net = Net::new(62);
    let (dir, mut siplb) = start("ctl-core", net);
    let version = format!("siplb {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(siplb.ctl(&["core.version"]).unwrap(), version);

    std::thread::sleep(Duration::from_millis(1100));
    let up = siplb.ctl(&["core.uptime"]).unwrap();
    let lines: Vec<&str> = up.lines().collect();
    assert_eq!(lines.len(), 5, "{up}");
    assert_eq!(lines[0], "{");
    assert!(lines[1].starts_with("\tnow: "), "{up}");
    assert!(lines[2].starts_with("\tup_since: "), "{up}");
    // C's ctime: `Thu Nov 13 10:04:05 2025`.
    for l in &lines[1..3] {
        let t = l.split_once(": ").unwrap().1;
        assert_eq!(t.len(), 24, "{t}");
        assert_eq!(t.split_whitespace().count(), 5, "{t}");
    }
    let secs: u64 = lines[3]
        .strip_prefix("\tuptime: ")
        .expect("uptime")
        .parse()
        .unwrap();
    assert!((1..60).contains(&secs), "{up}");
    let upj = json(&siplb.ctl(&["core.uptime", "--json"]).unwrap());
    assert!(upj["uptime"].as_u64().unwrap() >= secs);
    assert!(upj["now"].is_string() && upj["up_since"].is_string());

    let info = json(&siplb.ctl(&["--json", "core.info"]).unwrap());
    assert_eq!(info["version"], version.trim());
    assert_eq!(info["pid"], siplb.pid());
    assert_eq!(info["workers"], 2);
    assert_eq!(info["steering"]["mode"], "off");
    assert_eq!(info["steering"]["active"], "software");
    assert_eq!(
        info["listen"],
        serde_json::json!([format!("udp:{}", net.siplb())])
    );
    assert_eq!(info["config"], siplb.config.display().to_string());
    assert_eq!(
        info["control_socket"],
        dir.0.join("siplb.ctl").display().to_string()
    );
    let text = siplb.ctl(&["core.info"]).unwrap();
    assert!(text.contains("\tworkers: 2\n"), "{text}");
    assert!(
        text.contains("\tsteering: {\n\t\tmode: off\n\t\tactive: software\n\t}\n"),
        "{text}"
    );

    // --json after the verb, and after its arguments.
    for args in [
        &["core.info"][..],
        &["stats.get_statistics", "core:hand_offs"][..],
        &["dlg.profile_get_size", "total"][..],
        &["system.listMethods"][..],
    ] {
        let before: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let after: Vec<&str> = args
            .iter()
            .copied()
            .chain(std::iter::once("--json"))
            .collect();
        let (b, a) = (siplb.ctl(&before).unwrap(), siplb.ctl(&after).unwrap());
        assert_eq!(b, a, "{args:?}");
        json(&a);
    }
    assert_eq!(siplb.ctl(&["dlg.list", "--json"]).unwrap(), "[]\n");

    // Statistics asked for twice are printed once; a group that does not exist among others
    // is left out; alone, it is an error.
    let both = siplb
        .ctl(&["stats.get_statistics", "core:hand_offs", "core:", "nosuch:"])
        .unwrap();
    assert_eq!(both.matches("core:hand_offs = ").count(), 1, "{both}");
    assert!(both.lines().all(|l| l.starts_with("core:")), "{both}");
    let e = siplb
        .ctl(&["stats.get_statistics", "nosuch:", "core:nosuch"])
        .unwrap_err();
    assert!(
        e.contains("no statistic matches `nosuch:`, `core:nosuch`"),
        "{e}"
    );
    let e = siplb.ctl(&["core.version", "extra"]).unwrap_err();
    assert!(e.ends_with("usage: core.version\n"), "{e:?}");

    // A file being edited that does not pass the checks still names the socket: the verb
    // runs, the problem is said on stderr, and a reload refuses it.
    let good = std::fs::read_to_string(&siplb.config).unwrap();
    std::fs::write(
        &siplb.config,
        format!("{good}\n[metrics]\nlisten_typo = 1\n"),
    )
    .unwrap();
    let (code, out, err) = ctl_status(&siplb, &["core.version"]);
    assert_eq!((code, out.as_str()), (0, version.as_str()), "{err}");
    assert!(
        err.contains("warning") && err.contains("listen_typo"),
        "{err}"
    );
    let (code, _, err) = ctl_status(&siplb, &["cfg.reload"]);
    assert!(code != 0 && err.contains("listen_typo"), "{code}: {err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    // Not even TOML (an unclosed table header): the socket is read line by line, and the
    // reload's refusal, siplb's own, names the line.
    let broken = format!(
        "{good}
[[customer]
name = \"x\"
"
    );
    std::fs::write(&siplb.config, &broken).unwrap();
    let (code, out, err) = ctl_status(&siplb, &["core.version"]);
    assert_eq!((code, out.as_str()), (0, version.as_str()), "{err}");
    let line = broken.lines().count() - 1;
    let (code, _, err) = ctl_status(&siplb, &["cfg.reload"]);
    assert!(
        code != 0 && err.contains(&format!(":{line}:")),
        "{code}: {err}"
    );
    siplb.assert_alive();
}

/// `dlg.list` and `dlg.profile_list` in JSON: profiles as `{name, value}` objects, variables
/// as an object; the kamcmd text keeps its lines.
#[test]
fn dialog_json_is_structured_all_the_way_down() {
    let net = Net::new(63);
    let (_dir, mut siplb) = start("ctl-dialogs", net);
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let (gw1, gw2) = (udp(&net.gw(1)), udp(&net.gw(2)));
    let me = format!("{}:{}", net.ip(), net.caller_port());
    caller
        .send_to(&invite(&me, &net.siplb(), "ctl-1@x", "c1"), net.siplb())
        .unwrap();
    // The gateway's 100 Trying stops the INVITE's retransmissions.
    let deadline = Instant::now() + Duration::from_secs(5);
    'wait: loop {
        for g in [&gw1, &gw2] {
            for (_, m) in drain(g, Duration::from_millis(100)) {
                if m.starts_with(b"INVITE ") {
                    let t = String::from_utf8_lossy(&m);
                    let mut r = String::from("SIP/2.0 100 Trying\r\n");
                    for l in t.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
                        let n = l
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase();
                        if ["via", "from", "to", "call-id", "cseq"].contains(&n.as_str()) {
                            r += l;
                            r += "\r\n";
                        }
                    }
                    r += "Content-Length: 0\r\n\r\n";
                    g.send_to(r.as_bytes(), net.siplb()).unwrap();
                    break 'wait;
                }
            }
        }
        assert!(Instant::now() < deadline, "no INVITE at the gateways");
    }
    for args in [&["dlg.list"][..], &["dlg.profile_list", "total"][..]] {
        let mut with_json: Vec<&str> = args.to_vec();
        with_json.push("--json");
        let list = json(&siplb.ctl(&with_json).unwrap());
        let list = list.as_array().expect("array");
        assert_eq!(list.len(), 1, "{args:?}: {list:?}");
        let d = &list[0];
        assert_eq!(d["call-id"], "ctl-1@x");
        assert_eq!(
            d["profiles"],
            serde_json::json!([
                {"name": "account", "value": "local"},
                {"name": "total", "value": null},
            ]),
            "{d}"
        );
        assert!(d["variables"].is_object(), "{d}");
        assert!(d["caller"].is_object(), "{d}");
        let text = siplb.ctl(args).unwrap();
        assert!(
            text.contains("\tprofiles: {\n\t\taccount: local\n\t\ttotal\n\t}\n"),
            "{text}"
        );
    }
    siplb.assert_alive();
}

/// A wrapper that runs siplb with umask `mask` (the test's own umask stays as it is).
fn with_umask(dir: &Path, mask: &str) -> String {
    let p = dir.join(format!("siplb-umask-{mask}"));
    std::fs::write(&p, format!("#!/bin/sh\numask {mask}\nexec {BIN} \"$@\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn socket_mode(siplb: &Siplb) -> (u32, u32) {
    let m = std::fs::metadata(siplb.dir.join("siplb.ctl")).expect("control socket");
    (m.mode() & 0o7777, m.gid())
}

/// The control socket is 0660 whether siplb starts with umask 000 or 077; `[control] mode`
/// and `[control] group` set it; an unknown group is a configuration error naming the key.
#[test]
fn control_socket_is_0660_whatever_the_umask() {
    let net = Net::new(64);
    let dir = TempDir::new("ctl-perms");
    // SAFETY: getegid has no preconditions.
    let my_gid = unsafe { libc::getegid() };
    for mask in ["000", "077"] {
        let bin = with_umask(&dir.0, mask);
        let mut siplb = Siplb::start(&bin, &dir.0, &config(net, 1, ""));
        assert_eq!(socket_mode(&siplb), (0o660, my_gid), "umask {mask}");
        assert_eq!(
            siplb.ctl(&["core.version"]).unwrap().trim(),
            format!("siplb {}", env!("CARGO_PKG_VERSION"))
        );
        siplb.stop();
    }
    // A group siplb may hand the socket to: root's (the tests run as root) or its own.
    let group = if my_gid == 0 { "daemon" } else { "" };
    let (group, gid) = if group.is_empty() {
        (gid_name(my_gid), my_gid)
    } else {
        (group.to_string(), gid_of(group))
    };
    let bin = with_umask(&dir.0, "000");
    let text = config(net, 1, "").replacen(
        "socket = \"siplb.ctl\"",
        &format!("socket = \"siplb.ctl\"\nmode = \"0640\"\ngroup = \"{group}\""),
        1,
    );
    let mut siplb = Siplb::start(&bin, &dir.0, &text);
    assert_eq!(socket_mode(&siplb), (0o640, gid));
    siplb.stop();

    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        config(net, 1, "").replacen(
            "socket = \"siplb.ctl\"",
            "socket = \"siplb.ctl\"\ngroup = \"no-such-group-siplb\"",
            1,
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&bad)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`control.group`: no group named `no-such-group-siplb`"),
        "{err}"
    );
}

fn gid_of(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getgrnam returns a pointer into static storage, read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    assert!(!g.is_null(), "group {name}");
    unsafe { (*g).gr_gid }
}

fn gid_name(gid: u32) -> String {
    // SAFETY: as in gid_of.
    let g = unsafe { libc::getgrgid(gid) };
    assert!(!g.is_null(), "gid {gid}");
    unsafe { std::ffi::CStr::from_ptr((*g).gr_name) }
        .to_string_lossy()
        .into_owned()
}

/// A client that connects and says nothing, or sends its request a byte at a time, holds up
/// nobody: `siplb ctl` is answered meanwhile, the slow client too once its line is whole,
/// and the silent ones get an error when their time to send is up. (Served one connection at
/// a time, each with 5 s per read, four silent clients made `siplb ctl` give up after 10 s.)
#[test]
fn silent_and_slow_clients_do_not_hold_up_the_control_socket() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let net = Net::new(80);
    let (_dir, siplb) = start("ctl-slow", net);
    let sock = siplb.config.parent().unwrap().join("siplb.ctl");
    let silent: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    let slow = UnixStream::connect(&sock).expect("connect");
    let dripping = std::thread::spawn(move || {
        for b in b"core.vers" {
            (&slow).write_all(&[*b]).expect("write a byte");
            std::thread::sleep(Duration::from_millis(200));
        }
        slow
    });
    std::thread::sleep(Duration::from_millis(300));
    let version = format!("siplb {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(siplb.ctl(&["core.version"]).unwrap(), version);

    let mut slow = dripping.join().unwrap();
    slow.write_all(b"ion\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("ok\n{version}"));

    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "error no request line within 5 s\n");
    }

    // More idle connections than siplb reads at once: the one idle longest gives way to each
    // new one, so `siplb ctl` is answered (before, it waited for their time to be up).
    let idle: Vec<UnixStream> = (0..70)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(siplb.ctl(&["core.version"]).unwrap(), version);
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = String::new();
    first.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply,
        "error 64 connections were waiting and this one had sent no request line longest\n"
    );
    drop(idle);

    // A request longer than siplb takes is answered with an error, not a reset connection;
    // `siplb ctl` says so itself.
    let mut long = UnixStream::connect(&sock).expect("connect");
    let line = format!("core.version {}\n", "a".repeat(5000));
    long.write_all(line.as_bytes()).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = String::new();
    long.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "error request longer than 4096 bytes\n");
    let e = siplb.ctl(&["core.version", &"a".repeat(5000)]).unwrap_err();
    assert!(e.contains("siplb takes at most 4095"), "{e}");
}

/// A control socket in a folder that does not exist yet: siplb makes the folder, as
/// `--check` promises by making and removing it.
#[test]
fn the_control_sockets_folder_is_made_at_start() {
    let net = Net::new(25);
    let dir = TempDir::new("ctl-folder");
    let text =
        config(net, 2, "").replace("socket = \"siplb.ctl\"", "socket = \"run/new/siplb.ctl\"");
    assert!(text.contains("run/new/siplb.ctl"), "{text}");
    let mut siplb = Siplb::start(BIN, &dir.0, &text);
    assert!(dir.0.join("run/new/siplb.ctl").exists());
    siplb.assert_alive();
    siplb.stop();
}
