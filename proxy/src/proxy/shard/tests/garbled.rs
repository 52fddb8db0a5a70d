//! Answers a broken gateway writes: what siplb passes on, and what its own requests (the ACK
//! of a non-2xx, the BYE at a dialog's timeout) take from them. Found by `fuzz/`.

use super::*;

/// A response with no Via below siplb's (RFC 3261 §16.7 step 3 would drop it) goes to the
/// caller with the Vias the request came with, as siplb's server transaction would answer:
/// sipp's UAS scenarios answer an INVITE with the Vias of the CANCEL that followed it.
#[test]
fn a_response_that_lost_the_callers_via_gets_it_back() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vias = fwd.header_lines(HeaderName::Via);
    let callers = &vias[1];
    let ringing = response(&fwd, 180, Some("gw-tag"));
    let only_ours = ringing.replacen(callers.as_str(), "", 1);
    assert_ne!(ringing, only_ours);
    let out = h.gateway_answers(&fwd, &only_ours);
    assert!(out.is_response(180), "{out:?}");
    assert_eq!(
        out.header_lines(HeaderName::Via),
        std::slice::from_ref(callers)
    );
    assert_eq!(h.stats.replies_vias_restored.get(), 1);
    // The 2xx the same way: passed on with the caller's Via. Its retransmission comes once
    // the transaction no longer keeps the request: dropped rather than sent without a Via.
    let ok = response(&fwd, 200, Some("gw-tag"));
    let ok_ours = ok.replacen(callers.as_str(), "", 1);
    let out = h.gateway_answers(&fwd, &ok_ours);
    assert!(out.is_response(200), "{out:?}");
    assert_eq!(
        out.header_lines(HeaderName::Via),
        std::slice::from_ref(callers)
    );
    assert_eq!(h.stats.replies_vias_restored.get(), 2);
    let dropped = h.stats.drop_replies.get();
    h.deliver(fwd.dst, &ok_ours);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), dropped + 1);
    // A proper retransmission is passed on as ever.
    let again = h.gateway_answers(&fwd, &ok);
    assert!(again.is_response(200), "{again:?}");
    // Both on one line, comma-separated, is the same message: passed on as it is.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-b"));
    let vias = fwd.header_lines(HeaderName::Via);
    let (ours, callers) = (&vias[0], &vias[1]);
    let one_line = response(&fwd, 486, Some("gw-tag")).replacen(
        &format!("{ours}{callers}"),
        &format!("{}, {}", ours.trim_end(), &callers["Via: ".len()..]),
        1,
    );
    h.deliver(fwd.dst, &one_line);
    let busy = h
        .take()
        .into_iter()
        .find(|o| o.dst == caller())
        .expect("the 486 to the caller");
    assert!(busy.is_response(486), "{busy:?}");
    assert_eq!(busy.vias().len(), 1, "{busy:?}");
    assert_eq!(
        busy.vias()[0],
        callers["Via: ".len()..].trim_end(),
        "{busy:?}"
    );
    assert_eq!(h.stats.replies_vias_restored.get(), 2);
}

/// The ACK of a non-2xx final takes the response's To (with the gateway's tag) only when it is
/// one; a garbled To is not copied into the ACK, the INVITE's is used.
#[test]
fn the_ack_of_a_final_with_a_garbled_to_carries_the_invites_to() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let busy = response(&fwd, 486, Some("gw-tag")).replacen("To: <sip:", "To: <s\r\nip:", 1);
    h.deliver(fwd.dst, &busy);
    let ack = h
        .take()
        .into_iter()
        .find(|o| o.dst == fwd.dst)
        .expect("an ACK to the gateway");
    assert!(ack.is_request(Method::Ack), "{ack:?}");
    assert_eq!(ack.branch(), fwd.branch());
    assert_eq!(ack.header(HeaderName::To), fwd.header(HeaderName::To));
}

/// A Contact that cannot be a Request-URI (`*`, another scheme) is not a remote target: the
/// BYE siplb sends at the dialog's timeout goes to the gateway's address instead of `BYE *`.
#[test]
fn a_2xx_contact_that_is_no_request_uri_is_not_the_remote_target() {
    for contact in ["*", "<tel:+15551234>", "<sip:gw@127.0.0.1?Subject=x>"] {
        let timers = DialogTimers {
            default_timeout: Duration::from_secs(10),
            ..DialogTimers::default()
        };
        let mut h = limited(5, timers);
        let inv = invite("c1", "z9hG4bK-a");
        let (_, fwd) = h.start_call(&inv);
        let ok = response(&fwd, 200, Some("gw-tag")).replacen(
            &format!("Contact: <sip:+15551234@{}>", fwd.dst),
            &format!("Contact: {contact}"),
            1,
        );
        let ok = h.gateway_answers(&fwd, &ok);
        h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
        h.take();
        h.advance(Duration::from_secs(12));
        let out = h.take();
        let bye = out
            .iter()
            .find(|o| o.dst == fwd.dst)
            .unwrap_or_else(|| panic!("a BYE to the gateway: {out:#?}"));
        assert!(bye.is_request(Method::Bye), "{bye:?}");
        assert_eq!(bye.request_uri(), format!("sip:{}", fwd.dst), "{contact}");
    }
}

/// A 2xx whose To is no name-addr cannot make a dialog (siplb's BYE would carry that To): it
/// is dropped as unparsable, and the gateway's next, proper one makes the call.
#[test]
fn a_2xx_with_a_garbled_to_is_dropped_and_the_next_one_counts() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = response(&fwd, 200, Some("gw-tag"));
    let garbled = ok.replacen("To: <sip:+", "To: <sip:+>", 1);
    assert_ne!(ok, garbled);
    let bad = h.stats.bad_msg.get();
    h.deliver(fwd.dst, &garbled);
    h.expect_nothing();
    assert_eq!(h.stats.bad_msg.get(), bad + 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
    let relayed = h.gateway_answers(&fwd, &ok);
    assert!(relayed.is_response(200), "{relayed:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
}
