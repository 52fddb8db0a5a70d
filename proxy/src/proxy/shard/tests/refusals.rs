//! Refusals and bad input: what siplb answers itself, and what it drops.

use super::*;

#[test]
fn max_forwards_zero_gets_483() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = Some(0);
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(483), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn unknown_source_gets_403_and_nothing_reaches_a_gateway() {
    let mut h = Harness::new();
    h.deliver(stranger(), &invite("c1", "z9hG4bK-a").text());
    let out = h.take_one();
    assert_eq!(out.dst, stranger());
    assert!(out.is_response(403), "{out:?}");
    assert!(out.to_tag().is_some());
    let via = &out.vias()[0];
    assert_eq!(param_of(via, "received").as_deref(), Some("192.0.2.9"));
    assert_eq!(h.stats.forbidden.get(), 1);
    assert_eq!(h.stats.fwd_requests.get(), 0);
    assert_eq!((h.shard.transactions(), h.shard.dialog_records()), (0, 0));
}

/// `core:forbidden` counts the 403s sent: the ACK of a 403 is dropped, and counted as a
/// dropped request only.
#[test]
fn the_ack_of_a_403_is_not_counted_as_forbidden() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.deliver(stranger(), &inv.text());
    let out = h.take_one();
    assert!(out.is_response(403), "{out:?}");
    h.deliver(stranger(), &ack_non_2xx(&inv, &out).text());
    h.expect_nothing();
    assert_eq!(h.stats.forbidden.get(), 1);
    assert_eq!(h.stats.local_replies.get(), 1);
    assert_eq!(h.stats.drop_requests.get(), 1);
}

#[test]
fn invite_from_gateway_gets_403() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.vias = vec!["SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bK-g".into()];
    h.deliver(gw1(), &inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, gw1());
    assert!(
        out.is_response(403),
        "no relaying between gateways: {out:?}"
    );
}

#[test]
fn preloaded_route_gets_403() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.routes = vec!["<sip:198.51.100.1;lr>".into()];
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(403), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn proxy_require_gets_420_with_unsupported() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.extra += "Proxy-Require: foo\r\n";
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert!(out.is_response(420), "{out:?}");
    assert_eq!(out.named("Unsupported").as_deref(), Some("foo"), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn response_with_foreign_via_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp =
        response(&fwd, 180, Some("gw-tag")).replacen("127.0.0.1:5060", "198.51.100.7:5060", 1);
    h.deliver(fwd.dst, &resp);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
}

#[test]
fn response_with_unknown_branch_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp = response(&fwd, 200, Some("gw-tag")).replace(&fwd.branch(), "z9hG4bK-unknown");
    h.deliver(fwd.dst, &resp);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
}

#[test]
fn full_transaction_table_gets_503_with_retry_after() {
    let mut h = Harness::with_config(|c| {
        c.max_transactions = 2;
        c.retry_after = 7;
    });
    h.start_call(&invite("c1", "z9hG4bK-1"));
    h.start_call(&invite("c2", "z9hG4bK-2"));
    h.caller_sends(&invite("c3", "z9hG4bK-3").text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(503), "{out:?}");
    assert_eq!(out.named("Retry-After").as_deref(), Some("7"), "{out:?}");
    assert_eq!(h.stats.overload_503.get(), 1);
    assert_eq!(h.shard.transactions(), 2);
    assert!(h.call_state("c3").is_none());
}

/// Transactions holding as much memory as `limits.transaction_mb_per_worker` allows: a new
/// INVITE gets the overload 503 whatever their number, and room comes back as they end.
#[test]
fn transactions_holding_their_memory_budget_get_503_with_retry_after() {
    let mut h = Harness::with_config(|c| c.max_transaction_bytes = 64 * 1024);
    let big = |call_id: &str, branch: &str| {
        invite(call_id, branch).text().replace(
            "Max-Forwards: 70",
            &format!("Max-Forwards: 70\r\nX-Pad: {}", "p".repeat(12_000)),
        )
    };
    let mut forwarded = 0;
    let mut refused = None;
    for i in 0..10 {
        h.caller_sends(&big(&format!("c{i}"), &format!("z9hG4bK-{i}")));
        let out = h.take();
        if let Some(r) = out.iter().find(|o| o.is_response(503)) {
            refused = Some(i);
            assert_eq!(r.dst, caller());
            assert_eq!(r.named("Retry-After").as_deref(), Some("5"), "{r:?}");
            break;
        }
        assert!(out.iter().any(|o| o.is_request(Method::Invite)), "{out:?}");
        forwarded += 1;
    }
    // Each keeps the request as received and as forwarded, 24 KB or more.
    assert!(
        refused.is_some() && (1..=3).contains(&forwarded),
        "{forwarded}"
    );
    assert!(h.shard.transactions() < 10);
    assert_eq!(h.stats.overload_503.get(), 1);
    // Small INVITEs are refused too while the memory is held …
    h.caller_sends(&invite("small", "z9hG4bK-s").text());
    assert!(h.take().iter().any(|o| o.is_response(503)));
    // … and pass once the big ones' transactions have ended (Timer B, then C).
    h.advance(Duration::from_secs(200));
    h.take();
    h.caller_sends(&invite("after", "z9hG4bK-after").text());
    assert!(h.take().iter().any(|o| o.is_request(Method::Invite)));
}

#[test]
fn unparsable_request_with_via_gets_400_with_reason() {
    let mut h = Harness::new();
    let bad = invite("c1", "z9hG4bK-a")
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: many");
    h.deliver(caller(), &bad);
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(out.status(), Some(400));
    assert_eq!(
        out.first_line(),
        "SIP/2.0 400 Bad Request - Bad Max-Forwards"
    );
    assert_eq!(out.cseq(), (1, Method::Invite));
    assert_eq!(out.vias().len(), 1);
    assert_eq!(h.stats.bad_msg.get(), 1);
    assert_eq!(h.stats.fwd_requests.get(), 0);
}

#[test]
fn unparsable_request_without_via_dropped() {
    let mut h = Harness::new();
    let bad = "INVITE sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    h.caller_sends(bad);
    h.expect_nothing();
    assert_eq!(h.stats.drop_requests.get(), 1);
}

#[test]
fn malformed_response_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let bad = response(&fwd, 180, Some("gw-tag")).replace("CSeq: 1 INVITE", "CSeq: x");
    h.deliver(fwd.dst, &bad);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
    assert_eq!(h.stats.drop_requests.get(), 0);
    assert_eq!(h.txn(Method::Invite).1, ClientState::Calling);
}

#[test]
fn keep_alive_ignored() {
    let mut h = Harness::new();
    h.deliver_bytes(caller(), b"\r\n\r\n");
    h.expect_nothing();
    assert_eq!(h.stats.bad_msg.get(), 0);
}

#[test]
fn options_out_of_dialog_answered_200() {
    let mut h = Harness::new();
    let mut opt = invite("o1", "z9hG4bK-o");
    opt.method = "OPTIONS";
    opt.body.clear();
    h.caller_sends(&opt.text());
    let out = h.take_one();
    assert!(out.is_response(200), "{out:?}");
    assert_eq!(out.cseq(), (1, Method::Options));
}
