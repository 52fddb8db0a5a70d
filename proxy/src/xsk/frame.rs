//! Ethernet II / IPv4 / UDP frames, read and written in user space for the AF_XDP path:
//! sans-IO, over byte slices. Received frames are checked as the kernel would check them
//! (lengths, the IPv4 header checksum, the UDP checksum where the sender set one); sent
//! frames carry both checksums, or a UDP checksum of zero where the caller asks for none
//! (allowed over IPv4, RFC 768).

use std::net::{Ipv4Addr, SocketAddrV4};

pub const ETH_HEADER: usize = 14;
pub const IP_HEADER: usize = 20;
pub const UDP_HEADER: usize = 8;
/// Bytes before the payload of a frame this module writes.
pub const HEADERS: usize = ETH_HEADER + IP_HEADER + UDP_HEADER;

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
/// The TTL of what siplb sends (Linux's default).
const TTL: u8 = 64;

/// A MAC address.
pub type Mac = [u8; 6];

/// A received UDP datagram, pointing into its frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

/// Why a frame is not a datagram siplb takes (it then goes nowhere: the XDP program only
/// redirects what it checked, so these are damaged frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    Short,
    NotIpv4,
    NotUdp,
    Fragment,
    IpChecksum,
    Length,
    UdpChecksum,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The one's-complement sum of `data` as 16-bit big-endian words (a last odd byte padded
/// with zero), added to `sum`, not yet folded.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the checksum to write.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The UDP checksum over the pseudo-header and `udp` (header with its checksum field, then
/// payload); 0 becomes 0xffff as RFC 768 wants.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += u64::from(IPPROTO_UDP) + udp.len() as u64;
    match fold(sum(acc, udp)) {
        0 => 0xffff,
        c => c,
    }
}

/// Reads a frame: Ethernet II carrying an unfragmented IPv4 UDP datagram, checked.
pub fn parse(frame: &[u8]) -> Result<Datagram<'_>, Bad> {
    if frame.len() < HEADERS {
        return Err(Bad::Short);
    }
    if be16(frame, 12) != ETH_P_IP {
        return Err(Bad::NotIpv4);
    }
    let ip = &frame[ETH_HEADER..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IP_HEADER || ip.len() < ihl + UDP_HEADER {
        return Err(Bad::NotIpv4);
    }
    if ip[9] != IPPROTO_UDP {
        return Err(Bad::NotUdp);
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(Bad::Fragment);
    }
    if fold(sum(0, &ip[..ihl])) != 0 {
        return Err(Bad::IpChecksum);
    }
    let total = usize::from(be16(ip, 2));
    if total < ihl + UDP_HEADER || total > ip.len() {
        return Err(Bad::Length);
    }
    // Ethernet may pad a short frame: the IP length says where the datagram ends.
    let udp = &ip[ihl..total];
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_HEADER || udp_len > udp.len() {
        return Err(Bad::Length);
    }
    let udp = &udp[..udp_len];
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if be16(udp, 6) != 0 {
        let mut acc = sum(0, &src_ip.octets());
        acc = sum(acc, &dst_ip.octets());
        acc += u64::from(IPPROTO_UDP) + udp.len() as u64;
        if fold(sum(acc, udp)) != 0 {
            return Err(Bad::UdpChecksum);
        }
    }
    let mac = |at: usize| -> Mac { frame[at..at + 6].try_into().expect("6 bytes") };
    Ok(Datagram {
        dst_mac: mac(0),
        src_mac: mac(6),
        src: SocketAddrV4::new(src_ip, be16(udp, 0)),
        dst: SocketAddrV4::new(dst_ip, be16(udp, 2)),
        payload: &udp[UDP_HEADER..],
    })
}

/// The addresses of a frame to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// Writes a frame carrying `payload` from `r.src` to `r.dst` into `out`: its length, or
/// `None` when it does not fit (or is too long for one IPv4 datagram). `id` is the IPv4
/// identification; with `with_udp_checksum` false the UDP checksum is left zero.
pub fn write(
    out: &mut [u8],
    r: &Route,
    payload: &[u8],
    id: u16,
    with_udp_checksum: bool,
) -> Option<usize> {
    let len = HEADERS + payload.len();
    let ip_total = IP_HEADER + UDP_HEADER + payload.len();
    if len > out.len() || ip_total > usize::from(u16::MAX) {
        return None;
    }
    let out = &mut out[..len];
    out[0..6].copy_from_slice(&r.dst_mac);
    out[6..12].copy_from_slice(&r.src_mac);
    out[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    {
        let ip = &mut out[ETH_HEADER..ETH_HEADER + IP_HEADER];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&(ip_total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        // Don't fragment, as Linux sets it for UDP with path MTU discovery on.
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        ip[8] = TTL;
        ip[9] = IPPROTO_UDP;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&r.src.ip().octets());
        ip[16..20].copy_from_slice(&r.dst.ip().octets());
        let c = fold(sum(0, ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let udp = &mut out[ETH_HEADER + IP_HEADER..];
    udp[0..2].copy_from_slice(&r.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&r.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_HEADER + payload.len()) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[UDP_HEADER..].copy_from_slice(payload);
    if with_udp_checksum {
        let c = udp_checksum(*r.src.ip(), *r.dst.ip(), udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            src: "198.18.0.1:5060".parse().unwrap(),
            dst: "198.18.0.2:5070".parse().unwrap(),
        }
    }

    #[test]
    fn a_written_frame_reads_back_with_both_checksums_valid() {
        let mut buf = [0u8; 2048];
        for payload in [&b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..], b"odd", b""] {
            let n = write(&mut buf, &route(), payload, 7, true).unwrap();
            let d = parse(&buf[..n]).unwrap();
            assert_eq!(d.payload, payload);
            assert_eq!(d.src, route().src);
            assert_eq!(d.dst, route().dst);
            assert_eq!(d.src_mac, route().src_mac);
            assert_eq!(d.dst_mac, route().dst_mac);
            assert_ne!(be16(&buf, HEADERS - 2), 0, "UDP checksum set");
        }
    }

    #[test]
    fn checksums_match_a_frame_the_kernel_sent() {
        // A UDP datagram 198.18.0.2:40000 → 198.18.0.1:5060 with payload "hello", laid out
        // by hand; the checksums below were worked out separately (RFC 1071, in Python).
        let frame: [u8; 47] = [
            0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, // Ethernet
            0x45, 0x00, 0x00, 0x21, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 198, 18, 0, 2,
            198, 18, 0, 1, // IPv4, checksum filled below
            0x9c, 0x40, 0x13, 0xc4, 0x00, 0x0d, 0x00, 0x00, // UDP, checksum below
            b'h', b'e', b'l', b'l', b'o',
        ];
        let r = Route {
            src_mac: [0x02, 0, 0, 0, 0, 2],
            dst_mac: [0x02, 0, 0, 0, 0, 1],
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.1:5060".parse().unwrap(),
        };
        let mut buf = [0u8; 64];
        let n = write(&mut buf, &r, b"hello", 0x1234, true).unwrap();
        assert_eq!(n, frame.len());
        // Everything but the checksums is byte for byte the same.
        let mut ours = buf[..n].to_vec();
        ours[24..26].copy_from_slice(&[0, 0]);
        ours[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(ours, frame);
        assert_eq!(be16(&buf, 24), 0x9c70, "IPv4 header checksum");
        assert_eq!(be16(&buf, 40), 0x7fd5, "UDP checksum");
    }

    #[test]
    fn damaged_frames_are_refused_for_what_is_wrong() {
        let mut buf = [0u8; 256];
        let n = write(&mut buf, &route(), b"INVITE", 1, true).unwrap();
        let mut f = buf[..n].to_vec();
        assert_eq!(parse(&f[..20]), Err(Bad::Short));
        f[HEADERS] ^= 1;
        assert_eq!(parse(&f), Err(Bad::UdpChecksum));
        f[HEADERS] ^= 1;
        f[ETH_HEADER + 8] = 1; // TTL changed, header checksum not
        assert_eq!(parse(&f), Err(Bad::IpChecksum));
        let mut g = buf[..n].to_vec();
        g[ETH_HEADER + 6] = 0x20; // more fragments
        assert_eq!(parse(&g), Err(Bad::Fragment));
        let mut h = buf[..n].to_vec();
        h[12] = 0x86;
        h[13] = 0xdd;
        assert_eq!(parse(&h), Err(Bad::NotIpv4));
    }

    #[test]
    fn a_zero_udp_checksum_is_accepted_and_ethernet_padding_ignored() {
        let mut buf = [0u8; 128];
        let n = write(&mut buf, &route(), b"x", 1, false).unwrap();
        assert_eq!(be16(&buf, HEADERS - 2), 0);
        // Padded to Ethernet's 60-byte minimum.
        let d = parse(&buf[..60.max(n)]).unwrap();
        assert_eq!(d.payload, b"x");
    }

    #[test]
    fn a_payload_that_does_not_fit_is_not_written() {
        let mut buf = [0u8; 64];
        assert_eq!(write(&mut buf, &route(), &[0; 30], 1, true), None);
    }
}
