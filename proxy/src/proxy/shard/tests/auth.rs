//! Digest authentication towards trunks: a challenge from a gateway siplb has credentials
//! for is answered by resending with CSeq + 1, and the CSeq stays shifted both ways for the
//! rest of the dialog; the caller never sees the challenge nor the shift.

use super::*;
use crate::proxy::gateway::{Credentials, Secret};

fn with_credentials() -> Harness {
    with_credentials_and(|_| {})
}

fn with_credentials_and(f: impl FnOnce(&mut ProxyConfig)) -> Harness {
    Harness::with_config(|c| {
        f(c);
        for g in &mut c.routing.gateways.sets[0].gateways {
            g.credentials = Some(Credentials {
                user: "siplb".into(),
                secret: Secret::Password("trunk-secret".into()),
            });
        }
    })
}

pub(super) fn challenge(req: &Out, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    response(req, 407, Some("gw-auth")).replace(
        "Content-Length: 0",
        &format!(
            "Proxy-Authenticate: Digest realm=\"trunk\", nonce=\"n1\", qop=\"auth\"{stale}\r\n\
             Content-Length: 0"
        ),
    )
}

/// The INVITE challenged and sent again: (the first copy, the authenticated one).
fn challenged_call(h: &mut Harness, inv: &Req) -> (Out, Out) {
    let (_, first) = h.start_call(inv);
    h.deliver(first.dst, &challenge(&first, false));
    let mut out = h.take();
    assert_eq!(out.len(), 2, "the 407's ACK and the INVITE again: {out:#?}");
    assert!(out[0].is_request(Method::Ack) && out[0].dst == first.dst);
    assert_eq!(out[0].cseq(), (1, Method::Ack));
    let again = out.pop().unwrap();
    (first, again)
}

#[test]
fn a_challenged_invite_goes_again_with_credentials_and_cseq_plus_one() {
    let mut h = with_credentials();
    let (first, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    assert!(again.is_request(Method::Invite));
    assert_eq!(again.dst, first.dst, "the same gateway");
    assert_eq!(again.cseq(), (2, Method::Invite));
    assert_ne!(again.branch(), first.branch());
    let auth = again.named("Proxy-Authorization").expect("credentials");
    assert!(
        auth.starts_with("Digest username=\"siplb\", realm=\"trunk\""),
        "{auth}"
    );
    assert!(!again.header_lines(HeaderName::RecordRoute).is_empty());
    assert_eq!(h.stats.auth_resends.get(), 1);
    // The gateway's answers reach the caller with the caller's CSeq.
    let ringing = h.gateway_answers(&again, &response(&again, 180, Some("gw")));
    assert_eq!(ringing.cseq(), (1, Method::Invite));
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    // The caller's ACK and BYE reach the gateway shifted; the BYE's 200 comes back unshifted.
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    let ack = h.take_one();
    assert_eq!((ack.dst, ack.cseq()), (again.dst, (2, Method::Ack)));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    let bye = h.take_one();
    assert_eq!(bye.cseq(), (3, Method::Bye));
    let done = h.gateway_answers(&bye, &response(&bye, 200, None));
    assert_eq!(done.cseq(), (2, Method::Bye));
}

/// The gateway's challenge again (its ACK was lost): ACKed again, though the transaction
/// has moved on to the authenticated attempt.
#[test]
fn a_retransmitted_challenge_of_the_first_attempt_is_acked_again() {
    let mut h = with_credentials();
    let (first, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    h.deliver(first.dst, &challenge(&first, false));
    let ack = h.take_one();
    assert!(
        ack.is_request(Method::Ack) && ack.dst == first.dst,
        "{ack:?}"
    );
    assert_eq!(
        (ack.branch(), ack.cseq()),
        (first.branch(), (1, Method::Ack))
    );
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    assert!(ok.is_response(200));
}

#[test]
fn a_second_challenge_goes_to_the_caller_with_its_cseq_and_nothing_is_left() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    h.deliver(again.dst, &challenge(&again, false));
    let out = h.take();
    let to_caller: Vec<&Out> = out.iter().filter(|o| o.dst == caller()).collect();
    assert_eq!(to_caller.len(), 1, "{out:#?}");
    assert!(to_caller[0].is_response(407));
    assert_eq!(to_caller[0].cseq(), (1, Method::Invite));
    assert!(
        !out.iter().any(|o| o.is_request(Method::Invite)),
        "no loop: {out:#?}"
    );
    assert_eq!(h.stats.auth_resends.get(), 1);
    assert_eq!(
        h.stats.auth_failures.get(),
        1,
        "the second challenge counted"
    );
    h.advance(Duration::from_secs(64));
    assert_eq!(h.shard.transactions(), 0);
    assert!(h.call_state("c1").is_none());
}

#[test]
fn a_stale_nonce_gets_one_more_try() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    h.deliver(again.dst, &challenge(&again, true));
    let out = h.take();
    let third = out
        .iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("once more");
    assert_eq!(third.cseq(), (3, Method::Invite));
    h.deliver(third.dst, &challenge(third, true));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(407)),
        "{out:#?}"
    );
}

#[test]
fn a_cancel_of_the_resent_invite_carries_its_branch_and_cseq() {
    let mut h = with_credentials();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, again) = challenged_call(&mut h, &inv);
    h.gateway_answers(&again, &response(&again, 180, Some("gw")));
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    let c = out
        .iter()
        .find(|o| o.is_request(Method::Cancel))
        .expect("CANCEL");
    assert_eq!(c.branch(), again.branch());
    assert_eq!(c.cseq(), (2, Method::Cancel));
    h.deliver(again.dst, &response(&again, 487, Some("gw")));
    let out = h.take();
    let fin = out.iter().find(|o| o.dst == caller()).expect("487");
    assert!(fin.is_response(487));
    assert_eq!(fin.cseq(), (1, Method::Invite));
}

#[test]
fn a_challenged_bye_is_answered_too_and_the_shift_grows() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    h.caller_sends(&caller_in_dialog("INFO", &ok, "z9hG4bK-info", 2).text());
    let info = h.take_one();
    assert_eq!(info.cseq(), (3, Method::Info));
    h.deliver(info.dst, &challenge(&info, false));
    let info2 = h.take_one();
    assert!(info2.is_request(Method::Info), "{info2:?}");
    assert_eq!(info2.cseq(), (4, Method::Info));
    let back = h.gateway_answers(&info2, &response(&info2, 200, None));
    assert_eq!(back.cseq(), (2, Method::Info));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 3).text());
    assert_eq!(h.take_one().cseq(), (5, Method::Bye));
}

#[test]
fn a_shifted_cseq_never_passes_the_largest_a_cseq_may_be() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    for (n, branch) in [
        (2_147_483_646u32, "z9hG4bK-i1"),
        (2_147_483_647, "z9hG4bK-i2"),
    ] {
        h.caller_sends(&caller_in_dialog("INFO", &ok, branch, n).text());
        let info = h.take_one();
        assert_eq!(info.cseq(), (2_147_483_647, Method::Info), "from {n}");
        // Its answer goes back with the caller's own number, shifted or not.
        let done = h.gateway_answers(&info, &response(&info, 200, None));
        assert_eq!(done.cseq(), (n, Method::Info), "from {n}");
    }
}

#[test]
fn the_gateways_own_requests_are_not_shifted() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    let bye = gateway_in_dialog("BYE", &again, "gw", "z9hG4bK-gbye");
    h.deliver(again.dst, &bye.text());
    let to_caller = h.take_one();
    assert_eq!(to_caller.cseq(), (1, Method::Bye));
}

#[test]
fn without_credentials_the_challenge_goes_to_the_caller() {
    let mut h = Harness::new();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(first.dst, &challenge(&first, false));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(407)),
        "{out:#?}"
    );
    assert_eq!(h.stats.auth_resends.get(), 0);
    assert_eq!(
        h.stats.auth_failures.get(),
        0,
        "no credentials, nothing given up"
    );
}

#[test]
fn failover_after_an_authenticated_attempt_starts_clean_at_the_next_gateway() {
    let mut h = with_credentials_and(|c| c.routing.gateways.sets[0].failover = true);
    let (first, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    h.deliver(again.dst, &response(&again, 503, Some("gw")));
    let next = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("the next gateway");
    assert_ne!(next.dst, first.dst);
    assert_eq!(next.cseq(), (1, Method::Invite));
    assert_eq!(next.named("Proxy-Authorization"), None);
    let ok = h.gateway_answers(&next, &response(&next, 200, Some("gw2")));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    let ack = h.take_one();
    assert_eq!((ack.dst, ack.cseq()), (next.dst, (1, Method::Ack)));
}

#[test]
fn a_reinvite_inside_an_authenticated_dialog_works_from_either_side() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c1", "z9hG4bK-a"));
    let ok = h.gateway_answers(&again, &response(&again, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    // From the caller: shifted toward the trunk, its answers and the ACK as the caller wrote.
    h.caller_sends(&caller_in_dialog("INVITE", &ok, "z9hG4bK-re1", 2).text());
    let out = h.take();
    let re = out
        .iter()
        .find(|o| o.is_request(Method::Invite))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert_eq!((re.dst, re.cseq()), (again.dst, (3, Method::Invite)));
    let re_ok = h.gateway_answers(re, &response(re, 200, None));
    assert_eq!(re_ok.cseq(), (2, Method::Invite));
    h.caller_sends(&caller_in_dialog("ACK", &ok, "z9hG4bK-re1ack", 2).text());
    assert_eq!(h.take_one().cseq(), (3, Method::Ack));
    // From the trunk: its own CSeq space, untouched both ways.
    let mut from_gw = gateway_in_dialog("INVITE", &again, "gw", "z9hG4bK-re2");
    from_gw.cseq = 7;
    h.deliver(again.dst, &from_gw.text());
    let out = h.take();
    let to_caller = out
        .iter()
        .find(|o| o.is_request(Method::Invite))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert_eq!(
        (to_caller.dst, to_caller.cseq()),
        (caller(), (7, Method::Invite))
    );
    h.deliver(caller(), &response(to_caller, 200, None));
    let back = h
        .take()
        .into_iter()
        .find(|o| o.dst == again.dst)
        .expect("the 200 to the trunk");
    assert_eq!(back.cseq(), (7, Method::Invite));
}

/// A challenge that crosses the caller's CANCEL is not answered (RFC 3261 §16.10: no new
/// attempt after a CANCEL): the gateway's 407 is ACKed and the caller gets 487, whether the
/// CANCEL was held (no provisional yet) or already sent on.
#[test]
fn a_challenge_that_crosses_the_callers_cancel_ends_the_call_with_487() {
    for rang in [false, true] {
        let mut h = with_credentials();
        let inv = invite("c-x", "z9hG4bK-x");
        let (_, first) = h.start_call(&inv);
        if rang {
            h.gateway_answers(&first, &response(&first, 180, Some("gw")));
        }
        h.caller_sends(&cancel(&inv).text());
        let mut out = h.take();
        assert!(out.iter().any(|o| o.dst == caller() && o.is_response(200)));
        assert_eq!(
            out.iter().any(|o| o.is_request(Method::Cancel)),
            rang,
            "a CANCEL goes on once the gateway has answered: {out:#?}"
        );
        // Before the gateway said anything the caller has its 487 at once.
        out.retain(|o| !o.is_response(200) && !o.is_request(Method::Cancel));
        h.deliver(first.dst, &challenge(&first, false));
        out.extend(h.take());
        assert!(
            !out.iter().any(|o| o.is_request(Method::Invite)),
            "rang {rang}: no authenticated INVITE after the CANCEL: {out:#?}"
        );
        assert!(
            out.iter()
                .any(|o| o.dst == first.dst && o.is_request(Method::Ack))
        );
        let fin = out
            .iter()
            .find(|o| o.dst == caller())
            .expect("the caller's answer");
        assert!(fin.is_response(487), "rang {rang}: {fin:#?}");
        assert_eq!(fin.cseq(), (1, Method::Invite));
        assert_eq!(h.stats.auth_resends.get(), 0);
    }
}

/// Responses go back to the caller with the CSeq of the caller's own request, whatever
/// number the gateway's response carries: a gateway's `CSeq: 0` does not become 2^32 − 1.
#[test]
fn a_response_goes_back_with_the_callers_cseq_whatever_the_gateway_wrote() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c-q", "z9hG4bK-q"));
    let wrong = response(&again, 180, Some("gw")).replace("CSeq: 2 INVITE", "CSeq: 0 INVITE");
    assert_ne!(
        wrong,
        response(&again, 180, Some("gw")),
        "the test changed the CSeq"
    );
    let ringing = h.gateway_answers(&again, &wrong);
    assert_eq!(ringing.cseq(), (1, Method::Invite));
}

/// After an authenticated resend a PRACK's `RAck` names the INVITE by the CSeq the gateway
/// saw (RFC 3262 §7.2), shifted as the PRACK's own CSeq is.
#[test]
fn a_prack_names_the_invite_by_its_shifted_cseq() {
    let mut h = with_credentials();
    let (_, again) = challenged_call(&mut h, &invite("c-p", "z9hG4bK-p"));
    let reliable = response(&again, 183, Some("gw")).replace(
        "Content-Length: 0",
        "Require: 100rel\r\nRSeq: 1\r\nContent-Length: 0",
    );
    let early = h.gateway_answers(&again, &reliable);
    assert_eq!(early.cseq(), (1, Method::Invite));
    let mut prack = caller_in_dialog("PRACK", &early, "z9hG4bK-pr", 2);
    prack.extra = "RAck: 1 1 INVITE\r\n".into();
    h.caller_sends(&prack.text());
    let out = h.take_one();
    assert!(out.is_request(Method::Prack), "{out:#?}");
    assert_eq!(out.cseq(), (3, Method::Prack));
    assert_eq!(out.named("RAck").as_deref(), Some("1 2 INVITE"));
}

/// The call whose INVITE went to the gateway as `fwd` answered and ACKed, then left to its
/// dialog timeout (2 s in these tests): the BYE siplb sends the gateway.
fn timed_out(h: &mut Harness, fwd: &Out) -> Out {
    let ok = h.gateway_answers(fwd, &response(fwd, 200, Some("gw")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    h.advance(Duration::from_secs(3));
    h.take()
        .into_iter()
        .find(|o| o.dst == fwd.dst && o.is_request(Method::Bye))
        .expect("BYE to the gateway")
}

/// A BYE of siplb's own (here a dialog's timeout) that the gateway challenges goes again
/// with credentials, CSeq + 1 and a new branch; a second challenge is not answered.
#[test]
fn siplbs_own_bye_is_sent_again_with_credentials() {
    let mut h = with_credentials_and(|c| c.dialog.default_timeout = Duration::from_secs(2));
    let (_, again) = challenged_call(&mut h, &invite("c-b", "z9hG4bK-b"));
    let bye = timed_out(&mut h, &again);
    h.deliver(bye.dst, &challenge(&bye, false));
    let out = h.take();
    let bye2 = out
        .iter()
        .find(|o| o.is_request(Method::Bye))
        .unwrap_or_else(|| panic!("the BYE again: {out:#?}"));
    assert_eq!(bye2.dst, bye.dst);
    assert_eq!(bye2.cseq(), (bye.cseq().0 + 1, Method::Bye));
    assert_ne!(bye2.branch(), bye.branch());
    let auth = bye2.named("Proxy-Authorization").expect("credentials");
    assert!(auth.contains("username=\"siplb\""), "{auth}");
    assert_eq!(h.stats.auth_resends.get(), 2);
    // A second challenge: given up, counted.
    h.deliver(bye2.dst, &challenge(bye2, false));
    assert!(!h.take().iter().any(|o| o.is_request(Method::Bye)));
    assert_eq!(h.stats.auth_failures.get(), 1);
}

/// siplb's own BYE through an SBC (407, realm `sbc`) to the softswitch behind it (401, realm
/// `core`): each challenge is answered, the second resend carrying both answers, the first
/// realm's counted on (`nc=00000002`); the same realm again is given up.
#[test]
fn siplbs_own_bye_answers_a_second_realm_too() {
    let mut h = with_credentials_and(|c| c.dialog.default_timeout = Duration::from_secs(2));
    let (_, first) = h.start_call(&invite("c-r", "z9hG4bK-r"));
    let bye = timed_out(&mut h, &first);
    h.deliver(bye.dst, &challenge_of(&bye, 407, "sbc"));
    let bye2 = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Bye))
        .unwrap();
    assert!(bye2.named("Proxy-Authorization").is_some());
    h.deliver(bye2.dst, &challenge_of(&bye2, 401, "core"));
    let out = h.take();
    let bye3 = out
        .iter()
        .find(|o| o.is_request(Method::Bye))
        .unwrap_or_else(|| panic!("the BYE a third time: {out:#?}"));
    assert_eq!(bye3.cseq(), (bye.cseq().0 + 2, Method::Bye));
    let sbc = bye3.named("Proxy-Authorization").expect("the SBC's answer");
    assert!(
        sbc.contains("realm=\"sbc\"") && sbc.contains("nc=00000002"),
        "{sbc}"
    );
    let core = bye3
        .named("Authorization")
        .expect("the softswitch's answer");
    assert!(
        core.contains("realm=\"core\"") && core.contains("nc=00000001"),
        "{core}"
    );
    let text = bye3.text();
    assert_eq!(
        text.matches("Authorization:").count(),
        2,
        "one answer per realm: {text}"
    );
    h.deliver(bye3.dst, &challenge_of(bye3, 401, "core"));
    assert!(!h.take().iter().any(|o| o.is_request(Method::Bye)));
}

/// A request that would not fit a datagram with its credentials is not sent again: the
/// challenge goes to the caller at once, not after a send that fails.
#[test]
fn a_request_too_big_for_its_credentials_leaves_the_challenge_to_the_caller() {
    let mut h = with_credentials();
    let mut inv = invite("c-big", "z9hG4bK-big");
    inv.body = "a=x-pad:".to_string() + &"y".repeat(65_000) + "\r\n";
    let (_, first) = h.start_call(&inv);
    h.deliver(first.dst, &challenge(&first, false));
    let out = h.take();
    assert!(
        !out.iter().any(|o| o.is_request(Method::Invite)),
        "{}",
        out.len()
    );
    assert!(out.iter().any(|o| o.dst == caller() && o.is_response(407)));
    assert_eq!(h.stats.auth_resends.get(), 0);
}

/// A challenge of `code` (401: `WWW-Authenticate`, 407: `Proxy-Authenticate`) for `realm`.
fn challenge_of(req: &Out, code: u16, realm: &str) -> String {
    let header = if code == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    response(req, code, Some("gw-auth")).replace(
        "Content-Length: 0",
        &format!(
            "{header}: Digest realm=\"{realm}\", nonce=\"n-{realm}\", qop=\"auth\"\r\n\
             Content-Length: 0"
        ),
    )
}

#[test]
fn a_proxys_challenge_then_the_servers_behind_it_are_both_answered() {
    let mut h = with_credentials();
    let (_, first) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(first.dst, &challenge_of(&first, 407, "sbc"));
    let second = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("sent again");
    // The softswitch behind the SBC asks for its own credentials.
    h.deliver(second.dst, &challenge_of(&second, 401, "softswitch"));
    let out = h.take();
    assert!(!out.iter().any(|o| o.dst == caller()), "{out:#?}");
    let third = out
        .iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("sent a third time");
    assert_eq!(third.cseq(), (3, Method::Invite));
    let proxy = third
        .named("Proxy-Authorization")
        .expect("the SBC's answer");
    assert!(proxy.contains("realm=\"sbc\""), "{proxy}");
    assert!(
        proxy.contains("nc=00000002"),
        "its nonce's second use: {proxy}"
    );
    let server = third
        .named("Authorization")
        .expect("the softswitch's answer");
    assert!(server.contains("realm=\"softswitch\""), "{server}");
    assert!(server.contains("nc=00000001"), "{server}");
    assert_eq!(h.stats.auth_resends.get(), 2);
    // Its answer reaches the caller with the caller's CSeq.
    let ok = h.gateway_answers(third, &response(third, 200, Some("gw")));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    // The softswitch refusing the answer again (the password is wrong) ends the resends.
    let mut h = with_credentials();
    let (_, first) = h.start_call(&invite("c2", "z9hG4bK-b"));
    h.deliver(first.dst, &challenge_of(&first, 407, "sbc"));
    let second = h.take().pop().unwrap();
    h.deliver(second.dst, &challenge_of(&second, 401, "softswitch"));
    let third = h.take().pop().unwrap();
    h.deliver(third.dst, &challenge_of(&third, 401, "softswitch"));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(401)),
        "{out:#?}"
    );
    assert!(
        !out.iter().any(|o| o.is_request(Method::Invite)),
        "{out:#?}"
    );
}

#[test]
fn a_request_answers_at_most_three_realms() {
    let mut h = with_credentials();
    let (_, mut sent) = h.start_call(&invite("c1", "z9hG4bK-a"));
    for (i, realm) in ["a", "b", "c"].iter().enumerate() {
        h.deliver(sent.dst, &challenge_of(&sent, 407, realm));
        sent = h
            .take()
            .into_iter()
            .find(|o| o.is_request(Method::Invite))
            .expect("sent again");
        assert_eq!(sent.cseq(), (i as u32 + 2, Method::Invite));
    }
    h.deliver(sent.dst, &challenge_of(&sent, 407, "d"));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(407)),
        "the fourth goes to the caller: {out:#?}"
    );
    assert!(
        !out.iter().any(|o| o.is_request(Method::Invite)),
        "{out:#?}"
    );
}
