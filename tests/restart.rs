//! Dialogs that survive a restart (`dialog.journal_dir`): the real siplb binary with sipp
//! calls up, stopped and started again; the calls go on and end through the new process.

use siplb_tests::*;
use std::collections::HashSet;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

fn journal_config(net: Net) -> String {
    config(
        net,
        2,
        r#"[dialog]
journal_dir = "journal"

[limits]

[[limits.profile]]
profile = "account"
max = 1000

[acc]
cdrs = true
sinks = ["files"]
formats = ["jsonl"]
dir = "acc"

[shutdown]
dialogs = "leave"
"#,
    )
}

fn size_of_local(siplb: &Siplb) -> u64 {
    siplb
        .ctl(&["dlg.profile_get_size", "account", "local"])
        .expect("profile size")
        .trim()
        .parse()
        .expect("a number")
}

/// 100 answered calls up, siplb stopped (SIGTERM, `[shutdown] dialogs = "leave"`) and
/// started again: `dlg.list` shows the 100, the account's count is exact, every BYE routes
/// to its gateway, and each call gets one whole CDR, ended by the caller.
#[test]
fn a_restart_with_100_calls_up_keeps_them_and_their_cdrs_come_out_whole() {
    restart_with_100_calls_up(Net::new(122), false);
}

/// The same after kill -9.
#[test]
fn after_kill_9_the_100_calls_up_come_back_and_end_normally() {
    restart_with_100_calls_up(Net::new(123), true);
}

fn restart_with_100_calls_up(net: Net, kill: bool) {
    let _g = serial();
    require_sipp();
    let dir = TempDir::new(if kill { "restart-kill" } else { "restart" });
    let text = journal_config(net);
    let mut first = Siplb::start(BIN, &dir.0, &text);
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let calls = std::thread::scope(|s| {
        let uac = s.spawn(|| Sipp::caller(&dir.0, net, "uac.xml", 100, 50, &["-d", "10000"], 40));
        first.wait_stat("dialog:ongoing", 100, "100 calls up");
        first.wait_stat("dialog:journal_written", 200, "100 calls in the journal");
        if kill {
            // SAFETY: killing the siplb this test started, by its PID.
            unsafe { libc::kill(first.pid() as i32, libc::SIGKILL) };
            first.wait_exit(Duration::from_secs(5)).expect("killed");
        } else {
            first.stop();
        }
        assert!(
            !first.log().contains("recorded as ended by shutdown"),
            "{}",
            first.log()
        );
        let second = Siplb::start(BIN, &dir.0, &text);
        let list = second.ctl(&["dlg.list"]).expect("dlg.list");
        assert_eq!(list.matches("\th_entry: ").count(), 100, "{list}");
        assert_eq!(second.stat("dialog:active_dialogs"), 100);
        assert_eq!(size_of_local(&second), 100);
        assert!(
            second
                .log()
                .contains("dialogs restored from the restart journal")
        );
        let calls = uac.join().expect("uac");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while second.stat("dialog:active_dialogs") > 0 {
            assert!(std::time::Instant::now() < deadline, "calls still up");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(size_of_local(&second), 0, "every place given back once");
        drop(second);
        calls
    });
    assert_eq!(
        calls.ok(),
        100,
        "every call ended normally through the new siplb"
    );
    assert_eq!(calls.failed(), 0);
    let (_, c1) = uas1.finish();
    let (_, c2) = uas2.finish();
    assert_eq!(c1.get("5_BYE_Recv") + c2.get("5_BYE_Recv"), 100);
    let cdrs = std::fs::read_to_string(dir.0.join("acc/cdrs.jsonl")).expect("cdrs.jsonl");
    let rows: Vec<serde_json::Value> = cdrs
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 100, "one CDR per call, none at the stop");
    let ids: HashSet<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), 100);
    for r in &rows {
        assert_eq!(r["ended_by"], "caller", "{r}");
        assert_eq!(r["disposition"], "answered", "{r}");
        let billsec = r["billsec"].as_f64().expect("billsec");
        assert!((9.5..11.5).contains(&billsec), "{r}");
        assert!(
            r["invite_time"].as_str().is_some_and(|t| !t.is_empty()),
            "{r}"
        );
    }
}
