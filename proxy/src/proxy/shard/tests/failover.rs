//! Failover inside the transaction (RFC 3261 §16.7): a call whose gateway times out, answers
//! 408 or one of the set's failover codes moves on to the next gateway of the set with a new
//! branch; the caller sees one call and one final answer, and a gateway's 503 reaches it as
//! 500 without `Retry-After`.

use super::*;
use crate::proxy::event::Event;

fn with_failover() -> Harness {
    Harness::with_config(|c| {
        c.routing.gateways.sets[0].failover = true;
        c.emit.dialogs = true;
    })
}

fn other(gw: SocketAddr) -> SocketAddr {
    if gw == gw1() { gw2() } else { gw1() }
}

/// The calls' records the shard has emitted.
fn dialog_records(h: &mut Harness) -> Vec<crate::proxy::event::DialogRecord> {
    std::iter::from_fn(|| h.shard.poll_event())
        .filter_map(|e| match e {
            Event::Dialog(d) => Some(*d),
            _ => None,
        })
        .collect()
}

fn with_retry_after(resp: String) -> String {
    resp.replace("Content-Length: 0", "Retry-After: 120\r\nContent-Length: 0")
}

#[test]
fn a_503_moves_the_call_to_the_other_gateway_and_the_caller_sees_only_the_answer() {
    let mut h = with_failover();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(
        first.dst,
        &with_retry_after(response(&first, 503, Some("g1"))),
    );
    let out = h.take();
    // The 503 is ACKed to the first gateway; the INVITE goes to the other one.
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(
        out[0].is_request(Method::Ack) && out[0].dst == first.dst,
        "{out:#?}"
    );
    let second = &out[1];
    assert!(second.is_request(Method::Invite), "{second:?}");
    assert_eq!(second.dst, other(first.dst));
    assert_ne!(second.branch(), first.branch(), "a new branch");
    assert_eq!(second.cseq(), first.cseq(), "the same request");
    assert_eq!(h.stats.failovers.get(), 1);
    // The second gateway answers: the caller gets the 200, and the dialog lives there.
    let ok = h.gateway_answers(second, &response(second, 200, Some("g2")));
    assert!(ok.is_response(200), "{ok:?}");
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    let ack = h.take_one();
    assert_eq!(ack.dst, second.dst);
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    let bye = h.take_one();
    assert_eq!(bye.dst, second.dst);
    h.deliver(bye.dst, &response(&bye, 200, None));
    h.take();
    let records = dialog_records(&mut h);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].attempts, 2);
    assert_eq!(records[0].gateway.map(|g| g.addr), Some(second.dst));
}

#[test]
fn when_every_gateway_answers_503_the_caller_gets_500_without_retry_after() {
    let mut h = with_failover();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(
        first.dst,
        &with_retry_after(response(&first, 503, Some("g1"))),
    );
    let second = h.take().pop().unwrap();
    h.deliver(
        second.dst,
        &with_retry_after(response(&second, 503, Some("g2"))),
    );
    let out = h.take();
    let to_caller: Vec<&Out> = out.iter().filter(|o| o.dst == caller()).collect();
    assert_eq!(to_caller.len(), 1, "{out:#?}");
    let fin = to_caller[0];
    assert!(fin.is_response(500), "{fin:?}");
    assert_eq!(fin.named("Retry-After"), None, "{fin:?}");
    assert_eq!(fin.vias().len(), 1, "siplb's Via is off: {fin:?}");
    assert!(h.call_state("c1").is_none_or(|s| s == DialogState::Ended));
    // The call's record has the reply the caller got.
    let records = dialog_records(&mut h);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].outcome.code, &*records[0].outcome.reason),
        (Some(500), "Server Internal Error")
    );
}

#[test]
fn a_silent_gateway_is_left_after_the_failover_timeout() {
    let mut h = Harness::with_config(|c| {
        c.routing.gateways.sets[0].failover = true;
        c.routing.gateways.sets[0].failover_timeout = Some(Duration::from_millis(1400));
    });
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    // Timer A resends the INVITE to the first gateway, until the failover timeout.
    h.advance(Duration::from_millis(1399));
    let resent = h.take();
    assert!(
        resent
            .iter()
            .all(|o| o.dst == first.dst && o.is_request(Method::Invite))
    );
    h.advance(Duration::from_millis(1));
    let out = h.take();
    assert_eq!(
        out.len(),
        1,
        "no CANCEL without a provisional, no 408: {out:#?}"
    );
    assert!(out[0].is_request(Method::Invite) && out[0].dst == other(first.dst));
    // The first gateway's late answer to the attempt left behind gets its ACK.
    h.deliver(first.dst, &response(&first, 500, Some("g1")));
    let ack = h.take_one();
    assert!(
        ack.is_request(Method::Ack) && ack.dst == first.dst,
        "{ack:?}"
    );
    assert_eq!(ack.branch(), first.branch());
    let ok = h.gateway_answers(&out[0], &response(&out[0], 200, Some("g2")));
    assert!(ok.is_response(200));
}

#[test]
fn a_busy_callee_is_not_tried_elsewhere() {
    let mut h = with_failover();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(first.dst, &response(&first, 486, Some("g1")));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(486)),
        "{out:#?}"
    );
    assert!(
        !out.iter().any(|o| o.is_request(Method::Invite)),
        "{out:#?}"
    );
    assert_eq!(h.stats.failovers.get(), 0);
}

#[test]
fn a_cancel_reaches_the_attempt_that_is_running() {
    let mut h = with_failover();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, first) = h.start_call(&inv);
    h.deliver(first.dst, &response(&first, 503, Some("g1")));
    let second = h.take().pop().unwrap();
    h.deliver(second.dst, &response(&second, 180, Some("g2")));
    h.take();
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    let c = out
        .iter()
        .find(|o| o.is_request(Method::Cancel))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert_eq!(c.dst, second.dst);
    assert_eq!(c.branch(), second.branch());
}

#[test]
fn the_first_gateways_late_answers_are_not_relayed() {
    let mut h = with_failover();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let busy = response(&first, 503, Some("g1"));
    h.deliver(first.dst, &busy);
    h.take();
    // Its 503 again: ACKed again (RFC 3261 §17.1.1.2), as the first copy was.
    h.deliver(first.dst, &busy);
    let ack = h.take_one();
    assert!(
        ack.is_request(Method::Ack) && ack.dst == first.dst,
        "{ack:?}"
    );
    assert_eq!(ack.branch(), first.branch());
    assert!(ack.header(HeaderName::To).unwrap().ends_with(";tag=g1"));
    // From anywhere else, nothing.
    h.deliver(caller(), &busy);
    h.expect_nothing();
    h.deliver(first.dst, &response(&first, 200, Some("g1")));
    assert!(
        h.take().iter().all(|o| o.dst != caller()),
        "nothing of the first attempt reaches the caller"
    );
}

/// A gateway that answers after siplb moved on to the next one: the caller never hears of
/// it, and siplb ACKs the 2xx (each copy) and ends that call with one BYE, so that the
/// gateway does not keep an answered call nobody is on.
#[test]
fn a_late_2xx_from_a_gateway_left_behind_is_acked_and_ended_with_a_bye() {
    let mut h = Harness::with_config(|c| {
        c.routing.gateways.sets[0].failover = true;
        c.routing.gateways.sets[0].failover_timeout = Some(Duration::from_millis(1400));
    });
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(Duration::from_millis(1400));
    let second = h.take().pop().unwrap();
    assert!(second.is_request(Method::Invite) && second.dst == other(first.dst));
    let late = response(&first, 200, Some("g1"));
    let contact = late
        .split_once("Contact: <")
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(uri, _)| uri.to_string())
        .expect("the 2xx's Contact");
    h.deliver(first.dst, &late);
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let (ack, bye) = (&out[0], &out[1]);
    assert!(
        ack.is_request(Method::Ack) && ack.dst == first.dst,
        "{ack:?}"
    );
    assert!(
        bye.is_request(Method::Bye) && bye.dst == first.dst,
        "{bye:?}"
    );
    for m in [ack, bye] {
        assert!(
            m.text().contains(&format!(" {contact} SIP/2.0\r\n")),
            "{m:?}"
        );
        assert_eq!(m.call_id(), first.call_id());
        assert_eq!(m.header(HeaderName::From), first.header(HeaderName::From));
        assert!(m.header(HeaderName::To).unwrap().ends_with(";tag=g1"));
    }
    assert_eq!(ack.cseq(), (1, Method::Ack));
    assert_eq!(bye.cseq(), (2, Method::Bye));
    assert_ne!(ack.branch(), first.branch());
    assert_eq!(h.stats.orphan_2xx.get(), 1);
    assert_eq!(h.stats.orphan_byes.get(), 1);
    // A retransmission of the 2xx gets the same ACK again, and no second BYE.
    h.deliver(first.dst, &late);
    let again = h.take_one();
    assert!(again.is_request(Method::Ack), "{again:?}");
    assert_eq!(again.branch(), ack.branch());
    // The BYE's 200 ends it; the running attempt goes on untouched.
    h.deliver(bye.dst, &response(bye, 200, None));
    h.expect_nothing();
    let ok = h.gateway_answers(&second, &response(&second, 200, Some("g2")));
    assert!(ok.is_response(200), "{ok:?}");
    // A stranger's 2xx makes siplb send nothing.
    h.deliver("127.0.0.9:5060".parse().unwrap(), &late);
    h.expect_nothing();
}

/// The caller's CANCEL before the gateway rang is held (RFC 3261 §9.1); when the gateway
/// answers 200 only after the caller got its 487, siplb ends that call itself.
#[test]
fn a_2xx_after_the_call_was_cancelled_and_over_is_acked_and_ended() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, first) = h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    h.take();
    h.advance(Duration::from_secs(40));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.is_response(487) && o.dst == caller()),
        "{out:#?}"
    );
    h.deliver(first.dst, &response(&first, 200, Some("late")));
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].is_request(Method::Ack) && out[0].dst == first.dst);
    assert!(out[1].is_request(Method::Bye) && out[1].dst == first.dst);
    assert!(out.iter().all(|o| o.dst != caller()));
}

/// A second 2xx to the call's INVITE with another To tag (a fork behind the gateway) is a
/// dialog siplb would neither count nor bill: it is ACKed and ended with a BYE, and the caller
/// does not see it. A copy of the answer's own 2xx still goes to the caller.
#[test]
fn a_second_dialog_forked_behind_the_gateway_is_acked_and_ended() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.deliver(call.fwd.dst, &response(&call.fwd, 200, Some("gw-tag")));
    let copy = h.take_one();
    assert!(copy.is_response(200) && copy.dst == caller(), "{copy:?}");
    h.deliver(call.fwd.dst, &response(&call.fwd, 200, Some("fork-2")));
    let out = h.take();
    assert!(!out.iter().any(|o| o.dst == caller()), "{out:#?}");
    assert_eq!(out.len(), 2, "{out:#?}");
    let (ack, bye) = (&out[0], &out[1]);
    assert!(
        ack.is_request(Method::Ack) && ack.dst == call.fwd.dst,
        "{ack:?}"
    );
    assert!(
        bye.is_request(Method::Bye) && bye.dst == call.fwd.dst,
        "{bye:?}"
    );
    for m in [ack, bye] {
        assert!(m.header(HeaderName::To).unwrap().ends_with(";tag=fork-2"));
    }
    assert_eq!(h.stats.orphan_2xx.get(), 1);
    assert_eq!(h.stats.orphan_byes.get(), 1);
    assert!(h.call_state("c1").is_some(), "the call itself goes on");
}
