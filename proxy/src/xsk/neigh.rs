//! Next hops for frames sent through AF_XDP: the kernel's route to each destination
//! (`RTM_GETROUTE`, as `ip route get` asks) and the neighbour (ARP) entries of one interface
//! (an `RTM_GETNEIGH` dump), read over rtnetlink and cached. A destination the cache cannot
//! place (routed through another interface, or whose next hop's MAC the kernel does not know
//! yet) is the caller's to send through the kernel's socket path, which resolves it; a later
//! refresh then finds it.
//!
//! Frames sent through AF_XDP never reach the kernel's neighbour state machine, so an entry
//! the kernel has not confirmed lately (STALE) would stay so, with its MAC, for ever: a peer
//! that moved to another MAC (a failover that sent no gratuitous ARP, a replaced card) would be
//! sent to at the old one. A STALE next hop therefore gets one datagram through the kernel's
//! path every [`NUDGE`]: the kernel then checks the entry (DELAY, then unicast ARP probes) and
//! resolves it again if the MAC no longer answers.

use super::frame::Mac;
use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often a MAC not found may read the neighbour table again.
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
const RTN_UNICAST: u8 = 1;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_STALE: u16 = 0x04;
const NUD_FAILED: u16 = 0x20;
const NUD_NONE: u16 = 0x00;

/// The cached next hops of one interface: per destination, its next hop (the kernel's route
/// to it, asked once); per next hop, its MAC (the kernel's neighbour table, read again at
/// least every second, so that a MAC that moves — a gateway's failover — is followed).
pub struct NextHops {
    ifindex: u32,
    /// Destination → next hop through our interface (None: routed elsewhere).
    hops: HashMap<Ipv4Addr, Option<Ipv4Addr>>,
    macs: HashMap<Ipv4Addr, Mac>,
    /// The next hops whose entries are STALE, and when each last went through the kernel.
    stale: HashMap<Ipv4Addr, Option<Instant>>,
    /// When the neighbours were last read, and when the routes were forgotten.
    neighbours_read: Option<Instant>,
    routes_since: Option<Instant>,
    /// The rtnetlink socket the questions go through (opened again after an error).
    nl: Option<Netlink>,
}

/// Destinations whose routes are kept at most (a flood of replies to many sources asks the
/// kernel for each once, and the table starts again when full).
const MAX_HOPS: usize = 65_536;

/// Routes asked for are forgotten this often (a route that changed is then asked again).
const ROUTES_KEPT: Duration = Duration::from_secs(10);
/// The neighbour table is read again after this long.
const NEIGHBOURS_KEPT: Duration = Duration::from_secs(1);
/// A STALE next hop gets a datagram through the kernel's path this often.
pub const NUDGE: Duration = Duration::from_secs(5);

impl NextHops {
    pub fn new(ifindex: u32) -> NextHops {
        NextHops {
            ifindex,
            hops: HashMap::new(),
            macs: HashMap::new(),
            stale: HashMap::new(),
            neighbours_read: None,
            routes_since: None,
            nl: None,
        }
    }

    /// The MAC to send a frame for `dst` to, if `dst` is reached through our interface and
    /// its next hop's MAC is known (and this datagram is not the one that goes through the
    /// kernel to have a STALE entry checked).
    pub fn mac_for(&mut self, dst: Ipv4Addr, now: Instant) -> Option<Mac> {
        if self
            .routes_since
            .is_none_or(|t| now.duration_since(t) >= ROUTES_KEPT)
            || self.hops.len() >= MAX_HOPS
        {
            self.hops.clear();
            self.routes_since = Some(now);
        }
        let hop = match self.hops.get(&dst) {
            Some(h) => *h,
            None => {
                let h = match self.netlink().and_then(|nl| route_to(nl, dst)) {
                    Ok(Some((oif, gateway))) if oif == self.ifindex => Some(gateway.unwrap_or(dst)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!("AF_XDP next hops: the route to {dst}: {e}");
                        self.nl = None;
                        None
                    }
                };
                self.hops.insert(dst, h);
                h
            }
        }?;
        let stale = self
            .neighbours_read
            .is_none_or(|t| now.duration_since(t) >= NEIGHBOURS_KEPT);
        let miss = !self.macs.contains_key(&hop)
            && self
                .neighbours_read
                .is_none_or(|t| now.duration_since(t) >= REFRESH);
        if stale || miss {
            self.neighbours_read = Some(now);
            if let Err(e) = self.read_neighbours() {
                tracing::debug!("AF_XDP next hops: reading the neighbour table: {e}");
                self.nl = None;
            }
        }
        let mac = self.macs.get(&hop).copied()?;
        if self.nudge(hop, now) {
            return None;
        }
        Some(mac)
    }

    /// Whether a datagram to `hop` should go through the kernel now, to have its STALE entry
    /// checked: once per [`NUDGE`].
    fn nudge(&mut self, hop: Ipv4Addr, now: Instant) -> bool {
        let Some(last) = self.stale.get_mut(&hop) else {
            return false;
        };
        if last.is_some_and(|t| now.duration_since(t) < NUDGE) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The rtnetlink socket, opened if need be.
    fn netlink(&mut self) -> io::Result<&mut Netlink> {
        if self.nl.is_none() {
            self.nl = Some(Netlink::open()?);
        }
        Ok(self.nl.as_mut().expect("just opened"))
    }

    /// Reads the neighbours of our interface again.
    pub fn read_neighbours(&mut self) -> io::Result<()> {
        let ifindex = self.ifindex;
        let mut entries = Vec::new();
        self.netlink()?
            .request(RTM_GETNEIGH, NLM_F_DUMP, &[], |kind, body| {
                if kind == RTM_NEWNEIGH
                    && let Some(entry) = parse_neigh(body, ifindex)
                {
                    entries.push(entry);
                }
            })?;
        self.take(entries);
        Ok(())
    }

    /// Takes a fresh read of the neighbours: `(address, MAC, state)`.
    fn take(&mut self, entries: Vec<(Ipv4Addr, Mac, u16)>) {
        let mut stale = HashMap::new();
        self.macs.clear();
        for (ip, mac, state) in entries {
            self.macs.insert(ip, mac);
            if state & NUD_STALE != 0 {
                stale.insert(ip, self.stale.get(&ip).copied().flatten());
            }
        }
        self.stale = stale;
    }
}

/// The kernel's route to `dst` (`ip route get`): its output interface and gateway.
fn route_to(nl: &mut Netlink, dst: Ipv4Addr) -> io::Result<Option<(u32, Option<Ipv4Addr>)>> {
    // RTA_DST: 4 + 4 bytes; and dst_len 32 in the rtmsg.
    let mut attr = [0u8; 8];
    attr[0..2].copy_from_slice(&8u16.to_ne_bytes());
    attr[2..4].copy_from_slice(&RTA_DST.to_ne_bytes());
    attr[4..8].copy_from_slice(&dst.octets());
    let mut found = None;
    nl.request(RTM_GETROUTE, 0, &attr, |kind, body| {
        if kind == RTM_NEWROUTE && body.len() >= BODY && body[7] == RTN_UNICAST {
            let (mut oif, mut gateway) = (None, None);
            for (k, v) in attrs(body) {
                match k {
                    RTA_OIF => oif = u32_of(v),
                    RTA_GATEWAY => gateway = ipv4(v),
                    _ => {}
                }
            }
            found = oif.map(|o| (o, gateway));
        }
    })?;
    Ok(found)
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

/// A usable IPv4 neighbour entry of `ifindex`: address, MAC, state.
fn parse_neigh(body: &[u8], ifindex: u32) -> Option<(Ipv4Addr, Mac, u16)> {
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
    Some((ip?, mac?, state))
}

struct Netlink {
    fd: OwnedFd,
    /// The sequence number of the last request: what the kernel sends back carries it, and
    /// anything else (the rest of an answer given up on) is skipped.
    seq: u32,
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
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends request `request` (IPv4; `flags` besides NLM_F_REQUEST, `attrs` after the
    /// 12-byte body, whose dst_len is 32 when attributes are given) and calls
    /// `each(message type, body)` per message of the answer.
    fn request(
        &mut self,
        request: u16,
        flags: u16,
        attrs: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let len = NLMSG_HDR + BODY + attrs.len();
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&request.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.seq = self.seq.wrapping_add(1);
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        req[NLMSG_HDR] = libc::AF_INET as u8;
        if !attrs.is_empty() {
            req[NLMSG_HDR + 1] = 32;
        }
        req[NLMSG_HDR + BODY..].copy_from_slice(attrs);
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
        let dump = flags & NLM_F_DUMP != 0;
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
                let seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if seq != self.seq {
                    rest = &rest[((len + 3) & !3).min(rest.len())..];
                    continue;
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
                        if !dump {
                            return Ok(());
                        }
                    }
                    _ => {
                        each(kind, &rest[NLMSG_HDR..len]);
                        if !dump {
                            return Ok(());
                        }
                    }
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
    fn a_local_destination_has_no_route_out_of_an_interface() {
        // 127.0.0.1 is local in every network namespace: the kernel's own delivery, not a
        // frame to send.
        let mut nl = Netlink::open().expect("rtnetlink");
        assert_eq!(route_to(&mut nl, Ipv4Addr::LOCALHOST).unwrap(), None);
        // The same socket answers the next question.
        assert_eq!(route_to(&mut nl, Ipv4Addr::LOCALHOST).unwrap(), None);
    }

    #[test]
    fn the_neighbour_dump_ends_and_an_unrouted_destination_has_no_mac() {
        // Index 1 is `lo` in every network namespace.
        let mut n = NextHops::new(1);
        n.read_neighbours().expect("rtnetlink dump");
        assert_eq!(n.mac_for(Ipv4Addr::LOCALHOST, Instant::now()), None);
    }

    #[test]
    fn a_stale_next_hop_goes_through_the_kernel_once_per_nudge_interval() {
        const REACHABLE: u16 = 0x02;
        let (fresh, stale) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let mac = [2, 0, 0, 0, 0, 1];
        let mut n = NextHops::new(7);
        n.take(vec![(fresh, mac, REACHABLE), (stale, mac, NUD_STALE)]);
        let t0 = Instant::now();
        assert!(!n.nudge(fresh, t0), "a confirmed entry is used");
        assert!(
            n.nudge(stale, t0),
            "the first datagram to a stale one goes to the kernel"
        );
        assert!(!n.nudge(stale, t0 + Duration::from_secs(1)));
        // A read of the table while the entry is still STALE keeps when it was nudged.
        n.take(vec![(fresh, mac, REACHABLE), (stale, mac, NUD_STALE)]);
        assert!(!n.nudge(stale, t0 + Duration::from_secs(2)));
        assert!(n.nudge(stale, t0 + NUDGE));
        assert!(!n.nudge(stale, t0 + NUDGE + Duration::from_secs(1)));
        // Confirmed again by the kernel: used until it goes stale again.
        n.take(vec![(stale, mac, REACHABLE)]);
        assert!(!n.nudge(stale, t0 + 3 * NUDGE));
        assert_eq!(n.macs.get(&stale), Some(&mac));
        assert!(
            !n.macs.contains_key(&fresh),
            "an entry that went away is forgotten"
        );
    }
}
