//! `/metrics` and the statistics through the real binary: the whole text checked line by line
//! (`exposition.rs`), `HEAD`, the latency summary, build and process families, the
//! statistics whose names said something else than what they counted, and a scanner's idle
//! connections. Nets 65–68 and 20.

mod exposition;

use exposition::Exposition;
use siplb_tests::*;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");
const QUIET: Duration = Duration::from_millis(300);

/// siplb on `net` with `/metrics` on port 9260 of the same address; T1 of 2 s, so that no
/// retransmission crosses a hand-made exchange. `/metrics` is bound before the control socket
/// answers, so it is up when `Siplb::start` returns.
fn start(tag: &str, net: Net) -> (TempDir, Siplb, String) {
    let dir = TempDir::new(tag);
    let metrics = format!("{}:9260", net.ip());
    let extra = format!("[timers]\nt1_ms = 2000\n\n[metrics]\nlisten = \"{metrics}\"\n");
    let siplb = Siplb::start(BIN, &dir.0, &config(net, 2, &extra));
    (dir, siplb, metrics)
}

/// `method /metrics` over a plain TCP connection: the head and the body.
fn ask(addr: &str, method: &str) -> (String, String) {
    let mut c = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    write!(c, "{method} /metrics HTTP/1.1\r\nHost: siplb\r\n\r\n").expect("send");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

/// `GET /metrics`, checked whole by the exposition checker.
fn scrape(addr: &str) -> Exposition {
    let (head, body) = ask(addr, "GET");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The sum over workers of a per-worker family.
fn sum(exp: &Exposition, name: &str) -> f64 {
    exp.named(name).map(|s| s.value).sum()
}

/// The ACK of a non-2xx final `resp` to `inv` (RFC 3261 §17.1.1.3: the INVITE's Via and
/// Request-URI, the response's To).
fn ack_of(inv: &[u8], resp: &[u8]) -> Vec<u8> {
    let inv = text(inv);
    let to = header_lines(resp, "To")[0].clone();
    let mut out = String::new();
    for (i, l) in inv.split("\r\n").enumerate() {
        if i == 0 {
            out += &l.replacen("INVITE", "ACK", 1);
        } else if l.to_ascii_lowercase().starts_with("to:") {
            out += to.trim_end();
        } else if l.to_ascii_lowercase().starts_with("cseq:") {
            out += "CSeq: 1 ACK";
        } else {
            out += l;
        }
        out += "\r\n";
    }
    out.truncate(out.len() - 2);
    out.into_bytes()
}

/// The whole text is valid; every family has HELP and TYPE; the build, process and latency
/// families are there, in seconds, and the `_us` gauges are not.
#[test]
fn the_whole_text_is_valid_and_has_build_process_and_latency() {
    let _serial = serial();
    let net = Net::new(65);
    let (_dir, siplb, metrics) = start("metrics-text", net);
    // Traffic on both workers: OPTIONS answered by whichever owns its Call-ID.
    let caller = udp(&format!("{}:{}", net.ip(), net.caller_port()));
    for i in 0..20 {
        let opts = text(&invite(
            &format!("{}:{}", net.ip(), net.caller_port()),
            &net.siplb(),
            &format!("opts-{i}"),
            &format!("o{i}"),
        ))
        .replace("INVITE", "OPTIONS");
        caller.send_to(opts.as_bytes(), net.siplb()).unwrap();
    }
    let answered = drain(&caller, QUIET);
    assert_eq!(answered.len(), 20, "every OPTIONS answered");
    // The latency is published once a second.
    std::thread::sleep(Duration::from_millis(1300));
    let exp = scrape(&metrics);

    for (name, (kind, help)) in &exp.families {
        assert!(!help.is_empty() && !help.contains('`'), "{name}: {help}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
    let families = |n: &str| exp.families.get(n).map(|(k, _)| k.as_str());
    assert_eq!(families("siplb_core_latency_seconds"), Some("summary"));
    assert_eq!(families("siplb_core_latency_max_seconds"), Some("gauge"));
    assert_eq!(families("siplb_build_info"), Some("gauge"));
    assert_eq!(families("process_cpu_seconds_total"), Some("counter"));
    assert!(
        !exp.families.keys().any(|n| n.ends_with("_us")),
        "no µs gauges left: {:?}",
        exp.families.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        exp.value(
            "siplb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // The summary: a count for every datagram, quantiles in seconds (well under 1 s here,
    // above 0), p50 ≤ p99 ≤ max.
    assert_eq!(sum(&exp, "siplb_core_latency_seconds_count"), 20.0);
    assert!(sum(&exp, "siplb_core_latency_seconds_sum") > 0.0);
    for w in ["0", "1"] {
        let count = exp
            .value("siplb_core_latency_seconds_count", &[("worker", w)])
            .unwrap();
        let q = |q: &str| {
            exp.value(
                "siplb_core_latency_seconds",
                &[("worker", w), ("quantile", q)],
            )
            .unwrap()
        };
        let max = exp
            .value("siplb_core_latency_max_seconds", &[("worker", w)])
            .unwrap();
        if count == 0.0 {
            assert!(q("0.5").is_nan());
            continue;
        }
        assert!(
            q("0.5") > 0.0 && q("0.5") <= q("0.99") && q("0.99") <= max && max < 1.0,
            "worker {w}: {} {} {max}",
            q("0.5"),
            q("0.99")
        );
    }
    // `siplb ctl` keeps the µs view.
    let stats = siplb.stats();
    assert!(stats["core:latency_p50_us"] > 0, "{stats:?}");

    // Process: started within the last minute, its memory and fds as /proc says.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = exp.value("process_start_time_seconds", &[]).unwrap();
    assert!(
        started <= now + 1.0 && started > now - 60.0,
        "{started} vs {now}"
    );
    let rss = exp.value("process_resident_memory_bytes", &[]).unwrap();
    let rss_kib = siplb.rss_kib() as f64;
    assert!(
        rss > rss_kib * 1024.0 * 0.5 && rss < rss_kib * 1024.0 * 2.0,
        "{rss} vs {rss_kib} KiB"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", siplb.pid()))
        .unwrap()
        .count() as f64;
    let open = exp.value("process_open_fds", &[]).unwrap();
    assert!((open - fds).abs() <= 2.0, "{open} vs {fds}");
    assert!(exp.value("process_max_fds", &[]).unwrap() >= open);
    assert!(exp.value("process_cpu_seconds_total", &[]).unwrap() >= 0.0);
}

/// `HEAD /metrics`: 200, the GET's headers, no body.
#[test]
fn head_metrics_answers_200_without_a_body() {
    let _serial = serial();
    let (_dir, _siplb, metrics) = start("metrics-head", Net::new(66));
    let (head, body) = ask(&metrics, "HEAD");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert_eq!(body, "", "no body");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("Content-Length in {head}"));
    assert!(length > 1000, "{head}");
    let (head, _) = ask(&metrics, "POST");
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
}

/// `core:forbidden` counts the 403s sent; the ACK of a 403 is a dropped request.
#[test]
fn forbidden_counts_the_403s_not_their_acks() {
    let _serial = serial();
    let net = Net::new(67);
    let (_dir, siplb, metrics) = start("metrics-forbidden", net);
    // Not a customer's address: 127.0.67.9.
    let stranger_addr = format!("127.0.{}.9:5070", 67);
    let stranger = udp(&stranger_addr);
    for i in 0..3 {
        let inv = invite(
            &stranger_addr,
            &net.siplb(),
            &format!("f-{i}"),
            &format!("f{i}"),
        );
        stranger.send_to(&inv, net.siplb()).unwrap();
        let got = drain(&stranger, QUIET);
        assert_eq!(got.len(), 1, "one reply");
        assert_eq!(status_of(&got[0].1), Some(403), "{}", text(&got[0].1));
        stranger
            .send_to(&ack_of(&inv, &got[0].1), net.siplb())
            .unwrap();
        assert!(
            drain(&stranger, QUIET).is_empty(),
            "the ACK is not answered"
        );
    }
    let stats = siplb.stats();
    assert_eq!(stats["core:forbidden"], 3, "{stats:?}");
    assert_eq!(stats["core:drop_requests"], 3, "{stats:?}");
    let exp = scrape(&metrics);
    assert_eq!(sum(&exp, "siplb_core_forbidden_total"), 3.0);
}

/// After a failed call, the dialog is not active but its record lingers, and its transaction
/// waits out its timers: the gauges are named for that, and the old names are gone.
#[test]
fn record_gauges_say_what_they_count() {
    let _serial = serial();
    let net = Net::new(68);
    let (_dir, siplb, metrics) = start("metrics-records", net);
    let caller_addr = format!("{}:{}", net.ip(), net.caller_port());
    let caller = udp(&caller_addr);
    let (gw1, gw2) = (udp(&net.gw(1)), udp(&net.gw(2)));
    let inv = invite(&caller_addr, &net.siplb(), "records-1", "r1");
    caller.send_to(&inv, net.siplb()).unwrap();
    let mut at_gw: Vec<(&UdpSocket, Vec<u8>)> = Vec::new();
    for g in [&gw1, &gw2] {
        for (_, m) in drain(g, QUIET) {
            at_gw.push((g, m));
        }
    }
    assert_eq!(at_gw.len(), 1, "the INVITE at one gateway");
    let (gw, fwd) = &at_gw[0];
    gw.send_to(&respond(fwd, 486, "Busy Here", "gw", ""), net.siplb())
        .unwrap();
    let busy = drain(&caller, QUIET)
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| status_of(m) == Some(486))
        .expect("486 relayed");
    caller.send_to(&ack_of(&inv, &busy), net.siplb()).unwrap();
    std::thread::sleep(QUIET);

    let stats = siplb.stats();
    assert_eq!(stats["dialog:active_dialogs"], 0, "{stats:?}");
    assert_eq!(stats["dialog:failed_dialogs"], 1, "{stats:?}");
    assert_eq!(
        stats["core:call_records"], 1,
        "the record lingers: {stats:?}"
    );
    assert!(stats["tmx:inuse_transactions"] >= 1, "{stats:?}");
    for old in ["core:active_calls", "tmx:active_transactions"] {
        assert!(!stats.contains_key(old), "{old} is gone: {stats:?}");
    }
    let exp = scrape(&metrics);
    assert_eq!(sum(&exp, "siplb_core_call_records"), 1.0);
    assert!(sum(&exp, "siplb_tmx_inuse_transactions") >= 1.0);
    assert_eq!(sum(&exp, "siplb_dialog_active_dialogs"), 0.0);
    let help = &exp.families["siplb_core_call_records"].1;
    assert!(help.contains("linger"), "{help}");
}

/// What a scanner does to `/metrics`: 200 connections that never send. siplb holds 64 of
/// them at once (the rest are closed as they come) and closes those after 10 s; a scrape
/// afterwards is answered. Before, each was a task and a descriptor for as long as the
/// scanner liked.
#[test]
fn idle_connections_to_metrics_are_bounded_and_closed() {
    let _g = serial();
    let (_dir, siplb, metrics) = start("metrics-idle", Net::new(20));
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", siplb.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&metrics).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = fds();
    assert!(
        during <= before + 64 + 4,
        "{during} descriptors with 200 idle connections (from {before})"
    );
    // Closed by siplb after 10 s: each reads the end of its stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for mut c in idle {
        c.set_read_timeout(Some(
            deadline.saturating_duration_since(std::time::Instant::now()) + QUIET,
        ))
        .unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(c.read(&mut b), Ok(0)),
            "an idle connection is closed"
        );
    }
    assert!(fds() <= before + 4, "{} descriptors left", fds());
    scrape(&metrics);
}
