//! BPF steering end to end: siplb, its `sk_reuseport` program and two sipp gateways in one
//! network namespace, the sipp caller in another, joined by a veth pair (198.18.0.0/15);
//! every test makes its namespaces and deletes them.

use siplb_tests::*;
use std::collections::HashMap;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// siplb on `b` with 2 workers, the caller on `a` as its customer, and ownership traced.
fn config(pair: &NetnsPair, mode: &str, trace: &std::path::Path) -> String {
    format!(
        r#"[listen]
sip = ["{b}:5060"]

[workers]
count = 2
pin = false

[steering]
mode = "{mode}"
hash_key = 12345

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

/// Runs `calls` calls through siplb with steering `mode`; returns (calls ok, failed,
/// `core:hand_offs`, `core:steering_bpf`, trace lines that were handed off, trace lines by
/// kind). Asserts that every message was processed by the owner of its Call-ID.
fn run(
    n: u8,
    mode: &str,
    calls: u32,
    rate: u32,
) -> (u64, u64, u64, u64, u64, HashMap<String, u64>) {
    require_sipp();
    let pair = NetnsPair::new(n);
    let dir = TempDir::new(&format!("bpf-{mode}"));
    let trace = dir.0.join("trace");
    let mut siplb = Siplb::start_in(Some(&pair.b), BIN, &dir.0, &config(&pair, mode, &trace));
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
    (
        uac.ok(),
        uac.failed(),
        stats["core:hand_offs"],
        stats["core:steering_bpf"],
        handed,
        kinds,
    )
}

#[test]
fn bpf_steering_gives_every_message_to_its_owner_without_hand_offs() {
    let _g = serial();
    let (ok, failed, hand_offs, bpf, _, kinds) = run(40, "bpf", 5000, 500);
    assert_eq!(bpf, 1, "the sk_reuseport program is attached");
    assert_eq!((ok, failed), (5000, 0));
    assert_eq!(
        hand_offs, 0,
        "every datagram reached its owner's socket: {kinds:?}"
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
        assert!(kinds.get(k).copied().unwrap_or(0) >= 5000, "{k}: {kinds:?}");
    }
}

#[test]
fn without_bpf_steering_workers_hand_off_and_calls_still_succeed() {
    let _g = serial();
    let (ok, failed, hand_offs, bpf, handed, _) = run(41, "off", 1000, 200);
    assert_eq!(bpf, 0);
    assert_eq!((ok, failed), (1000, 0));
    assert!(
        hand_offs > 0 && handed == hand_offs,
        "{hand_offs} hand-offs"
    );
}
