//! BPF end to end: siplb, its `sk_reuseport` program, its XDP guard and two sipp gateways
//! in one network namespace, the sipp caller in another, joined by a veth pair
//! (198.18.0.0/15); every test makes its namespaces and deletes them.

use siplb_tests::*;
use std::collections::HashMap;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// siplb on `b` with 2 workers, the caller on `a` as its customer, and ownership traced.
fn config(pair: &NetnsPair, mode: &str, xdp_mode: &str, trace: &std::path::Path) -> String {
    format!(
        r#"[listen]
sip = ["{b}:5060"]

[workers]
count = 2
pin = false

[steering]
mode = "{mode}"
hash_key = 12345
xdp_mode = "{xdp_mode}"

[control]
socket = "siplb.ctl"

[debug]
trace_ownership = "{trace}"

[[customer]]
name = "caller"
sources = ["{a}/32"]

[[gateway_set]]
name = "trunk"
gateways = ["{b}:5081", "{b}:5082"]
"#,
        a = pair.ip_a,
        b = pair.ip_b,
        trace = trace.display()
    )
}

/// What one run gave.
struct Outcome {
    ok: u64,
    failed: u64,
    /// siplb's statistics at the end.
    stats: HashMap<String, u64>,
    /// Trace lines that were handed off.
    handed: u64,
    /// Trace lines by kind (`INVITE INVITE`, `200 BYE`, …).
    kinds: HashMap<String, u64>,
}

/// Runs `calls` calls through siplb with steering `mode` and XDP `xdp_mode`, and `junk`
/// datagrams from the caller's namespace to the SIP port after them. Asserts that every
/// message was processed by the owner of its Call-ID.
fn run(n: u8, mode: &str, xdp_mode: &str, calls: u32, rate: u32, junk: u32) -> Outcome {
    require_sipp();
    let pair = NetnsPair::new(n);
    let dir = TempDir::new(&format!("bpf-{mode}-{xdp_mode}"));
    let trace = dir.0.join("trace");
    let text = config(&pair, mode, xdp_mode, &trace);
    let mut siplb = Siplb::start_in(Some(&pair.b), BIN, &dir.0, &text);
    let gw = |k: u16| format!("{}:{}", pair.ip_b, 5080 + k);
    let uas1 = Sipp::uas_in(Some(&pair.b), &dir.0, "uas1", &gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas_in(Some(&pair.b), &dir.0, "uas2", &gw(2), "uas.xml", &[]);
    let uac = Sipp::uac_in(
        Some(&pair.a),
        &dir.0,
        "uac",
        &format!("{}:5060", pair.ip_b),
        &pair.ip_a,
        "uac.xml",
        calls,
        rate,
        &[],
        120,
    );
    if junk > 0 {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range({junk}):\n    s.sendto(b'\\x16\\x03 junk %d' % i, ('{b}', 5060))\n",
            b = pair.ip_b
        );
        let st = in_netns(Some(&pair.a), "python3")
            .args(["-c", &script])
            .status()
            .expect("python3");
        assert!(st.success(), "junk sender");
        // The XDP counters are read every 200 ms.
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    drop((uas1, uas2));
    siplb.assert_alive();
    let stats = siplb.stats();
    siplb.stop();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut handed = 0;
    for w in 0..2 {
        let text = std::fs::read_to_string(format!("{}.{w}", trace.display())).expect("trace file");
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [processed, received, kind, cseq_method, call_id] = f[..] else {
                panic!("trace line {line:?}")
            };
            let processed: u32 = processed.parse().expect("worker id");
            assert_eq!(processed, owner(12345, call_id.as_bytes(), 2), "{line}");
            if processed.to_string() != received {
                handed += 1;
                *kinds
                    .entry(format!("handed {kind} {cseq_method}"))
                    .or_default() += 1;
            }
            *kinds.entry(format!("{kind} {cseq_method}")).or_default() += 1;
        }
    }
    assert_eq!(
        handed, stats["core:hand_offs"],
        "hand_offs counts the hand-offs"
    );
    Outcome {
        ok: uac.ok(),
        failed: uac.failed(),
        stats,
        handed,
        kinds,
    }
}

#[test]
fn bpf_steering_gives_every_message_to_its_owner_without_hand_offs() {
    let _g = serial();
    let o = run(40, "bpf", "off", 5000, 500, 0);
    assert_eq!(
        o.stats["core:steering_bpf"], 1,
        "the sk_reuseport program is attached"
    );
    assert_eq!((o.ok, o.failed), (5000, 0));
    assert_eq!(
        o.stats["core:hand_offs"], 0,
        "every datagram reached its owner's socket: {:?}",
        o.kinds
    );
    // Gateway responses and in-dialog requests were steered too.
    for k in [
        "INVITE INVITE",
        "ACK ACK",
        "BYE BYE",
        "180 INVITE",
        "200 INVITE",
        "200 BYE",
    ] {
        assert!(
            o.kinds.get(k).copied().unwrap_or(0) >= 5000,
            "{k}: {:?}",
            o.kinds
        );
    }
}

#[test]
fn without_bpf_steering_workers_hand_off_and_calls_still_succeed() {
    let _g = serial();
    let o = run(41, "off", "off", 1000, 200, 0);
    assert_eq!(o.stats["core:steering_bpf"], 0);
    assert_eq!((o.ok, o.failed), (1000, 0));
    let h = o.stats["core:hand_offs"];
    assert!(h > 0 && o.handed == h, "{h} hand-offs");
}

/// Junk on the SIP port is dropped by the XDP guard before it reaches siplb, while calls
/// complete.
fn xdp_guard_drops_junk(n: u8, xdp_mode: &str) {
    let o = run(n, "bpf", xdp_mode, 500, 100, 2000);
    assert_eq!(o.stats["xdp:attached"], 1);
    assert_eq!((o.ok, o.failed), (500, 0));
    assert_eq!(o.stats["xdp:drop_not_sip"], 2000, "{:?}", o.stats);
    assert_eq!(o.stats["core:bad_msg_hdr"], 0, "no junk reached siplb");
    // The guard is on the veth: it sees what the caller sends (INVITE, ACK, BYE of each
    // call); the gateways talk to siplb inside their namespace.
    assert!(o.stats["xdp:passed"] >= 500 * 3, "{:?}", o.stats);
    assert_eq!(
        o.stats["xdp:seen"],
        o.stats["xdp:passed"] + o.stats["xdp:drop_not_sip"],
        "{:?}",
        o.stats
    );
}

#[test]
fn xdp_guard_drops_junk_in_native_mode() {
    let _g = serial();
    xdp_guard_drops_junk(42, "native");
}

#[test]
fn xdp_guard_drops_junk_in_generic_mode() {
    let _g = serial();
    xdp_guard_drops_junk(43, "generic");
}
