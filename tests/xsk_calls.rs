//! siplb with `workers.io = "af_xdp"` on a real veth pair, in native and in generic XDP mode:
//! sipp calling through it, the caller's side on AF_XDP (the layer alone is `xsk.rs`). Each
//! test makes its namespaces (198.18.0.0/15) and deletes them.

use siplb_tests::*;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// A bridge has no native XDP: with `workers.io = "af_xdp"` and `steering.xdp_mode =
/// "native"` siplb refuses to start, and says which key to change.
#[test]
fn af_xdp_on_a_bridge_in_native_mode_names_the_xdp_mode() {
    let _g = serial();
    let pair = NetnsPair::new(60);
    let b = pair.b.as_str();
    ip(&["-n", b, "link", "add", "sl60br", "type", "bridge"]);
    ip(&["-n", b, "addr", "add", "198.18.61.2/24", "dev", "sl60br"]);
    ip(&["-n", b, "link", "set", "sl60br", "up"]);
    let dir = TempDir::new("xsk-bridge");
    let config = af_xdp_config(&pair, "native", &pair.ip_b, "", "")
        .replace(&format!("{}:5060", pair.ip_b), "198.18.61.2:5060");
    std::fs::write(dir.0.join("siplb.toml"), &config).expect("config");
    let out = in_netns(Some(b), BIN)
        .arg("--config")
        .arg(dir.0.join("siplb.toml"))
        .current_dir(&dir.0)
        .output()
        .expect("siplb");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("steering.xdp_mode = \"native\" could not attach")
            && text.contains("steering.xdp_mode = \"generic\""),
        "{text}"
    );
}

/// siplb on `b` with 2 workers on the AF_XDP path, the caller on `a` as its customer
/// (`customer` more lines of its table), gateways on `gw`:5081 and :5082, `extra` tables.
fn af_xdp_config(
    pair: &NetnsPair,
    xdp_mode: &str,
    gw: &str,
    extra: &str,
    customer: &str,
) -> String {
    format!(
        r#"[listen]
sip = ["{b}:5060"]

[workers]
count = 2
pin = false
io = "af_xdp"

[steering]
mode = "bpf"
hash_key = 12345
xdp_mode = "{xdp_mode}"

[control]
socket = "siplb.ctl"

{extra}
[[customer]]
name = "caller"
sources = ["{a}/32"]
{customer}

[[gateway_set]]
name = "trunk"
gateways = ["{gw}:5081", "{gw}:5082"]
"#,
        a = pair.ip_a,
        b = pair.ip_b,
    )
}

/// siplb on the AF_XDP path (`b`), two gateways beside it on `b` playing `uas`, and a caller
/// on `a`: what the caller sends arrives through the workers' AF_XDP sockets and what siplb
/// sends back to the caller leaves through them (the gateways, on siplb's own host, are
/// reached through the kernel).
struct AfXdpCalls {
    siplb: Siplb,
    gateways: (Sipp, Sipp),
    dir: TempDir,
    pair: NetnsPair,
}

impl AfXdpCalls {
    fn start(n: u8, xdp_mode: &str, uas: &str) -> AfXdpCalls {
        require_sipp();
        let pair = NetnsPair::new(n);
        pair.tx_checksum_off_a();
        let dir = TempDir::new(&format!("xsk-{n}-{xdp_mode}"));
        let config = af_xdp_config(&pair, xdp_mode, &pair.ip_b, "", "");
        let siplb = Siplb::start_in(Some(&pair.b), BIN, &dir.0, &config);
        let gw = |k: u16| format!("{}:{}", pair.ip_b, 5080 + k);
        let uas1 = Sipp::uas_in(Some(&pair.b), &dir.0, "uas1", &gw(1), uas, &[]);
        let uas2 = Sipp::uas_in(Some(&pair.b), &dir.0, "uas2", &gw(2), uas, &[]);
        AfXdpCalls {
            siplb,
            gateways: (uas1, uas2),
            dir,
            pair,
        }
    }

    /// `calls` calls at `rate` from the caller: its sipp (named `name`).
    fn calls(&self, name: &str, calls: u32, rate: u32) -> SippStats {
        Sipp::uac_in(
            Some(&self.pair.a),
            &self.dir.0,
            name,
            &format!("{}:5060", self.pair.ip_b),
            &self.pair.ip_a,
            "uac.xml",
            calls,
            rate,
            &[],
            120,
        )
    }

    /// Stops everything: siplb's statistics as it stops.
    fn stop(mut self) -> std::collections::HashMap<String, u64> {
        // The XDP counters are read every 200 ms.
        std::thread::sleep(Duration::from_millis(600));
        drop(self.gateways);
        self.siplb.assert_alive();
        let stats = self.siplb.stats();
        self.siplb.stop();
        stats
    }
}

/// `calls` calls at `rate` through [`AfXdpCalls`]: the caller's sipp, and siplb's statistics
/// as it stops.
fn af_xdp_calls(
    n: u8,
    xdp_mode: &str,
    uas: &str,
    calls: u32,
    rate: u32,
) -> (SippStats, std::collections::HashMap<String, u64>) {
    let run = AfXdpCalls::start(n, xdp_mode, uas);
    let uac = run.calls("uac", calls, rate);
    (uac, run.stop())
}

fn calls_through_af_xdp(n: u8, xdp_mode: &str) {
    let _g = serial();
    let (uac, stats) = af_xdp_calls(n, xdp_mode, "uas.xml", 500, 100);
    eprintln!(
        "{xdp_mode}: xsk_rx {} xsk_tx {} redirected_xsk {} passed {}",
        stats["xdp:xsk_rx"], stats["xdp:xsk_tx"], stats["xdp:redirected_xsk"], stats["xdp:passed"]
    );
    assert_eq!((uac.ok(), uac.failed()), (500, 0), "{stats:?}");
    // INVITE, ACK and BYE of every call came in through AF_XDP, each to its owner's socket.
    assert!(stats["xdp:xsk_rx"] >= 3 * 500, "{stats:?}");
    assert_eq!(
        stats["xdp:xsk_rx"], stats["xdp:redirected_xsk"],
        "{stats:?}"
    );
    assert_eq!(stats["xdp:xsk_rx_bad"], 0, "{stats:?}");
    assert_eq!(stats["core:hand_offs"], 0, "{stats:?}");
    // 100, 180, 200 of the INVITE and 200 of the BYE went back to the caller; the first
    // few may take the kernel's path while the caller's MAC is looked up.
    assert!(stats["xdp:xsk_tx"] >= 4 * 500 - 20, "{stats:?}");
}

/// Replies longer than the link's MTU (a 180 and a 200 with a 1600-byte header) go back to the
/// caller through the kernel's path, which fragments them: an AF_XDP frame cannot be.
#[test]
fn replies_longer_than_the_mtu_reach_the_caller_fragmented() {
    let _g = serial();
    let (uac, stats) = af_xdp_calls(55, "generic", "uas_big.xml", 20, 10);
    assert_eq!((uac.ok(), uac.failed()), (20, 0), "{stats:?}");
}

/// The caller moves to another MAC without telling anyone (its entry for siplb's address made
/// permanent, so it sends no ARP; no gratuitous ARP either). siplb's neighbour entry for it
/// goes STALE; the datagram that siplb then sends through the kernel has the kernel probe
/// the old MAC, find it gone and resolve the new one, and calls go on.
#[test]
fn a_caller_that_moves_to_another_mac_is_followed() {
    let _g = serial();
    let run = AfXdpCalls::start(57, "generic", "uas.xml");
    let p = &run.pair;
    // Short neighbour timers on siplb's side (the kernel's defaults take up to a minute).
    for (key, value) in [
        ("base_reachable_time_ms", "1000"),
        ("delay_first_probe_time", "1"),
        ("retrans_time_ms", "200"),
    ] {
        let st = in_netns(Some(&p.b), "sysctl")
            .args(["-qw", &format!("net.ipv4.neigh.{}.{key}={value}", p.dev_b)])
            .status()
            .expect("sysctl");
        assert!(st.success(), "sysctl {key}");
    }
    let before = run.calls("before", 20, 10);
    assert_eq!((before.ok(), before.failed()), (20, 0));
    let siplb_mac = mac_of(&p.b, &p.dev_b).map(|b| format!("{b:02x}")).join(":");
    // A new MAC flushes the interface's neighbour entries: the permanent one comes after.
    ip(&[
        "-n",
        &p.a,
        "link",
        "set",
        "dev",
        &p.dev_a,
        "address",
        "02:00:00:5e:00:39",
    ]);
    ip(&[
        "-n",
        &p.a,
        "neigh",
        "replace",
        &p.ip_b,
        "lladdr",
        &siplb_mac,
        "nud",
        "permanent",
        "dev",
        &p.dev_a,
    ]);
    // siplb's entry goes STALE after the reachable time.
    std::thread::sleep(Duration::from_secs(3));
    let neigh = std::process::Command::new("ip")
        .args(["-n", &p.b, "neigh", "show", "dev", &p.dev_b])
        .output()
        .expect("ip neigh");
    eprintln!(
        "siplb's neighbours: {}",
        String::from_utf8_lossy(&neigh.stdout)
    );
    let after = run.calls("after", 20, 10);
    let stats = run.stop();
    assert_eq!((after.ok(), after.failed()), (20, 0), "{stats:?}");
    assert!(
        stats["xdp:xsk_tx"] >= 4 * 40 - 40,
        "still on AF_XDP: {stats:?}"
    );
}

/// A frame for siplb's address but another host's MAC (what a port in promiscuous mode sees)
/// is not taken by the AF_XDP path, as the kernel's path does not take it: of OPTIONS sent
/// as raw frames, only those to siplb's MAC are answered.
#[test]
fn a_frame_for_another_mac_is_not_taken() {
    let _g = serial();
    let run = AfXdpCalls::start(58, "generic", "uas.xml");
    let p = &run.pair;
    let siplb_mac = mac_of(&p.b, &p.dev_b);
    let script = format!(
        "import socket, struct\n\
         def csum(b):\n\
         \x20   if len(b) % 2: b += b'\\0'\n\
         \x20   s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n\
         \x20   while s >> 16: s = (s & 0xffff) + (s >> 16)\n\
         \x20   return ~s & 0xffff\n\
         src, dst = socket.inet_aton('{a}'), socket.inet_aton('{b}')\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         r.bind(('{a}', 0))\n\
         port = r.getsockname()[1]\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('{dev}', 0))\n\
         own = s.getsockname()[4]\n\
         def frame(mac, i):\n\
         \x20   m = ('OPTIONS sip:ping@{b} SIP/2.0\\r\\nVia: SIP/2.0/UDP {a}:%d;branch=z9hG4bK-r%d\\r\\n'\n\
         \x20        'From: <sip:raw@{a}>;tag=r%d\\r\\nTo: <sip:ping@{b}>\\r\\nCall-ID: r%d@{a}\\r\\n'\n\
         \x20        'CSeq: 1 OPTIONS\\r\\nMax-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n') % (port, i, i, i)\n\
         \x20   udp = struct.pack('!HHHH', port, 5060, 8 + len(m), 0) + m.encode()\n\
         \x20   c = csum(src + dst + struct.pack('!BBH', 0, 17, len(udp)) + udp) or 0xffff\n\
         \x20   udp = udp[:6] + struct.pack('!H', c) + udp[8:]\n\
         \x20   ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src, dst)\n\
         \x20   ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]\n\
         \x20   return mac + own + b'\\x08\\x00' + ip + udp\n\
         for i in range(5):\n\
         \x20   s.send(frame(b'\\x02\\x00\\x00\\x5e\\x00\\x99', i))\n\
         for i in range(5, 8):\n\
         \x20   s.send(frame(bytes({siplb_mac:?}), i))\n\
         r.settimeout(1.0)\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       r.recv(65536)\n\
         \x20       n += 1\n\
         except socket.timeout:\n\
         \x20   pass\n\
         print(n)\n",
        a = p.ip_a,
        b = p.ip_b,
        dev = p.dev_a,
    );
    let answered = python_in(Some(&p.a), &script);
    let stats = run.stop();
    assert_eq!(answered, "3", "only the frames to siplb's MAC: {stats:?}");
    assert_eq!(stats["xdp:xsk_rx_bad"], 5, "{stats:?}");
}

#[test]
fn calls_through_siplb_on_the_af_xdp_path_native() {
    calls_through_af_xdp(54, "native");
}

#[test]
fn calls_through_siplb_on_the_af_xdp_path_generic() {
    calls_through_af_xdp(55, "generic");
}

/// CANCEL, an account limit and CDRs on the AF_XDP path: 50 calls cancelled after ringing,
/// then 20 held calls of one account of which the limit lets 5 through; the CDRs say so.
fn cancel_limits_and_accounting_on_af_xdp(n: u8, xdp_mode: &str) {
    let _g = serial();
    require_sipp();
    let pair = NetnsPair::new(n);
    pair.tx_checksum_off_a();
    let gw = pair.add_a(3);
    let dir = TempDir::new(&format!("xsk-features-{xdp_mode}"));
    let acc = dir.0.join("acc");
    // An account limit of 5 (the From user) and CDRs into `acc`.
    let extra = format!(
        "[dialog]\nprofiles_with_value = [\"account\"]\n\n[[limits.profile]]\nprofile = \"account\"\n\
         max = 5\n\n[acc]\ncdrs = true\nsinks = [\"files\"]\nformats = [\"csv\"]\ndir = \"{}\"\n",
        acc.display()
    );
    let config = af_xdp_config(&pair, xdp_mode, &gw, &extra, "account_key = \"from_user\"");
    let mut siplb = Siplb::start_in(Some(&pair.b), BIN, &dir.0, &config);
    let target = format!("{}:5060", pair.ip_b);
    let gateways = |scenario: &str| {
        (
            Sipp::uas_in(
                Some(&pair.a),
                &dir.0,
                "uas1",
                &format!("{gw}:5081"),
                scenario,
                &[],
            ),
            Sipp::uas_in(
                Some(&pair.a),
                &dir.0,
                "uas2",
                &format!("{gw}:5082"),
                scenario,
                &[],
            ),
        )
    };
    // CANCEL after ringing: 487 to the caller, CANCEL and the proxy's ACK to the gateway.
    let (u1, u2) = gateways("uas_cancel.xml");
    let uac = Sipp::uac_in(
        Some(&pair.a),
        &dir.0,
        "uac_cancel",
        &target,
        &pair.ip_a,
        "uac_cancel.xml",
        50,
        50,
        &[],
        60,
    );
    let ((s1, _), (s2, _)) = (u1.finish(), u2.finish());
    assert_eq!((uac.ok(), uac.failed()), (50, 0), "uac: {:?}", uac.fields);
    assert_eq!(
        s1.ok() + s2.ok(),
        50,
        "each gateway call saw CANCEL and ACK"
    );
    // One account, 20 calls held 3 s: 5 answered, 15 refused by the limit.
    let inf = dir.0.join("a.csv");
    std::fs::write(&inf, "SEQUENTIAL\nA;5550100;\n").unwrap();
    let (u1, u2) = gateways("uas.xml");
    let uac = Sipp::uac_in(
        Some(&pair.a),
        &dir.0,
        "uac_limit",
        &target,
        &pair.ip_a,
        "uac.xml",
        20,
        100,
        &["-inf", inf.to_str().unwrap(), "-d", "3000"],
        60,
    );
    drop((u1, u2));
    assert_eq!(uac.ok(), 5, "uac: {:?}", uac.fields);
    std::thread::sleep(Duration::from_millis(600));
    siplb.assert_alive();
    let stats = siplb.stats();
    siplb.stop();
    assert_eq!(stats["limits:rejected"], 15, "{stats:?}");
    assert_eq!(stats["dialog:active_dialogs"], 0, "{stats:?}");
    assert!(
        stats["xdp:xsk_rx"] > 0 && stats["xdp:xsk_tx"] > 0,
        "{stats:?}"
    );
    assert_eq!(
        stats["xdp:xsk_rx"], stats["xdp:redirected_xsk"],
        "{stats:?}"
    );
    assert_eq!(stats["xdp:xsk_rx_bad"], 0, "{stats:?}");
    // Everything went through the sockets, the gateways' side included: 50 × (INVITE,
    // CANCEL) + 20 INVITEs + 5 × (ACK, BYE) from the caller, at least as many from siplb to
    // the gateways.
    assert!(stats["xdp:xsk_rx"] >= 100 + 20 + 10, "{stats:?}");
    // The XDP program's receive time came with every frame: siplb's latency figures cover
    // the AF_XDP path (and a wrong clock would give absurd ones).
    assert!(stats["core:latency_p50_us"] > 0, "{stats:?}");
    assert!(stats["core:latency_max_us"] < 5_000_000, "{stats:?}");
    let cdrs = std::fs::read_to_string(acc.join("cdrs.csv")).expect("cdrs.csv");
    let count = |d: &str| {
        cdrs.lines()
            .filter(|l| l.contains(&format!(",{d},")))
            .count()
    };
    assert_eq!(
        (
            count("cancelled"),
            count("answered"),
            count("rejected_limit")
        ),
        (50, 5, 15),
        "{cdrs}"
    );
}

#[test]
fn cancel_limits_and_accounting_on_the_af_xdp_path_native() {
    cancel_limits_and_accounting_on_af_xdp(56, "native");
}

#[test]
fn cancel_limits_and_accounting_on_the_af_xdp_path_generic() {
    cancel_limits_and_accounting_on_af_xdp(57, "generic");
}
