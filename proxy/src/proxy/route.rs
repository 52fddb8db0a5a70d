//! Who may send what: customers by source address (CIDR) and/or From domain, gateways by
//! ip:port, and the choice of gateway for a new call.

use siplb_common::owner_hash;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A network in CIDR notation (`198.18.0.0/15`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network and prefix length, when IPv4.
    pub fn ipv4(&self) -> Option<(std::net::Ipv4Addr, u8)> {
        match self.net {
            IpAddr::V4(a) => Some((a, self.prefix)),
            IpAddr::V6(_) => None,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length in `{s}`"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

/// Someone allowed to send calls in.
#[derive(Debug, Clone)]
pub struct Customer {
    pub name: String,
    /// Source networks; empty = any source (then `domains` must be set).
    pub sources: Vec<Cidr>,
    /// From domains (lower case); empty = any.
    pub domains: Vec<String>,
    /// What the account of a call from this customer is (the value in profile `account`).
    pub account_key: AccountKey,
}

/// The account of a call, the key of the per-account limit (DESIGN §3).
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
    Gateway(usize),
    Customer(usize),
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub customers: Vec<Customer>,
    pub gateways: Vec<SocketAddr>,
}

/// Key of the gateway choice hash: fixed, and different from any owner key in practice, so
/// that the gateway a call goes to does not follow the worker that owns it.
const GATEWAY_HASH_KEY: u32 = 0x6761_7465;

impl Routing {
    /// Gateways are matched by ip:port first, then customers in configuration order.
    pub fn classify(&self, src: SocketAddr, from_domain: &[u8]) -> Peer {
        if let Some(i) = self.gateways.iter().position(|g| *g == src) {
            return Peer::Gateway(i);
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

    /// The gateway for a new call: a hash of its Call-ID over the gateway list.
    pub fn select_gateway(&self, call_id: &[u8]) -> Option<SocketAddr> {
        if self.gateways.is_empty() {
            return None;
        }
        let h = owner_hash(GATEWAY_HASH_KEY, call_id);
        Some(self.gateways[h as usize % self.gateways.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn gateways_match_before_customers() {
        let r = Routing {
            customers: vec![Customer {
                name: "c".into(),
                sources: vec!["127.0.0.1".parse().unwrap()],
                domains: vec![],
                account_key: AccountKey::Customer,
            }],
            gateways: vec!["127.0.0.1:5081".parse().unwrap()],
        };
        assert_eq!(
            r.classify("127.0.0.1:5081".parse().unwrap(), b"x"),
            Peer::Gateway(0)
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
                name: "d".into(),
                sources: vec![],
                domains: vec!["example.com".into()],
                account_key: AccountKey::Customer,
            }],
            gateways: vec![],
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
}
