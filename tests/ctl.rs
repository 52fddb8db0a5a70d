//! `siplb ctl` and its control socket through the real binary: the socket's permissions
//! whatever the umask. Nets 61..64.

use siplb_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

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
