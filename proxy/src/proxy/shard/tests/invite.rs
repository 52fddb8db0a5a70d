//! INVITE transactions: forwarding and the server side, then the client timers (A, B, C, D)
//! and the server timers (G, H, I).

use super::*;

#[test]
fn invite_gets_100_trying_from_siplb() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (trying, _) = h.start_call(&inv);
    assert_eq!(trying.first_line(), "SIP/2.0 100 Trying");
    assert_eq!(trying.to_tag(), None, "100 Trying is hop by hop, no To tag");
    let vias = trying.vias();
    assert_eq!(vias.len(), 1);
    assert!(vias[0].contains("branch=z9hG4bK-a"), "{vias:?}");
    assert_eq!(param_of(&vias[0], "received").as_deref(), Some("127.0.0.1"));
    assert_eq!(param_of(&vias[0], "rport").as_deref(), Some("5070"));
    assert_eq!(trying.cseq(), (1, Method::Invite));
    trying.assert_content_length();
}

#[test]
fn invite_forwarded_with_our_via_on_top_and_received_rport_on_the_callers() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vias = fwd.vias();
    assert_eq!(vias.len(), 2, "{fwd:?}");
    assert!(
        vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"),
        "{vias:?}"
    );
    let ours = fwd.branch();
    assert!(ours.starts_with("z9hG4bK"), "RFC 3261 branch: {ours}");
    assert_ne!(ours, "z9hG4bK-a");
    assert!(vias[1].contains("branch=z9hG4bK-a"));
    assert_eq!(param_of(&vias[1], "received").as_deref(), Some("127.0.0.1"));
    assert_eq!(param_of(&vias[1], "rport").as_deref(), Some("5070"));
    assert_eq!(
        fwd.request_uri(),
        "sip:+15551234@127.0.0.1:5060",
        "Request-URI untouched"
    );
}

#[test]
fn each_invite_gets_its_own_branch() {
    let mut h = Harness::new();
    let (_, a) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let (_, b) = h.start_call(&invite("c2", "z9hG4bK-b"));
    assert_ne!(a.branch(), b.branch());
}

#[test]
fn invite_goes_only_to_configured_gateways_both_used() {
    let mut h = Harness::new();
    let mut seen = Vec::new();
    for i in 0..32 {
        let (_, fwd) = h.start_call(&invite(&format!("spread-{i}"), &format!("z9hG4bK-{i}")));
        seen.push(fwd.dst);
    }
    assert!(seen.contains(&gw1()) && seen.contains(&gw2()), "{seen:?}");
}

#[test]
fn max_forwards_decremented() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = Some(7);
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.max_forwards(), Some(6));
    assert_eq!(fwd.headers(HeaderName::MaxForwards).len(), 1);
}

#[test]
fn missing_max_forwards_gets_one() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = None;
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(
        fwd.max_forwards(),
        Some(70),
        "RFC 3261 §16.6 step 3: SHOULD be 70"
    );
}

#[test]
fn invite_record_routed_with_dialog_id() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let rr = fwd.headers(HeaderName::RecordRoute);
    assert_eq!(rr.len(), 1, "{fwd:?}");
    let uri = uri_of(&rr[0]);
    assert!(uri.starts_with("sip:127.0.0.1:5060;"), "{uri}");
    assert!(uri.contains(";lr"), "{uri}");
    let did = param_of(&uri, "did").expect("did= in Record-Route");
    assert!(
        !did.is_empty() && u64::from_str_radix(&did, 16).is_ok(),
        "{did}"
    );
}

#[test]
fn forwarded_invite_keeps_body_and_content_length() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.body(), SDP.as_bytes());
    fwd.assert_content_length();
    assert_eq!(
        fwd.header(HeaderName::ContentLength).unwrap(),
        SDP.len().to_string()
    );
}

#[test]
fn missing_content_length_added_on_forward() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.content_length = false;
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.body(), SDP.as_bytes());
    fwd.assert_content_length();
}

#[test]
fn invite_retransmit_absorbed_with_100() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.advance(Duration::from_millis(200));
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(100), "{out:?}");
    assert_eq!(h.stats.fwd_requests.get(), 1, "not forwarded twice");
    assert_eq!(h.shard.transactions(), 1);
}

#[test]
fn invite_retransmit_after_180_gets_the_180_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ringing = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(
        out.data, ringing.data,
        "the last provisional, resent as it was"
    );
}

#[test]
fn invite_retransmit_after_final_gets_the_final_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!((out.dst, &out.data), (caller(), &busy.data));
}

#[test]
fn gateway_100_trying_not_forwarded() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.expect_nothing();
    assert_eq!(h.txn(Method::Invite).1, ClientState::Proceeding);
}

#[test]
fn provisional_forwarded_without_our_via() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let out = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(out.first_line(), "SIP/2.0 180 Ringing");
    let vias = out.vias();
    assert_eq!(vias.len(), 1, "{out:?}");
    assert!(vias[0].contains("branch=z9hG4bK-a") && vias[0].contains("received=127.0.0.1"));
    assert_eq!(
        out.headers(HeaderName::RecordRoute),
        fwd.headers(HeaderName::RecordRoute)
    );
    assert_eq!(out.to_tag().as_deref(), Some("gw-tag"));
    out.assert_content_length();
}

#[test]
fn response_without_content_length_gets_one_on_forward() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp = response(&fwd, 180, Some("gw-tag")).replace("Content-Length: 0\r\n", "");
    let out = h.gateway_answers(&fwd, &resp);
    out.assert_content_length();
}

#[test]
fn ok_forwarded_and_call_confirmed() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(ok.first_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    h.caller_sends(&caller_in_dialog("ACK", &ok, "z9hG4bK-ack", 1).text());
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    let call = h.shard.dialog(b"c1").unwrap();
    assert_eq!(call.callee_tag(), Some(&b"gw-tag"[..]));
    assert_eq!(call.gateway.addr, fwd.dst);
    assert_eq!(
        h.txn(Method::Invite),
        (ServerState::Accepted, ClientState::Accepted)
    );
}

#[test]
fn invite_retransmit_after_2xx_absorbed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&inv.text());
    h.expect_nothing();
}

#[test]
fn ok_retransmission_forwarded_end_to_end() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = response(&fwd, 200, Some("gw-tag"));
    let first = h.gateway_answers(&fwd, &ok);
    h.advance(T1);
    let again = h.gateway_answers(&fwd, &ok);
    assert_eq!(first.data, again.data);
    assert_eq!(h.stats.fwd_replies.get(), 2);
}

// ---------------------------------------------------------------------- INVITE client timers

#[test]
fn timer_a_retransmits_invite_at_t1_doubling() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    // T1, 3·T1, 7·T1, 15·T1, 31·T1, 63·T1 after sending: intervals T1, 2T1, 4T1 … (no cap).
    for at in [1, 3, 7, 15, 31, 63] {
        h.advance_to(t1s(at) - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!(out.dst, fwd.dst);
        assert_eq!(
            out.data, fwd.data,
            "retransmission at {at}·T1 is the same INVITE"
        );
    }
    assert_eq!(h.stats.retransmissions.get(), 6);
}

#[test]
fn timer_a_stops_on_provisional() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(T1);
    h.take_one();
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.advance(Duration::from_secs(60));
    h.expect_nothing();
}

#[test]
fn timer_b_sends_408_upstream_at_64_t1() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance_to(t1s(64) - MS);
    let retrans = h.take();
    assert!(retrans.iter().all(|o| o.dst == fwd.dst));
    h.advance(MS);
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(408), "{out:?}");
    assert!(
        out.to_tag().is_some(),
        "a final response siplb makes has a To tag"
    );
    assert_eq!(out.cseq(), (1, Method::Invite));
    assert_eq!(out.vias().len(), 1);
    assert_eq!(h.stats.timeouts.get(), 1);
    h.advance(Duration::from_secs(100));
    assert!(
        h.take().iter().all(|o| o.dst == caller()),
        "no more INVITEs to the gateway"
    );
}

#[test]
fn timer_b_transaction_and_call_cleaned_up() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.advance(t1s(64));
    let timeout = h.take().pop().unwrap();
    assert!(timeout.is_response(408));
    h.caller_sends(&ack_non_2xx(&inv, &timeout).text());
    h.expect_nothing();
    h.advance(T4);
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    h.advance(Duration::from_secs(32));
    assert_eq!(h.shard.dialog_records(), 0);
}

#[test]
fn timer_c_cancels_after_180_s_of_provisional() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.advance(Duration::from_secs(1));
    h.take(); // Timer A
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(180) - MS);
    h.expect_nothing();
    h.advance(MS);
    let c = h.take_one();
    assert_eq!(c.dst, fwd.dst);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.branch(), fwd.branch());
    assert_eq!(c.cseq(), (fwd.cseq().0, Method::Cancel));
    // The gateway gives up as asked: 487 goes upstream, the caller hears the end.
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing();
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(487)),
        "{out:#?}"
    );
    assert!(
        out.iter()
            .any(|o| o.dst == fwd.dst && o.is_request(Method::Ack)),
        "{out:#?}"
    );
}

#[test]
fn timer_c_reset_by_each_provisional() {
    // RFC 3261 §16.7 step 2: a provisional response (101-199) resets Timer C.
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(100));
    h.gateway_answers(&fwd, &response(&fwd, 183, Some("gw-tag")));
    h.advance(Duration::from_secs(180) - MS);
    h.expect_nothing();
    h.advance(MS);
    assert!(h.take_one().is_request(Method::Cancel));
}

#[test]
fn timer_c_without_final_after_cancel_gives_487_upstream() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(180));
    let c = h.take_one();
    assert!(c.is_request(Method::Cancel));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    // The gateway never sends a final response for the INVITE.
    h.advance(t1s(64));
    let out: Vec<_> = h.take().into_iter().filter(|o| o.dst == caller()).collect();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].is_response(487), "{out:?}");
}

#[test]
fn final_response_acked_hop_by_hop_and_forwarded() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ack = out.iter().find(|o| o.dst == fwd.dst).unwrap();
    let busy = out.iter().find(|o| o.dst == caller()).unwrap();
    assert!(busy.is_response(486));
    assert_eq!(busy.vias().len(), 1);
    assert!(ack.is_request(Method::Ack), "{ack:?}");
    assert_eq!(
        ack.branch(),
        fwd.branch(),
        "ACK for non-2xx has the INVITE's branch"
    );
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.cseq(), (fwd.cseq().0, Method::Ack));
    assert_eq!(ack.request_uri(), fwd.request_uri());
    assert_eq!(
        ack.to_tag().as_deref(),
        Some("gw-tag"),
        "To of the response"
    );
    assert_eq!(ack.call_id(), fwd.call_id());
    ack.assert_content_length();
}

#[test]
fn timer_d_absorbs_retransmitted_final_and_resends_ack() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let busy = response(&fwd, 486, Some("gw-tag"));
    h.deliver(fwd.dst, &busy);
    let first_ack = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    let absorbed = h.stats.retrans_absorbed.get();
    h.advance(Duration::from_secs(10));
    h.take(); // Timer G retransmissions toward the caller
    h.deliver(fwd.dst, &busy);
    let out = h.take_one();
    assert_eq!(out.dst, fwd.dst, "the ACK again, nothing to the caller");
    assert_eq!(out.data, first_ack.data);
    assert_eq!(h.stats.retrans_absorbed.get(), absorbed + 1);
    assert_eq!(h.stats.fwd_replies.get(), 1, "486 forwarded once");
}

#[test]
fn timer_d_ends_client_transaction_after_32_s() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(32) - MS);
    assert_eq!(h.txn(Method::Invite).1, ClientState::Completed);
    h.advance(MS);
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    let drops = h.stats.drop_replies.get();
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), drops + 1);
}

// ------------------------------------------------------------------- INVITE server timers

#[test]
fn timer_g_retransmits_final_upstream_doubling_capped_at_t2() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    // Intervals T1, 2T1, 4T1, then T2 (= 8T1) each time.
    let mut at = Duration::ZERO;
    for interval in [T1, T1 * 2, T1 * 4, T2, T2, T2] {
        at += interval;
        h.advance_to(at - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!((out.dst, &out.data), (caller(), &busy.data), "at {at:?}");
    }
}

#[test]
fn timer_g_stops_on_ack() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.advance(T1);
    h.take_one();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(64));
    h.expect_nothing();
}

#[test]
fn ack_for_non_2xx_absorbed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    let fwd_requests = h.stats.fwd_requests.get();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.expect_nothing();
    assert_eq!(
        h.stats.fwd_requests.get(),
        fwd_requests,
        "hop-by-hop ACK not forwarded"
    );
    assert_eq!(h.txn(Method::Invite).0, ServerState::Confirmed);
}

#[test]
fn timer_h_terminates_without_ack() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.take();
    h.advance(t1s(64) - MS);
    let retrans = h.take();
    assert!(
        !retrans.is_empty()
            && retrans
                .iter()
                .all(|o| o.dst == caller() && o.is_response(486))
    );
    assert_eq!(h.txn(Method::Invite).0, ServerState::Completed);
    h.advance(MS);
    h.expect_nothing();
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    h.advance(Duration::from_secs(60));
    h.expect_nothing();
}

#[test]
fn timer_i_ends_confirmed_server_after_t4() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    let ack = ack_non_2xx(&inv, &busy).text();
    h.caller_sends(&ack);
    h.advance(T4 - MS);
    h.caller_sends(&ack);
    h.expect_nothing();
    assert_eq!(
        h.txn(Method::Invite).0,
        ServerState::Confirmed,
        "ACK retransmission absorbed"
    );
    h.advance(MS);
    assert_eq!(h.txn(Method::Invite).0, ServerState::Terminated);
}
