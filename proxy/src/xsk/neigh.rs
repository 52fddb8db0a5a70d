//! Next hops for frames sent through AF_XDP: the kernel's IPv4 routes and neighbour (ARP)
//! entries of one interface, read over rtnetlink (`RTM_GETROUTE`, `RTM_GETNEIGH` dumps) and
//! cached. A destination the cache cannot place (routed through another interface, or whose
//! next hop's MAC the kernel does not know yet) is the caller's to send through the kernel's
//! socket path, which resolves it; a later refresh then finds it.

use super::frame::Mac;
use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often a miss may refresh the tables.
const REFRESH: Duration = Duration::from_millis(500);

// rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h).
const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWNEIGH: u16 = 28;
/// `struct rtmsg` and `struct ndmsg` are both 12 bytes.
const BODY: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NONE: u16 = 0x00;

/// A route of the main table out of our interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub net: Ipv4Addr,
    pub len: u8,
    /// None: on link (the destination is its own next hop).
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    fn covers(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        };
        u32::from(ip) & mask == u32::from(self.net) & mask
    }
}

/// The next hop of a destination: the route that covers it best, then its neighbour entry.
pub fn next_hop(routes: &[Route], dst: Ipv4Addr) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|r| r.covers(dst))
        .max_by_key(|r| r.len)
        .map(|r| r.gateway.unwrap_or(dst))
}

/// The cached tables of one interface.
pub struct NextHops {
    ifindex: u32,
    routes: Vec<Route>,
    macs: HashMap<Ipv4Addr, Mac>,
    refreshed: Option<Instant>,
}

impl NextHops {
    pub fn new(ifindex: u32) -> NextHops {
        NextHops {
            ifindex,
            routes: Vec::new(),
            macs: HashMap::new(),
            refreshed: None,
        }
    }

    /// The MAC to send a frame for `dst` to, if `dst` is reached through our interface and
    /// its next hop is known; a miss refreshes the tables at most every 500 ms.
    pub fn mac_for(&mut self, dst: Ipv4Addr, now: Instant) -> Option<Mac> {
        if let Some(m) = self.lookup(dst) {
            return Some(m);
        }
        if self
            .refreshed
            .is_some_and(|t| now.duration_since(t) < REFRESH)
        {
            return None;
        }
        self.refreshed = Some(now);
        if let Err(e) = self.refresh() {
            tracing::debug!("AF_XDP next hops: reading the kernel's tables: {e}");
            return None;
        }
        self.lookup(dst)
    }

    fn lookup(&self, dst: Ipv4Addr) -> Option<Mac> {
        let hop = next_hop(&self.routes, dst)?;
        self.macs.get(&hop).copied()
    }

    /// Reads the routes and neighbours of our interface again.
    pub fn refresh(&mut self) -> io::Result<()> {
        let nl = Netlink::open()?;
        let mut routes = Vec::new();
        nl.dump(RTM_GETROUTE, |kind, body| {
            if kind == RTM_NEWROUTE
                && let Some(r) = parse_route(body, self.ifindex)
            {
                routes.push(r);
            }
        })?;
        let mut macs = HashMap::new();
        nl.dump(RTM_GETNEIGH, |kind, body| {
            if kind == RTM_NEWNEIGH
                && let Some((ip, mac)) = parse_neigh(body, self.ifindex)
            {
                macs.insert(ip, mac);
            }
        })?;
        self.routes = routes;
        self.macs = macs;
        Ok(())
    }
}

/// Attributes after a 12-byte body: (type, value).
fn attrs(body: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(BODY..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[(len + 3) & !3..];
        Some((kind, value))
    })
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = v.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.try_into().ok()?))
}

/// A unicast route of the main table out of `ifindex`.
fn parse_route(body: &[u8], ifindex: u32) -> Option<Route> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    if body.len() < BODY || i32::from(body[0]) != libc::AF_INET || body[7] != RTN_UNICAST {
        return None;
    }
    let mut table = u32::from(body[4]);
    let (mut dst, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
    for (kind, v) in attrs(body) {
        match kind {
            RTA_DST => dst = ipv4(v)?,
            RTA_GATEWAY => gateway = ipv4(v),
            RTA_OIF => oif = u32_of(v),
            RTA_TABLE => table = u32_of(v)?,
            _ => {}
        }
    }
    (table == RT_TABLE_MAIN && oif == Some(ifindex)).then_some(Route {
        net: dst,
        len: body[1],
        gateway,
    })
}

/// A usable IPv4 neighbour entry of `ifindex`.
fn parse_neigh(body: &[u8], ifindex: u32) -> Option<(Ipv4Addr, Mac)> {
    // struct ndmsg: family, pad, pad16, ifindex (i32), state (u16), flags, type.
    if body.len() < BODY || i32::from(body[0]) != libc::AF_INET {
        return None;
    }
    let index = u32::from_ne_bytes(body[4..8].try_into().ok()?);
    let state = u16::from_ne_bytes(body[8..10].try_into().ok()?);
    if index != ifindex || matches!(state, NUD_NONE | NUD_INCOMPLETE | NUD_FAILED) {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    for (kind, v) in attrs(body) {
        match kind {
            NDA_DST => ip = ipv4(v),
            NDA_LLADDR => mac = v.try_into().ok(),
            _ => {}
        }
    }
    Some((ip?, mac?))
}

struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Netlink { fd })
    }

    /// Dumps table `request` (IPv4), calling `each(message type, body)` per message.
    fn dump(&self, request: u16, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut req = [0u8; NLMSG_HDR + BODY];
        req[0..4].copy_from_slice(&((NLMSG_HDR + BODY) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&request.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&1u32.to_ne_bytes());
        req[NLMSG_HDR] = libc::AF_INET as u8;
        // SAFETY: a send of our buffer to the kernel (a null address: netlink's default).
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                req.as_ptr() as *const libc::c_void,
                req.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receive into our buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDR {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = rest
                            .get(NLMSG_HDR..NLMSG_HDR + 4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                    }
                    _ => each(kind, &rest[NLMSG_HDR..len]),
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_route_gives_the_next_hop() {
        let routes = [
            Route {
                net: Ipv4Addr::UNSPECIFIED,
                len: 0,
                gateway: Some("198.18.0.254".parse().unwrap()),
            },
            Route {
                net: "198.18.0.0".parse().unwrap(),
                len: 24,
                gateway: None,
            },
        ];
        let on_link: Ipv4Addr = "198.18.0.7".parse().unwrap();
        assert_eq!(next_hop(&routes, on_link), Some(on_link));
        assert_eq!(
            next_hop(&routes, "203.0.113.9".parse().unwrap()),
            Some("198.18.0.254".parse().unwrap())
        );
        assert_eq!(next_hop(&routes[1..], "203.0.113.9".parse().unwrap()), None);
    }

    #[test]
    fn the_loopback_interface_has_routes_and_the_dump_ends() {
        // Index 1 is `lo` in every network namespace; its main-table routes may be none, but
        // both dumps must come back complete.
        let mut n = NextHops::new(1);
        n.refresh().expect("rtnetlink dumps");
    }
}
