//! Gateway probing through the real binary (issue 13): two hand-made gateways that answer
//! OPTIONS (while told to) and count the INVITEs they get (answering each 486). A gateway
//! that stops answering is marked down (`dispatcher.list`), then gets no new INVITE, and is
//! used again once it answers; `dispatcher.set_state` takes one out and puts it back;
//! `dispatcher.reload` keeps the states. Assertions are on counts and order, never on elapsed
//! time (the waits poll for a state, with a generous deadline). Nets 90..95.

use serde_json::Value;
use siplb_tests::*;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// A gateway played by a thread: answers OPTIONS with 200 while `answer` is set, every
/// INVITE with 486 (counted once per Call-ID: no retransmission crosses an immediate answer).
struct Gateway {
    answer: Arc<AtomicBool>,
    invites: Arc<AtomicUsize>,
    options: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    fn start(addr: &str) -> Gateway {
        let s = udp(addr);
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let answer = Arc::new(AtomicBool::new(true));
        let invites = Arc::new(AtomicUsize::new(0));
        let options = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, i, o, st) = (
            answer.clone(),
            invites.clone(),
            options.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut seen: Vec<String> = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let m = &buf[..n];
                if m.starts_with(b"OPTIONS ") {
                    o.fetch_add(1, Ordering::Relaxed);
                    if a.load(Ordering::Relaxed) {
                        let _ = s.send_to(&respond(m, 200, "OK", "gw", ""), from);
                    }
                } else if m.starts_with(b"INVITE ") {
                    let id = header_lines(m, "Call-ID")[0].clone();
                    if !seen.contains(&id) {
                        seen.push(id);
                        i.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = s.send_to(&respond(m, 486, "Busy Here", "gw", ""), from);
                }
            }
        });
        Gateway {
            answer,
            invites,
            options,
            stop,
            thread: Some(thread),
        }
    }

    fn invites(&self) -> usize {
        self.invites.load(Ordering::Relaxed)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// siplb on `net` probing its gateways every 200 ms with a 100 ms timeout, down after 2
/// failures, up after 1 answer.
fn start(tag: &str, net: Net) -> (TempDir, Siplb) {
    let dir = TempDir::new(tag);
    let text = config(net, 2, "[timers]\nt1_ms = 2000\n").replace(
        "name = \"trunk\"\n",
        "name = \"trunk\"\nprobe_interval_ms = 200\nprobe_timeout_ms = 100\n\
         probe_down_after = 2\nprobe_up_after = 1\n",
    );
    let siplb = Siplb::start(BIN, &dir.0, &text);
    (dir, siplb)
}

/// The `DEST` of gateway `addr` in `dispatcher.list --json`.
fn dest(siplb: &Siplb, addr: &str) -> Value {
    let out = siplb
        .ctl(&["--json", "dispatcher.list"])
        .expect("dispatcher.list");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let uri = format!("sip:{addr}");
    v["RECORDS"][0]["SET"]["TARGETS"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["DEST"].clone())
        .find(|d| d["URI"] == uri.as_str())
        .unwrap_or_else(|| panic!("{uri} not in {out}"))
}

/// Waits until gateway `addr` shows `flags` (at most 10 s); its `DEST` then.
#[track_caller]
fn wait_flags(siplb: &Siplb, addr: &str, flags: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = dest(siplb, addr);
        if d["FLAGS"] == flags {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never became {flags}: {d}\n{}",
            siplb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` INVITEs (Call-IDs `<tag>-<i>`) one after the other, each waiting for its 486.
fn calls(caller: &UdpSocket, net: Net, tag: &str, n: usize) {
    let me = format!("{}:{}", net.ip(), net.caller_port());
    for i in 0..n {
        let call_id = format!("{tag}-{i}@x");
        caller
            .send_to(
                &invite(&me, &net.siplb(), &call_id, &format!("{tag}{i}")),
                net.siplb(),
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no final answer to {call_id}");
            let mut buf = [0u8; 4096];
            let Ok((len, _)) = caller.recv_from(&mut buf) else {
                continue;
            };
            let m = &buf[..len];
            if status_of(m).is_some_and(|c| c >= 200) && text(m).contains(&call_id) {
                assert_eq!(status_of(m), Some(486), "{}", text(m));
                break;
            }
        }
    }
}

/// New INVITEs each gateway got during `f`.
fn counted(g1: &Gateway, g2: &Gateway, f: impl FnOnce()) -> (usize, usize) {
    let (a, b) = (g1.invites(), g2.invites());
    f();
    (g1.invites() - a, g2.invites() - b)
}

#[test]
fn a_gateway_that_stops_answering_options_is_marked_down_gets_no_calls_and_comes_back() {
    let _g = serial();
    let net = Net::new(90);
    let (gw1, gw2) = (Gateway::start(&net.gw(1)), Gateway::start(&net.gw(2)));
    let (_dir, mut siplb) = start("dispatcher-probe", net);
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let (a1, a2) = (net.gw(1), net.gw(2));

    // Both answer: both up, both get calls.
    let d = wait_flags(&siplb, &a2, "AP");
    let d1 = dest(&siplb, &a1);
    assert_eq!(d1["FLAGS"], "AP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while dest(&siplb, &a2)["LAST_REPLY"] != 200 {
        assert!(Instant::now() < deadline, "no probe answered: {d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dest(&siplb, &a2)["RTT_MS"].is_number());
    let (n1, n2) = counted(&gw1, &gw2, || calls(&caller, net, "both", 20));
    assert_eq!(n1 + n2, 20);
    assert!(n1 > 0 && n2 > 0, "both used: {n1} {n2}");

    // gw2 stops answering OPTIONS: down after its probes time out, and then no new call.
    gw2.answer.store(false, Ordering::Relaxed);
    let d = wait_flags(&siplb, &a2, "IP");
    assert_eq!(d["LAST_REPLY"], "timeout");
    assert!(d["PROBES_FAILED"].as_u64().unwrap() >= 2, "{d}");
    let (n1, n2) = counted(&gw1, &gw2, || calls(&caller, net, "down", 20));
    assert_eq!((n1, n2), (20, 0), "no INVITE to the gateway marked down");
    // It is still probed while down.
    let probes = gw2.options.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw2.options.load(Ordering::Relaxed) == probes {
        assert!(Instant::now() < deadline, "no probe while down");
        std::thread::sleep(Duration::from_millis(50));
    }

    // It answers again: up, and used again.
    gw2.answer.store(true, Ordering::Relaxed);
    let d = wait_flags(&siplb, &a2, "AP");
    assert_eq!(d["LAST_REPLY"], 200);
    let (n1, n2) = counted(&gw1, &gw2, || calls(&caller, net, "back", 20));
    assert_eq!(n1 + n2, 20);
    assert!(n2 > 0, "used again: {n1} {n2}");
    assert_eq!(dest(&siplb, &a1)["FLAGS"], "AP", "gw1 never went down");
    siplb.assert_alive();
}

#[test]
fn set_state_takes_a_gateway_out_and_puts_it_back_and_dispatcher_reload_keeps_states() {
    let _g = serial();
    let net = Net::new(91);
    let (gw1, gw2) = (Gateway::start(&net.gw(1)), Gateway::start(&net.gw(2)));
    let (_dir, mut siplb) = start("dispatcher-set-state", net);
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    let (a1, a2) = (net.gw(1), net.gw(2));
    let uri2 = format!("sip:{a2}");

    // Inactive without probing: no calls, although it answers its probes (none are sent).
    siplb
        .ctl(&["dispatcher.set_state", "i", "trunk", &uri2])
        .expect("set_state i");
    assert_eq!(dest(&siplb, &a2)["FLAGS"], "IX");
    // The operator's hand is in the log, as the probes' changes are.
    let log = siplb.log();
    assert!(
        log.contains("dispatcher.set_state i: gateway of set `trunk` forced from AP to IX"),
        "{log}"
    );
    let (n1, n2) = counted(&gw1, &gw2, || calls(&caller, net, "forced", 10));
    assert_eq!((n1, n2), (10, 0));

    // Inactive, probed: its answers bring it back.
    siplb
        .ctl(&["dispatcher.set_state", "ip", "1", &uri2])
        .expect("set_state ip");
    wait_flags(&siplb, &a2, "AP");
    let (_, n2) = counted(&gw1, &gw2, || calls(&caller, net, "probed", 20));
    assert!(n2 > 0);

    // Disabled, then the gateway sets reloaded from the file: still disabled, no calls.
    siplb
        .ctl(&["dispatcher.set_state", "d", "trunk", &uri2])
        .expect("set_state d");
    let text = std::fs::read_to_string(&siplb.config).unwrap();
    std::fs::write(
        &siplb.config,
        text.replace("probe_timeout_ms = 100", "probe_timeout_ms = 150"),
    )
    .unwrap();
    let out = siplb
        .ctl(&["dispatcher.reload"])
        .expect("dispatcher.reload");
    assert!(
        out.contains("gateway sets reloaded: changed: gateway_set (~trunk);"),
        "{out}"
    );
    assert!(
        dest(&siplb, &a2)["FLAGS"]
            .as_str()
            .unwrap()
            .starts_with('D')
    );
    let (n1, n2) = counted(&gw1, &gw2, || calls(&caller, net, "disabled", 10));
    assert_eq!((n1, n2), (10, 0));
    siplb
        .ctl(&["dispatcher.set_state", "ap", "trunk", &uri2])
        .expect("set_state ap");
    assert_eq!(dest(&siplb, &a1)["FLAGS"], "AP");

    // Wrong arguments are errors naming what is wrong.
    let e = siplb
        .ctl(&["dispatcher.set_state", "z", "trunk", &uri2])
        .unwrap_err();
    assert!(e.contains("not a state"), "{e}");
    let e = siplb
        .ctl(&["dispatcher.set_state", "a", "nope", &uri2])
        .unwrap_err();
    assert!(e.contains("no gateway set"), "{e}");
    siplb.assert_alive();
}
