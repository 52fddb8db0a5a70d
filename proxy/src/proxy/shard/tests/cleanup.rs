//! Cleanup: transactions and call records go when their timers say, and not before.

use super::*;

#[test]
fn everything_cleaned_up_after_answered_call_and_bye() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let bye = h.take_one();
    h.gateway_answers(&bye, &response(&bye, 200, None));
    assert_eq!(h.shard.dialog_records(), 1, "the ended call lingers");
    h.advance(t1s(64) + Duration::from_secs(40));
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    assert_eq!(h.shard.dialog_records(), 0);
    h.drive();
    assert_eq!(h.shard.poll_timeout(), None);
}

#[test]
fn everything_cleaned_up_after_rejected_call() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(40));
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn everything_cleaned_up_after_cancelled_call() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let terminated = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &terminated).text());
    h.advance(t1s(64) + MS);
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn everything_cleaned_up_when_nobody_answers() {
    let mut h = Harness::new();
    h.start_call(&invite("c1", "z9hG4bK-a"));
    h.drive();
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn invite_after_challenge_keeps_the_call_record() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 407, Some("gw-tag")));
    let challenge = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &challenge).text());
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    // The caller answers the challenge: same Call-ID and From tag, next CSeq.
    h.advance(Duration::from_secs(1));
    let mut again = invite("c1", "z9hG4bK-b");
    again.cseq = 2;
    let (_, fwd2) = h.start_call(&again);
    assert_eq!(fwd2.dst, fwd.dst, "same gateway");
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
    h.gateway_answers(&fwd2, &response(&fwd2, 180, Some("gw-tag2")));
    // Ringing for longer than an ended call lingers.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    let ok = h.gateway_answers(&fwd2, &response(&fwd2, 200, Some("gw-tag2")));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    assert_eq!(h.stats.processed_dialogs.get(), 2);
    assert_eq!(h.stats.failed_dialogs.get(), 1);
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 3).text());
    assert_eq!(h.take_one().dst, fwd.dst);
}

#[test]
fn repeated_provisionals_do_not_grow_the_timer_queue() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    for _ in 0..100 {
        h.gateway_answers(&fwd, &response(&fwd, 183, Some("gw-tag")));
        h.advance(Duration::from_millis(10));
    }
    // One entry for the transaction, one for the call record.
    assert!(
        h.shard.schedule.len() <= 3,
        "{} timer entries",
        h.shard.schedule.len()
    );
}

#[test]
fn our_via_directly_above_the_senders_via() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = None;
    let (_, fwd) = h.start_call(&inv);
    let m = fwd.msg();
    let names: Vec<HeaderName> = m.headers().iter().map(|h| h.name).collect();
    let first_via = names.iter().position(|n| *n == HeaderName::Via).unwrap();
    assert_eq!(
        names[first_via + 1],
        HeaderName::Via,
        "Via lines kept together: {fwd:?}"
    );
    assert!(fwd.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
}

#[test]
fn unparsable_request_after_empty_lines_gets_400() {
    let mut h = Harness::new();
    let bad = invite("c1", "z9hG4bK-a")
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: many");
    h.caller_sends(&format!("\r\n\r\n{bad}"));
    let out = h.take_one();
    assert_eq!(out.status(), Some(400), "{out:?}");
}

#[test]
fn reinvite_from_gateway_forwarded_to_caller_and_keeps_the_callee_tag() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut reinv = gateway_in_dialog("INVITE", &call.fwd, "gw-tag", "z9hG4bK-reinv");
    reinv.extra = format!("Contact: <sip:+15551234@{}>\r\n", call.gateway());
    reinv.body = SDP.into();
    h.deliver(call.gateway(), &reinv.text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let trying = out.iter().find(|o| o.dst == call.gateway()).unwrap();
    let fwd = out.iter().find(|o| o.dst == caller()).unwrap();
    assert!(trying.is_response(100));
    assert!(fwd.is_request(Method::Invite));
    assert!(fwd.headers(HeaderName::Route).is_empty());
    // The caller answers; its To tag is the caller's own.
    h.deliver(caller(), &response(fwd, 200, None));
    let ok = h.take_one();
    assert_eq!(ok.dst, call.gateway());
    assert!(ok.is_response(200));
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(c.callee_tag(), Some(&b"gw-tag"[..]));
    assert_eq!(c.caller_tag(), b"alice-tag");
}

#[test]
fn cancel_200_echoes_the_callers_via() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    let ok = out.iter().find(|o| o.is_response(200)).expect("200");
    let via = &ok.vias()[0];
    assert_eq!(param_of(via, "branch"), Some(inv.branch()));
    assert_eq!(param_of(via, "rport").as_deref(), Some("5070"));
}

#[test]
fn response_with_vias_on_one_line_loses_only_ours() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vias = fwd.vias().join(", ");
    let mut resp = format!("SIP/2.0 180 Ringing\r\nVia: {vias}\r\n");
    for name in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        resp += &fwd.header_lines(name)[0];
    }
    resp += &format!(
        "To: {};tag=gw-tag\r\nContent-Length: 0\r\n\r\n",
        fwd.header(HeaderName::To).unwrap()
    );
    let out = h.gateway_answers(&fwd, &resp);
    assert_eq!(out.vias(), fwd.vias()[1..].to_vec(), "{out:?}");
    out.assert_content_length();
}

/// The caller had its 487 at the CANCEL: the 180 that releases the CANCEL is not passed on.
#[test]
fn pending_cancel_released_by_180_which_the_caller_does_not_get() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    assert!(out.iter().any(|o| o.is_response(200)), "{out:#?}");
    assert!(out.iter().any(|o| o.is_response(487)), "{out:#?}");
    h.deliver(fwd.dst, &response(&fwd, 180, Some("gw-tag")));
    let c = h.take_one();
    assert!(c.dst == fwd.dst && c.is_request(Method::Cancel), "{c:?}");
}

#[test]
fn call_that_never_ends_is_swept_after_call_max_age() {
    let mut h = Harness::with_config(|c| c.dialog.default_timeout = Duration::from_secs(300));
    let _call = h.established_call("c1");
    h.advance(Duration::from_secs(200));
    assert_eq!(h.shard.dialog_records(), 1, "still within call_max_age");
    h.advance(Duration::from_secs(200));
    assert_eq!(
        h.shard.dialog_records(),
        0,
        "removed by the sweep after call_max_age"
    );
    h.drive();
    assert_eq!(
        h.shard.poll_timeout(),
        None,
        "no sweep left once no call is"
    );
}
