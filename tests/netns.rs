//! Two network namespaces joined by a veth pair, for the tests that need a real interface
//! (XDP, MTU, checksum offload).

use std::process::{Command, Stdio};

/// Runs `ip <args>` (iproute2) and asserts it succeeded.
#[track_caller]
pub fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2)");
    assert!(st.success(), "ip {args:?} failed");
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
            ip(&["-n", ns, "link", "set", dev, "mtu", &mtu.to_string()]);
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
        add_address(&self.a, &self.dev_a, &self.ip_a, host)
    }

    /// Adds another address to the `b` side (`198.18.<n>.<host>`).
    pub fn add_b(&self, host: u8) -> String {
        add_address(&self.b, &self.dev_b, &self.ip_b, host)
    }
}

fn add_address(ns: &str, dev: &str, like: &str, host: u8) -> String {
    let net = like.rsplit_once('.').expect("dotted").0;
    let addr = format!("{net}.{host}");
    ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
    addr
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs a python3 `script` in namespace `ns` (none: here), asserts it succeeded, and
/// returns what it printed, trimmed.
#[track_caller]
pub fn python_in(ns: Option<&str>, script: &str) -> String {
    let out = crate::in_netns(ns, "python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The MAC of interface `dev` in namespace `ns`.
pub fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-br", "link", "show", dev])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    let m = text
        .split_whitespace()
        .nth(2)
        .expect("a MAC in ip -br link");
    let mut b = [0u8; 6];
    for (i, p) in m.split(':').enumerate() {
        b[i] = u8::from_str_radix(p, 16).expect("hex");
    }
    b
}
