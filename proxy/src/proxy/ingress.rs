//! Ingress classification: which of siplb's paths a request takes, decided from the request,
//! its source and whether it matched an open server transaction — nothing else. A pure
//! function, so each rule has a test of its own.

use super::forward::did_param;
use super::ids::TxnId;
use super::route::{Peer, Routing};
use crate::sip::value::{CommaList, NameAddr, SipUri, host_ip};
use crate::sip::{HeaderName, Method, SipMsg, Span};
use std::net::SocketAddr;

/// The path of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// It belongs to an open server transaction (a retransmission, or the ACK of a final).
    Existing(TxnId),
    /// A CANCEL: it goes to the INVITE it cancels.
    Cancel,
    /// A request inside a dialog: a To tag, or siplb's own Route with a dialog id on top
    /// (removed when forwarded). `stranger`: its source is neither a gateway nor a customer's
    /// (a customer's target answering an inbound call); the dialog decides whether it may
    /// speak for one of its sides.
    InDialog {
        own_route: Option<(usize, Span)>,
        stranger: bool,
    },
    /// A new INVITE from a customer; siplb's own Route on top (a customer using siplb as its
    /// outbound proxy) is removed when it is forwarded.
    NewInvite {
        customer: usize,
        own_route: Option<(usize, Span)>,
    },
    /// A new INVITE from a gateway, for a customer's number (when customers own numbers).
    Inbound { own_route: Option<(usize, Span)> },
    /// A reply siplb sends without keeping state.
    Stateless(Stateless),
    /// An ACK with nothing to acknowledge (or for a reply siplb sent without state): absorbed.
    Absorb,
}

/// The stateless replies of the ingress path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stateless {
    /// 403 with this reason.
    Forbidden(&'static str),
    /// 483: Max-Forwards was 0.
    TooManyHops,
    /// 420 for the Proxy-Require header at this index.
    BadExtension(usize),
    /// 200 to an OPTIONS.
    OptionsOk,
    /// 405 with Allow.
    MethodNotAllowed,
    /// 481: a request that exists only inside a dialog (BYE, UPDATE, INFO, PRACK) came
    /// without one.
    NoDialog,
    /// 416: a new call to a `sips:` URI, which asks for TLS on every hop (RFC 3261 §26.2.2),
    /// while siplb speaks UDP only.
    SipsUnsupported,
}

/// Classifies request `msg` from `src`; `existing` is the server transaction its key matched.
pub fn classify(
    msg: &SipMsg<'_>,
    src: SocketAddr,
    existing: Option<TxnId>,
    routing: &Routing,
    local: SocketAddr,
) -> Ingress {
    if let Some(id) = existing {
        return Ingress::Existing(id);
    }
    let method = msg.method().unwrap_or(Method::Other);
    if method == Method::Cancel {
        return Ingress::Cancel;
    }
    let buf = msg.buf;
    let peer = peer(msg, src, routing);
    let own_route = own_route(msg, local);
    // Only a To tag, or siplb's dialog id in its Route, makes a request in-dialog; a Route of
    // siplb's without one is an outbound-proxy hop, removed (RFC 3261 §16.4).
    let own_dialog = own_route.is_some_and(|(_, r)| {
        NameAddr::parse(buf, r).is_ok_and(|na| did_param(buf, na.uri).is_some())
    });
    let in_dialog = msg.to_tag().is_some() || own_dialog;
    if peer == Peer::Unknown && !in_dialog {
        return Ingress::Stateless(Stateless::Forbidden("Forbidden - Unknown Source"));
    }
    if let Some((0, _)) = msg.max_forwards {
        return Ingress::Stateless(Stateless::TooManyHops);
    }
    if let Some(idx) = msg.proxy_require {
        return Ingress::Stateless(Stateless::BadExtension(idx));
    }
    if in_dialog {
        return Ingress::InDialog {
            own_route,
            stranger: peer == Peer::Unknown,
        };
    }
    // What is left of the route set after siplb's own entry is a preloaded route.
    let routes = msg
        .headers_named(HeaderName::Route)
        .flat_map(|(_, h)| CommaList::new(buf, h.value()))
        .count();
    if routes > usize::from(own_route.is_some()) {
        return Ingress::Stateless(Stateless::Forbidden("Forbidden - Preloaded Route"));
    }
    let sips = msg.request_uri().is_some_and(|u| {
        u.of(buf)
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"))
    });
    if method == Method::Invite && sips {
        return Ingress::Stateless(Stateless::SipsUnsupported);
    }
    match (method, peer) {
        (Method::Invite, Peer::Customer(customer)) => Ingress::NewInvite {
            customer,
            own_route,
        },
        (Method::Invite, Peer::Gateway(..)) if routing.takes_inbound() => {
            Ingress::Inbound { own_route }
        }
        (Method::Invite, _) => {
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Not A Customer"))
        }
        (Method::Ack, _) => Ingress::Absorb,
        (Method::Options, _) => Ingress::Stateless(Stateless::OptionsOk),
        (Method::Bye | Method::Update | Method::Info | Method::Prack, _) => {
            Ingress::Stateless(Stateless::NoDialog)
        }
        _ => Ingress::Stateless(Stateless::MethodNotAllowed),
    }
}

/// Who sent `msg` from `src`: a gateway, a customer (by source address and From domain) or
/// neither.
pub fn peer(msg: &SipMsg<'_>, src: SocketAddr, routing: &Routing) -> Peer {
    let from_domain = match msg.from_sip_uri() {
        Some((_, Ok(u))) => u.host.of(msg.buf),
        _ => b"",
    };
    routing.classify(src, from_domain)
}

/// The top Route of `msg` when it names siplb (`local`).
pub fn own_route(msg: &SipMsg<'_>, local: SocketAddr) -> Option<(usize, Span)> {
    msg.first_route()
        .filter(|(_, r)| route_names(msg.buf, *r, local))
}

fn route_names(buf: &[u8], route: Span, local: SocketAddr) -> bool {
    NameAddr::parse(buf, route).is_ok_and(|na| uri_names(buf, na.uri, local))
}

/// Whether the SIP URI at `uri` names siplb (`local`): its host and port.
pub fn uri_names(buf: &[u8], uri: Span, local: SocketAddr) -> bool {
    SipUri::parse(buf, uri).is_ok_and(|u| {
        u.port.unwrap_or(5060) == local.port() && host_ip(u.host.of(buf)) == Some(local.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::{AccountKey, Customer};

    fn routing() -> Routing {
        Routing {
            customers: vec![Customer {
                slot: 0,
                name: "acme".into(),
                sources: vec!["127.0.0.1/32".parse().unwrap()],
                domains: vec![],
                account_key: AccountKey::Customer,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: vec!["127.0.0.1:5081".parse().unwrap()].into(),
        }
    }

    fn local() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    fn customer() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    fn request(method: &str, extra: &str) -> String {
        format!(
            "{method} sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{extra}\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    fn path(text: &str, src: SocketAddr) -> Ingress {
        let m = SipMsg::parse(text.as_bytes()).unwrap();
        classify(&m, src, None, &routing(), local())
    }

    #[test]
    fn an_invite_from_a_customer_is_a_new_call() {
        assert_eq!(
            path(&request("INVITE", ""), customer()),
            Ingress::NewInvite {
                customer: 0,
                own_route: None
            }
        );
    }

    #[test]
    fn a_stranger_is_forbidden() {
        let stranger = "192.0.2.9:5060".parse().unwrap();
        assert_eq!(
            path(&request("INVITE", ""), stranger),
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Unknown Source"))
        );
    }

    #[test]
    fn an_invite_from_a_gateway_is_not_a_customers_call() {
        let gw = "127.0.0.1:5081".parse().unwrap();
        assert_eq!(
            path(&request("INVITE", ""), gw),
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Not A Customer"))
        );
    }

    #[test]
    fn max_forwards_zero_is_too_many_hops() {
        assert_eq!(
            path(&request("INVITE", "Max-Forwards: 0\r\n"), customer()),
            Ingress::Stateless(Stateless::TooManyHops)
        );
    }

    #[test]
    fn proxy_require_is_a_bad_extension() {
        assert!(matches!(
            path(&request("INVITE", "Proxy-Require: foo\r\n"), customer()),
            Ingress::Stateless(Stateless::BadExtension(_))
        ));
    }

    #[test]
    fn a_to_tag_makes_a_request_in_dialog() {
        let bye = request("BYE", "").replace("To: <sip:b@y>", "To: <sip:b@y>;tag=2");
        assert_eq!(
            path(&bye, customer()),
            Ingress::InDialog {
                own_route: None,
                stranger: false
            }
        );
        // From an address siplb does not know: the dialog decides.
        let stranger = "192.0.2.9:5060".parse().unwrap();
        assert_eq!(
            path(&bye, stranger),
            Ingress::InDialog {
                own_route: None,
                stranger: true
            }
        );
    }

    #[test]
    fn a_route_to_someone_else_is_preloaded_and_forbidden() {
        assert_eq!(
            path(
                &request("INVITE", "Route: <sip:192.0.2.1;lr>\r\n"),
                customer()
            ),
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Preloaded Route"))
        );
    }

    #[test]
    fn siplbs_own_route_with_a_dialog_id_is_in_dialog() {
        let m = request("BYE", "Route: <sip:127.0.0.1:5060;lr;did=1>\r\n");
        assert!(matches!(
            path(&m, customer()),
            Ingress::InDialog {
                own_route: Some(_),
                stranger: false
            }
        ));
    }

    #[test]
    fn siplb_as_outbound_proxy_is_a_hop_not_a_dialog() {
        let m = request("INVITE", "Route: <sip:127.0.0.1:5060;lr>\r\n");
        assert!(matches!(
            path(&m, customer()),
            Ingress::NewInvite {
                customer: 0,
                own_route: Some(_)
            }
        ));
        let more = request(
            "INVITE",
            "Route: <sip:127.0.0.1:5060;lr>, <sip:192.0.2.1;lr>\r\n",
        );
        assert_eq!(
            path(&more, customer()),
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Preloaded Route"))
        );
        let two_lines = request(
            "INVITE",
            "Route: <sip:127.0.0.1:5060;lr>\r\nRoute: <sip:192.0.2.1;lr>\r\n",
        );
        assert_eq!(
            path(&two_lines, customer()),
            Ingress::Stateless(Stateless::Forbidden("Forbidden - Preloaded Route"))
        );
    }

    #[test]
    fn options_ack_and_other_methods_out_of_dialog() {
        assert_eq!(
            path(&request("OPTIONS", ""), customer()),
            Ingress::Stateless(Stateless::OptionsOk)
        );
        assert_eq!(path(&request("ACK", ""), customer()), Ingress::Absorb);
        assert_eq!(
            path(&request("MESSAGE", ""), customer()),
            Ingress::Stateless(Stateless::MethodNotAllowed)
        );
        assert_eq!(
            path(
                &request("INVITE", "").replacen("INVITE sip:", "INVITE SIPS:", 1),
                customer()
            ),
            Ingress::Stateless(Stateless::SipsUnsupported)
        );
        // Methods of a dialog only, without one: no such call.
        for m in ["BYE", "UPDATE", "INFO", "PRACK"] {
            assert_eq!(
                path(&request(m, ""), customer()),
                Ingress::Stateless(Stateless::NoDialog),
                "{m}"
            );
        }
    }

    #[test]
    fn cancel_and_existing_transactions_come_first() {
        assert_eq!(path(&request("CANCEL", ""), customer()), Ingress::Cancel);
        let m = request("INVITE", "");
        let m = SipMsg::parse(m.as_bytes()).unwrap();
        let id = TxnId {
            slot: 3,
            generation: 1,
        };
        assert_eq!(
            classify(&m, customer(), Some(id), &routing(), local()),
            Ingress::Existing(id)
        );
    }
}
