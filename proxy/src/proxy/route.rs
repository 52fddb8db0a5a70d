//! Who may send what: customers by source address (CIDR) and/or From domain, gateways by
//! ip:port (their set is in [`super::gateway`]).

use super::gateway::Gateways;
use super::target::Target;
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A network in CIDR notation (`198.18.0.0/15`, `::1/128`; a bare address is a /32 or /128),
/// as the configuration writes it: an [`IpNet`] that also reads a bare address and matches
/// IPv4-mapped IPv6 addresses as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// The network, when IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        match self.0 {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        match prefix {
            None => Ok(Cidr(addr.into())),
            Some(p) => p
                .parse()
                .ok()
                .and_then(|p| IpNet::new(addr, p).ok())
                .map(Cidr)
                .ok_or_else(|| format!("bad prefix length in `{s}`")),
        }
    }
}

/// Someone allowed to send calls in.
#[derive(Debug, Clone)]
pub struct Customer {
    pub name: String,
    /// The number its accounts are counted under in profile `account` (the From user `1000`
    /// of one customer is not that of another): its place in the file when siplb started,
    /// kept by name across reloads; a customer a reload adds gets a number never used
    /// before, so that removing or reordering customers never mixes their counts.
    pub slot: u16,
    /// Source networks; empty = any source (then `domains` must be set).
    pub sources: Vec<Cidr>,
    /// From domains (lower case); empty = any.
    pub domains: Vec<String>,
    /// What the account of a call from this customer is (the value in profile `account`).
    pub account_key: AccountKey,
    /// The numbers it owns: calls from gateways to them come to it.
    pub numbers: Vec<Numbers>,
    /// Where such calls go (a hash of the Call-ID picks one).
    pub targets: Vec<Target>,
}

/// Numbers a customer owns: those starting with a prefix, or a range of numbers of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numbers {
    Prefix(String),
    /// From and to, inclusive, digits of the same length.
    Range(String, String),
}

impl Numbers {
    /// How well `number` matches: none, or its specificity (a range beats any prefix; a
    /// longer prefix beats a shorter one).
    fn matches(&self, number: &[u8]) -> Option<usize> {
        match self {
            Numbers::Prefix(p) => number.starts_with(p.as_bytes()).then_some(p.len()),
            Numbers::Range(lo, hi) => {
                (number.len() == lo.len() && number >= lo.as_bytes() && number <= hi.as_bytes())
                    .then_some(usize::MAX)
            }
        }
    }
}

/// The account of a call, the key of the per-account limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountKey {
    /// The customer itself.
    #[default]
    Customer,
    /// The From user within the customer.
    FromUser,
    /// The From domain within the customer.
    FromDomain,
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Set and index of the gateway.
    Gateway(usize, usize),
    Customer(usize),
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub customers: Vec<Customer>,
    pub gateways: Gateways,
}

impl Routing {
    /// Gateways are matched by ip:port first, then customers in configuration order.
    pub fn classify(&self, src: SocketAddr, from_domain: &[u8]) -> Peer {
        if let Some((set, i)) = self.gateways.position(src) {
            return Peer::Gateway(set, i);
        }
        for (i, c) in self.customers.iter().enumerate() {
            let by_source = c.sources.is_empty() || c.sources.iter().any(|n| n.contains(src.ip()));
            let by_domain = c.domains.is_empty()
                || c.domains
                    .iter()
                    .any(|d| d.as_bytes().eq_ignore_ascii_case(from_domain));
            if by_source && by_domain {
                return Peer::Customer(i);
            }
        }
        Peer::Unknown
    }

    /// Whether any customer owns numbers (takes calls from gateways).
    pub fn takes_inbound(&self) -> bool {
        self.customers.iter().any(|c| !c.numbers.is_empty())
    }

    /// The customer that owns `number` (the most specific match), and the target a call with
    /// `call_id` goes to.
    pub fn inbound(&self, number: &[u8], call_id: &[u8]) -> Option<(usize, Target)> {
        let (i, _) = self
            .customers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let best = c.numbers.iter().filter_map(|n| n.matches(number)).max()?;
                Some((i, best))
            })
            .max_by_key(|&(i, best)| (best, std::cmp::Reverse(i)))?;
        let targets = &self.customers[i].targets;
        if targets.is_empty() {
            return None;
        }
        let h = siplb_common::owner_hash(0x696e_6264, call_id) as usize;
        Some((i, targets[h % targets.len()]))
    }

    /// The first set's gateway for a call (tests).
    pub fn select_gateway(&self, call_id: &[u8]) -> Option<Target> {
        self.gateways.select(call_id)
    }
}

/// The number a request dialed, as numbers are compared (inbound ownership, routes, rules):
/// the user of a `sip:`/`sips:` Request-URI, or the number of a `tel:` one (RFC 3966), up to
/// its parameters, with `%`-escapes undone (RFC 3261 §19.1.4 compares unescaped) and, for
/// `tel:`, the visual separators `-`, `.`, `(`, `)` left out. Empty when there is none.
pub fn dialed<'a>(msg: &crate::sip::SipMsg<'a>) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    // The user of a SIP URI or the number of a `tel:` one, nothing for any other scheme
    // ([`crate::sip::value::SipUri::user_and_host`]): a number not from a SIP URI is a
    // `tel:` one.
    let raw = msg.request_user_host().0;
    let tel = matches!(msg.request_sip_uri(), Some((_, Err(true))));
    let number = raw.split(|&b| b == b';').next().unwrap_or(b"");
    let separator = |b: &u8| tel && matches!(b, b'-' | b'.' | b'(' | b')');
    if !number.iter().any(|b| *b == b'%' || separator(b)) {
        return Cow::Borrowed(number);
    }
    let mut out = Vec::with_capacity(number.len());
    let mut i = 0;
    while i < number.len() {
        let b = number[i];
        let hex = |at: usize| number.get(at).and_then(|c| (*c as char).to_digit(16));
        if b == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        if !separator(&b) {
            out.push(b);
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_number_match_wins() {
        let cust = |name: &str, numbers: Vec<Numbers>, t: &str| Customer {
            slot: 0,
            name: name.into(),
            sources: vec![],
            domains: vec!["x".into()],
            account_key: AccountKey::Customer,
            numbers,
            targets: vec![Target::udp(t.parse().unwrap())],
        };
        let r = Routing {
            customers: vec![
                cust(
                    "short",
                    vec![Numbers::Prefix("44".into())],
                    "127.0.0.1:6001",
                ),
                cust(
                    "long",
                    vec![Numbers::Prefix("4420".into())],
                    "127.0.0.1:6002",
                ),
                cust(
                    "range",
                    vec![Numbers::Range("442070000000".into(), "442070000999".into())],
                    "127.0.0.1:6003",
                ),
            ],
            gateways: Gateways::default(),
        };
        assert!(r.takes_inbound());
        let who = |n: &str| r.inbound(n.as_bytes(), b"c").map(|(i, _)| i);
        assert_eq!(who("4411"), Some(0));
        assert_eq!(who("442099"), Some(1));
        assert_eq!(who("442070000500"), Some(2));
        assert_eq!(who("442070001000"), Some(1));
        assert_eq!(who("1555"), None);
    }

    #[test]
    fn cidr_matching() {
        let c: Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(c.contains("198.19.255.1".parse().unwrap()));
        assert!(!c.contains("198.20.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:198.18.0.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.5".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::7".parse().unwrap()));
        assert!(!v6.contains("198.18.0.9".parse().unwrap()));
        assert_eq!(c.ipv4().unwrap().to_string(), "198.18.0.0/15");
        assert_eq!(one.ipv4().unwrap().to_string(), "127.0.0.1/32");
        assert!(v6.ipv4().is_none());
    }

    #[test]
    fn gateways_match_before_customers() {
        let r = Routing {
            customers: vec![Customer {
                slot: 0,
                name: "c".into(),
                sources: vec!["127.0.0.1".parse().unwrap()],
                domains: vec![],
                account_key: AccountKey::Customer,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: vec!["127.0.0.1:5081".parse().unwrap()].into(),
        };
        assert_eq!(
            r.classify("127.0.0.1:5081".parse().unwrap(), b"x"),
            Peer::Gateway(0, 0)
        );
        assert_eq!(
            r.classify("127.0.0.1:5070".parse().unwrap(), b"x"),
            Peer::Customer(0)
        );
        assert_eq!(
            r.classify("127.0.0.2:5070".parse().unwrap(), b"x"),
            Peer::Unknown
        );
    }

    #[test]
    fn customer_by_domain() {
        let r = Routing {
            customers: vec![Customer {
                slot: 0,
                name: "d".into(),
                sources: vec![],
                domains: vec!["example.com".into()],
                account_key: AccountKey::Customer,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: Gateways::default(),
        };
        assert_eq!(
            r.classify("192.0.2.1:5060".parse().unwrap(), b"EXAMPLE.com"),
            Peer::Customer(0)
        );
        assert_eq!(
            r.classify("192.0.2.1:5060".parse().unwrap(), b"other.com"),
            Peer::Unknown
        );
    }

    #[test]
    fn the_number_dialed_is_read_from_sip_and_tel_uris_unescaped() {
        let number = |uri: &str| {
            let text = format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let msg = crate::sip::SipMsg::parse(text.as_bytes()).unwrap();
            String::from_utf8(super::dialed(&msg).into_owned()).unwrap()
        };
        assert_eq!(number("sip:+15551234@gw"), "+15551234");
        assert_eq!(number("sip:%2B15551234@gw"), "+15551234");
        assert_eq!(number("sip:+15551234;npdi@gw;user=phone"), "+15551234");
        assert_eq!(number("tel:+1-555-123.4"), "+15551234");
        assert_eq!(number("TEL:+1(555)1234;phone-context=x"), "+15551234");
        assert_eq!(number("sip:gw"), "");
        assert_eq!(
            number("sip:100%zz@gw"),
            "100%zz",
            "a broken escape stays as it is"
        );
    }
}
