//! INVITEs that wait for a fleet place (`[cluster]`): parked without a reply, admitted when the
//! lease task grants places, refused when the fleet is full, 503 when no answer comes, and
//! cancelled while they wait.

use super::*;
use crate::cluster::fleet::{Answer, Fleet};
use crate::proxy::event::DialogRecord;

/// An account limit of 10, fleet-wide: the shard and the fleet its places are leased from.
fn fleet_member() -> (Harness, Arc<Fleet>) {
    fleet_member_with(|_| {})
}

/// [`fleet_member`], then `f` applied to the config.
fn fleet_member_with(f: impl FnOnce(&mut ProxyConfig)) -> (Harness, Arc<Fleet>) {
    let h = limited_with(10, DialogTimers::default(), f);
    let fleet = Arc::new(Fleet::new(1));
    h.shard.cfg.profiles.fleet.set(fleet.clone()).unwrap();
    (h, fleet)
}

/// The account of `invite()`'s caller (the From user).
fn account_of(inv: &Req) -> Vec<u8> {
    let from = inv.text();
    let user = from
        .split("From: ")
        .nth(1)
        .and_then(|f| f.split("sip:").nth(1))
        .and_then(|u| u.split('@').next())
        .unwrap();
    user.as_bytes().to_vec()
}

#[test]
fn an_invite_without_a_leased_place_waits_and_goes_on_when_places_are_granted() {
    let (mut h, fleet) = fleet_member();
    let inv = invite("p1", "z9hG4bK-p1");
    h.caller_sends(&inv.text());
    h.expect_nothing();
    let asked = fleet.requests.pop().expect("a lease asked for");
    assert_eq!(asked.limit, 10);
    assert_eq!(&*asked.account, &account_of(&inv)[..]);
    assert_eq!(h.stats.cluster_parked.get(), 1);
    // A retransmission while it waits is not parked twice.
    h.caller_sends(&inv.text());
    h.expect_nothing();
    fleet.lease(&asked.account).grant(4);
    let now = h.now;
    h.shard.lease_answer(now, &asked.account, Answer::Granted);
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == gw1() || o.dst == gw2()),
        "forwarded: {out:?}"
    );
    assert_eq!(fleet.lease(&asked.account).get(), (4, 1));
    assert!(!h.shard.has_parked());
}

#[test]
fn a_full_fleet_gets_the_limit_reply_and_no_answer_gets_503() {
    let (mut h, fleet) = fleet_member();
    let inv = invite("p2", "z9hG4bK-p2");
    h.caller_sends(&inv.text());
    let account = fleet.requests.pop().unwrap().account;
    let now = h.now;
    h.shard.lease_answer(now, &account, Answer::Full);
    let out = h.take_one();
    assert!(out.is_response(503), "{out:?}");
    assert_eq!(h.stats.limits_rejected.get(), 1);
    assert!(out.named("Retry-After").is_none(), "{out:?}");

    let (mut h, _fleet) = fleet_member();
    let inv = invite("p3", "z9hG4bK-p3");
    h.caller_sends(&inv.text());
    h.advance(Duration::from_millis(999));
    let now = h.now;
    h.shard.expire_parked(now);
    h.expect_nothing();
    h.advance(Duration::from_millis(2));
    let now = h.now;
    h.shard.expire_parked(now);
    let out = h.take_one();
    assert!(out.is_response(503), "{out:?}");
    assert!(out.named("Retry-After").is_some(), "{out:?}");
    assert_eq!(h.stats.cluster_unavailable_503.get(), 1);
}

#[test]
fn a_cancel_of_a_waiting_invite_gets_200_and_the_invite_487() {
    let (mut h, fleet) = fleet_member();
    let inv = invite("p4", "z9hG4bK-p4");
    h.caller_sends(&inv.text());
    let account = fleet.requests.pop().unwrap().account;
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[0].is_response(200) && out[0].cseq().1 == Method::Cancel,
        "{out:?}"
    );
    assert!(
        out[1].is_response(487) && out[1].cseq().1 == Method::Invite,
        "{out:?}"
    );
    let now = h.now;
    fleet.lease(&account).grant(1);
    h.shard.lease_answer(now, &account, Answer::Granted);
    h.expect_nothing();
}

/// A member whose shard reports every event (as `[acc]` with CDRs and rules asks).
fn reporting_member() -> (Harness, Arc<Fleet>) {
    fleet_member_with(|c| {
        c.emit.dialogs = true;
        c.emit.transactions = true;
        c.emit.requests = true;
    })
}

/// The events reported so far: transactions' outcomes, requests on receipt, CDRs.
fn reported(h: &mut Harness) -> (Vec<TxnOutcome>, Vec<TxnOutcome>, Vec<DialogRecord>) {
    let (mut txns, mut requests, mut dialogs) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(e) = h.shard.poll_event() {
        match e {
            Event::Transaction(t) => txns.push(*t),
            Event::Request(r) => requests.push(*r),
            Event::Dialog(d) => dialogs.push(*d),
            Event::Refused(_) | Event::Gateway(_) => {}
        }
    }
    (txns, requests, dialogs)
}

#[test]
fn a_call_cancelled_while_it_waits_has_its_records_and_its_487_is_kept() {
    let (mut h, fleet) = reporting_member();
    h.shard.set_epoch(h.now, 1_700_000_000_000);
    let inv = invite("p5", "z9hG4bK-p5");
    h.caller_sends(&inv.text());
    let account = fleet.requests.pop().unwrap().account;
    h.advance(Duration::from_millis(300));
    let cancel = cancel(&inv).text();
    h.caller_sends(&cancel);
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].is_response(200) && out[0].cseq().1 == Method::Cancel);
    assert!(out[1].is_response(487) && out[1].cseq().1 == Method::Invite);
    let (txns, requests, dialogs) = reported(&mut h);
    // The INVITE's outcome (for the flags: a missed call), the INVITE and the CANCEL as
    // received (for rules), and the CDR: cancelled by the caller, received when it came.
    assert_eq!(txns.len(), 1, "{txns:#?} {requests:#?} {dialogs:#?}");
    assert_eq!((txns[0].method, txns[0].code), (Method::Invite, Some(487)));
    let methods: Vec<_> = requests.iter().map(|r| r.method).collect();
    assert_eq!(methods, [Method::Invite, Method::Cancel]);
    assert_eq!(requests[0].at_ms, 1_700_000_000_000);
    assert_eq!(requests[1].account.as_bytes(), &account[..]);
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    let d = &dialogs[0];
    assert_eq!(d.outcome.code, Some(487));
    assert_eq!(d.cancelled_by, Some(EndedBy::Caller));
    assert!(!d.limit_refused);
    assert_eq!(d.times.invite_received, 1_700_000_000_000);
    assert_eq!(d.times.end, 1_700_000_000_300);
    assert_eq!(d.account.as_bytes(), &account[..]);
    assert_eq!(
        crate::acc::record::Disposition::of(d),
        crate::acc::record::Disposition::Cancelled
    );

    // The 487 stands: the INVITE's retransmission gets it again (not parked again), the
    // CANCEL's gets its 200 again, and the ACK ends it, none of them reported again.
    h.caller_sends(&inv.text());
    assert!(h.take_one().is_response(487));
    h.caller_sends(&cancel);
    let again = h.take_one();
    assert!(again.is_response(200) && again.cseq().1 == Method::Cancel);
    assert!(fleet.requests.pop().is_none());
    assert!(!h.shard.has_parked());
    let (txns, requests, dialogs) = reported(&mut h);
    assert!(txns.is_empty() && requests.is_empty() && dialogs.is_empty());
}

#[test]
fn a_full_fleet_refuses_a_waiting_invite_in_a_transaction_dated_from_its_arrival() {
    let (mut h, fleet) = reporting_member();
    h.shard.set_epoch(h.now, 1_700_000_000_000);
    let inv = invite("p6", "z9hG4bK-p6");
    h.caller_sends(&inv.text());
    let account = fleet.requests.pop().unwrap().account;
    h.advance(Duration::from_millis(200));
    let now = h.now;
    h.shard.lease_answer(now, &account, Answer::Full);
    assert!(h.take_one().is_response(503));
    let (txns, _, dialogs) = reported(&mut h);
    assert_eq!(txns.len(), 1, "{txns:#?}");
    assert_eq!(dialogs.len(), 1, "{dialogs:#?}");
    assert!(dialogs[0].limit_refused);
    assert_eq!(dialogs[0].times.invite_received, 1_700_000_000_000);
    // A retransmission gets the same reply from the transaction: not parked, not counted.
    h.caller_sends(&inv.text());
    assert!(h.take_one().is_response(503));
    assert!(fleet.requests.pop().is_none());
    assert_eq!(h.stats.limits_rejected.get(), 1);
}
