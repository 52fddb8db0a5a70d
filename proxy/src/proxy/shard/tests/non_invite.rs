//! Non-INVITE transactions (BYE: Timers E, F, J, K), the ACK of a 2xx, and CANCEL.

use super::*;

#[test]
fn bye_from_caller_goes_to_the_call_gateway() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    assert_eq!(bye.routes.len(), 1);
    h.caller_sends(&bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, call.gateway());
    assert!(out.is_request(Method::Bye));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert!(out.headers(HeaderName::RecordRoute).is_empty());
    assert_eq!(out.vias().len(), 2);
    assert!(out.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
    assert_eq!(out.max_forwards(), Some(69));
    assert_eq!(
        out.request_uri(),
        bye.uri,
        "Request-URI is the peer's Contact, untouched"
    );
    out.assert_content_length();
    // The answer comes back to the caller and ends the call.
    let ok = h.gateway_answers(&out, &response(&out, 200, None));
    assert_eq!(ok.cseq(), (2, Method::Bye));
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

/// A BYE sent to siplb's own address (a peer that took the Record-Route for the remote
/// target) goes to the other side's Contact, not on with siplb's address in it.
#[test]
fn a_request_sent_to_siplbs_own_address_goes_to_the_other_sides_contact() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    let contact = bye.uri.clone();
    bye.uri = "sip:127.0.0.1:5060".into();
    h.caller_sends(&bye.text());
    let out = h.take_one();
    assert!(
        out.is_request(Method::Bye) && out.dst == call.gateway(),
        "{out:?}"
    );
    assert_eq!(out.request_uri(), contact);
    out.assert_content_length();
    // And the gateway's way back, to the caller's Contact.
    let mut back = gateway_in_dialog("INFO", &call.fwd, "gw-tag", "z9hG4bK-info");
    back.uri = "sip:127.0.0.1:5060;transport=udp".into();
    h.deliver(call.gateway(), &back.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(out.request_uri(), "sip:alice@127.0.0.1:5070");
}

#[test]
fn bye_from_gateway_goes_to_the_caller_address() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = gateway_in_dialog("BYE", &call.fwd, "gw-tag", "z9hG4bK-gwbye");
    h.deliver(call.gateway(), &bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_request(Method::Bye));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert_eq!(out.vias().len(), 2);
    assert_eq!(out.request_uri(), "sip:alice@127.0.0.1:5070");
    let ok = response(&out, 200, None);
    h.deliver(caller(), &ok);
    let back = h.take_one();
    assert_eq!(back.dst, call.gateway());
    assert!(back.is_response(200));
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

#[test]
fn in_dialog_request_for_unknown_call_gets_481() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    bye.call_id = "no-such-call".into();
    bye.routes.clear();
    h.caller_sends(&bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(481), "{out:?}");
}

#[test]
fn bye_retransmit_absorbed() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    h.take_one();
    h.advance(Duration::from_millis(100));
    h.caller_sends(&bye);
    h.expect_nothing();
}

#[test]
fn bye_retransmit_after_final_gets_the_final_again() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd = h.take_one();
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, None));
    h.caller_sends(&bye);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (caller(), &ok.data));
}

#[test]
fn non_invite_retransmit_after_provisional_gets_the_provisional() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let info = caller_in_dialog("INFO", &call.ok, "z9hG4bK-info", 2).text();
    h.caller_sends(&info);
    let fwd = h.take_one();
    let prov = h.gateway_answers(&fwd, &response(&fwd, 183, None));
    h.caller_sends(&info);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (caller(), &prov.data));
}

#[test]
fn timer_e_retransmits_bye_doubling_capped_at_t2() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let start = h.elapsed();
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    let mut at = start;
    for interval in [T1, T1 * 2, T1 * 4, T2, T2, T2] {
        at += interval;
        h.advance_to(at - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!((out.dst, &out.data), (fwd.dst, &fwd.data));
    }
}

#[test]
fn timer_e_uses_t2_once_proceeding() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.expect_nothing();
    // The first retransmission is still due at T1 (Timer E was set then); after it, T2.
    h.advance(T1);
    h.take_one();
    h.advance(T2 - MS);
    h.expect_nothing();
    h.advance(MS);
    assert!(h.take_one().is_request(Method::Bye));
}

#[test]
fn timer_f_times_out_bye_without_408() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let start = h.elapsed();
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    h.take_one();
    // The dialog ends with the BYE; its record stays for the BYE's transaction.
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    h.advance_to(start + t1s(64) - MS);
    assert!(
        h.take()
            .iter()
            .all(|o| o.dst == call.gateway() && o.is_request(Method::Bye))
    );
    assert_eq!(h.txn(Method::Bye).1, ClientState::Calling);
    h.advance(MS);
    h.expect_nothing(); // RFC 4320: no 408 for a non-INVITE
    assert!(
        !h.txn_states().iter().any(|(m, ..)| *m == Method::Bye),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn timer_j_keeps_the_bye_answer_for_64_t1() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd = h.take_one();
    let start = h.elapsed();
    h.gateway_answers(&fwd, &response(&fwd, 200, None));
    h.advance_to(start + t1s(64) - MS);
    h.caller_sends(&bye);
    assert!(h.take_one().is_response(200));
    assert_eq!(h.txn(Method::Bye).0, ServerState::Completed);
    h.advance(MS);
    assert!(
        !h.txn_states().iter().any(|(m, ..)| *m == Method::Bye),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn timer_k_absorbs_response_retransmissions_for_t4() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    let ok = response(&fwd, 200, None);
    h.gateway_answers(&fwd, &ok);
    h.advance(T4 - MS);
    h.deliver(fwd.dst, &ok);
    h.expect_nothing();
    assert_eq!(h.txn(Method::Bye).1, ClientState::Completed);
    h.advance(MS);
    assert_eq!(h.txn(Method::Bye).1, ClientState::Terminated);
    assert_eq!(
        h.stats.fwd_replies.get(),
        3,
        "180 and 200 of the INVITE, 200 of the BYE once"
    );
}

// ----------------------------------------------------------------------------------- ACK

#[test]
fn ack_for_2xx_forwarded_to_the_gateway_by_dialog_id() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    let ack = ack_2xx(&ok, "z9hG4bK-ack");
    assert_eq!(ack.routes.len(), 1, "route set from Record-Route");
    h.caller_sends(&ack.text());
    let out = h.take_one();
    assert_eq!(out.dst, fwd.dst);
    assert!(out.is_request(Method::Ack));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert_eq!(out.vias().len(), 2);
    assert!(out.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
    assert_ne!(
        out.branch(),
        fwd.branch(),
        "ACK for 2xx is a transaction of its own"
    );
    assert_eq!(out.max_forwards(), Some(69));
    assert_eq!(out.cseq(), (1, Method::Ack));
    assert_eq!(
        out.request_uri(),
        uri_of(&ok.header(HeaderName::Contact).unwrap())
    );
    out.assert_content_length();
}

#[test]
fn ack_for_2xx_retransmission_forwarded_with_the_same_branch() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let ack = ack_2xx(&call.ok, "z9hG4bK-ack-c1").text();
    h.caller_sends(&ack);
    let again = h.take_one();
    h.caller_sends(&ack);
    let third = h.take_one();
    assert_eq!(again.data, third.data);
}

#[test]
fn ack_without_call_absorbed() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut ack = ack_2xx(&call.ok, "z9hG4bK-ack");
    ack.call_id = "other".into();
    ack.routes.clear();
    h.caller_sends(&ack.text());
    h.expect_nothing();
}

#[test]
fn ack_never_answered() {
    // RFC 3261 §17: an ACK gets no response, whatever is wrong with it.
    let mut h = Harness::new();
    let mut ack = invite("c1", "z9hG4bK-a");
    ack.method = "ACK";
    ack.body.clear();
    h.deliver(stranger(), &ack.text());
    h.expect_nothing();
    ack.max_forwards = Some(0);
    h.caller_sends(&ack.text());
    h.expect_nothing();
    ack.max_forwards = Some(70);
    ack.routes = vec!["<sip:198.51.100.1;lr>".into()];
    h.caller_sends(&ack.text());
    h.expect_nothing();
    h.caller_sends("ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nCSeq: 1 ACK\r\n\r\n");
    h.expect_nothing();
}

// -------------------------------------------------------------------------------- CANCEL

/// The caller cancels before the gateway said anything: 200 to the CANCEL and, as Kamailio's
/// `tm` does, 487 at once; the caller's ACK ends it here.
fn cancel_unanswered_invite(h: &mut Harness, inv: &Req) {
    h.caller_sends(&cancel(inv).text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out.iter().all(|o| o.dst == caller()), "{out:#?}");
    let ok = out.iter().find(|o| o.is_response(200)).expect("200");
    assert_eq!(ok.cseq(), (1, Method::Cancel));
    let terminated = out.iter().find(|o| o.is_response(487)).expect("487");
    assert_eq!(terminated.cseq(), (1, Method::Invite));
    h.caller_sends(&ack_non_2xx(inv, terminated).text());
    h.expect_nothing();
}

#[test]
fn cancel_before_provisional_answers_487_at_once_and_holds_the_cancel() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    cancel_unanswered_invite(&mut h, &inv);
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    // RFC 3261 §9.1: no CANCEL before a provisional response; nor is the INVITE sent again
    // (Kamailio's default `cancel_b_method`).
    h.advance(T1 * 4);
    h.expect_nothing();
    // The gateway's ringing is not passed on: it gets the CANCEL.
    h.deliver(fwd.dst, &response(&fwd, 180, Some("gw-tag")));
    let c = h.take_one();
    assert_eq!(c.dst, fwd.dst);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.branch(), fwd.branch());
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing();
    // Its 487 is acknowledged and not passed on either: the caller had its answer.
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let ack = h.take_one();
    assert_eq!(ack.dst, fwd.dst);
    assert!(ack.is_request(Method::Ack), "{ack:?}");
    h.advance(t1s(64));
    h.expect_nothing();
}

#[test]
fn cancel_before_provisional_of_a_silent_gateway_says_nothing_more_at_timer_b() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    cancel_unanswered_invite(&mut h, &inv);
    // The gateway never answers: nothing more to it or to the caller, and the attempt is
    // gone after Timer B.
    h.advance(t1s(64));
    h.expect_nothing();
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
}

#[test]
fn an_answer_after_the_callers_487_is_acked_and_ended_by_siplb() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    cancel_unanswered_invite(&mut h, &inv);
    // The gateway answers before it saw anything of the CANCEL (none was sent).
    let ok = response(&fwd, 200, Some("gw-tag"));
    h.deliver(fwd.dst, &ok);
    let out = h.take();
    assert_eq!(out.len(), 2, "ACK and BYE to the gateway only: {out:#?}");
    assert!(out.iter().all(|o| o.dst == fwd.dst), "{out:#?}");
    assert!(out.iter().any(|o| o.is_request(Method::Ack)), "{out:#?}");
    let bye = out.iter().find(|o| o.is_request(Method::Bye)).expect("BYE");
    assert_eq!(bye.call_id(), fwd.call_id());
    // A copy of the 2xx gets the ACK again, and no second BYE.
    h.deliver(fwd.dst, &ok);
    let again = h.take_one();
    assert!(
        again.is_request(Method::Ack) && again.dst == fwd.dst,
        "{again:?}"
    );
    h.deliver(fwd.dst, &response(bye, 200, Some("gw-tag")));
    h.expect_nothing();
}

/// A re-INVITE cancelled before the gateway said anything gets its 487 at once too; but the
/// call is up, so a 2xx that comes after is relayed (RFC 3261 §16.7 step 5), not ended.
#[test]
fn a_reinvite_cancelled_early_keeps_the_call_and_relays_a_late_2xx() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let reinvite = caller_in_dialog("INVITE", &call.ok, "z9hG4bK-re", 2);
    h.caller_sends(&reinvite.text());
    let fwd = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("re-INVITE forwarded");
    h.caller_sends(&cancel(&reinvite).text());
    let out = h.take();
    assert!(out.iter().any(|o| o.is_response(487)), "{out:#?}");
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, None));
    assert!(
        ok.is_response(200) && ok.cseq() == (2, Method::Invite),
        "{ok:?}"
    );
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    h.expect_nothing();
}

#[test]
fn cancel_after_provisional_answered_and_sent_downstream() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ok = out.iter().find(|o| o.dst == caller()).unwrap();
    let c = out.iter().find(|o| o.dst == fwd.dst).unwrap();
    assert!(ok.is_response(200));
    assert_eq!(ok.cseq(), (1, Method::Cancel));
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(
        c.first_line(),
        format!("CANCEL {} SIP/2.0", fwd.request_uri())
    );
    assert_eq!(c.branch(), fwd.branch(), "same branch as the INVITE");
    assert_eq!(c.vias().len(), 1, "only our Via");
    assert_eq!(c.cseq(), (fwd.cseq().0, Method::Cancel));
    assert_eq!(c.call_id(), fwd.call_id());
    assert_eq!(c.header(HeaderName::From), fwd.header(HeaderName::From));
    assert_eq!(c.header(HeaderName::To), fwd.header(HeaderName::To));
    assert!(c.max_forwards().is_some());
    c.assert_content_length();
}

#[test]
fn cancelled_invite_487_forwarded_and_acked_hop_by_hop() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing(); // the 200 for our CANCEL stays here
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    let ack = out
        .iter()
        .find(|o| o.dst == fwd.dst)
        .expect("ACK to the gateway");
    let terminated = out
        .iter()
        .find(|o| o.dst == caller())
        .expect("487 to the caller");
    assert!(terminated.is_response(487));
    assert_eq!(terminated.cseq(), (1, Method::Invite));
    assert!(ack.is_request(Method::Ack));
    assert_eq!(ack.branch(), fwd.branch());
    assert_eq!(ack.cseq(), (fwd.cseq().0, Method::Ack));
    // The caller's ACK for the 487 ends here.
    h.caller_sends(&ack_non_2xx(&inv, terminated).text());
    h.expect_nothing();
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

#[test]
fn ok_crossing_cancel_forwarded_and_call_confirmed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    // The gateway answered before it saw the CANCEL.
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert!(ok.is_response(200));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing();
    h.caller_sends(&caller_in_dialog("ACK", &ok, "z9hG4bK-ack", 1).text());
    assert_eq!(h.take_one().dst, fwd.dst);
    // No 487 from siplb later either.
    h.advance(Duration::from_secs(64));
    h.expect_nothing();
}

#[test]
fn cancel_for_unknown_transaction_gets_481() {
    let mut h = Harness::new();
    h.caller_sends(&cancel(&invite("c1", "z9hG4bK-nothing")).text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(481), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn cancel_retransmit_gets_200_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    let c = cancel(&inv).text();
    h.caller_sends(&c);
    let ok = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&c);
    let again = h.take_one();
    assert_eq!(
        (again.dst, &again.data),
        (caller(), &ok.data),
        "not sent downstream twice"
    );
}

#[test]
fn cancel_after_final_not_sent_downstream() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.take();
    h.caller_sends(&cancel(&inv).text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(200));
}

#[test]
fn local_cancel_retransmitted_until_answered() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.advance(T1);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (fwd.dst, &c.data));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.advance(Duration::from_secs(10));
    h.expect_nothing();
}
