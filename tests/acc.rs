//! Accounting end to end: the real siplb binary with `[acc]` (as `examples/acc.toml` has it),
//! driven by sipp, its records read back from `<dir>/<table>.csv` (RFC 4180, parsed here) and
//! `.jsonl`, which must agree. Answered, busy, cancelled and limit-refused calls, a BYE that
//! gets no answer, 10,000 calls, SIGTERM and kill -9 in the middle of a run, and a full disk.
//!
//! Tests take `serial()` (and the `acc` nets 85–89) so that two sipp loads never share the
//! machine's two cores.

use siplb_tests::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

// ---------------------------------------------------------------------------------------
// Reading the records back
// ---------------------------------------------------------------------------------------

/// One record: its columns by name, as the CSV text has them.
type Row = HashMap<String, String>;

/// RFC 4180: records separated by CRLF, fields by commas, quoted fields may hold commas,
/// quotes (doubled) and line breaks. The text must end with CRLF (no torn last record).
fn parse_csv(text: &str, what: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            '"' => panic!("{what}: a quote inside an unquoted field"),
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "{what}: CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
            }
            '\n' => panic!("{what}: a bare LF line end (RFC 4180 wants CRLF)"),
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    assert!(!quoted, "{what}: unterminated quoted field");
    assert!(
        row.is_empty() && field.is_empty(),
        "{what}: the last record does not end with CRLF"
    );
    rows
}

/// The rows of a CSV file by header names (empty when the file does not exist).
fn read_csv(path: &Path) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let what = path.display().to_string();
    let mut rows = parse_csv(&text, &what).into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    rows.enumerate()
        .map(|(i, r)| {
            assert_eq!(
                r.len(),
                header.len(),
                "{what}: record {} has {} fields, the header {}: {r:?}",
                i + 1,
                r.len(),
                header.len()
            );
            header.iter().cloned().zip(r).collect()
        })
        .collect()
}

/// The lines of a JSONL file, each parsed (empty when the file does not exist).
fn read_jsonl(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: torn last line",
        path.display()
    );
    text.lines()
        .enumerate()
        .map(|(i, l)| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(o)) => o,
            other => panic!("{} line {}: {other:?}: {l}", path.display(), i + 1),
        })
        .collect()
}

/// Whether a CSV field and a JSON value say the same.
fn same(csv: &str, json: &serde_json::Value) -> bool {
    use serde_json::Value;
    match json {
        Value::Null => csv.is_empty(),
        Value::String(s) => s == csv,
        Value::Number(n) => csv
            .parse::<f64>()
            .is_ok_and(|c| (c - n.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9),
        Value::Object(_) => serde_json::from_str::<Value>(csv).is_ok_and(|c| &c == json),
        Value::Bool(b) => csv == if *b { "true" } else { "false" },
        Value::Array(_) => panic!("no column is an array: {json} / {csv}"),
    }
}

/// The records of `table` in `dir`: the CSV rows, checked to agree with the JSON lines
/// (same records, same order, same columns, same values). The two files are written one
/// after the other: a read that falls between the two writes is made again.
fn table(dir: &Path, table: &str) -> Vec<Row> {
    let read = || {
        (
            read_csv(&dir.join(format!("{table}.csv"))),
            read_jsonl(&dir.join(format!("{table}.jsonl"))),
        )
    };
    let (mut csv, mut jsonl) = read();
    let deadline = Instant::now() + Duration::from_secs(5);
    while csv.len() != jsonl.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        (csv, jsonl) = read();
    }
    assert_eq!(
        csv.len(),
        jsonl.len(),
        "{table}: as many CSV records as JSON lines"
    );
    for (c, j) in csv.iter().zip(&jsonl) {
        assert_eq!(c.len(), j.len(), "{table}: same columns: {c:?} / {j:?}");
        for (k, v) in j {
            let cv = c
                .get(k)
                .unwrap_or_else(|| panic!("{table}: CSV has no column {k}"));
            assert!(same(cv, v), "{table}.{k}: CSV {cv:?}, JSON {v}");
        }
    }
    csv
}

/// [`table`] after a crash of the process that wrote the first records. The files written with
/// every batch, a batch goes to the CSV file, then to the JSON lines file, and is committed
/// after both: a kill between the two writes leaves its records, uncommitted, in the CSV file
/// only. Each file must parse line by line; the records of both agree, in the same order;
/// those in one file only are all the killed process's (the earlier start in their ids).
fn table_after_crash(dir: &Path, table: &str) -> Vec<Row> {
    let csv = read_csv(&dir.join(format!("{table}.csv")));
    let jsonl = read_jsonl(&dir.join(format!("{table}.jsonl")));
    let json_id = |j: &serde_json::Map<String, serde_json::Value>| {
        j.get("id")
            .and_then(|v| v.as_str())
            .expect("an id")
            .to_string()
    };
    let in_json: HashMap<String, &serde_json::Map<String, serde_json::Value>> =
        jsonl.iter().map(|j| (json_id(j), j)).collect();
    let in_csv: HashSet<&str> = csv.iter().map(|r| col(r, "id")).collect();
    let first_start = in_csv
        .iter()
        .copied()
        .chain(in_json.keys().map(String::as_str))
        .map(id_start)
        .min();
    for id in in_csv
        .iter()
        .copied()
        .filter(|id| !in_json.contains_key(*id))
    {
        assert_eq!(
            Some(id_start(id)),
            first_start,
            "{table}: {id} is in the CSV file only and not the killed process's"
        );
    }
    for id in in_json.keys().filter(|id| !in_csv.contains(id.as_str())) {
        assert_eq!(
            Some(id_start(id)),
            first_start,
            "{table}: {id} is in the JSON lines only and not the killed process's"
        );
    }
    let both_csv: Vec<&Row> = csv
        .iter()
        .filter(|r| in_json.contains_key(col(r, "id")))
        .collect();
    let both_json: Vec<String> = jsonl
        .iter()
        .map(json_id)
        .filter(|id| in_csv.contains(id.as_str()))
        .collect();
    assert!(
        both_csv
            .iter()
            .map(|r| col(r, "id"))
            .eq(both_json.iter().map(String::as_str)),
        "{table}: the records of both files in the same order"
    );
    for c in both_csv {
        for (k, v) in in_json[col(c, "id")] {
            let cv = c
                .get(k)
                .unwrap_or_else(|| panic!("{table}: CSV has no column {k}"));
            assert!(same(cv, v), "{table}.{k}: CSV {cv:?}, JSON {v}");
        }
    }
    csv
}

fn col<'r>(r: &'r Row, name: &str) -> &'r str {
    r.get(name)
        .unwrap_or_else(|| panic!("no column {name}: {r:?}"))
}

/// Asserts no id appears twice over the given rows; the ids.
fn unique_ids<'r>(rows: impl IntoIterator<Item = &'r Row>) -> HashSet<String> {
    let mut seen = HashSet::new();
    for r in rows {
        let id = col(r, "id").to_string();
        assert!(seen.insert(id.clone()), "duplicate id {id}");
    }
    seen
}

/// The `<start ms>` part of an id `<node>-<start ms>-<seq>`.
fn id_start(id: &str) -> u64 {
    let mut parts = id.rsplitn(3, '-');
    let _seq: u64 = parts.next().and_then(|s| s.parse().ok()).expect("seq");
    parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("id {id} is not <node>-<start ms>-<seq>"))
}

// ---------------------------------------------------------------------------------------
// siplb and sipp
// ---------------------------------------------------------------------------------------

/// `examples/acc.toml` on `net` (two workers, software steering, a fixed owner hash), its
/// records into `acc_dir`, with `edit` applied to the text.
fn acc_config(net: Net, acc_dir: &Path, edit: impl Fn(String) -> String) -> String {
    let src = std::fs::read_to_string(repo().join("examples/acc.toml")).expect("acc.toml");
    let src = src
        .replace("127.0.0.1:5064", &net.siplb())
        .replace("127.0.0.1:5081", &net.gw(1))
        .replace("127.0.0.1:5082", &net.gw(2))
        .replace("127.0.0.1/32", &format!("{}/32", net.ip()))
        .replace("socket = \"/tmp/siplb-acc.ctl\"", "socket = \"siplb.ctl\"")
        .replace(
            "dir = \"/tmp/siplb-acc\"",
            &format!("dir = \"{}\"", acc_dir.display()),
        )
        .replace(
            "count = 0            # one per core, each pinned",
            "count = 2\npin = false",
        )
        .replace("mode = \"auto\"", "mode = \"off\"\nhash_key = 12345");
    assert!(
        src.contains("count = 2")
            && src.contains("socket = \"siplb.ctl\"")
            && src.contains(&format!("dir = \"{}\"", acc_dir.display()))
            && !src.contains("127.0.0.1"),
        "examples/acc.toml changed shape"
    );
    edit(src)
}

/// Inserts `text` (tables) before `[[customer]]`.
fn before_customer(src: String, text: &str) -> String {
    src.replacen("[[customer]]", &format!("{text}\n\n[[customer]]"), 1)
}

/// Waits (at most `secs`) until `f` holds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every record made so far is written and synced, and at least `records`.
fn all_written(siplb: &Siplb, records: u64) {
    let mut last = HashMap::new();
    eventually(15, "records written", || {
        last = siplb.stats();
        let r = last.get("acc:records").copied().unwrap_or(0);
        r >= records && last.get("acc:written").copied() == Some(r)
    });
}

fn gateways(dir: &Path, net: Net, scenario: &str, extra: &[&str]) -> (Sipp, Sipp) {
    (
        Sipp::uas(dir, "uas1", &net.gw(1), scenario, extra),
        Sipp::uas(dir, "uas2", &net.gw(2), scenario, extra),
    )
}

/// A sipp `-inf` file: one `account;dialled` line per call, used in order.
fn accounts(dir: &Path, name: &str, account: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("SEQUENTIAL\n{account};5550100;\n")).expect("write csv");
    p.to_str().expect("utf-8").into()
}

/// A sipp UAC in the background (for tests that stop siplb under it): `uac.xml`, `calls`
/// at `rate`, hold `hold_ms`, statistics every second in `<name>.csv`.
fn spawn_uac(dir: &Path, name: &str, net: Net, calls: u32, rate: u32, hold_ms: u32) -> Child {
    spawn_uac_on(dir, name, net, 5070, calls, rate, hold_ms)
}

/// [`spawn_uac`] from port `port` of the caller's address.
fn spawn_uac_on(
    dir: &Path,
    name: &str,
    net: Net,
    port: u16,
    calls: u32,
    rate: u32,
    hold_ms: u32,
) -> Child {
    Command::new("sipp")
        .current_dir(dir)
        .arg(net.siplb())
        .args(["-sf", scenario("uac.xml").to_str().expect("utf-8")])
        .args([
            "-inf",
            repo()
                .join("examples/sipp/accounts.csv")
                .to_str()
                .expect("utf-8"),
        ])
        .args(["-i", &net.ip(), "-p", &port.to_string()])
        .args(SIPP_BASE_ARGS)
        .args(["-stf", &format!("{name}.csv")])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-l", "100000", "-d", &hold_ms.to_string()])
        .args(["-recv_timeout", "3000", "-timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("sipp out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp")
}

/// Stops a background UAC once its statistics were dumped at least once more, and returns
/// them (the last dump: counts at most a second old).
fn finish_uac(mut uac: Child, dir: &Path, name: &str) -> SippStats {
    std::thread::sleep(Duration::from_millis(1200));
    let _ = uac.kill();
    let _ = uac.wait();
    read_sipp_csv(&dir.join(format!("{name}.csv")))
}

fn kill9(siplb: &mut Siplb) {
    // SAFETY: signalling the child we started, by its PID.
    unsafe { libc::kill(siplb.pid() as i32, libc::SIGKILL) };
    let _ = siplb.child.wait();
}

// ---------------------------------------------------------------------------------------
// 1. What each kind of call leaves
// ---------------------------------------------------------------------------------------

#[test]
fn answered_busy_cancelled_and_refused_calls_leave_their_records() {
    let _g = serial();
    require_sipp();
    let net = Net::new(85);
    let dir = TempDir::new("acc-calls");
    let acc = dir.0.join("acc");
    let cfg = acc_config(net, &acc, |s| {
        let s = s.replace("account_key = \"customer\"", "account_key = \"from_user\"");
        before_customer(
            s,
            "[[limits.profile]]\nprofile = \"account\"\nvalue = \"blocked\"\nmax = 0",
        )
    });
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    let d = &dir.0;

    // An answered call: 700 ms to ringing, held 2 s.
    let (u1, u2) = gateways(d, net, "uas_ring_delay.xml", &[]);
    let uac = Sipp::uac(
        d,
        "uac_ok",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        1,
        1,
        &["-d", "2000"],
        30,
    );
    drop((u1.finish(), u2.finish()));
    assert_eq!((uac.ok(), uac.failed()), (1, 0), "uac: {:?}", uac.fields);
    all_written(&siplb, 3);
    let cdrs = table(&acc, "cdrs");
    assert_eq!(cdrs.len(), 1, "one CDR: {cdrs:?}");
    let c = &cdrs[0];
    let callid = col(c, "callid").to_string();
    let rows = table(&acc, "acc");
    assert_eq!(rows.len(), 2, "INVITE and BYE in acc: {rows:?}");
    let invite = rows.iter().find(|r| col(r, "method") == "INVITE");
    let invite = invite.expect("an INVITE record");
    assert_eq!(
        (col(invite, "sip_code"), col(invite, "callid")),
        ("200", callid.as_str())
    );
    let bye = rows.iter().find(|r| col(r, "method") == "BYE");
    let bye = bye.expect("a BYE record");
    assert_eq!(
        (
            col(bye, "sip_code"),
            col(bye, "sip_reason"),
            col(bye, "callid")
        ),
        ("210", "Bye received", callid.as_str())
    );
    assert!(table(&acc, "missed_calls").is_empty());
    assert_eq!(col(c, "disposition"), "answered", "{c:?}");
    assert_eq!(col(c, "ended_by"), "caller", "{c:?}");
    assert_eq!(col(c, "sip_code"), "200", "{c:?}");
    assert_eq!(col(c, "node"), "example");
    let billsec: f64 = col(c, "billsec").parse().expect("billsec");
    assert!(
        (billsec - 2.0).abs() <= 0.25,
        "billsec {billsec} is the hold of 2 s within 0.25 s: {c:?}"
    );
    let pdd: i64 = col(c, "pdd_ms").parse().expect("pdd_ms");
    assert!(
        (pdd - 700).abs() <= 100,
        "pdd_ms {pdd} is the gateway's 700 ms before 180, within 100 ms: {c:?}"
    );

    // Busy: a missed call and a CDR `busy`.
    let (u1, u2) = gateways(d, net, "uas_busy.xml", &[]);
    let uac = Sipp::uac(
        d,
        "uac_busy",
        &net.siplb(),
        &net.ip(),
        "uac_486.xml",
        1,
        1,
        &[],
        30,
    );
    drop((u1.finish(), u2.finish()));
    assert_eq!((uac.ok(), uac.failed()), (1, 0), "uac: {:?}", uac.fields);
    all_written(&siplb, 5);
    let missed = table(&acc, "missed_calls");
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(
        (col(&missed[0], "method"), col(&missed[0], "sip_code")),
        ("INVITE", "486")
    );
    let cdrs = table(&acc, "cdrs");
    assert_eq!(cdrs.len(), 2, "{cdrs:?}");
    assert_eq!(col(&cdrs[1], "disposition"), "busy", "{:?}", cdrs[1]);
    assert_eq!(col(&cdrs[1], "callid"), col(&missed[0], "callid"));
    assert_eq!(table(&acc, "acc").len(), 2, "nothing more in acc");

    // Cancelled after ringing.
    let (u1, u2) = gateways(d, net, "uas_cancel.xml", &[]);
    let uac = Sipp::uac(
        d,
        "uac_cancel",
        &net.siplb(),
        &net.ip(),
        "uac_cancel.xml",
        1,
        1,
        &[],
        30,
    );
    drop((u1.finish(), u2.finish()));
    assert_eq!((uac.ok(), uac.failed()), (1, 0), "uac: {:?}", uac.fields);
    eventually(10, "the CDR of the cancelled call", || {
        table(&acc, "cdrs").len() == 3
    });
    all_written(&siplb, 7);
    let cdrs = table(&acc, "cdrs");
    assert_eq!(col(&cdrs[2], "disposition"), "cancelled", "{:?}", cdrs[2]);
    assert_eq!(col(&cdrs[2], "sip_code"), "487", "{:?}", cdrs[2]);
    let missed = table(&acc, "missed_calls");
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert_eq!(col(&missed[1], "sip_code"), "487");

    // Refused by the account's limit (0 calls for account `blocked`).
    let inf = accounts(d, "blocked.csv", "blocked");
    let uac = Sipp::uac(
        d,
        "uac_limit",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        1,
        1,
        &["-inf", &inf],
        30,
    );
    assert_eq!((uac.ok(), uac.failed()), (0, 1), "uac: {:?}", uac.fields);
    eventually(10, "the CDR of the refused call", || {
        table(&acc, "cdrs").len() == 4
    });
    let cdrs = table(&acc, "cdrs");
    let c = &cdrs[3];
    assert_eq!(col(c, "disposition"), "rejected_limit", "{c:?}");
    assert_eq!(col(c, "account"), "blocked", "{c:?}");
    assert_eq!(col(c, "sip_code"), "503", "{c:?}");
    // And a missed call, as Kamailio records an INVITE it answers itself with >= 300.
    eventually(10, "the missed call of the refused call", || {
        table(&acc, "missed_calls").len() == 3
    });
    let missed = table(&acc, "missed_calls");
    let m = &missed[2];
    assert_eq!(col(m, "sip_code"), "503", "{m:?}");
    assert_eq!(col(m, "account"), "blocked", "{m:?}");

    unique_ids(
        cdrs.iter()
            .chain(&table(&acc, "acc"))
            .chain(&table(&acc, "missed_calls")),
    );
    siplb.assert_alive();
    siplb.stop();
}

// ---------------------------------------------------------------------------------------
// 2. A BYE nobody answers, recorded by the failed flag
// ---------------------------------------------------------------------------------------

#[test]
fn an_unanswered_bye_is_recorded_with_408_by_the_failed_flag() {
    let _g = serial();
    require_sipp();
    let net = Net::new(86);
    let dir = TempDir::new("acc-bye408");
    let acc = dir.0.join("acc");
    let cfg = acc_config(net, &acc, |s| {
        let s = s
            .replace(
                "flags = [\"INVITE\"]            # FLT_ACC",
                "flags = [\"INVITE\", \"BYE\"]\nfailed_flags = [\"BYE\"]  # FLT_ACC",
            )
            .replace(
                "[[acc.rule]]                  # acc_db_request(\"210 Bye received\", \"acc\")\nmethod = \"BYE\"\ncomment = \"210 Bye received\"\ntable = \"acc\"\n",
                "",
            );
        assert!(s.contains("failed_flags") && !s.contains("acc.rule"), "{s}");
        before_customer(s, "[timers]\nt1_ms = 50\ntimer_b_ms = 1600")
    });
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    let (u1, u2) = gateways(&dir.0, net, "uas_bye_silent.xml", &["-nd"]);
    // The caller's BYE gets no answer (RFC 4320: no 408 to a non-INVITE), so sipp counts the
    // call as failed. It resends its BYE once (at 0.5 s, while siplb's transaction still
    // absorbs it) and gives up: each resend after siplb's Timer F would be a new transaction.
    let _ = Sipp::caller(
        &dir.0,
        net,
        "uac.xml",
        1,
        1,
        &[
            "-d",
            "200",
            "-max_non_invite_retrans",
            "1",
            "-recv_timeout",
            "3000",
        ],
        20,
    );
    eventually(10, "the BYE's record", || {
        table(&acc, "acc").iter().any(|r| col(r, "method") == "BYE")
    });
    drop((u1, u2));
    all_written(&siplb, 2);
    let rows = table(&acc, "acc");
    let byes: Vec<&Row> = rows.iter().filter(|r| col(r, "method") == "BYE").collect();
    assert_eq!(byes.len(), 1, "{rows:?}");
    assert_eq!(col(byes[0], "sip_code"), "408", "{:?}", byes[0]);
    let invite = rows.iter().find(|r| col(r, "method") == "INVITE");
    let invite = invite.expect("the INVITE's record");
    assert_eq!(col(invite, "sip_code"), "200");
    assert_eq!(col(invite, "callid"), col(byes[0], "callid"));
    siplb.stop();
}

// ---------------------------------------------------------------------------------------
// 3. 10,000 calls: one CDR each
// ---------------------------------------------------------------------------------------

#[test]
fn ten_thousand_calls_give_one_cdr_each_and_no_duplicate_id() {
    let _g = serial();
    require_sipp();
    let net = Net::new(87);
    let dir = TempDir::new("acc-10k");
    let acc = dir.0.join("acc");
    let mut siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &acc, |s| s));
    let (u1, u2) = gateways(&dir.0, net, "uas.xml", &[]);
    let uac = Sipp::caller(&dir.0, net, "uac.xml", 10_000, 500, &["-d", "100"], 120);
    drop((u1.finish(), u2.finish()));
    let invites = siplb.stat("dialog:processed_dialogs");
    siplb.stop();
    let calls = uac.ok() + uac.failed();
    assert_eq!(calls, 10_000, "uac: {:?}", uac.fields);
    let cdrs = table(&acc, "cdrs");
    assert_eq!(
        cdrs.len() as u64,
        calls,
        "one CDR per call (sipp: {} ok, {} failed; siplb saw {invites} dialogs)",
        uac.ok(),
        uac.failed()
    );
    let answered = cdrs
        .iter()
        .filter(|r| col(r, "disposition") == "answered")
        .count() as u64;
    assert!(answered >= uac.ok(), "{answered} answered CDRs");
    let callids: HashSet<&str> = cdrs.iter().map(|r| col(r, "callid")).collect();
    assert_eq!(callids.len(), cdrs.len(), "no call has two CDRs");
    let acc_rows = table(&acc, "acc");
    let missed = table(&acc, "missed_calls");
    unique_ids(cdrs.iter().chain(&acc_rows).chain(&missed));
}

// ---------------------------------------------------------------------------------------
// 4. SIGTERM in the middle of a run
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_mid_run_writes_every_cdr_and_ends_the_calls_up_with_shutdown() {
    let _g = serial();
    require_sipp();
    let net = Net::new(88);
    let dir = TempDir::new("acc-sigterm");
    let acc = dir.0.join("acc");
    let mut siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &acc, |s| s));
    let (u1, u2) = gateways(&dir.0, net, "uas.xml", &[]);
    // 900 calls at 200/s held 3 s: after 4.5 s every INVITE is in, the first ~450 calls are
    // over and the others up.
    let uac = spawn_uac(&dir.0, "uac", net, 900, 200, 3000);
    let t0 = Instant::now();
    let mut invites = 0;
    eventually(20, "900 dialogs", || {
        invites = siplb.stat("dialog:processed_dialogs");
        invites >= 900
    });
    std::thread::sleep(Duration::from_millis(5000).saturating_sub(t0.elapsed()));
    let before = siplb.stats();
    assert_eq!(before["dialog:processed_dialogs"], 900);
    siplb.stop();
    let status = siplb
        .child
        .try_wait()
        .expect("wait")
        .expect("siplb stopped");
    assert!(status.success(), "siplb exit status {status}");
    let stats = finish_uac(uac, &dir.0, "uac");
    drop((u1, u2));

    let cdrs = table(&acc, "cdrs");
    assert_eq!(
        cdrs.len(),
        900,
        "a CDR for each INVITE siplb saw; sipp: {:?}",
        stats.fields
    );
    let callids: HashSet<&str> = cdrs.iter().map(|r| col(r, "callid")).collect();
    assert_eq!(callids.len(), 900, "no call has two CDRs");
    let by = |e: &str| cdrs.iter().filter(|r| col(r, "ended_by") == e).count() as u64;
    let (caller, shutdown) = (by("caller"), by("shutdown"));
    assert!(
        shutdown > 0,
        "calls up at SIGTERM end with shutdown ({caller} by caller)"
    );
    assert!(
        caller >= stats.ok() && stats.ok() > 0,
        "every call sipp completed ({}) has its CDR ended by the caller ({caller})",
        stats.ok()
    );
    for r in cdrs.iter().filter(|r| col(r, "ended_by") == "shutdown") {
        assert_eq!(col(r, "disposition"), "answered", "{r:?}");
        assert!(!col(r, "end_time").is_empty(), "{r:?}");
    }
    assert_eq!(
        caller + shutdown,
        900,
        "every call ended by one or the other"
    );
    unique_ids(cdrs.iter().chain(&table(&acc, "acc")));
}

// ---------------------------------------------------------------------------------------
// 5. kill -9 in the middle of a run, then a restart on the same folder
// ---------------------------------------------------------------------------------------

/// `examples/acc.toml` on `net` with `acc.write_interval_ms = ms`.
fn writing_files_every(net: Net, acc: &Path, ms: u64) -> String {
    let cfg = acc_config(net, acc, |s| {
        s.replace(
            "sync_interval_ms = 10 ",
            &format!("write_interval_ms = {ms}\nsync_interval_ms = 10 "),
        )
    });
    assert!(cfg.contains(&format!("write_interval_ms = {ms}")));
    cfg
}

/// siplb with `cfg`, its two gateways, and a UAC (300 calls/s of 200 ms) 2.5 s into its run.
fn mid_run(dir: &Path, net: Net, cfg: &str) -> (Siplb, (Sipp, Sipp), Child) {
    let siplb = Siplb::start(BIN, dir, cfg);
    let gws = gateways(dir, net, "uas.xml", &[]);
    let uac = spawn_uac(dir, "uac", net, 3000, 300, 200);
    std::thread::sleep(Duration::from_millis(2500));
    (siplb, gws, uac)
}

#[test]
fn kill_9_mid_run_then_restart_leaves_whole_lines_and_new_ids() {
    let _g = serial();
    require_sipp();
    let net = Net::new(89);
    let dir = TempDir::new("acc-kill9");
    let acc = dir.0.join("acc");
    // The files written with every batch: the torn line appended below then lies past every
    // byte the journal holds. (With the files lagging behind the journal, the restart writes
    // the journal's bytes back over it, as it would over a write a power cut tore.)
    let cfg = writing_files_every(net, &acc, 0);
    let (mut siplb, (u1, u2), uac) = mid_run(&dir.0, net, &cfg);
    kill9(&mut siplb);
    // A crash in the middle of a write (power loss: kill -9 alone does not cut a write to a
    // file short) leaves a torn last line; the restart must set it aside.
    for (f, torn) in [
        ("cdrs.csv", "example,example-1-1,torn-call"),
        ("cdrs.jsonl", "{\"node\":\"example\",\"id\":\"torn"),
    ] {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(acc.join(f))
            .expect("the killed process wrote files");
        file.write_all(torn.as_bytes()).expect("append");
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    assert_eq!(siplb.stat("acc:torn_lines"), 2);
    std::thread::sleep(Duration::from_millis(2500));
    let stats = finish_uac(uac, &dir.0, "uac");
    siplb.stop();
    drop((u1, u2));

    assert_eq!(
        std::fs::read_to_string(acc.join("cdrs.csv.torn"))
            .expect(".torn")
            .trim_end(),
        "example,example-1-1,torn-call"
    );
    assert!(
        std::fs::read_to_string(acc.join("cdrs.jsonl.torn"))
            .expect(".torn")
            .contains("\"id\":\"torn")
    );
    let cdrs = table_after_crash(&acc, "cdrs");
    let rows: Vec<Row> = cdrs
        .iter()
        .cloned()
        .chain(table_after_crash(&acc, "acc"))
        .chain(table_after_crash(&acc, "missed_calls"))
        .collect();
    let ids = unique_ids(&rows);
    let starts: HashSet<u64> = ids.iter().map(|id| id_start(id)).collect();
    assert_eq!(
        starts.len(),
        2,
        "ids of two processes (different start ms): {starts:?}"
    );
    assert!(
        cdrs.iter()
            .any(|r| col(r, "ended_by") == "shutdown" || col(r, "ended_by") == "caller"),
        "sipp: {:?}",
        stats.fields
    );
}

#[test]
fn kill_9_with_the_files_lagging_the_journal_keeps_every_committed_record() {
    let _g = serial();
    require_sipp();
    let net = Net::new(83);
    let dir = TempDir::new("acc-kill9-lag");
    let acc = dir.0.join("acc");
    // The record files lag behind the journal by up to 5 s (100 ms by default; longer here,
    // so that the records read as committed below are surely not all in the files yet).
    let cfg = writing_files_every(net, &acc, 5000);
    let (mut siplb, (u1, u2), uac) = mid_run(&dir.0, net, &cfg);
    // Committed (durable in the journal) by now; some not yet in the files.
    let committed = siplb.stat("acc:written");
    kill9(&mut siplb);
    let _ = finish_uac(uac, &dir.0, "uac");
    drop((u1, u2));
    // The restart writes back what only the journal had; a clean stop writes the rest.
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    assert_eq!(siplb.stat("acc:torn_lines"), 0);
    siplb.stop();

    let rows: Vec<Row> = ["acc", "missed_calls", "cdrs"]
        .iter()
        .flat_map(|t| table(&acc, t))
        .collect();
    let ids = unique_ids(&rows);
    let first = ids.iter().map(|id| id_start(id)).min().expect("records");
    let of_first = ids.iter().filter(|id| id_start(id) == first).count() as u64;
    assert!(
        committed > 300 && of_first >= committed,
        "every record committed before the kill ({committed}) is in the files ({of_first})"
    );
}

// ---------------------------------------------------------------------------------------
// 6. A full disk: new calls refused, nothing of an accepted call lost
// ---------------------------------------------------------------------------------------

/// A tiny tmpfs mounted for the test, unmounted on drop (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs (the test needs root)");
        Tmpfs(path.into())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with `<path>`: writes until ENOSPC.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![b'x'; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filler: {e}"),
        }
    }
}

#[test]
fn a_full_disk_refuses_new_calls_and_loses_no_record_of_an_accepted_one() {
    let _g = serial();
    require_sipp();
    let net = Net::new(85);
    let dir = TempDir::new("acc-full");
    let acc = dir.0.join("acc");
    let cfg = acc_config(net, &acc, |s| {
        // The commit journal, written in full at start, takes 16 KiB of the 64.
        s.replace(
            "sinks = [\"files\"]",
            "sinks = [\"files\"]\nqueue = 4\njournal_kib = 16",
        )
    });
    assert!(cfg.contains("queue = 4"));
    let mount = Tmpfs::mount(&acc, "64k");
    // A journal bigger than the disk: the start fails naming it and the key that sizes it,
    // and leaves no half-made journal taking the room a smaller one needs.
    let big = dir.0.join("big.toml");
    std::fs::write(&big, cfg.replace("journal_kib = 16", "journal_kib = 128")).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&big)
        .current_dir(&dir.0)
        .output()
        .expect("siplb");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("commit.journal: making the commit journal of 128 KiB (acc.journal_kib)"),
        "{err}"
    );
    assert!(!acc.join("commit.journal").exists());
    let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
    let (u1, u2) = gateways(&dir.0, net, "uas.xml", &[]);
    // One call first, so that every file exists with its header.
    let warm = Sipp::uac(
        &dir.0,
        "warm",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        1,
        1,
        &[],
        20,
    );
    assert_eq!(warm.ok(), 1);
    all_written(&siplb, 3);
    let filler = acc.join("filler");
    fill(&filler);

    let uac = Sipp::caller(&dir.0, net, "uac.xml", 300, 100, &["-d", "100"], 60);
    let during = siplb.stats();
    assert!(during["acc:sink_errors"] > 0, "{during:?}");
    assert!(during["acc:queue_full_503"] > 0, "{during:?}");
    assert!(uac.failed() > 0, "uac: {:?}", uac.fields);
    // Records refused by the full files are held (or, committed to the journal before the
    // files' deferred write failed, durable there): none is lost, as the end shows.
    std::fs::remove_file(&filler).expect("free the space");
    all_written(&siplb, during["acc:records"]);
    let log = siplb.log();
    assert!(
        log.contains("acc: sink files works again after") || log.contains("takes records again"),
        "the recovery is said: {log}"
    );
    drop((u1.finish(), u2.finish()));
    let stats = siplb.stats();
    siplb.stop();

    let cdrs = table(&acc, "cdrs");
    let answered: Vec<&Row> = cdrs
        .iter()
        .filter(|r| col(r, "disposition") == "answered")
        .collect();
    assert_eq!(
        answered.len() as u64,
        1 + uac.ok(),
        "every answered call has its CDR; uac: {:?}; siplb: {stats:?}",
        uac.fields
    );
    assert_eq!(
        cdrs.len() as u64,
        stats["dialog:processed_dialogs"],
        "a CDR for each call let in"
    );
    let rows = table(&acc, "acc");
    let count = |m: &str| rows.iter().filter(|r| col(r, "method") == m).count() as u64;
    assert_eq!(count("INVITE"), 1 + uac.ok());
    assert_eq!(count("BYE"), 1 + uac.ok());
    unique_ids(cdrs.iter().chain(&rows));
    drop(mount);
}

/// `sync = "file"`, SIGTERM while the disk is full: the writer keeps trying for a while
/// counted from the stop (not from when the disk filled), so space freed meanwhile loses
/// nothing; still full when that time is up, the loss is counted exactly, logged, and the
/// exit status says so.
#[test]
fn a_stop_while_the_disk_is_full_waits_for_space_and_else_says_what_it_lost() {
    let _g = serial();
    require_sipp();
    let net = Net::new(28);
    let dir = TempDir::new("acc-stop-full");
    let acc = dir.0.join("acc");
    let cfg = acc_config(net, &acc, |s| {
        s.replace(
            "sinks = [\"files\"]",
            "sinks = [\"files\"]\nsync = \"file\"",
        )
    });
    assert!(cfg.contains("sync = \"file\""));
    let mount = Tmpfs::mount(&acc, "64k");
    let (_u1, _u2) = gateways(&dir.0, net, "uas.xml", &[]);
    let records = |acc: &Path| -> usize {
        ["acc", "missed_calls", "cdrs"]
            .iter()
            .map(|t| table(acc, t).len())
            .sum()
    };
    let written_at_stop = |log: &str| -> usize {
        let line = log
            .lines()
            .find(|l| l.contains("records written and synced"))
            .unwrap_or_else(|| panic!("{log}"));
        let n = line
            .split("acc: ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        n.parse().unwrap()
    };
    for free_in_time in [true, false] {
        let mut siplb = Siplb::start(BIN, &dir.0, &cfg);
        // Calls up, their records made as they end at the stop.
        let uac = spawn_uac(&dir.0, "held", net, 5, 50, 60_000);
        eventually(10, "5 calls up", || {
            siplb.stats().get("dialog:active_dialogs") == Some(&5)
        });
        let filler = acc.join("filler");
        fill(&filler);
        // Short calls until their records meet the full disk (the files' last pages
        // take a few), well before the stop.
        let short = spawn_uac_on(&dir.0, "short", net, 5071, 40, 20, 100);
        eventually(10, "a failed write", || {
            siplb.stats()["acc:sink_errors"] > 0
        });
        let _ = finish_uac(short, &dir.0, "short");
        std::thread::sleep(Duration::from_millis(2500));
        // SAFETY: a signal to the siplb this test started, by its PID.
        unsafe { libc::kill(siplb.pid() as i32, libc::SIGTERM) };
        if free_in_time {
            std::thread::sleep(Duration::from_millis(700));
            std::fs::remove_file(&filler).expect("free the space");
        }
        let status = siplb.wait_exit(Duration::from_secs(20)).expect("exits");
        let log = siplb.log();
        let _ = finish_uac(uac, &dir.0, "held");
        if free_in_time {
            assert!(status.success(), "{log}");
            assert!(!log.contains("lost"), "{log}");
            assert!(log.contains("takes records again"), "{log}");
            assert_eq!(records(&acc), written_at_stop(&log), "{log}");
        } else {
            assert!(!status.success(), "{log}");
            let line = log
                .lines()
                .find(|l| l.contains("records are lost to it"))
                .unwrap_or_else(|| panic!("{log}"));
            let lost: usize = line
                .split("fails: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            // The 5 calls' CDRs (`ended_by = shutdown`) made at the stop, and what the
            // short calls left that the disk did not take.
            assert!(lost >= 5, "{line}");
            let shutdown = table(&acc, "cdrs")
                .iter()
                .filter(|r| col(r, "ended_by") == "shutdown")
                .count();
            assert_eq!(shutdown, 5, "the first stop's only: {line}");
            std::fs::remove_file(&filler).expect("free the space");
        }
        drop(siplb);
    }
    drop(mount);
}
