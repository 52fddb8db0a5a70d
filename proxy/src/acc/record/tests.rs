//! Records: their fields, ids, dispositions and columns.

use super::*;
use crate::proxy::dialogs::{DialogTimes, Outcome};
use crate::proxy::event::{EndedBy, Parties};
use crate::sip::Method;

fn parties() -> Parties {
    parties_of("c1")
}

/// [`parties`] with Call-ID `call_id`.
fn parties_of(call_id: &str) -> Parties {
    Parties::new(
        call_id,
        "f1",
        "alice",
        "cust.example",
        "bob",
        "0044123",
        "gw.example",
    )
}

fn gw() -> Target {
    Target::udp("198.18.2.30:5060".parse().unwrap())
}

fn dialog(answered: bool, code: Option<u16>) -> DialogRecord {
    let t0 = 1_796_125_784_000;
    DialogRecord {
        id: None,
        parties: parties(),
        to_tag: if answered { "gw".into() } else { "".into() },
        from: "<sip:alice@cust.example>;tag=f1".into(),
        to: "<sip:bob@dest>".into(),
        caller: Target::udp("198.18.1.20:5070".parse().unwrap()),
        gateway: Some(gw()),
        account: "alice".into(),
        times: DialogTimes {
            invite_received: t0,
            invite_forwarded: t0 + 1,
            first_reply: t0 + 20,
            ringing: if answered { t0 + 1_500 } else { 0 },
            answer: if answered { t0 + 4_000 } else { 0 },
            end: t0 + 65_237,
        },
        attempts: 1,
        outcome: Outcome {
            code,
            reason: "whatever".into(),
            q850_cause: Some(16),
        },
        limit_refused: false,
        inbound: false,
        cancelled_by: None,
        answered,
        ended_by: answered.then_some(EndedBy::Caller),
        vars: vec![("BillSec".into(), "61".into())],
    }
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for a in [
        "198.18.0.1:5060",
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "10.100.9.200:80",
        "1.20.109.99:1",
        "127.0.0.1:10000",
        "100.0.10.0:10009",
        "[2001:db8::1]:5060",
    ] {
        let addr: std::net::SocketAddr = a.parse().unwrap();
        let mut out = String::new();
        write_target(Some(Target::udp(addr)), &mut out);
        assert_eq!(out, addr.to_string());
        out.clear();
        write_ip(addr.ip(), &mut out);
        assert_eq!(out, addr.ip().to_string());
    }
}

#[test]
fn a_value_cannot_pass_for_more_columns_in_the_log_line() {
    let mut d = dialog(true, Some(200));
    d.parties = parties_of("x;sip_code=200\\y\n");
    let r = cdr(&mut Ids::new("n", 0, 0, 1), None, &d);
    let line = crate::acc::sink::log_line(&r);
    assert!(line.contains(";callid=x\\;sip_code=200\\\\y\\n;"), "{line}");
    assert_eq!(line.matches("sip_code=").count(), 2, "{line}");
}

#[test]
fn every_column_is_documented() {
    let doc = include_str!("../../../../docs/CDR.md");
    for c in ACC_COLUMNS.iter().chain(&CDR_COLUMNS) {
        assert!(
            doc.contains(&format!("| `{c}` |")),
            "{c} missing from docs/CDR.md"
        );
    }
}

#[test]
fn ids_are_unique_across_workers_and_name_node_and_start() {
    let mut a = Ids::new("n1", 1000, 0, 2);
    let mut b = Ids::new("n1", 1000, 1, 2);
    let ids: Vec<String> = (0..3).flat_map(|_| [a.next_id(), b.next_id()]).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{ids:?}");
    assert_eq!(ids[0], "n1-1000-0");
    assert_eq!(ids[1], "n1-1000-1");
}

#[test]
fn a_comment_with_three_digits_and_a_space_is_a_code_and_a_reason() {
    assert_eq!(
        split_comment("210 Bye received"),
        (Some(210), "Bye received")
    );
    assert_eq!(split_comment("Bye received"), (None, "Bye received"));
    assert_eq!(split_comment("21 x"), (None, "21 x"));
}

#[test]
fn an_answered_call_has_its_times_billsec_pdd_and_vars() {
    let mut ids = Ids::new("n1", 7, 0, 1);
    let r = cdr(&mut ids, None, &dialog(true, Some(200)));
    assert_eq!(r.len(), CDR_COLUMNS.len());
    let get = |c| r.get(c).unwrap().as_text();
    assert_eq!(get("disposition"), "answered");
    assert_eq!(get("billsec"), "61.237");
    assert_eq!(get("duration"), "65.237");
    assert_eq!(get("pdd_ms"), "1500");
    assert_eq!(get("invite_time"), "2026-12-01T11:49:44.000Z");
    assert_eq!(get("ended_by"), "caller");
    assert_eq!(get("gateway"), "198.18.2.30:5060");
    assert_eq!(get("src_ip"), "198.18.1.20");
    assert_eq!(get("vars"), "{\"BillSec\":\"61\"}");
    assert_eq!(get("id"), "n1-7-0");
}

#[test]
fn dispositions_follow_the_final_reply() {
    let mut ids = Ids::new("n", 0, 0, 1);
    for (code, want) in [
        (Some(486), "busy"),
        (Some(600), "busy"),
        (Some(408), "no_answer"),
        (Some(480), "no_answer"),
        (None, "no_answer"),
        (Some(503), "failed"),
    ] {
        let r = cdr(&mut ids, None, &dialog(false, code));
        assert_eq!(r.get("disposition").unwrap().as_text(), want, "{code:?}");
        assert_eq!(r.get("billsec").unwrap().as_text(), "0.000");
        assert_eq!(r.get("ended_by").unwrap(), Field::Empty);
    }
    let mut refused = dialog(false, Some(503));
    refused.limit_refused = true;
    let r = cdr(&mut ids, None, &refused);
    assert_eq!(r.get("disposition").unwrap().as_text(), "rejected_limit");
}

#[test]
fn a_487_is_cancelled_only_after_the_callers_cancel() {
    let mut ids = Ids::new("n", 0, 0, 1);
    for (by, want) in [
        (Some(EndedBy::Caller), "cancelled"),
        // siplb gave up on a call that rang too long.
        (Some(EndedBy::Timeout), "no_answer"),
        (Some(EndedBy::Operator), "failed"),
        (Some(EndedBy::Shutdown), "failed"),
        // The gateway's own 487, without any CANCEL.
        (None, "failed"),
    ] {
        let mut d = dialog(false, Some(487));
        d.cancelled_by = by;
        let r = cdr(&mut ids, None, &d);
        assert_eq!(r.get("disposition").unwrap().as_text(), want, "{by:?}");
    }
    // A CANCEL the callee's busy signal crossed: its code decides.
    let mut d = dialog(false, Some(486));
    d.cancelled_by = Some(EndedBy::Caller);
    assert_eq!(
        cdr(&mut ids, None, &d)
            .get("disposition")
            .unwrap()
            .as_text(),
        "busy"
    );
}

#[test]
fn pdd_without_ringing_runs_to_the_final_reply() {
    let mut ids = Ids::new("n", 0, 0, 1);
    let r = cdr(&mut ids, None, &dialog(false, Some(486)));
    assert_eq!(r.get("pdd_ms").unwrap().as_text(), "65237");
    // No reply at all (siplb stopped while the gateway was silent): no post-dial delay.
    let mut silent = dialog(false, None);
    silent.ended_by = Some(EndedBy::Shutdown);
    let r = cdr(&mut ids, None, &silent);
    assert_eq!(r.get("pdd_ms").unwrap(), Field::Empty);
    // Cancelled before it rang: the 487 measures the caller's patience, not the network.
    for by in [EndedBy::Caller, EndedBy::Operator, EndedBy::Shutdown] {
        let mut early = dialog(false, Some(487));
        early.cancelled_by = Some(by);
        let r = cdr(&mut ids, None, &early);
        assert_eq!(r.get("pdd_ms").unwrap(), Field::Empty, "{by:?}");
    }
    // Cancelled after it rang: to the ringing.
    let mut rang = dialog(false, Some(487));
    rang.times.ringing = rang.times.invite_received + 900;
    rang.cancelled_by = Some(EndedBy::Caller);
    let r = cdr(&mut ids, None, &rang);
    assert_eq!(r.get("pdd_ms").unwrap().as_text(), "900");
    // A gateway's own 487, no CANCEL: a final reply like any other.
    let r = cdr(&mut ids, None, &dialog(false, Some(487)));
    assert_eq!(r.get("pdd_ms").unwrap().as_text(), "65237");
}

#[test]
fn a_rules_record_takes_the_comments_code_and_reason() {
    let t = TxnOutcome {
        dialog: None,
        method: Method::Bye,
        parties: parties(),
        to_tag: "gw".into(),
        in_dialog: true,
        source: Target::udp("198.18.1.20:5070".parse().unwrap()),
        destination: Some(gw()),
        account: "alice".into(),
        gateway: Some(gw()),
        code: Some(200),
        reason: "OK".into(),
        q850_cause: None,
        local: false,
        at_ms: 5,
    };
    let mut ids = Ids::new("n", 0, 0, 1);
    let r = acc_record(&mut ids, None, "acc", &t, Some("210 Bye received"), 1_000);
    assert_eq!(r.len(), ACC_COLUMNS.len());
    let get = |c| r.get(c).unwrap().as_text();
    assert_eq!(
        (get("method"), get("sip_code")),
        ("BYE".into(), "210".into())
    );
    assert_eq!(get("sip_reason"), "Bye received");
    assert_eq!(get("time"), "1970-01-01T00:00:01.000Z");
    assert_eq!(get("dst_user"), "0044123");
    let plain = acc_record(&mut ids, None, "acc", &t, None, t.at_ms);
    assert_eq!(plain.get("sip_code").unwrap().as_text(), "200");
}
