//! Calls from trunks: an INVITE from a gateway to a number a customer owns goes to that
//! customer, with the same dialogs, limits and records as outgoing calls; a number nobody
//! owns gets 404.

use super::*;
use crate::proxy::event::Event;
use crate::proxy::route::Numbers;

fn target() -> SocketAddr {
    "127.0.0.1:5090".parse().unwrap()
}

fn with_numbers(limit: Option<u32>) -> Harness {
    Harness::with_config(|c| {
        let cust = &mut c.routing.customers[0];
        cust.numbers = vec![Numbers::Prefix("+1555".into())];
        cust.targets = vec![Target::udp(target())];
        c.emit.dialogs = true;
        if let Some(max) = limit {
            let account = crate::dialog::ProfileLimits {
                max: Some(max),
                values: vec![],
                table: 16,
            };
            c.profiles = std::sync::Arc::new(crate::dialog::Profiles::new(
                &[],
                &[(crate::dialog::ACCOUNT.into(), account)],
                16,
            ));
        }
    })
}

/// An INVITE as gateway 1 sends it, to `number`.
fn from_gateway(call_id: &str, branch: &str, number: &str) -> String {
    invite(call_id, branch)
        .text()
        .replace("127.0.0.1:5070", &gw1().to_string())
        .replace("sip:+15551234@", &format!("sip:{number}@"))
}

#[test]
fn a_gateways_call_to_a_customers_number_reaches_the_customer() {
    let mut h = with_numbers(None);
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-in", "+15550001"));
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].is_response(100) && out[0].dst == gw1());
    let fwd = &out[1];
    assert!(
        fwd.is_request(Method::Invite) && fwd.dst == target(),
        "{fwd:?}"
    );
    assert!(!fwd.header_lines(HeaderName::RecordRoute).is_empty());
    h.deliver(target(), &response(fwd, 200, Some("cust")));
    let ok = h.take_one();
    assert!(ok.is_response(200) && ok.dst == gw1(), "{ok:?}");
    let records: Vec<_> = {
        h.shard.abandon_all(h.now, false);
        std::iter::from_fn(|| h.shard.poll_event())
            .filter_map(|e| match e {
                Event::Dialog(d) => Some(d),
                _ => None,
            })
            .collect()
    };
    assert_eq!(records.len(), 1);
    let d = &records[0];
    assert!(d.inbound);
    assert_eq!(&*d.account, "acme", "the customer is the account");
    assert_eq!(
        d.gateway.map(|g| g.addr),
        Some(gw1()),
        "the trunk it came from"
    );
}

#[test]
fn a_number_nobody_owns_gets_404_and_is_recorded_as_a_refused_call() {
    let mut h = with_numbers(None);
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-in", "+4420"));
    let out = h.take_one();
    assert!(out.is_response(404) && out.dst == gw1(), "{out:?}");
    assert_eq!(
        out.first_line(),
        "SIP/2.0 404 Not Found - Unallocated Number"
    );
    assert!(h.call_state("c1").is_none());
    // The INVITE sent again gets the same reply from its transaction, and no second record.
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-in", "+4420"));
    assert!(h.take_one().is_response(404));
    let records: Vec<_> = std::iter::from_fn(|| h.shard.poll_event())
        .filter_map(|e| match e {
            Event::Dialog(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    let d = &records[0];
    assert!(d.inbound);
    assert_eq!(d.outcome.code, Some(404));
    assert_eq!(d.outcome.q850_cause, Some(1));
    assert_eq!(&*d.account, "", "no customer owns it");
    assert_eq!(
        d.gateway.map(|g| g.addr),
        Some(gw1()),
        "the trunk it came from"
    );
}

#[test]
fn the_customers_account_limit_applies_to_calls_from_trunks() {
    let mut h = with_numbers(Some(1));
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-1", "+15550001"));
    assert_eq!(h.take().len(), 2);
    h.deliver(gw1(), &from_gateway("c2", "z9hG4bK-2", "+15550002"));
    let out = h.take_one();
    assert!(out.is_response(503) && out.dst == gw1(), "{out:?}");
    assert_eq!(h.stats.limits_rejected.get(), 1);
}

#[test]
fn without_numbers_a_gateways_invite_is_still_forbidden() {
    let mut h = Harness::new();
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-in", "+15550001"));
    assert!(h.take_one().is_response(403));
}

/// The number is compared unescaped (RFC 3261 §19.1.4), and a `tel:` Request-URI's number
/// counts as a `sip:` one's user does.
#[test]
fn an_escaped_or_tel_number_reaches_its_owner() {
    for (n, uri) in ["sip:%2B15550001@127.0.0.1:5060", "tel:+1-555-0001"]
        .into_iter()
        .enumerate()
    {
        let mut h = with_numbers(None);
        let text = from_gateway(&format!("c-e{n}"), &format!("z9hG4bK-e{n}"), "+15551234")
            .replace("sip:+15551234@127.0.0.1:5060", uri);
        assert!(text.contains(uri), "{text}");
        h.deliver(gw1(), &text);
        let out = h.take();
        assert!(
            out.iter()
                .any(|o| o.is_request(Method::Invite) && o.dst == target()),
            "{uri}: {out:#?}"
        );
    }
}

/// The customer's target of an inbound call may be outside its `sources` (or the customer
/// known by domain only): its requests inside the call still reach the trunk. Another address
/// that is neither a gateway nor a customer's, with the same tags, is still refused.
#[test]
fn a_target_outside_the_sources_hangs_up_its_inbound_call() {
    let outside: SocketAddr = "127.0.0.9:5090".parse().unwrap();
    let mut h = Harness::with_config(|c| {
        let cust = &mut c.routing.customers[0];
        cust.numbers = vec![Numbers::Prefix("+1555".into())];
        cust.targets = vec![Target::udp(outside)];
    });
    h.deliver(gw1(), &from_gateway("c1", "z9hG4bK-in", "+15550001"));
    let fwd = h.take().pop().unwrap();
    assert!(
        fwd.is_request(Method::Invite) && fwd.dst == outside,
        "{fwd:?}"
    );
    h.deliver(outside, &response(&fwd, 200, Some("cust")));
    assert!(h.take_one().is_response(200));

    let stranger: SocketAddr = "192.0.2.9:5090".parse().unwrap();
    let bye = gateway_in_dialog("BYE", &fwd, "cust", "z9hG4bK-s").text();
    h.deliver(stranger, &bye);
    let out = h.take_one();
    assert!(out.is_response(403) && out.dst == stranger, "{out:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));

    let bye = gateway_in_dialog("BYE", &fwd, "cust", "z9hG4bK-b").text();
    h.deliver(outside, &bye);
    let out = h.take_one();
    assert!(
        out.is_request(Method::Bye) && out.dst == gw1(),
        "the BYE goes to the trunk: {out:?}"
    );
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

/// The trunk challenges a request from the customer's side of an inbound call: the resend
/// takes CSeq + 1, and from then on the requests toward the trunk (the customer's, and
/// siplb's own BYE for it) are raised by that shift, the trunk's own requests are not.
#[test]
fn a_challenge_from_the_trunk_shifts_the_customers_side_of_an_inbound_call() {
    use crate::proxy::gateway::{Credentials, Secret};
    let mut h = Harness::with_config(|c| {
        let cust = &mut c.routing.customers[0];
        cust.numbers = vec![Numbers::Prefix("+1555".into())];
        cust.targets = vec![Target::udp(target())];
        for g in &mut c.routing.gateways.sets[0].gateways {
            g.credentials = Some(Credentials {
                user: "siplb".into(),
                secret: Secret::Password("trunk-secret".into()),
            });
        }
    });
    let inv = from_gateway("c1", "z9hG4bK-in", "+15550001");
    h.deliver(gw1(), &inv);
    let fwd = h.take().pop().unwrap();
    h.deliver(target(), &response(&fwd, 200, Some("cust")));
    let ok = h.take_one();
    assert!(ok.is_response(200) && ok.dst == gw1(), "{ok:?}");
    let trunk = |method, branch: &str, cseq| {
        let r = caller_in_dialog(method, &ok, branch, cseq);
        Req {
            vias: vec![format!("SIP/2.0/UDP {};branch={branch}", gw1())],
            ..r
        }
        .text()
    };
    h.deliver(gw1(), &trunk("ACK", "z9hG4bK-ack", 1));
    assert!(h.take_one().is_request(Method::Ack));

    // The customer's INFO, challenged by the trunk and sent again with CSeq + 1.
    let customer = |method, branch: &str, cseq| {
        let r = gateway_in_dialog(method, &fwd, "cust", branch);
        Req { cseq, ..r }.text()
    };
    h.deliver(target(), &customer("INFO", "z9hG4bK-info", 1));
    let info = h.take_one();
    assert!(
        info.dst == gw1() && info.cseq() == (1, Method::Info),
        "{info:?}"
    );
    h.deliver(gw1(), &super::auth::challenge(&info, false));
    let mut out = h.take();
    let info2 = out.pop().unwrap();
    assert!(info2.named("Proxy-Authorization").is_some(), "{info2:?}");
    assert_eq!(info2.cseq(), (2, Method::Info));
    h.deliver(gw1(), &response(&info2, 200, None));
    let back = h.take_one();
    assert!(
        back.dst == target() && back.cseq() == (1, Method::Info),
        "{back:?}"
    );

    // The trunk's own requests keep their numbers.
    h.deliver(gw1(), &trunk("INFO", "z9hG4bK-tinfo", 2));
    let tinfo = h.take_one();
    assert!(tinfo.dst == target(), "{tinfo:?}");
    assert_eq!(tinfo.cseq(), (2, Method::Info));
    h.deliver(target(), &response(&tinfo, 200, None));
    h.take();

    // The customer's next request is raised; so is siplb's own BYE to the trunk.
    h.deliver(target(), &customer("INFO", "z9hG4bK-info2", 2));
    let next = h.take_one();
    assert!(next.dst == gw1(), "{next:?}");
    assert_eq!(next.cseq(), (3, Method::Info));
    h.deliver(gw1(), &response(&next, 200, None));
    h.take();
    let call = crate::proxy::dialogs::EndTarget::Tags {
        call_id: (*b"c1").into(),
        from_tag: (*b"alice-tag").into(),
        to_tag: (*b"cust").into(),
    };
    assert!(h.shard.end_dialog(h.now, &call));
    let byes = h.take();
    let to_trunk = byes
        .iter()
        .find(|o| o.dst == gw1())
        .expect("a BYE to the trunk");
    assert_eq!(to_trunk.cseq(), (4, Method::Bye), "{byes:#?}");
    let to_customer = byes
        .iter()
        .find(|o| o.dst == target())
        .expect("a BYE to the customer");
    assert_eq!(to_customer.cseq(), (3, Method::Bye), "{byes:#?}");
}

/// A trunk matched by IP alone that sends from another port: the call's requests to it go to
/// its configured address (where it listens), its answers from any port of its IP count, and
/// the record names the configured address.
#[test]
fn an_ip_only_trunk_is_reached_at_its_configured_address() {
    let mut h = Harness::with_config(|c| {
        let cust = &mut c.routing.customers[0];
        cust.numbers = vec![Numbers::Prefix("+1555".into())];
        cust.targets = vec![Target::udp(target())];
        let gw = &mut c.routing.gateways.sets[0].gateways[0];
        gw.match_ip_only = true;
        gw.credentials = Some(crate::proxy::gateway::Credentials {
            user: "siplb".into(),
            secret: crate::proxy::gateway::Secret::Password("trunk-secret".into()),
        });
        c.emit.dialogs = true;
    });
    let port: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let inv = from_gateway("c1", "z9hG4bK-in", "+15550001")
        .replace(&gw1().to_string(), &port.to_string());
    h.deliver(port, &inv);
    let out = h.take();
    assert!(out[0].is_response(100) && out[0].dst == port, "{out:#?}");
    let fwd = out.into_iter().last().unwrap();
    h.deliver(target(), &response(&fwd, 200, Some("cust")));
    assert_eq!(
        h.take_one().dst,
        port,
        "the INVITE's answers go where it came from"
    );

    let bye = gateway_in_dialog("BYE", &fwd, "cust", "z9hG4bK-b").text();
    h.deliver(target(), &bye);
    let out = h.take_one();
    assert!(out.is_request(Method::Bye) && out.dst == gw1(), "{out:?}");
    // Challenged, from where it listens: answered.
    h.deliver(gw1(), &super::auth::challenge(&out, false));
    let out = h.take_one();
    assert!(out.is_request(Method::Bye) && out.dst == gw1(), "{out:?}");
    assert!(out.named("Proxy-Authorization").is_some(), "{out:?}");
    h.deliver(port, &response(&out, 200, None));
    let ok = h.take_one();
    assert!(ok.is_response(200) && ok.dst == target(), "{ok:?}");
    h.shard.abandon_all(h.now, false);
    let gateway = std::iter::from_fn(|| h.shard.poll_event())
        .find_map(|e| match e {
            Event::Dialog(d) => Some(d.gateway),
            _ => None,
        })
        .flatten();
    assert_eq!(gateway.map(|g| g.addr), Some(gw1()));
}
