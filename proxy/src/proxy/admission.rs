//! Admission of a new call (Kamailio's `dlg_manage()` with profiles and limits): the facts of
//! its INVITE, its account, its places in the profiles its rules select (refused over a
//! limit), and the dialog variables set at INVITE. It keeps no state of its own: the counters
//! are the shared profiles'.

use super::ProxyConfig;
use super::route::AccountKey;
use crate::dialog::{CallFacts, Membership, Refusal, VarAt};
use crate::sip::SipMsg;
use std::net::SocketAddr;

/// What admission gives a call it lets in.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The value in profile `account`.
    pub account: Box<[u8]>,
    pub profiles: Vec<Membership>,
    /// The variables set at INVITE, `SetupTime` first.
    pub vars: Vec<(Box<str>, Box<str>)>,
}

/// The account of a call from `customer` (the key of its per-account limit); none for a
/// customer a reload removed while one of its INVITEs waited for a lease.
pub fn account_of<'a>(cfg: &'a ProxyConfig, customer: usize, msg: &SipMsg<'a>) -> &'a [u8] {
    let Some(c) = cfg.routing.customers.get(customer) else {
        return b"";
    };
    let (user, host) = msg.from_user_host();
    match c.account_key {
        AccountKey::Customer => c.name.as_bytes(),
        AccountKey::FromUser => user,
        AccountKey::FromDomain => host,
    }
}

/// Puts a new call of `customer` into its account's profile and those its rules select,
/// and sets the variables of the INVITE; `unix_ms` is the time it arrived. The account of a
/// call from a gateway to the customer (`inbound`) is the customer.
pub fn admit(
    cfg: &ProxyConfig,
    msg: &SipMsg<'_>,
    src: SocketAddr,
    customer: usize,
    inbound: bool,
    unix_ms: u64,
) -> Result<Admitted, Refusal> {
    let dialed = crate::proxy::route::dialed(msg);
    let dialed = &*dialed;
    let (from_user, from_domain) = msg.from_user_host();
    let (to_user, _) = msg.to_user_host();
    let c = &cfg.routing.customers[customer];
    let account = if inbound {
        c.name.as_bytes()
    } else {
        account_of(cfg, customer, msg)
    };
    let facts = CallFacts {
        dialed,
        from_user,
        from_domain,
        to_user,
        source: src.ip(),
        customer: &c.name,
        customer_index: c.slot,
        account,
    };
    let mut out = Admitted {
        account: account.into(),
        ..Admitted::default()
    };
    cfg.profiles.enter(&cfg.rules, &facts, &mut out.profiles)?;
    out.vars
        .push(("SetupTime".into(), (unix_ms / 1000).to_string().into()));
    for v in cfg.vars.iter().filter(|v| v.at == VarAt::Invite) {
        let value = crate::dialog::profiles::value_of(&v.value, &facts);
        // As the records write text from a message: bytes that are not UTF-8 as `%XX`.
        out.vars
            .push((v.name.as_str().into(), crate::proxy::event::text(&value)));
    }
    Ok(out)
}

/// The configured variables of one moment (answer or end) whose values are fixed.
pub fn vars_at(cfg: &ProxyConfig, at: VarAt) -> impl Iterator<Item = (&str, &str)> {
    cfg.vars
        .iter()
        .filter(move |v| v.at == at)
        .filter_map(|v| match &v.value {
            crate::dialog::ValueFrom::Literal(s) => Some((v.name.as_str(), s.as_str())),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Profiles;
    use crate::proxy::route::{Customer, Routing};
    use std::sync::Arc;

    fn cfg(key: AccountKey, limit: Option<u32>) -> ProxyConfig {
        let routing = Routing {
            customers: vec![Customer {
                slot: 0,
                name: "acme".into(),
                sources: vec!["127.0.0.1/32".parse().unwrap()],
                domains: vec![],
                account_key: key,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: vec!["127.0.0.1:5081".parse().unwrap()].into(),
        };
        let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), routing);
        let account = crate::dialog::ProfileLimits {
            max: limit,
            values: vec![],
            table: 16,
        };
        let p = Profiles::new(&[], &[(crate::dialog::ACCOUNT.into(), account)], 16);
        cfg.profiles = Arc::new(p);
        cfg
    }

    const INVITE: &[u8] = b"INVITE sip:0044@gw SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        From: <sip:alice@cust.example>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\n\
        CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn src() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    #[test]
    fn the_account_follows_the_customers_key() {
        let m = SipMsg::parse(INVITE).unwrap();
        for (key, want) in [
            (AccountKey::Customer, &b"acme"[..]),
            (AccountKey::FromUser, b"alice"),
            (AccountKey::FromDomain, b"cust.example"),
        ] {
            let cfg = cfg(key, None);
            let a = admit(&cfg, &m, src(), 0, false, 1_700_000_000_123).unwrap();
            assert_eq!(&*a.account, want);
            assert_eq!(a.vars[0], ("SetupTime".into(), "1700000000".into()));
        }
    }

    #[test]
    fn a_call_over_the_account_limit_is_refused_and_takes_no_place() {
        let cfg = cfg(AccountKey::Customer, Some(1));
        let m = SipMsg::parse(INVITE).unwrap();
        let mut first = admit(&cfg, &m, src(), 0, false, 0).unwrap();
        assert!(admit(&cfg, &m, src(), 0, false, 0).is_err());
        cfg.profiles.leave(&mut first.profiles);
        assert!(admit(&cfg, &m, src(), 0, false, 0).is_ok());
    }
}
