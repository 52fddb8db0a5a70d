//! Dialogs, profiles and per-account limits end to end: the real siplb binary on the shipped
//! `examples/limits.toml` (moved to the test's loopback address), two workers, sipp callers
//! and gateways, `siplb ctl` as an operator would use it.

use siplb_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// `examples/limits.toml` on `net`, 2 workers, software steering, a fixed owner hash, and
/// `edit` applied to the text.
fn limits_config(net: Net, edit: impl Fn(String) -> String) -> String {
    let src = std::fs::read_to_string(repo().join("examples/limits.toml")).expect("limits.toml");
    let src = src
        .replace("127.0.0.1:5062", &net.siplb())
        .replace("127.0.0.1", &net.ip())
        .replace(
            "socket = \"/tmp/siplb-limits.ctl\"",
            "socket = \"siplb.ctl\"",
        )
        .replace(
            "count = 0            # one per core, each pinned",
            "count = 2\npin = false",
        )
        .replace("mode = \"auto\"", "mode = \"off\"\nhash_key = 12345");
    assert!(src.contains("count = 2"), "limits.toml changed shape");
    edit(src)
}

fn start(tag: &str, net: Net, edit: impl Fn(String) -> String) -> (TempDir, Siplb) {
    require_sipp();
    let dir = TempDir::new(tag);
    let siplb = Siplb::start(BIN, &dir.0, &limits_config(net, edit));
    (dir, siplb)
}

/// A sipp `-inf` file: one `account;dialled` line per call, used in order.
fn accounts(dir: &Path, name: &str, lines: &[(String, String)]) -> String {
    let mut text = String::from("SEQUENTIAL\n");
    for (a, n) in lines {
        text += &format!("{a};{n};\n");
    }
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write csv");
    p.to_str().expect("utf-8").into()
}

/// Prometheus samples by `name{labels}`.
struct Scrape(Vec<(String, u64)>);

impl Scrape {
    fn get(&self, series: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == series).map(|(_, v)| *v)
    }

    /// The sum over every series of `name` (all label values).
    fn sum(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

/// `GET /metrics` over a plain TCP connection.
fn scrape(addr: &str) -> Scrape {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: siplb\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Scrape(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            // Whole-number samples only: what these tests read (counters, gauges).
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    )
}

fn ctl_u64(siplb: &Siplb, args: &[&str]) -> u64 {
    let out = siplb.ctl(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{args:?} printed {out:?}"))
}

/// Waits (at most 10 s) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn account_limit_5_answers_5_of_20_calls_and_everything_returns_to_zero() {
    let _g = serial();
    let net = Net::new(31);
    let metrics = format!("{}:9260", net.ip());
    let (dir, mut siplb) = start("limit5", net, |s| {
        s.replace(
            "[dialog]",
            &format!("[metrics]\nlisten = \"{metrics}\"\n\n[dialog]"),
        )
    });
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let inf = accounts(&dir.0, "a.csv", &[("A".into(), "5550100".into())]);
    std::thread::scope(|s| {
        let uac = s.spawn(|| {
            Sipp::caller(
                &dir.0,
                net,
                "uac.xml",
                20,
                100,
                &["-inf", &inf, "-d", "5000"],
                60,
            )
        });
        // All 20 INVITEs are out within 0.2 s; the 5 answered calls are held 5 s.
        eventually("20 INVITEs decided and 5 calls acknowledged", || {
            let st = siplb.stats();
            st["limits:rejected"] == 15
                && st["dialog:active_dialogs"] == 5
                && siplb
                    .ctl(&["dlg.stats_active"])
                    .is_ok_and(|a| a.contains("\tongoing: 5\n"))
        });
        assert_eq!(
            ctl_u64(&siplb, &["dlg.profile_get_size", "account", "A"]),
            5
        );
        assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "total"]), 5);
        assert_eq!(
            siplb
                .ctl(&["--json", "dlg.profile_get_size", "account", "A"])
                .unwrap(),
            "5\n"
        );
        let list = siplb.ctl(&["dlg.profile_list", "account", "A"]).unwrap();
        assert_eq!(list.matches("\th_entry: ").count(), 5, "{list}");
        for field in [
            "\th_id: ",
            "\tref: ",
            "\tcall-id: ",
            "\tfrom_uri: sip:A@",
            "\tto_uri: sip:5550100@",
            "\tstate: 4\n",
            "\tstart_ts: ",
            "\tinit_ts: ",
            "\tend_ts: 0\n",
            "\tduration: ",
            "\ttimeout: ",
            "\tlifetime: 43200\n",
            "\tdflags: ",
            "\tsflags: ",
            "\tiflags: ",
            "\tcaller: {\n\t\ttag: ",
            "\t\tcontact: sip:A@",
            "\t\tcseq: 1\n",
            "\tcallee: {\n\t\ttag: ",
            "\tprofiles: {\n\t\taccount: A\n\t\ttotal\n\t\tlocal\n\t}",
            "\tvariables: {\n\t\tSetupTime: ",
            "\t\tAnswerTime: ",
        ] {
            assert_eq!(list.matches(field).count(), 5, "{field:?} in {list}");
        }
        // Both legs have these.
        for field in ["\t\troute_set:", "\t\tsocket: udp:"] {
            assert_eq!(list.matches(field).count(), 10, "{field:?} in {list}");
        }
        let json = siplb
            .ctl(&["--json", "dlg.profile_list", "account", "A"])
            .unwrap();
        assert!(json.starts_with("[{\"h_entry\":"), "{json}");
        let active = siplb.ctl(&["dlg.stats_active"]).unwrap();
        assert!(active.contains("\tongoing: 5\n\tall: 5\n"), "{active}");
        // The same through Prometheus (per-worker series summed).
        let m = scrape(&metrics);
        assert_eq!(m.sum("siplb_dialog_active_dialogs"), 5);
        assert_eq!(m.sum("siplb_dialog_ongoing"), 5);
        assert_eq!(m.sum("siplb_limits_rejected_total"), 15);
        assert_eq!(
            m.get("siplb_dialog_profile_size{profile=\"account\"}"),
            Some(5)
        );
        assert_eq!(
            m.get("siplb_dialog_profile_size{profile=\"total\"}"),
            Some(5)
        );
        assert!(m.get("siplb_core_hand_offs_total{worker=\"1\"}").is_some());
        assert!(m.sum("siplb_core_rcv_requests_total") >= 20);
        let uac = uac.join().expect("uac thread");
        assert_eq!((uac.ok(), uac.failed()), (5, 15), "uac: {:?}", uac.fields);
    });
    uas1.finish();
    uas2.finish();
    siplb.assert_alive();
    eventually("dialogs ended", || {
        siplb.stats()["dialog:active_dialogs"] == 0
    });
    assert_eq!(
        ctl_u64(&siplb, &["dlg.profile_get_size", "account", "A"]),
        0
    );
    assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "total"]), 0);
    assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_max", "account", "A"]), 5);
    let st = siplb.stats();
    assert_eq!(st["dialog:processed_dialogs"], 5);
    assert_eq!(st["dialog:early_dialogs"], 0);
    assert_eq!(st["limits:rejected"], 15);
    assert_eq!(st["core:overload_503"], 0);
    assert!(siplb.ctl(&["dlg.list"]).unwrap().is_empty());
}

#[test]
fn calls_are_classified_by_dialled_prefix() {
    let _g = serial();
    let net = Net::new(32);
    let (dir, mut siplb) = start("classify", net, |s| s);
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let numbers = ["0044201", "0049301", "030123", "0221456", "0897", "5551234"];
    let lines: Vec<(String, String)> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("c{i}"), n.to_string()))
        .collect();
    let inf = accounts(&dir.0, "c.csv", &lines);
    std::thread::scope(|s| {
        let uac = s.spawn(|| {
            Sipp::caller(
                &dir.0,
                net,
                "uac.xml",
                numbers.len() as u32,
                50,
                &["-inf", &inf, "-d", "3000"],
                60,
            )
        });
        eventually("6 calls up", || {
            ctl_u64(&siplb, &["dlg.profile_get_size", "total"]) == 6
        });
        assert_eq!(
            ctl_u64(&siplb, &["dlg.profile_get_size", "international"]),
            2
        );
        assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "domestic"]), 3);
        assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "local"]), 1);
        let intl = siplb.ctl(&["dlg.profile_list", "international"]).unwrap();
        assert!(intl.contains("to_uri: sip:0044201@"), "{intl}");
        assert!(intl.contains("to_uri: sip:0049301@"), "{intl}");
        let uac = uac.join().expect("uac thread");
        assert_eq!((uac.ok(), uac.failed()), (6, 0), "uac: {:?}", uac.fields);
    });
    uas1.finish();
    uas2.finish();
    siplb.assert_alive();
    eventually("dialogs ended", || {
        ctl_u64(&siplb, &["dlg.profile_get_size", "total"]) == 0
    });
    for p in ["international", "domestic", "local"] {
        assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", p]), 0, "{p}");
    }
}

#[test]
fn dialog_timeout_sends_bye_to_both_sides() {
    let _g = serial();
    let net = Net::new(33);
    let (dir, mut siplb) = start("timeout", net, |s| {
        s.replace("default_timeout_s = 43200", "default_timeout_s = 2")
    });
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_timeout.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_timeout.xml", &[]),
    );
    let lines: Vec<(String, String)> = (0..20)
        .map(|i| (format!("t{i}"), format!("555{i:04}")))
        .collect();
    let inf = accounts(&dir.0, "t.csv", &lines);
    let uac = Sipp::caller(&dir.0, net, "uac_timeout.xml", 20, 20, &["-inf", &inf], 60);
    let (s1, _) = uas1.finish();
    let (s2, _) = uas2.finish();
    siplb.assert_alive();
    assert_eq!(
        (uac.ok(), uac.failed()),
        (20, 0),
        "callers got BYE: {:?}",
        uac.fields
    );
    assert_eq!(s1.ok() + s2.ok(), 20, "gateways got BYE");
    let st = siplb.stats();
    assert_eq!(st["dialog:expired_dialogs"], 20);
    assert_eq!(st["dialog:active_dialogs"], 0);
    assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "total"]), 0);
    assert!(siplb.ctl(&["dlg.list"]).unwrap().is_empty());
}

#[test]
fn a_full_account_table_refuses_the_101st_account_only() {
    let _g = serial();
    let net = Net::new(34);
    let (dir, mut siplb) = start("table", net, |s| {
        s.replace("account_table = 100000", "account_table = 100")
    });
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let lines: Vec<(String, String)> = (0..101)
        .map(|i| (format!("user{i:03}"), "5550000".to_string()))
        .collect();
    let inf = accounts(&dir.0, "u.csv", &lines);
    // 101 calls in half a second, each held 4 s: the 101st arrives while the first 100
    // accounts hold the table.
    let uac = Sipp::caller(
        &dir.0,
        net,
        "uac.xml",
        101,
        200,
        &["-inf", &inf, "-d", "4000"],
        60,
    );
    uas1.finish();
    uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (100, 1), "uac: {:?}", uac.fields);
    let st = siplb.stats();
    assert_eq!(st["limits:account_table_full"], 1);
    assert_eq!(st["limits:rejected"], 1);
    assert_eq!(st["dialog:processed_dialogs"], 100);
    assert_eq!(
        ctl_u64(&siplb, &["dlg.profile_get_size", "account", "user100"]),
        0
    );
    eventually("dialogs ended", || {
        siplb.stats()["dialog:active_dialogs"] == 0
    });
}

/// 2,000 INVITEs from 3 accounts (limit 50 each) as fast as sipp sends them, on 2 workers:
/// no account is ever over 50, by the server's own high-water mark and by sampling the
/// profile while the calls are held.
#[test]
fn racing_invites_never_pass_an_account_limit() {
    let _g = serial();
    let net = Net::new(35);
    let (dir, mut siplb) = start("race", net, |s| s.replace("max = 5", "max = 50"));
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let lines: Vec<(String, String)> = ["r0", "r1", "r2"]
        .iter()
        .map(|a| (a.to_string(), "5551000".to_string()))
        .collect();
    let inf = accounts(&dir.0, "r.csv", &lines);
    let mut seen_max = [0u64; 3];
    std::thread::scope(|s| {
        let uac = s.spawn(|| {
            Sipp::caller(
                &dir.0,
                net,
                "uac.xml",
                2000,
                5000,
                &["-inf", &inf, "-d", "1000"],
                120,
            )
        });
        while !uac.is_finished() {
            for (i, m) in seen_max.iter_mut().enumerate() {
                let n = ctl_u64(
                    &siplb,
                    &["dlg.profile_get_size", "account", &format!("r{i}")],
                );
                *m = (*m).max(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let uac = uac.join().expect("uac thread");
        assert_eq!(uac.ok() + uac.failed(), 2000, "uac: {:?}", uac.fields);
        assert!(
            uac.ok() >= 150,
            "each account got calls through: {:?}",
            uac.fields
        );
        let st = siplb.stats();
        assert_eq!(
            st["limits:rejected"],
            uac.failed(),
            "every failure is a limit reply"
        );
    });
    uas1.finish();
    uas2.finish();
    siplb.assert_alive();
    for (i, m) in seen_max.iter().enumerate() {
        let account = format!("r{i}");
        let high = ctl_u64(&siplb, &["dlg.profile_get_max", "account", &account]);
        assert!(high <= 50, "{account}: high-water mark {high}");
        assert_eq!(high, 50, "{account}: the limit was reached");
        assert!(*m <= 50, "{account}: sampled {m}");
    }
    eventually("dialogs ended", || {
        siplb.stats()["dialog:active_dialogs"] == 0
    });
    for i in 0..3 {
        let account = format!("r{i}");
        assert_eq!(
            ctl_u64(&siplb, &["dlg.profile_get_size", "account", &account]),
            0
        );
    }
}

/// `dlg.end_dlg` and `dlg.terminate_dlg` end answered calls with BYE to both sides; bad
/// arguments get exit status 1 and a message.
#[test]
fn operator_ends_dialogs_by_id_and_by_tags() {
    let _g = serial();
    let net = Net::new(36);
    let (dir, mut siplb) = start("admin", net, |s| s);
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas_timeout.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas_timeout.xml", &[]),
    );
    let lines: Vec<(String, String)> = (0..4)
        .map(|i| (format!("op{i}"), format!("555{i:04}")))
        .collect();
    let inf = accounts(&dir.0, "o.csv", &lines);
    std::thread::scope(|s| {
        let uac =
            s.spawn(|| Sipp::caller(&dir.0, net, "uac_timeout.xml", 4, 20, &["-inf", &inf], 60));
        eventually("4 calls acknowledged", || {
            siplb
                .ctl(&["dlg.stats_active"])
                .is_ok_and(|a| a.contains("\tongoing: 4\n"))
        });
        let json = siplb.ctl(&["--json", "dlg.list"]).unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_str(&json).expect("JSON");
        assert_eq!(list.len(), 4, "{json}");
        for (i, d) in list.iter().enumerate() {
            if i % 2 == 0 {
                let (e, id) = (d["h_entry"].to_string(), d["h_id"].to_string());
                // The first with Kamailio's extra_hdrs, as an operator types them.
                let extra: &[&str] = match i {
                    0 => &["Reason:", "Q.850;cause=16\\r\\nX-Ended-By:", "noc"],
                    _ => &[],
                };
                let args = [&["dlg.end_dlg", &e, &id][..], extra].concat();
                siplb.ctl(&args).expect("end_dlg");
            } else {
                let cid = d["call-id"].as_str().unwrap();
                let ft = d["caller"]["tag"].as_str().unwrap();
                let tt = d["callee"]["tag"].as_str().unwrap();
                siplb
                    .ctl(&["dlg.terminate_dlg", cid, ft, tt])
                    .expect("terminate_dlg");
            }
        }
        let uac = uac.join().expect("uac thread");
        assert_eq!(
            (uac.ok(), uac.failed()),
            (4, 0),
            "callers got BYE: {:?}",
            uac.fields
        );
    });
    let (s1, _) = uas1.finish();
    let (s2, _) = uas2.finish();
    assert_eq!(s1.ok() + s2.ok(), 4, "gateways got BYE");
    siplb.assert_alive();
    assert_eq!(siplb.stats()["dialog:active_dialogs"], 0);
    assert_eq!(ctl_u64(&siplb, &["dlg.profile_get_size", "total"]), 0);
    for i in 0..4 {
        let account = format!("op{i}");
        assert_eq!(
            ctl_u64(&siplb, &["dlg.profile_get_size", "account", &account]),
            0
        );
    }
    for (args, msg) in [
        (&["dlg.end_dlg", "0", "999"][..], "dialog not found"),
        (
            &["dlg.end_dlg", "x"][..],
            "usage: dlg.end_dlg <h_entry> <h_id>",
        ),
        (
            &["dlg.end_dlg", "0", "1", "Call-ID:", "x"][..],
            "extra_hdrs: siplb writes `Call-ID` itself",
        ),
        (&["dlg.profile_get_size", "nope"][..], "no profile `nope`"),
        (
            &["dlg.profile_get_size", "total", "x"][..],
            "profile `total` has no values",
        ),
        (&["dlg.nonsense"][..], "unknown command `dlg.nonsense`"),
    ] {
        let e = siplb.ctl(args).expect_err("an error");
        assert!(e.contains(msg), "{args:?}: {e}");
    }
}

/// Each answered call ends with one `Call_End` event, in the event file and POSTed to a real
/// HTTP server, with BillSec equal to sipp's hold time to the second.
#[test]
fn call_end_events_carry_billsec_to_the_file_and_the_http_endpoint() {
    let _g = serial();
    let net = Net::new(37);
    let http_addr = format!("{}:8080", net.ip());
    let http = HttpSink::start(&http_addr);
    let (dir, mut siplb) = start("events", net, |s| {
        s.replace(
            "[[customer]]",
            &format!(
                "[events]\nfile = \"events.jsonl\"\nhttp_post = \"http://{http_addr}/call_end\"\n\n\
                 [[dialog.var]]\nname = \"Trunk\"\nvalue = \"acme\"\nat = \"start\"\n\n[[customer]]"
            ),
        )
    });
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let lines: Vec<(String, String)> = (0..10)
        .map(|i| (format!("e{i}"), format!("555{i:04}")))
        .collect();
    let inf = accounts(&dir.0, "e.csv", &lines);
    let uac = Sipp::caller(
        &dir.0,
        net,
        "uac.xml",
        10,
        10,
        &["-inf", &inf, "-d", "3000"],
        60,
    );
    uas1.finish();
    uas2.finish();
    siplb.assert_alive();
    assert_eq!((uac.ok(), uac.failed()), (10, 0), "uac: {:?}", uac.fields);
    eventually("10 events written", || {
        siplb.stats()["events:written"] == 10
    });
    eventually("10 events POSTed", || http.bodies().len() == 10);
    let file = std::fs::read_to_string(dir.0.join("events.jsonl")).expect("event file");
    assert_eq!(file.lines().count(), 10, "{file}");
    let mut call_ids = std::collections::HashSet::new();
    for body in http.bodies() {
        let e: serde_json::Value = serde_json::from_str(&body).expect("JSON event");
        assert_eq!(e["Event"], "Call_End");
        assert_eq!(e["BillSec"], 3, "hold time 3 s: {e}");
        assert_eq!(e["Trunk"], "acme");
        assert!(e["From"].as_str().unwrap().starts_with("sip:e"), "{e}");
        assert!(e["To"].as_str().unwrap().starts_with("sip:555"), "{e}");
        let (s, a, end) = (
            e["SetupTime"].as_u64().unwrap(),
            e["AnswerTime"].as_u64().unwrap(),
            e["EndTime"].as_u64().unwrap(),
        );
        assert!(s <= a && a < end, "{e}");
        assert!(file.contains(e["CallID"].as_str().unwrap()));
        call_ids.insert(e["CallID"].as_str().unwrap().to_string());
    }
    assert_eq!(call_ids.len(), 10, "one event per call");
    let st = siplb.stats();
    assert_eq!((st["events:dropped"], st["events:http_failed"]), (0, 0));
}

/// The real binary refuses a misconfigured dialog section, naming the file, the line and the
/// key, with exit status 1 (`--check` and a normal start alike).
#[test]
fn misconfigured_profiles_are_refused_with_file_line_and_key() {
    let dir = TempDir::new("badconfig");
    // (text replaced, replacement, the line the error must name, message)
    let cases = [
        (
            "profile = \"account\"\nmax = 5",
            "profile = \"total\"\nvalue = \"x\"\nmax = 5",
            "value = \"x\"",
            "`limits.profile.value`: profile `total` is declared in dialog.profiles_no_value",
        ),
        (
            "profile = \"local\"\n",
            "profile = \"local\"\nvalue = \"x\"\n",
            "value = \"x\"",
            "`dialog.rule.value`: profile `local` is declared in dialog.profiles_no_value",
        ),
        (
            "[[customer]]",
            "[[dialog.var]]\nname = \"Trunk\"\nvalue = 7\n\n[[customer]]",
            "value = 7",
            "`dialog.var.value`: variable `Trunk` = 7: dialog variables hold strings only",
        ),
    ];
    for (from, to, marker, want) in cases {
        let text = limits_config(Net::new(38), |s| s.replacen(from, to, 1));
        let path = dir.0.join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let line = text.lines().position(|l| l == marker).expect("marker line") + 1;
        for args in [&["--check"][..], &[][..]] {
            let out = std::process::Command::new(BIN)
                .arg("--config")
                .arg(&path)
                .args(args)
                .output()
                .expect("run siplb");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            let prefix = format!("siplb: {}:{line}: ", path.display());
            assert!(err.starts_with(&prefix), "{err} should start with {prefix}");
            assert!(err.contains(want), "{err}");
        }
    }
}
