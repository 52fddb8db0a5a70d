//! The typed events of the shard: each carries the facts accounting needs (times, final code
//! and reason, Q.850 cause, who ended the dialog, account, gateway), and none is emitted
//! unless asked for.

use super::*;
use crate::proxy::EndTarget;
use crate::proxy::event::{DialogRecord, EndedBy, Event, TxnOutcome};

const EPOCH_MS: u64 = 1_700_000_000_000;

fn with_events() -> Harness {
    let mut h = Harness::with_config(|c| {
        c.emit.dialogs = true;
        c.emit.transactions = true;
    });
    h.shard.set_epoch(h.now, EPOCH_MS);
    h
}

impl Harness {
    fn events(&mut self) -> (Vec<TxnOutcome>, Vec<DialogRecord>) {
        let (mut txns, mut dialogs) = (Vec::new(), Vec::new());
        while let Some(e) = self.shard.poll_event() {
            match e {
                Event::Transaction(t) => txns.push(*t),
                Event::Dialog(d) => dialogs.push(*d),
                Event::Refused(_) | Event::Request(_) | Event::Gateway(_) => {}
            }
        }
        (txns, dialogs)
    }
}

#[test]
fn an_answered_call_reports_every_moment_and_the_caller_who_ended_it() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(Duration::from_millis(100));
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.advance(Duration::from_millis(150));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_millis(2_000));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    h.advance(Duration::from_millis(10_000));
    let mut bye = caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2);
    bye.extra = "Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\n".into();
    h.caller_sends(&bye.text());
    let fwd_bye = h.take_one();
    h.gateway_answers(&fwd_bye, &response(&fwd_bye, 200, None));

    let (txns, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    let d = &dialogs[0];
    assert_eq!(d.times.invite_received, EPOCH_MS);
    assert_eq!(d.times.invite_forwarded, EPOCH_MS);
    assert_eq!(d.times.first_reply, EPOCH_MS + 100);
    assert_eq!(d.times.ringing, EPOCH_MS + 250);
    assert_eq!(d.times.answer, EPOCH_MS + 2_250);
    assert_eq!(d.times.end, EPOCH_MS + 12_250);
    assert!(d.answered && !d.limit_refused);
    assert_eq!(d.ended_by, Some(EndedBy::Caller));
    assert_eq!(d.outcome.code, Some(200));
    assert_eq!(&*d.outcome.reason, "OK");
    assert_eq!(d.outcome.q850_cause, Some(16), "the BYE's cause");
    assert_eq!(&*d.account, "alice");
    assert_eq!(d.gateway.map(|g| g.addr), Some(fwd.dst));
    assert_eq!(d.caller.addr, caller());
    assert_eq!(&*d.to_tag, "gw-tag");
    assert_eq!(
        (
            d.parties.call_id(),
            d.parties.from_user(),
            d.parties.ruri_user()
        ),
        ("c1", "alice", "+15551234")
    );
    assert!(
        d.vars
            .iter()
            .any(|(k, v)| &**k == "BillSec" && &**v == "10")
    );

    let methods: Vec<(Method, Option<u16>)> = txns.iter().map(|t| (t.method, t.code)).collect();
    assert_eq!(
        methods,
        [(Method::Invite, Some(200)), (Method::Bye, Some(200))]
    );
    let invite = &txns[0];
    assert_eq!(invite.dialog, d.id);
    assert_eq!(&*invite.to_tag, "gw-tag");
    assert!(!invite.local);
    assert_eq!(invite.at_ms, EPOCH_MS + 2_250);
    assert_eq!(invite.destination.map(|t| t.addr), Some(fwd.dst));
}

#[test]
fn a_busy_callee_gives_the_final_code_reason_and_q850_cause() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let busy = response(&fwd, 486, Some("gw")).replace(
        "Content-Length: 0",
        "Reason: Q.850;cause=17\r\nContent-Length: 0",
    );
    h.deliver(fwd.dst, &busy);
    let (txns, dialogs) = h.events();
    let d = &dialogs[0];
    assert!(!d.answered);
    assert_eq!(d.ended_by, None);
    assert_eq!(
        (d.outcome.code, &*d.outcome.reason, d.outcome.q850_cause),
        (Some(486), "Busy Here", Some(17))
    );
    assert_eq!(txns.len(), 1);
    assert_eq!((txns[0].code, txns[0].local), (Some(486), false));
}

#[test]
fn timer_b_reports_siplbs_own_408() {
    let mut h = with_events();
    h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(Duration::from_secs(33));
    let (txns, dialogs) = h.events();
    assert_eq!((txns[0].code, txns[0].local), (Some(408), true));
    assert_eq!(dialogs[0].outcome.code, Some(408));
}

#[test]
fn a_limit_refusal_is_a_record_without_a_dialog() {
    let mut h = limited(1, DialogTimers::default());
    let mut cfg = (*h.shard.cfg).clone();
    cfg.emit.dialogs = true;
    cfg.emit.transactions = true;
    h.shard.cfg = Arc::new(cfg);
    h.established_call("c1");
    h.events();
    h.caller_sends(&invite("c2", "z9hG4bK-c2").text());
    let (txns, dialogs) = h.events();
    // The INVITE's own outcome too (a missed call for the flag), with its account.
    assert_eq!(txns.len(), 1, "{txns:#?}");
    let t = &txns[0];
    assert_eq!(
        (t.method, t.code, t.local),
        (Method::Invite, Some(503), true)
    );
    assert_eq!((&*t.account, &*t.reason), ("alice", "Account call limit"));
    assert_eq!(dialogs.len(), 1);
    let d = &dialogs[0];
    assert!(d.limit_refused && d.id.is_none() && d.gateway.is_none());
    assert_eq!(
        (d.outcome.code, &*d.outcome.reason, d.outcome.q850_cause),
        (Some(503), "Account call limit", Some(34))
    );
    assert_eq!(&*d.account, "alice");
}

#[test]
fn the_callee_a_timeout_and_an_operator_end_dialogs_too() {
    let mut h = with_events();
    let call = h.established_call("c1");
    let gw_tag = call.ok.to_tag().unwrap();
    let bye = gateway_in_dialog("BYE", &call.fwd, &gw_tag, "z9hG4bK-gwbye");
    h.deliver(call.gateway(), &bye.text());
    h.take();
    h.established_call("c2");
    let target = EndTarget::Id {
        h_entry: 0,
        h_id: 2,
    };
    assert!(h.shard.end_dialog(h.now, &target));
    let (_, dialogs) = h.events();
    let by: Vec<_> = dialogs.iter().map(|d| d.ended_by).collect();
    assert_eq!(by, [Some(EndedBy::Callee), Some(EndedBy::Operator)]);

    let mut h = Harness::with_config(|c| {
        c.emit.dialogs = true;
        c.dialog.default_timeout = Duration::from_secs(2);
    });
    h.established_call("c3");
    h.advance(Duration::from_secs(3));
    let (_, dialogs) = h.events();
    assert_eq!(dialogs[0].ended_by, Some(EndedBy::Timeout));
}

/// A CANCEL before the gateway said anything: the call's record comes with siplb's 487, at
/// once, cancelled by the caller; a 2xx the gateway sends after it adds no record.
#[test]
fn a_call_cancelled_before_any_reply_is_reported_at_once_as_cancelled() {
    let mut h = with_events();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    h.take();
    let (txns, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    let d = &dialogs[0];
    assert_eq!(d.outcome.code, Some(487));
    assert_eq!(d.cancelled_by, Some(EndedBy::Caller));
    assert!(!d.answered && d.ended_by.is_none());
    assert_eq!(d.times.first_reply, 0, "the gateway never replied");
    assert!(txns.iter().any(|t| t.code == Some(487)), "{txns:#?}");
    h.deliver(fwd.dst, &response(&fwd, 200, Some("late")));
    assert_eq!(h.take().len(), 2, "ACK and BYE");
    assert_eq!(h.events(), (vec![], vec![]), "nothing more reported");
}

#[test]
fn nothing_is_emitted_unless_asked_for() {
    let mut h = Harness::new();
    h.established_call("c1");
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    assert_eq!(h.events(), (vec![], vec![]));
}

#[test]
fn for_the_call_log_alone_refusals_failures_and_siplbs_ends_are_reported_not_normal_calls() {
    let mut h = Harness::with_config(|c| c.emit.failures = true);
    // A stranger's INVITE: 403, reported as a refusal (no transaction, no dialog).
    h.deliver(stranger(), &invite("c0", "z9hG4bK-s").text());
    let refused: Vec<_> = std::iter::from_fn(|| h.shard.poll_event()).collect();
    let [Event::Refused(r)] = &refused[..] else {
        panic!("{refused:#?}")
    };
    assert_eq!((r.parties.call_id(), r.code), ("c0", 403));
    assert_eq!(r.source.addr, stranger());
    assert!(r.reason.starts_with("Forbidden"), "{}", r.reason);
    h.take();

    // A call answered and ended by its caller: nothing.
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    h.caller_sends(&bye.text());
    let fwd_bye = h.take_one();
    h.gateway_answers(&fwd_bye, &response(&fwd_bye, 200, None));
    assert_eq!(h.events(), (vec![], vec![]));

    // A busy callee: the failed call, with its code and reason.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    h.take();
    let (txns, dialogs) = h.events();
    assert!(txns.is_empty());
    assert_eq!(dialogs.len(), 1);
    assert_eq!(
        (dialogs[0].parties.call_id(), dialogs[0].outcome.code),
        ("c2", Some(486))
    );
    assert_eq!(&*dialogs[0].outcome.reason, "Busy Here");

    // An operator ends a call not answered yet: CANCEL, then the 487 ends it.
    let (_, fwd) = h.start_call(&invite("c3", "z9hG4bK-c3"));
    h.deliver(fwd.dst, &response(&fwd, 180, Some("gw3")));
    h.take();
    let target = EndTarget::Id {
        h_entry: 0,
        h_id: 3,
    };
    assert!(h.shard.end_dialog(h.now, &target));
    let cancel = h.take_one();
    assert!(cancel.is_request(Method::Cancel), "{cancel:?}");
    h.deliver(fwd.dst, &response(&cancel, 200, Some("gw3")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw3")));
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert!(dialogs[0].cancelled_by == Some(EndedBy::Operator) && !dialogs[0].answered);
    assert_eq!(dialogs[0].outcome.code, Some(487));
}

#[test]
fn requests_are_reported_once_on_receipt_with_their_dialogs_account() {
    let mut h = Harness::with_config(|c| c.emit.requests = true);
    h.shard.set_epoch(h.now, EPOCH_MS);
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    // A retransmission is not a new request.
    h.caller_sends(&inv.text());
    h.take();
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.advance(Duration::from_millis(3_000));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    let bye = caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2);
    h.caller_sends(&bye.text());
    let mut seen = Vec::new();
    while let Some(e) = h.shard.poll_event() {
        if let Event::Request(r) = e {
            seen.push(*r);
        } else {
            panic!("only requests were asked for: {e:?}");
        }
    }
    let methods: Vec<Method> = seen.iter().map(|r| r.method).collect();
    assert_eq!(methods, [Method::Invite, Method::Ack, Method::Bye]);
    let bye = &seen[2];
    assert_eq!(bye.at_ms, EPOCH_MS + 3_000, "timestamped on receipt");
    assert_eq!(bye.code, None);
    assert_eq!(&*bye.account, "alice");
    assert_eq!(bye.gateway.map(|g| g.addr), Some(fwd.dst));
    assert_eq!(&*bye.to_tag, "gw-tag");
}

#[test]
fn while_accounting_is_full_new_invites_get_503_and_calls_under_way_go_on() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.shard.set_accounting_full(true);
    h.caller_sends(&invite("c2", "z9hG4bK-b").text());
    let out = h.take_one();
    assert!(out.is_response(503), "{out:?}");
    assert!(out.named("Retry-After").is_some(), "{out:?}");
    assert_eq!(h.stats.acc_queue_full_503.get(), 1);
    assert!(h.call_state("c2").is_none());
    // The call let in before goes on.
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw")));
    assert!(ok.is_response(200), "{ok:?}");
    h.shard.set_accounting_full(false);
    h.start_call(&invite("c3", "z9hG4bK-c"));
}

#[test]
fn while_accounting_overflows_requests_in_a_dialog_but_the_calls_ack_and_bye_get_503() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw")));
    h.shard.set_accounting_overflow(true);
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    let acked = h.take();
    assert!(
        acked.iter().all(|o| !o.is_response(503)),
        "the ACK goes on: {acked:?}"
    );
    h.caller_sends(&caller_in_dialog("INFO", &ok, "z9hG4bK-info", 2).text());
    let out = h.take_one();
    assert!(out.is_response(503), "{out:?}");
    assert!(out.named("Retry-After").is_some(), "{out:?}");
    assert_eq!(h.stats.acc_queue_full_503.get(), 1);
    // The call can still end.
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 3).text());
    let bye = h.take_one();
    assert!(bye.is_request(Method::Bye), "{bye:?}");
    h.gateway_answers(&bye, &response(&bye, 200, None));
    // Once the call is over, more BYEs and ACKs to its dialog would each be another record:
    // a BYE gets 503, an ACK is dropped.
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye2", 4).text());
    let again = h.take_one();
    assert!(again.is_response(503), "{again:?}");
    assert_eq!(h.stats.acc_queue_full_503.get(), 2);
    let dropped = h.stats.drop_requests.get();
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack2").text());
    assert!(h.take().is_empty());
    assert_eq!(h.stats.drop_requests.get(), dropped + 1);
    h.shard.set_accounting_overflow(false);
    h.caller_sends(&caller_in_dialog("INFO", &ok, "z9hG4bK-info2", 4).text());
    let info = h.take_one();
    assert!(info.is_request(Method::Info), "{info:?}");
}

#[test]
fn dialogs_left_up_at_exit_are_reported_as_ended_by_shutdown() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    h.start_call(&invite("c2", "z9hG4bK-b"));
    h.events();
    assert_eq!(h.shard.abandon_all(h.now, false), 2);
    assert!(h.take().is_empty(), "nothing is sent to the peers");
    let (_, dialogs) = h.events();
    let ended: Vec<(&str, Option<EndedBy>)> = dialogs
        .iter()
        .map(|d| (d.parties.call_id(), d.ended_by))
        .collect();
    assert!(
        ended.contains(&("c1", Some(EndedBy::Shutdown))),
        "{ended:?}"
    );
    assert!(ended.contains(&("c2", None)), "{ended:?}");
}

#[test]
fn dialogs_left_up_at_exit_end_when_the_stop_began_not_after_its_wait() {
    // `shutdown.dialogs = "leave"`: the ringing call is CANCELled and siplb waits
    // `bye_wait_ms` for the answer; the answered call is not billed for that wait.
    let mut h = with_events();
    h.established_call("c1");
    let (_, ring) = h.start_call(&invite("c2", "z9hG4bK-b"));
    h.gateway_answers(&ring, &response(&ring, 180, Some("gw2")));
    h.take();
    h.events();
    h.advance(Duration::from_secs(5));
    let stop = h.now;
    assert_eq!(h.shard.end_all(h.now, stop, false), 1, "the ringing call");
    h.advance(Duration::from_secs(1));
    h.take();
    // A new call during the wait would get neither CANCEL nor BYE: it gets 503.
    h.caller_sends(&invite("c4", "z9hG4bK-d").text());
    let refused = h.take_one();
    assert!(refused.is_response(503), "{refused:?}");
    assert!(refused.named("Retry-After").is_some());
    // A call answered during the wait (its answer crossed the CANCEL) ends at its answer.
    let ok2 = h.gateway_answers(&ring, &response(&ring, 200, Some("gw2")));
    assert!(ok2.is_response(200), "{ok2:?}");
    h.caller_sends(&ack_2xx(&ok2, "z9hG4bK-ack2").text());
    h.take();
    h.advance(Duration::from_secs(2));
    h.take();
    h.events();
    h.shard.abandon_all(h.now, false);
    let (_, dialogs) = h.events();
    let end = |id: &str| {
        let d = dialogs.iter().find(|d| d.parties.call_id() == id).unwrap();
        assert_eq!(d.ended_by, Some(EndedBy::Shutdown), "{id}");
        (d.times.answer, d.times.end)
    };
    let (a1, e1) = end("c1");
    assert_eq!(e1 - a1, 5000, "billed up to the stop");
    let (a2, e2) = end("c2");
    assert_eq!(e2, a2, "answered after the stop began");
}

/// A ringing call the stop CANCELled whose gateway sends no 487 within the wait: at exit
/// its caller gets 487 from siplb, and the INVITE's outcome is reported (a missed call).
#[test]
fn a_call_the_stop_cancelled_without_an_answer_gets_487_and_its_outcome_at_exit() {
    let mut h = with_events();
    let (_, ring) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&ring, &response(&ring, 180, Some("gw")));
    h.take();
    h.events();
    assert_eq!(h.shard.end_all(h.now, h.now, false), 1);
    let cancel = h.take_one();
    assert!(cancel.is_request(Method::Cancel), "{cancel:?}");
    h.advance(Duration::from_secs(2));
    h.shard.abandon_all(h.now, false);
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(487)),
        "{out:?}"
    );
    let (txns, dialogs) = h.events();
    let invite = txns
        .iter()
        .find(|t| t.method == Method::Invite)
        .unwrap_or_else(|| panic!("{txns:?}"));
    assert_eq!((invite.code, invite.local), (Some(487), true), "{invite:?}");
    assert_eq!(dialogs.len(), 1, "one CDR");
    assert_eq!(dialogs[0].outcome.code, Some(487));
}

#[test]
fn the_answer_to_an_invite_the_caller_replaced_does_not_end_the_call() {
    let mut h = with_events();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    // The caller sends the INVITE again with a new branch (a new transaction, the same call).
    let mut again = invite("c1", "z9hG4bK-b");
    again.cseq = 2;
    h.caller_sends(&again.text());
    let out = h.take();
    let second = out
        .iter()
        .find(|o| o.is_request(Method::Invite))
        .unwrap_or_else(|| panic!("{out:#?}"));
    // The first INVITE's failure goes to the caller but leaves the call up.
    h.deliver(first.dst, &response(&first, 500, Some("g")));
    h.take();
    assert!(
        h.call_state("c1").is_some_and(|s| s.is_early()),
        "the call goes on"
    );
    h.deliver(second.dst, &response(second, 486, Some("g")));
    h.take();
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert_eq!(
        dialogs[0].outcome.code,
        Some(486),
        "the outcome of the call's own INVITE"
    );
}

/// A re-INVITE's outcome says it went inside a dialog, so that accounting does not take a
/// refused re-INVITE (491) for a missed call; the INVITE that made the call says it did not.
#[test]
fn a_reinvites_outcome_is_marked_as_inside_the_dialog() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    h.caller_sends(&caller_in_dialog("INVITE", &ok, "z9hG4bK-re", 2).text());
    let fwd_re = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("re-INVITE forwarded");
    h.deliver(fwd_re.dst, &response(&fwd_re, 491, None));
    h.take();
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 3).text());
    let fwd_bye = h.take_one();
    h.gateway_answers(&fwd_bye, &response(&fwd_bye, 200, None));
    let (txns, dialogs) = h.events();
    // The call's outcome stays its INVITE's 200.
    assert_eq!(dialogs.len(), 1);
    assert_eq!(dialogs[0].outcome.code, Some(200));
    assert!(dialogs[0].answered);
    let seen: Vec<(Method, Option<u16>, bool)> = txns
        .iter()
        .map(|t| (t.method, t.code, t.in_dialog))
        .collect();
    assert_eq!(
        seen,
        [
            (Method::Invite, Some(200), false),
            (Method::Invite, Some(491), true),
            (Method::Bye, Some(200), true)
        ]
    );
}

#[test]
fn a_487_says_who_had_the_invite_cancelled() {
    // Each call rings, then ends with the gateway's 487: after the caller's CANCEL, after
    // siplb's own at Timer C, and of the gateway's own accord.
    let mut h = with_events();
    let inv = invite("c1", "z9hG4bK-c1");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw1")));
    h.caller_sends(&cancel(&inv).text());
    let c = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Cancel))
        .expect("CANCEL downstream");
    h.deliver(fwd.dst, &response(&c, 200, Some("gw1")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw1")));
    h.take();
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert_eq!(dialogs[0].cancelled_by, Some(EndedBy::Caller));

    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw2")));
    h.advance(Duration::from_secs(180));
    let c = h.take_one();
    assert!(c.is_request(Method::Cancel), "{c:?}");
    h.deliver(fwd.dst, &response(&c, 200, Some("gw2")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw2")));
    h.take();
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert_eq!(dialogs[0].cancelled_by, Some(EndedBy::Timeout));

    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c3", "z9hG4bK-c3"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw3")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw3")));
    h.take();
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert_eq!(
        (dialogs[0].cancelled_by, dialogs[0].outcome.code),
        (None, Some(487))
    );
}

#[test]
fn a_ringing_that_comes_after_the_answer_is_not_the_calls() {
    let mut h = with_events();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(Duration::from_millis(300));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.advance(Duration::from_millis(50));
    // The 180 overtaken on the way.
    h.deliver(fwd.dst, &response(&fwd, 180, Some("gw-tag")));
    h.take();
    h.advance(Duration::from_millis(1_000));
    let bye = caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2);
    h.caller_sends(&bye.text());
    let fwd_bye = h.take_one();
    h.gateway_answers(&fwd_bye, &response(&fwd_bye, 200, None));
    let (_, dialogs) = h.events();
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    let t = &dialogs[0].times;
    assert_eq!((t.answer, t.ringing), (EPOCH_MS + 300, 0));
}

/// A call siplb has no gateway for (every gateway of its set disabled) is refused with 503,
/// and leaves its records as any refused call: its INVITE's outcome (a missed call) and a
/// CDR that is a failure, not a limit's refusal.
#[test]
fn a_call_with_no_gateway_gets_503_and_leaves_its_records() {
    let mut h = with_events();
    for g in &h.shard.cfg.routing.gateways.sets[0].gateways {
        g.state
            .health
            .force(crate::proxy::health::Admin::Disabled, false);
    }
    h.caller_sends(&invite("c1", "z9hG4bK-a").text());
    let out = h.take_one();
    assert!(out.is_response(503), "{out:?}");
    assert!(out.text().contains("No Gateway"), "{out:?}");
    let (txns, dialogs) = h.events();
    assert_eq!(txns.len(), 1, "{txns:?}");
    assert_eq!((txns[0].code, txns[0].local), (Some(503), true));
    assert_eq!(dialogs.len(), 1, "{dialogs:?}");
    assert_eq!(dialogs[0].outcome.code, Some(503));
    assert!(!dialogs[0].limit_refused && !dialogs[0].answered);
    // Its log line calls it refused, as siplb answered it without forwarding it.
    let e = crate::proxy::event::Event::Dialog(Box::new(dialogs[0].clone()));
    let line = crate::logging::CallLine::of(&e).expect("a line");
    assert_eq!((line.what, line.code), ("refused", 503));
    // A retransmission of the INVITE gets the same answer, and no second record.
    h.caller_sends(&invite("c1", "z9hG4bK-a").text());
    assert!(h.take_one().is_response(503));
    assert_eq!(h.events(), (vec![], vec![]));
}

#[test]
fn a_dialogs_report_has_the_parties_of_its_invite_whether_or_not_transactions_are_reported() {
    let call = |transactions: bool| {
        let mut h = Harness::with_config(|c| {
            c.emit.dialogs = true;
            c.emit.transactions = transactions;
        });
        h.shard.set_epoch(h.now, EPOCH_MS);
        let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
        let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
        h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
        h.take();
        h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
        let fwd_bye = h.take_one();
        h.gateway_answers(&fwd_bye, &response(&fwd_bye, 200, None));
        h.events()
    };
    // Kept from the INVITE's transaction report, and read again from the dialog without one.
    let (txns, kept) = call(true);
    let (_, read_again) = call(false);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].parties, txns[0].parties, "the INVITE's");
    assert_eq!(kept[0].parties, read_again[0].parties);
    assert_eq!(
        (kept[0].parties.from_tag(), kept[0].parties.to_user()),
        (txns[0].parties.from_tag(), txns[0].parties.to_user())
    );
    assert!(!kept[0].parties.from_tag().is_empty());
}
