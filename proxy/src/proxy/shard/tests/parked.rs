//! INVITEs that wait for a fleet place (`[cluster]`): parked without a reply, admitted when the
//! lease task grants places, refused when the fleet is full, 503 when no answer comes, and
//! cancelled while they wait.

use super::*;
use crate::cluster::fleet::{Answer, Fleet};

/// An account limit of 10, fleet-wide: the shard and the fleet its places are leased from.
fn fleet_member() -> (Harness, Arc<Fleet>) {
    let h = limited(10, DialogTimers::default());
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
