//! Dialogs, profiles and limits through the shard.

use super::*;

impl Harness {
    /// Dialogs of account `alice` now.
    fn alice(&self) -> u64 {
        self.shard
            .cfg
            .profiles
            .get(crate::dialog::ACCOUNT)
            .unwrap()
            .size(Some(b"alice"))
    }

    fn total(&self) -> u64 {
        self.shard.cfg.profiles.get("total").unwrap().size(None)
    }

    /// Advances 10 ms at a time until something is sent (at most `limit`): what was sent first.
    #[track_caller]
    fn advance_until_sent(&mut self, limit: Duration) -> Vec<Out> {
        let end = self.elapsed() + limit;
        while self.elapsed() < end {
            self.advance(Duration::from_millis(10));
            let out = self.take();
            if !out.is_empty() {
                return out;
            }
        }
        panic!("nothing sent within {limit:?}");
    }
}

#[test]
fn over_the_account_limit_an_invite_gets_the_limit_reply_and_nothing_is_forwarded() {
    let mut h = limited(2, DialogTimers::default());
    let a = h.established_call("c1");
    h.established_call("c2");
    assert_eq!((h.alice(), h.total()), (2, 2));
    h.caller_sends(&invite("c3", "z9hG4bK-c3").text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(out.first_line(), "SIP/2.0 503 Account call limit");
    assert_eq!(
        out.named("Reason").as_deref(),
        Some("Q.850;cause=34;text=\"Account call limit\"")
    );
    assert_eq!(
        out.named("Retry-After"),
        None,
        "no Retry-After on a limit reply"
    );
    assert_eq!(h.stats.limits_rejected.get(), 1);
    assert_eq!(h.stats.limits_account_table_full.get(), 0);
    assert_eq!(h.stats.overload_503.get(), 0);
    assert_eq!(
        (h.alice(), h.total()),
        (2, 2),
        "the refused call holds nothing"
    );
    assert!(h.shard.dialog(b"c3").is_none());
    // One call ends: the next one gets through.
    h.caller_sends(&caller_in_dialog("BYE", &a.ok, "z9hG4bK-bye1", 2).text());
    assert_eq!(h.take_one().dst, a.gateway());
    assert_eq!(h.alice(), 1);
    h.established_call("c4");
    assert_eq!(h.alice(), 2);
}

#[test]
fn a_tel_from_uri_is_counted_under_its_number() {
    // `account_key = "from_user"`: a tel: URI's user is its number (RFC 3966), as the CDR's
    // src_user shows it; two callers of no SIP user must not share one empty account.
    let mut h = limited(1, DialogTimers::default());
    let account = |h: &Harness, v: &[u8]| {
        let p = h.shard.cfg.profiles.get(crate::dialog::ACCOUNT).unwrap();
        p.size(Some(v))
    };
    let mut inv = invite("t1", "z9hG4bK-t1");
    inv.from = "<tel:+44-20-7946;phone-context=+44>;tag=t1".into();
    let forwarded = |h: &mut Harness| {
        h.take()
            .iter()
            .any(|o| o.first_line().starts_with("INVITE "))
    };
    h.caller_sends(&inv.text());
    assert!(forwarded(&mut h));
    assert_eq!(account(&h, b"+44-20-7946"), 1);
    assert_eq!(account(&h, b""), 0);
    // Another number is another account; the same number is over its limit.
    let mut inv = invite("t2", "z9hG4bK-t2");
    inv.from = "<TEL:+15550100>;tag=t2".into();
    h.caller_sends(&inv.text());
    assert!(forwarded(&mut h));
    assert_eq!(account(&h, b"+15550100"), 1);
    let mut inv = invite("t3", "z9hG4bK-t3");
    inv.from = "\"Bob\" <tel:+44-20-7946>;tag=t3".into();
    h.caller_sends(&inv.text());
    assert_eq!(h.take_one().first_line(), "SIP/2.0 503 Account call limit");
}

#[test]
fn the_limit_reply_is_configurable() {
    let mut h = Harness::with_config(|c| {
        let p = crate::dialog::Profiles::new(
            &[],
            &[(
                crate::dialog::ACCOUNT.into(),
                crate::dialog::ProfileLimits {
                    max: Some(0),
                    ..Default::default()
                },
            )],
            10,
        );
        c.rules = Arc::default();
        c.profiles = Arc::new(p);
        c.limit_reply = LimitReply {
            code: 486,
            reason: "Too Many Calls".into(),
            q850_cause: None,
        };
    });
    h.caller_sends(&invite("c1", "z9hG4bK-a").text());
    let out = h.take_one();
    assert_eq!(out.first_line(), "SIP/2.0 486 Too Many Calls");
    assert_eq!(out.named("Reason"), None);
}

/// Every way a dialog ends gives its places back, once: BYE (and its retransmission and
/// answer), a failure answer, CANCEL, no answer at all (Timer B).
#[test]
fn every_end_frees_the_place_exactly_once() {
    let mut h = limited(1, DialogTimers::default());
    // BYE, retransmitted, answered.
    let call = h.established_call("c1");
    assert_eq!(h.alice(), 1);
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd_bye = h.take_one();
    h.caller_sends(&bye);
    h.deliver(call.gateway(), &response(&fwd_bye, 200, None));
    h.take();
    assert_eq!(h.alice(), 0);
    // 486 from the gateway.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    assert_eq!(h.alice(), 1);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    h.take();
    assert_eq!(h.alice(), 0);
    // CANCEL while ringing.
    let inv = invite("c3", "z9hG4bK-c3");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw")));
    h.take();
    assert_eq!(h.alice(), 0);
    // Silence: Timer B, 408.
    h.start_call(&invite("c4", "z9hG4bK-c4"));
    h.advance(t1s(64) + MS);
    assert!(h.take().iter().any(|o| o.is_response(408)));
    assert_eq!(h.alice(), 0);
    assert_eq!(h.total(), 0);
    assert_eq!(h.stats.processed_dialogs.get(), 4);
    assert_eq!(h.stats.failed_dialogs.get(), 3);
    assert_eq!(h.shard.active_dialogs(), 0);
    assert_eq!(h.shard.early_dialogs(), 0);
}

#[test]
fn states_and_gauges_follow_kamailio() {
    let mut h = limited(10, DialogTimers::default());
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let state = |h: &Harness| h.shard.dialog(b"c1").unwrap().state.number();
    assert_eq!(state(&h), 1);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (1, 1));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(state(&h), 2);
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(state(&h), 3);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (1, 0));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    assert_eq!(state(&h), 4);
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(&*c.caller_leg.contact, b"sip:alice@127.0.0.1:5070");
    assert_eq!(
        &*c.callee_leg.contact,
        format!("sip:+15551234@{}", fwd.dst).as_bytes()
    );
    assert_eq!(&*c.callee_leg.tag, b"gw-tag");
    assert!(c.to.ends_with(b";tag=gw-tag"));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    assert_eq!(state(&h), 5);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (0, 0));
}

/// `default_timeout`: BYE to both sides, each as the other side would send it, answered and
/// absorbed; the dialog counts as expired and frees its places.
#[test]
fn default_timeout_sends_bye_to_both_sides() {
    let timers = DialogTimers {
        default_timeout: Duration::from_secs(10),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let call = h.established_call("c1");
    let gw = call.gateway();
    let answered = h.elapsed();
    let out = h.advance_until_sent(Duration::from_secs(12));
    // Swept every tenth of the timeout: within 10 % of it.
    let after = h.elapsed() - answered;
    assert!(
        after >= Duration::from_secs(10) && after <= Duration::from_secs(11),
        "{after:?}"
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let to_gw = out
        .iter()
        .find(|o| o.dst == gw)
        .expect("BYE to the gateway");
    let to_caller = out
        .iter()
        .find(|o| o.dst == caller())
        .expect("BYE to the caller");
    for o in [to_gw, to_caller] {
        assert!(o.is_request(Method::Bye), "{o:?}");
        assert_eq!(o.call_id(), "c1");
        assert_eq!(o.vias().len(), 1);
        assert!(o.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    }
    assert_eq!(to_gw.request_uri(), format!("sip:+15551234@{gw}"));
    assert_eq!(
        param_of(&to_gw.header(HeaderName::From).unwrap(), "tag").as_deref(),
        Some("alice-tag")
    );
    assert_eq!(to_gw.to_tag().as_deref(), Some("gw-tag"));
    assert_eq!(to_gw.cseq(), (2, Method::Bye));
    assert_eq!(to_caller.request_uri(), "sip:alice@127.0.0.1:5070");
    assert_eq!(
        param_of(&to_caller.header(HeaderName::From).unwrap(), "tag").as_deref(),
        Some("gw-tag")
    );
    assert_eq!(to_caller.to_tag().as_deref(), Some("alice-tag"));
    assert_eq!(to_caller.cseq(), (1, Method::Bye));
    assert_eq!(h.stats.expired_dialogs.get(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    assert_eq!((h.alice(), h.total()), (0, 0));
    // Their 200s are absorbed.
    h.deliver(gw, &response(to_gw, 200, None));
    h.deliver(caller(), &response(to_caller, 200, None));
    h.expect_nothing();
    // Unanswered they would be retransmitted (Timer E), not forgotten.
    let call2 = h.established_call("c2");
    assert_eq!(h.advance_until_sent(Duration::from_secs(12)).len(), 2);
    h.advance(t1s(1));
    let again = h.take();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|o| o.is_request(Method::Bye)));
    let _ = call2;
}

#[test]
fn noack_timeout_ends_an_answered_dialog_nobody_acknowledged() {
    let timers = DialogTimers {
        noack_timeout: Duration::from_secs(5),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    let byes: Vec<Out> = h
        .advance_until_sent(Duration::from_secs(6))
        .into_iter()
        .filter(|o| o.is_request(Method::Bye))
        .collect();
    assert_eq!(byes.len(), 2, "{byes:?}");
    assert_eq!(h.stats.expired_dialogs.get(), 1);
    assert_eq!(h.alice(), 0);
}

#[test]
fn early_timeout_cancels_a_call_that_rings_too_long() {
    let timers = DialogTimers {
        early_timeout: Duration::from_secs(5),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    let mut out = h.advance_until_sent(Duration::from_secs(6));
    assert_eq!(out.len(), 1, "{out:?}");
    let c = out.remove(0);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.dst, fwd.dst);
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(487)),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|o| o.dst == fwd.dst && o.is_request(Method::Ack))
    );
    assert_eq!(h.stats.failed_dialogs.get(), 1);
    assert_eq!(h.alice(), 0);
}

/// Variables set at INVITE, answer and end; the `Call_End` event of an answered dialog with
/// BillSec the answered time to the second.
#[test]
fn dialog_variables_and_the_call_end_event() {
    use crate::dialog::{DialogVar, ValueFrom, VarAt};
    let mut h = Harness::with_config(|c| {
        c.emit.dialogs = true;
        c.vars = vec![
            DialogVar {
                name: "Caller".into(),
                value: ValueFrom::FromUser,
                at: VarAt::Invite,
            },
            DialogVar {
                name: "Answered".into(),
                value: ValueFrom::Literal("yes".into()),
                at: VarAt::Start,
            },
            DialogVar {
                name: "Ended".into(),
                value: ValueFrom::Literal("yes".into()),
                at: VarAt::End,
            },
        ];
    });
    h.shard.set_epoch(h.now, 1_700_000_000_000);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vars = |h: &Harness| -> Vec<(String, String)> {
        h.shard
            .dialog(b"c1")
            .unwrap()
            .vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        vars(&h),
        [
            ("SetupTime".into(), "1700000000".into()),
            ("Caller".into(), "alice".into())
        ]
    );
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_millis(2_300));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    assert!(vars(&h).contains(&("AnswerTime".into(), "1700000002".into())));
    assert!(vars(&h).contains(&("Answered".into(), "yes".into())));
    assert!(h.call_ends().is_empty());
    // Held 61.6 s: billed 62.
    h.advance(Duration::from_millis(61_600));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    let ends = h.call_ends();
    assert_eq!(ends.len(), 1);
    let e: serde_json::Value = serde_json::from_str(&ends[0]).unwrap();
    assert_eq!(
        e,
        serde_json::json!({
            "Event": "Call_End",
            "CallID": "c1",
            "From": "sip:alice@customer.example",
            "To": "sip:+15551234@carrier.example",
            "SetupTime": 1700000000u64,
            "AnswerTime": 1700000002u64,
            "EndTime": 1700000063u64,
            "BillSec": 62,
            "Caller": "alice",
            "Answered": "yes",
            "Ended": "yes",
        })
    );
    h.take();
    // A call that is never answered has no Call_End.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    assert_eq!(h.call_ends().len(), 1);
}

#[test]
fn a_limit_reply_is_resent_to_retransmissions_and_counted_once() {
    let mut h = limited(1, DialogTimers::default());
    h.established_call("c1");
    let inv = invite("c2", "z9hG4bK-c2");
    h.caller_sends(&inv.text());
    let first = h.take_one();
    assert!(first.is_response(503), "{first:?}");
    // The INVITE again, after the first call ended: still the same answer, not a new check.
    h.caller_sends(&inv.text());
    let again = h.take_one();
    assert_eq!(again.text(), first.text());
    assert_eq!(h.stats.limits_rejected.get(), 1);
    // Unacknowledged, it is resent (Timer G); the ACK stops that.
    h.advance(t1s(1));
    assert!(h.take_one().is_response(503));
    h.caller_sends(&ack_non_2xx(&inv, &first).text());
    h.advance(t1s(8));
    h.expect_nothing();
}

/// A request names a dialog by its Call-ID and both tags: a BYE with another To tag is not
/// this dialog's and must not end it (nor free its places).
#[test]
fn a_bye_with_a_wrong_to_tag_gets_481_and_the_call_keeps_its_place() {
    let mut h = limited(1, DialogTimers::default());
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2)
        .text()
        .replace(";tag=gw-tag", ";tag=someone-else");
    h.caller_sends(&bye);
    let out = h.take_one();
    assert!(out.is_response(481), "{out:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    assert_eq!(h.alice(), 1);
}

/// A customer that sends a BYE with the tags the other way round, as if the callee hung up,
/// must neither end the dialog (freeing its place in the limit) nor have it sent anywhere:
/// the callee's side speaks from the gateway only.
#[test]
fn a_bye_posing_as_the_callee_from_elsewhere_gets_481_and_the_call_keeps_its_place() {
    let mut h = limited(1, DialogTimers::default());
    let call = h.established_call("c1");
    let bye = gateway_in_dialog("BYE", &call.fwd, "gw-tag", "z9hG4bK-fake").text();
    h.caller_sends(&bye);
    let out = h.take_one();
    assert!(out.is_response(481), "{out:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    assert_eq!(h.alice(), 1);
    // The other gateway is no more the callee than the customer is.
    let other: SocketAddr = if call.fwd.dst.port() == 5081 {
        "127.0.0.1:5082"
    } else {
        "127.0.0.1:5081"
    }
    .parse()
    .unwrap();
    h.deliver(other, &bye.replace("z9hG4bK-fake", "z9hG4bK-fake2"));
    assert!(h.take_one().is_response(481));
    assert_eq!(h.alice(), 1);
    // From the gateway itself, the same BYE ends the call.
    h.deliver(call.fwd.dst, &bye.replace("z9hG4bK-fake", "z9hG4bK-real"));
    let fwd = h.take_one();
    assert!(fwd.is_request(Method::Bye), "{fwd:?}");
}

/// A gateway may send from another of its addresses (`answers_from`): its BYE is the
/// callee's.
#[test]
fn the_callees_bye_from_another_address_of_its_gateway_ends_the_call() {
    let alt: SocketAddr = "127.0.0.1:5999".parse().unwrap();
    let mut h = limited_with(1, DialogTimers::default(), |c| {
        for g in &mut c.routing.gateways.sets[0].gateways {
            g.answers_from = vec![alt];
        }
    });
    let call = h.established_call("c1");
    let bye = gateway_in_dialog("BYE", &call.fwd, "gw-tag", "z9hG4bK-alt").text();
    h.deliver(alt, &bye);
    let fwd = h.take_one();
    assert!(
        fwd.is_request(Method::Bye) && fwd.dst == caller(),
        "{fwd:?}"
    );
}

/// Before the answer a BYE does not end the dialog: the INVITE's outcome does.
#[test]
fn a_bye_before_the_answer_leaves_the_dialog_to_its_invite() {
    let mut h = limited(1, DialogTimers::default());
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ringing = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&caller_in_dialog("BYE", &ringing, "z9hG4bK-bye", 2).text());
    h.take();
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    assert_eq!(h.alice(), 1);
    // Answered after all: the dialog is there, counted once.
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    assert_eq!(h.alice(), 1);
}

/// A re-INVITE and its 2xx refresh the remote targets (RFC 3261 §12.2): siplb's own BYEs
/// then go to the new Contacts.
#[test]
fn a_reinvite_refreshes_the_targets_of_both_sides() {
    let mut h = limited(5, DialogTimers::default());
    let call = h.established_call("c1");
    let mut reinvite = caller_in_dialog("INVITE", &call.ok, "z9hG4bK-re", 2);
    reinvite.extra = "Contact: <sip:alice@127.0.0.1:5999>\r\n".into();
    h.caller_sends(&reinvite.text());
    let fwd = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("re-INVITE forwarded");
    let ok = response(&fwd, 200, None).replace(
        &format!("Contact: <sip:+15551234@{}>", fwd.dst),
        "Contact: <sip:gw@127.0.0.1:5998>",
    );
    h.deliver(fwd.dst, &ok);
    h.take();
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(&*c.caller_leg.contact, b"sip:alice@127.0.0.1:5999");
    assert_eq!(&*c.callee_leg.contact, b"sip:gw@127.0.0.1:5998");
}

/// `dlg.end_dlg` on a call the gateway has not answered at all: the caller gets 487 at once
/// (not at Timer B), the CANCEL waits for the gateway's first provisional.
#[test]
fn an_operator_ends_a_call_the_gateway_has_not_answered_yet() {
    let mut h = limited(5, DialogTimers::default());
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let id = h.shard.dialog_infos(h.now, &Default::default())[0].h_id;
    let target = crate::proxy::EndTarget::Id {
        h_entry: 0,
        h_id: id,
    };
    assert!(h.shard.end_dialog(h.now, &target));
    let terminated = h.take_one();
    assert_eq!(terminated.dst, caller());
    assert!(terminated.is_response(487), "{terminated:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    assert_eq!(h.alice(), 0, "its place is given back at once");
    h.caller_sends(&ack_non_2xx(&inv, &terminated).text());
    h.expect_nothing();
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    let c = h.take_one();
    assert!(c.is_request(Method::Cancel) && c.dst == fwd.dst, "{c:?}");
}

/// A ringing call shows the To tag of its 180 as the callee's in `dlg.list`, and
/// `dlg.terminate_dlg` finds it by that tag.
#[test]
fn a_ringing_call_is_listed_and_ended_by_the_tag_of_its_ringing() {
    let mut h = limited(5, DialogTimers::default());
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("ring-tag")));
    let listed = h.shard.dialog_infos(h.now, &Default::default());
    assert_eq!(listed[0].callee.tag, "ring-tag");
    let wrong = crate::proxy::EndTarget::Tags {
        call_id: (*b"c1").into(),
        from_tag: (*b"alice-tag").into(),
        to_tag: (*b"other").into(),
    };
    assert!(!h.shard.end_dialog(h.now, &wrong));
    let target = crate::proxy::EndTarget::Tags {
        call_id: (*b"c1").into(),
        from_tag: (*b"alice-tag").into(),
        to_tag: (*b"ring-tag").into(),
    };
    assert!(h.shard.end_dialog(h.now, &target));
    let c = h.take_one();
    assert!(c.is_request(Method::Cancel) && c.dst == fwd.dst, "{c:?}");
    // Answered by another fork than the one that rang: the 2xx's tag is the callee's.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-b"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("ring-tag")));
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("ok-tag")));
    let c2 = h
        .shard
        .dialog_infos(h.now, &Default::default())
        .into_iter()
        .find(|i| i.call_id == "c2")
        .unwrap();
    assert_eq!(c2.callee.tag, "ok-tag");
}

/// `dlg.end_dlg` with `extra_hdrs`: both BYEs carry them.
#[test]
fn an_operators_byes_carry_the_extra_headers_given() {
    let mut h = limited(5, DialogTimers::default());
    h.established_call("c1");
    let id = h.shard.dialog_infos(h.now, &Default::default())[0].h_id;
    let target = crate::proxy::EndTarget::Id {
        h_entry: 0,
        h_id: id,
    };
    let extra = b"Reason: Q.850;cause=16\r\nX-Ended: noc\r\n";
    assert!(h.shard.end_dialog_with(h.now, &target, extra));
    let byes = h.take();
    assert_eq!(byes.len(), 2, "{byes:#?}");
    for bye in &byes {
        assert!(bye.is_request(Method::Bye), "{bye:?}");
        let text = String::from_utf8_lossy(&bye.data);
        assert!(
            text.contains("\r\nReason: Q.850;cause=16\r\nX-Ended: noc\r\n"),
            "{text}"
        );
        bye.assert_content_length();
    }
}
